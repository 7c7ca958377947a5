package pace

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/deliver"
	"github.com/mailtee/mailtee/internal/envelope"
	"github.com/mailtee/mailtee/internal/queue"
)

// A throttling reply suspends the site for the deliveries waiting for
// its slots too: the queue admits a delivery before it waits for one of
// the destination's connections, and those admitted before the 421 must
// not go out during the suspension it starts (each would be refused,
// and a storm of them is what the site punishes).
func TestSuspensionStopsAdmittedDeliveries(t *testing.T) {
	p := New(Options{
		Transport: func(string) (Transport, bool) {
			return Transport{Profile: "none", SMTP: true, Limits: Limits{Concurrency: 1, RecipientLimit: 50}}, true
		},
		MinSuspend: 3 * time.Second, MaxSuspend: time.Minute,
	})
	var mu sync.Mutex
	var throttledAt time.Time
	during := 0
	o := queue.Options{
		Dir:        t.TempDir(),
		MinBackoff: time.Hour, MaxBackoff: time.Hour,
		Pacer: p,
		Route: func(ctx context.Context, rcpt string) (envelope.Hop, error) {
			return envelope.Hop{Transport: "smtp", Nexthop: "students.example"}, nil
		},
		Deliver: func(ctx context.Context, m *queue.Message, hop envelope.Hop, rcpts []int) []queue.Outcome {
			mu.Lock()
			first := throttledAt.IsZero()
			if !first && time.Since(throttledAt) < 3*time.Second {
				during++
			}
			mu.Unlock()
			time.Sleep(300 * time.Millisecond) // the others queue up for the slot meanwhile
			out := make([]queue.Outcome, len(rcpts))
			if first {
				for k := range out {
					out[k].Err = &deliver.Error{Code: 421, Enhanced: "4.7.28", Relay: "mx[192.0.2.1]:25",
						Text: "host mx[192.0.2.1] said: 421 4.7.28 Our system has detected an unusual rate of unsolicited mail"}
				}
				mu.Lock()
				throttledAt = time.Now()
				mu.Unlock()
			}
			return out
		},
	}
	q, err := queue.Open(o)
	if err != nil {
		t.Fatal(err)
	}
	go q.Run()
	defer q.Close(context.Background())
	for i := 0; i < 4; i++ {
		e := &envelope.Envelope{From: "a@example.org", Rcpts: []envelope.Rcpt{{Addr: fmt.Sprintf("u%d@students.example", i)}}}
		if err := q.Enqueue(context.Background(), q.NewID(), e, strings.NewReader("Subject: s\r\n\r\nx\r\n")); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(2500 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if throttledAt.IsZero() {
		t.Fatal("no delivery")
	}
	if during > 0 {
		t.Errorf("%d deliveries went to the site during its suspension (admitted before the 421, waiting for its slot)", during)
	}
}

// So does a mailbox's: a delivery admitted before a 450 4.2.1 for one
// of its recipients leaves that one out when its slot comes, and
// delivers the others.
func TestMailboxThrottleStopsAdmittedRecipient(t *testing.T) {
	p := New(Options{
		Transport: func(string) (Transport, bool) {
			return Transport{Profile: "none", SMTP: true, Limits: Limits{Concurrency: 1, RecipientLimit: 50}}, true
		},
		MinSuspend: 3 * time.Second, MaxSuspend: time.Minute,
	})
	var mu sync.Mutex
	var throttledAt time.Time
	got := map[string]int{}
	during := 0
	o := queue.Options{
		Dir:        t.TempDir(),
		MinBackoff: time.Hour, MaxBackoff: time.Hour,
		Pacer: p,
		Route: func(ctx context.Context, rcpt string) (envelope.Hop, error) {
			return envelope.Hop{Transport: "smtp", Nexthop: "students.example"}, nil
		},
		Deliver: func(ctx context.Context, m *queue.Message, hop envelope.Hop, rcpts []int) []queue.Outcome {
			time.Sleep(300 * time.Millisecond) // the other message waits for the slot meanwhile
			mu.Lock()
			defer mu.Unlock()
			out := make([]queue.Outcome, len(rcpts))
			for k, i := range rcpts {
				a := m.Rcpts[i].Addr
				got[a]++
				if a != "busy@students.example" {
					continue
				}
				if throttledAt.IsZero() {
					throttledAt = time.Now()
					out[k].Err = &deliver.Error{Code: 450, Enhanced: "4.2.1", Relay: "mx[192.0.2.1]:25",
						Text: "host mx[192.0.2.1] said: 450 4.2.1 The user you are trying to contact is receiving mail too quickly"}
				} else if time.Since(throttledAt) < 3*time.Second {
					during++
				}
			}
			return out
		},
	}
	q, err := queue.Open(o)
	if err != nil {
		t.Fatal(err)
	}
	go q.Run()
	defer q.Close(context.Background())
	for _, rcpts := range [][]string{{"busy@students.example"}, {"busy@students.example", "free@students.example"}} {
		e := &envelope.Envelope{From: "a@example.org"}
		for _, r := range rcpts {
			e.Rcpts = append(e.Rcpts, envelope.Rcpt{Addr: r})
		}
		if err := q.Enqueue(context.Background(), q.NewID(), e, strings.NewReader("Subject: s\r\n\r\nx\r\n")); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(1500 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if throttledAt.IsZero() || got["free@students.example"] != 1 {
		t.Fatalf("deliveries %v: want the throttle, and free@ delivered", got)
	}
	if during > 0 {
		t.Errorf("busy@ got %d deliveries during its mailbox's suspension", during)
	}
}
