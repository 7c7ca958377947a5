package queue

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/envelope"
)

// logEvents records what the mail log would show.
type logEvents struct {
	mu     sync.Mutex
	queued map[string]int // ID -> "from=<...> (queue active)" lines
	delays [][4]time.Duration
	delay  []time.Duration
}

func newLogEvents() *logEvents { return &logEvents{queued: map[string]int{}} }

func (e *logEvents) Queued(m *Message) {
	e.mu.Lock()
	e.queued[m.ID]++
	e.mu.Unlock()
}
func (e *logEvents) Removed(*Message) {}
func (e *logEvents) Delivery(m *Message, i int, hop envelope.Hop, o Outcome, status string, delay time.Duration) {
	e.mu.Lock()
	e.delays = append(e.delays, o.Delays)
	e.delay = append(e.delay, delay)
	e.mu.Unlock()
}

func (e *logEvents) count(id string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.queued[id]
}

// qmgr's "from=<...>, size=N, nrcpt=N (queue active)" line is logged each
// time a message becomes active, as Postfix does: on arrival, at each
// retry of a deferred message, and for a message found in the spool at
// start (queued while the server was stopped), which had none before.
func TestQueuedLoggedAtEachActivation(t *testing.T) {
	dir := t.TempDir()
	f := newFakeNet()
	f.set("b@two.example", testErr{false, "down"})
	ev := newLogEvents()
	o := f.options(dir)
	o.Events = ev
	q, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	go q.Run()
	id := q.NewID()
	q.Enqueue(context.Background(), id, env("a@one.example", "b@two.example"), strings.NewReader("x\r\n"))
	waitFor(t, "a delivered and b retried", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.delivered["a@one.example"] == 1 && f.calls >= 3
	})
	if n := ev.count(id); n < 2 {
		t.Errorf("%d queue-active lines after a retry, want one per activation (>= 2)", n)
	}
	q.Close(context.Background())

	// A message written while no server ran (as sendmail does when the
	// server is stopped) is announced when the next server takes it.
	f.set("b@two.example", nil)
	off, err := Open(Options{Dir: dir, noJournal: o.noJournal})
	if err != nil {
		t.Fatal(err)
	}
	id2 := off.NewID()
	if err := off.Enqueue(context.Background(), id2, env("c@one.example"), strings.NewReader("y\r\n")); err != nil {
		t.Fatal(err)
	}
	off.Close(context.Background())

	ev2 := newLogEvents()
	o2 := f.options(dir)
	o2.Events = ev2
	q2 := startQueue(t, o2)
	waitFor(t, "both delivered after the restart", func() bool { return f.count("c@one.example") == 1 && f.count("b@two.example") == 1 })
	waitFor(t, "drained", func() bool { return drained(t, q2, dir) })
	for _, x := range []string{id, id2} {
		if n := ev2.count(x); n != 1 {
			t.Errorf("message %s: %d queue-active lines after the restart, want 1", x, n)
		}
	}
}

// delays=a/b/c/d add up to the delay logged beside them, and each part
// is where it belongs: the agent's setup is c, its other work d, the wait
// for a delivery slot b.
func TestDelaysAddUp(t *testing.T) {
	dir := t.TempDir()
	f := newFakeNet()
	ev := newLogEvents()
	o := f.options(dir)
	o.Events = ev
	deliver := o.Deliver
	o.Deliver = func(ctx context.Context, m *Message, hop envelope.Hop, rcpts []int) []Outcome {
		time.Sleep(60 * time.Millisecond)
		out := deliver(ctx, m, hop, rcpts)
		for k := range out {
			out[k].Setup = 40 * time.Millisecond
		}
		return out
	}
	q := startQueue(t, o)
	arrival := time.Now().Add(-2 * time.Second)
	e := env("a@one.example")
	e.Arrival = arrival
	q.Enqueue(context.Background(), q.NewID(), e, strings.NewReader("x\r\n"))
	waitFor(t, "delivered", func() bool {
		ev.mu.Lock()
		defer ev.mu.Unlock()
		return len(ev.delays) == 1
	})
	d, total := ev.delays[0], ev.delay[0]
	if sum := d[0] + d[1] + d[2] + d[3]; sum != total {
		t.Errorf("delays %v add up to %v, delay is %v", d, sum, total)
	}
	if d[0] < 2*time.Second {
		t.Errorf("a = %v, want at least the 2s since arrival", d[0])
	}
	if d[2] != 40*time.Millisecond {
		t.Errorf("c = %v, want the agent's setup 40ms", d[2])
	}
	if d[3] < 20*time.Millisecond {
		t.Errorf("d = %v, want the rest of the agent's 60ms", d[3])
	}
}
