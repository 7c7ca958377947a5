package metrics

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mailtee/mailtee/internal/envelope"
	"github.com/mailtee/mailtee/internal/queue"
)

// The hooks on the delivery path, per delivery: what one recipient's
// outcome costs on top of the mail log.
func BenchmarkDeliverySent(b *testing.B) {
	m := New(Options{})
	ev := m.Events(nil)
	msg := testMessage("B1", time.Now(), 2000, envelope.Rcpt{Addr: "u@example.com"})
	hop := envelope.Hop{Transport: "smtp", Nexthop: "example.com"}
	o := queue.Outcome{Relay: "mx[192.0.2.1]:25", Delays: [4]time.Duration{time.Second, time.Millisecond, 20 * time.Millisecond, 40 * time.Millisecond}}
	b.ReportAllocs()
	for b.Loop() {
		ev.Delivery(msg, 0, hop, o, "sent", 0)
	}
}

// A copy: deferred (it becomes pending), then sent (it is not).
func BenchmarkDeliveryCopyDeferredThenSent(b *testing.B) {
	m := New(Options{})
	ev := m.Events(nil)
	msg := testMessage("B2", time.Now(), 2000, envelope.Rcpt{Addr: "u@provider.example", Copy: true})
	hop := envelope.Hop{Transport: "relay"}
	deferred := queue.Outcome{Err: fmt.Errorf("451 later"), DSN: "4.0.0"}
	b.ReportAllocs()
	for b.Loop() {
		ev.Delivery(msg, 0, hop, deferred, "deferred", 0)
		ev.Delivery(msg, 0, hop, queue.Outcome{}, "sent", 0)
	}
}

// A message's life in the queue's events: queued, one delivery, removed.
func BenchmarkMessageEvents(b *testing.B) {
	m := New(Options{})
	ev := m.Events(nil)
	msg := testMessage("B3", time.Now(), 2000, envelope.Rcpt{Addr: "u@example.com"}, envelope.Rcpt{Addr: "u@provider.example", Copy: true})
	hop := envelope.Hop{Transport: "smtp"}
	b.ReportAllocs()
	for b.Loop() {
		ev.Queued(msg)
		ev.Delivery(msg, 0, hop, queue.Outcome{}, "sent", 0)
		ev.Delivery(msg, 1, hop, queue.Outcome{}, "sent", 0)
		ev.Removed(msg)
	}
}

// One SMTP session's hooks: connect, TLS, a reject, a message, disconnect.
func BenchmarkSMTPDSession(b *testing.B) {
	s := New(Options{}).SMTPD()
	cs := tls.ConnectionState{Version: tls.VersionTLS13, CipherSuite: tls.TLS_AES_128_GCM_SHA256}
	b.ReportAllocs()
	for b.Loop() {
		s.Connect()
		s.TLS(cs)
		s.Reject(554)
		s.Accepted()
		s.Disconnect()
	}
}

// Deliveries from many goroutines at once, as the queue makes them.
func BenchmarkDeliveryParallel(b *testing.B) {
	m := New(Options{})
	ev := m.Events(nil)
	hop := envelope.Hop{Transport: "smtp"}
	b.ReportAllocs()
	var n sync.Mutex
	id := 0
	b.RunParallel(func(pb *testing.PB) {
		n.Lock()
		id++
		msg := testMessage(fmt.Sprint("P", id), time.Now(), 2000, envelope.Rcpt{Addr: "u@example.com"})
		n.Unlock()
		for pb.Next() {
			ev.Delivery(msg, 0, hop, queue.Outcome{}, "sent", 0)
		}
	})
}

func fakeQueue(n int) func([]queue.Shape) []queue.Shape {
	now := time.Now()
	msgs := make([]queue.Shape, n)
	for i := range msgs {
		msgs[i] = queue.Shape{Size: int64(1000 + i%50000), Arrival: now.Add(-time.Duration(i) * time.Second),
			Active: i%10 == 0, Hold: i%97 == 0, Deferred: i%3 == 0}
	}
	return func(buf []queue.Shape) []queue.Shape { return append(buf, msgs...) }
}

// A scrape with 100,000 messages in the queue, the listing given: the
// cost of showq's histograms themselves.
func BenchmarkScrapeShowq100k(b *testing.B) {
	m := New(Options{Queue: fakeQueue(100000)})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.Gatherer().Gather(); err != nil {
			b.Fatal(err)
		}
	}
}

// A scrape of a real queue (queue.Shapes): 20,000 messages, enqueued
// before the timer starts.
func BenchmarkScrapeRealQueue20k(b *testing.B) {
	benchRealQueue(b, 20000)
}

func benchRealQueue(b *testing.B, n int) {
	q, err := queue.Open(queue.Options{Dir: b.TempDir(),
		Route: func(context.Context, string) (envelope.Hop, error) { return envelope.Hop{Transport: "smtp"}, nil },
		Deliver: func(_ context.Context, _ *queue.Message, _ envelope.Hop, idx []int) []queue.Outcome {
			return make([]queue.Outcome, len(idx))
		}})
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close(context.Background())
	// Not Run: the messages stay queued.
	var wg sync.WaitGroup
	work := make(chan int)
	for range 32 {
		wg.Go(func() {
			for i := range work {
				env := &envelope.Envelope{From: "a@example.org", Arrival: time.Now(),
					Rcpts: []envelope.Rcpt{{Addr: fmt.Sprintf("u%d@example.com", i)}, {Addr: fmt.Sprintf("u%d@provider.example", i), Copy: true}}}
				if err := q.Enqueue(context.Background(), q.NewID(), env, bytes.NewReader(make([]byte, 1500))); err != nil {
					b.Error(err)
				}
			}
		})
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	m := New(Options{Queue: q.Shapes})
	reg := prometheus.NewRegistry()
	reg.MustRegister(&scrape{m: m})
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := reg.Gather(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n), "messages")
}

// The same with 100,000 messages (enqueuing them takes a minute).
func BenchmarkScrapeRealQueue100k(b *testing.B) {
	benchRealQueue(b, 100000)
}
