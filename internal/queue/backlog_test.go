package queue

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/envelope"
)

// Benchmarks of a backlog of messages with many recipients behind a next
// hop that is down (issue 12, item 3: 660 messages of 1,000 recipients).

// rcptEnv is a message from outside to n recipients at far.example, as
// smtpd queues it (Orig set, a copy of Addr's bytes).
func rcptEnv(msg, n int) *envelope.Envelope {
	e := env()
	e.ClientName, e.ClientAddr, e.Helo, e.Protocol, e.BodyType = "localhost", "127.0.0.1", "client.example", "ESMTP", "8BITMIME"
	for k := 0; k < n; k++ {
		a := fmt.Sprintf("m%04d.user%04d@far.example", msg, k)
		e.Rcpts = append(e.Rcpts, envelope.Rcpt{Addr: a, Orig: strings.Clone(a)})
	}
	return e
}

// deferAll records one deferral of every pending recipient of m, as a
// delivery pass to a suspended next hop does.
func deferAll(q *Queue, m *Message) {
	recs := make([]record, 0, len(m.Rcpts))
	for i := range m.Rcpts {
		recs = append(recs, q.outcome(m, i, Outcome{Err: suspendedError{siteDown{}}, Relay: "none"}))
	}
	q.mu.Lock()
	for _, r := range recs {
		m.apply(r)
	}
	q.mu.Unlock()
	q.persist(m, recs)
}

// benchEnv reads a size from the environment, for longer runs.
func benchEnv(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

// enqueueDeferred queues message i, of n recipients, and records
// retries deferrals of every recipient.
func enqueueDeferred(b *testing.B, q *Queue, i, n, retries int) *Message {
	id := q.NewID()
	if err := q.Enqueue(context.Background(), id, rcptEnv(i, n), strings.NewReader(benchBody)); err != nil {
		b.Fatal(err)
	}
	q.mu.Lock()
	m := q.msgs[id].m
	q.mu.Unlock()
	for range retries {
		deferAll(q, m)
	}
	return m
}

// liveHeap is the heap in use after a collection.
func liveHeap() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// BenchmarkBacklogRcptMemory measures the heap a queued recipient keeps:
// b.N messages of 100 recipients each, all deferred once, then live bytes
// after a GC per recipient.
func BenchmarkBacklogRcptMemory(b *testing.B) {
	const n = 100
	q := benchQueue(b, true, nil)
	q.o.MinBackoff, q.o.MaxBackoff = time.Hour, time.Hour
	defer q.Close(context.Background())
	before := liveHeap()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		q.st().dropCache(enqueueDeferred(b, q, i, n, 1))
	}
	b.StopTimer()
	b.ReportMetric(float64(liveHeap()-before)/float64(b.N*n), "heapB/rcpt")
}

// BenchmarkOpenBacklog measures a start-up on a backlog:
// MAILTEE_BENCH_MSGS messages (100; 660 for the figure) of
// MAILTEE_BENCH_RCPTS recipients (1000), each deferred
// MAILTEE_BENCH_RETRIES times (5) before the queue is closed. An op is
// one Open of the whole spool; it reports the spool's size on disk, the
// heap it allocates (allocMB) and keeps (liveMB) per Open.
func BenchmarkOpenBacklog(b *testing.B) {
	msgs := benchEnv("MAILTEE_BENCH_MSGS", 100)
	rcpts := benchEnv("MAILTEE_BENCH_RCPTS", 1000)
	retries := benchEnv("MAILTEE_BENCH_RETRIES", 5)
	dir := b.TempDir()
	o := newFakeNet().options(dir)
	o.MinBackoff, o.MaxBackoff = time.Hour, time.Hour
	q, err := Open(o)
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < msgs; i++ {
		enqueueDeferred(b, q, i, rcpts, retries)
	}
	q.Close(context.Background())
	var disk int64
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			disk += fi.Size()
		}
		return nil
	})
	var before, after runtime.MemStats
	var live int64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		live = liveHeap()
		runtime.ReadMemStats(&before)
		q, err := Open(o)
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		runtime.ReadMemStats(&after)
		if n := len(q.msgs); n != msgs {
			b.Fatalf("%d messages loaded, want %d", n, msgs)
		}
		for _, e := range q.msgs {
			if r := e.m.Rcpts[rcpts-1]; int(r.Attempts) != retries || r.LastErr == "" {
				b.Fatalf("recipient loaded with %d attempts and reason %q, want %d and a reason", r.Attempts, r.LastErr, retries)
			}
			break
		}
		live = liveHeap() - live
		q.Close(context.Background())
		b.StartTimer()
	}
	b.ReportMetric(float64(disk)/(1<<20), "spoolMB")
	b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/(1<<20), "allocMB")
	b.ReportMetric(float64(live)/(1<<20), "liveMB")
}

// The recipients of the messages being delivered at once stay within
// MaxActiveRcpts (qmgr_message_recipient_limit): a pass holds memory per
// recipient. A message with more recipients than the limit still goes,
// alone.
func TestActiveRcptLimit(t *testing.T) {
	dir := t.TempDir()
	f := newFakeNet()
	o := f.options(dir)
	o.MaxActiveRcpts = 10
	var mu sync.Mutex
	in, most := 0, 0
	base := o.Deliver
	o.Deliver = func(ctx context.Context, m *Message, hop envelope.Hop, rcpts []int) []Outcome {
		mu.Lock()
		in += len(rcpts)
		most = max(most, in)
		mu.Unlock()
		time.Sleep(20 * time.Millisecond)
		mu.Lock()
		in -= len(rcpts)
		mu.Unlock()
		return base(ctx, m, hop, rcpts)
	}
	q, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close(context.Background())
	// Queued before the queue runs: all due at once.
	for i := 0; i < 20; i++ {
		q.Enqueue(context.Background(), q.NewID(), rcptEnv(i, 4), strings.NewReader("x\r\n"))
	}
	q.Enqueue(context.Background(), q.NewID(), rcptEnv(99, 15), strings.NewReader("x\r\n"))
	go q.Run()
	waitFor(t, "all delivered", func() bool { return drained(t, q, dir) })
	mu.Lock()
	defer mu.Unlock()
	if most > 15 {
		t.Errorf("%d recipients in delivery at once, want at most 15 (the largest message)", most)
	}
	if most < 8 {
		t.Errorf("at most %d recipients in delivery at once: messages were not delivered side by side", most)
	}
	if n := f.count("m0099.user0014@far.example"); n != 1 {
		t.Errorf("the message larger than the limit: %d deliveries of its last recipient, want 1", n)
	}
}
