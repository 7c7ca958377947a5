package queue

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/envelope"
)

// concPacer plans every next hop under one key with a concurrency that
// a reload may change.
type concPacer struct{ conc atomic.Int64 }

func (c *concPacer) Plan(ctx context.Context, hop envelope.Hop) Plan {
	return Plan{Key: "smtp:site", Concurrency: int(c.conc.Load())}
}

func (c *concPacer) Admit(ctx context.Context, plan Plan, m *Message, rcpts []int) Admission {
	return Admission{Now: rcpts}
}

// A reload that lowers a destination's concurrency (an administrator
// answering a provider's throttling) takes effect while a backlog keeps
// the destination busy: the semaphore was kept, at its old size, for as
// long as some delivery held or waited for it. (The limit is the one
// the latest delivery to join was planned with.)
func TestConcurrencyFollowsReload(t *testing.T) {
	pc := &concPacer{}
	pc.conc.Store(4)
	var mu sync.Mutex
	var changed time.Time
	in, most := 0, 0
	o := Options{
		Dir:        t.TempDir(),
		MinBackoff: time.Hour, MaxBackoff: time.Hour,
		MaxActive: 8, // passes keep starting, as in a backlog
		Pacer:     pc,
		Route: func(ctx context.Context, rcpt string) (envelope.Hop, error) {
			_, dom, _ := strings.Cut(rcpt, "@")
			return envelope.Hop{Transport: "smtp", Nexthop: dom}, nil
		},
		Deliver: func(ctx context.Context, m *Message, hop envelope.Hop, rcpts []int) []Outcome {
			mu.Lock()
			in++
			// Those started once the deliveries of before the
			// reload are over.
			if !changed.IsZero() && time.Since(changed) > 150*time.Millisecond {
				most = max(most, in)
			}
			mu.Unlock()
			time.Sleep(40 * time.Millisecond)
			mu.Lock()
			in--
			mu.Unlock()
			return make([]Outcome, len(rcpts))
		},
	}
	q := startQueue(t, o)
	for i := 0; i < 60; i++ {
		q.Enqueue(context.Background(), q.NewID(), env(fmt.Sprintf("u%d@d%d.example", i, i%7)), strings.NewReader("x\r\n"))
	}
	time.Sleep(100 * time.Millisecond)
	pc.conc.Store(1)
	mu.Lock()
	changed = time.Now()
	mu.Unlock()
	time.Sleep(500 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if most != 1 {
		t.Errorf("after the reload lowered the concurrency to 1: %d deliveries at once", most)
	}
}

// The line of a destination: a waiter whose context ends leaves it
// holding nothing; a raised limit lets those waiting go at once.
func TestSlotLine(t *testing.T) {
	q := &Queue{hops: map[string]*destSlot{}}
	plan := Plan{Key: "k", Concurrency: 1}
	a := q.slot(plan)
	if !q.acquire(context.Background(), a) {
		t.Fatal("first acquire failed")
	}
	ctx, cancel := context.WithCancel(context.Background())
	b := q.slot(plan)
	got := make(chan bool)
	go func() { got <- q.acquire(ctx, b) }()
	time.Sleep(20 * time.Millisecond)
	cancel()
	if <-got {
		t.Fatal("a cancelled waiter got a place")
	}
	q.leave(b)
	c := q.slot(plan)
	go func() { got <- q.acquire(context.Background(), c) }()
	time.Sleep(20 * time.Millisecond)
	q.slot(Plan{Key: "k", Concurrency: 2}) // a reload raises the limit
	select {
	case ok := <-got:
		if !ok {
			t.Fatal("acquire failed")
		}
	case <-time.After(time.Second):
		t.Fatal("the raised limit left the waiter waiting")
	}
	q.mu.Lock()
	if s := q.hops["k"]; s.running != 2 || len(s.waiting) != 0 {
		t.Errorf("running %d, waiting %d; want 2, 0", s.running, len(s.waiting))
	}
	q.mu.Unlock()
}
