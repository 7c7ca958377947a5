package queue

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/envelope"
)

// slowLedger holds each Final until release is closed.
type slowLedger struct {
	mu       sync.Mutex
	accepted map[string]int
	final    map[string]bool // ID -> deleted
	states   map[string][]Status
	release  chan struct{}
	dones    sync.WaitGroup
}

func (l *slowLedger) Accepted(m *Message) {
	l.mu.Lock()
	l.accepted[m.ID]++
	l.mu.Unlock()
}
func (l *slowLedger) Delivery(*Message, int, envelope.Hop, Outcome, string, time.Time) {}
func (l *slowLedger) Final(m *Message, deleted bool, done func()) {
	l.mu.Lock()
	l.final[m.ID] = deleted
	for _, r := range m.Rcpts {
		l.states[m.ID] = append(l.states[m.ID], r.Status)
	}
	l.mu.Unlock()
	if done == nil {
		return
	}
	l.dones.Add(1)
	go func() {
		defer l.dones.Done()
		<-l.release
		done()
	}()
}

func (l *slowLedger) finals() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.final)
}

// A finished message stays in the spool until the ledger has its final
// state: a crash in between loads it again, and the ledger gets it again.
func TestLedgerHoldsRemovalUntilRecorded(t *testing.T) {
	dir := t.TempDir()
	f := newFakeNet()
	l := &slowLedger{accepted: map[string]int{}, final: map[string]bool{}, states: map[string][]Status{}, release: make(chan struct{})}
	o := f.options(dir)
	o.Ledger = l
	q, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	go q.Run()
	id := q.NewID()
	if err := q.Enqueue(context.Background(), id, env("a@one.example", "b@two.example"), strings.NewReader("x\r\n")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the message handed to the ledger as final", func() bool { return l.finals() == 1 })
	if got := l.states[id]; len(got) != 2 || got[0] != Sent || got[1] != Sent {
		t.Errorf("final states %v, want both sent", got)
	}
	time.Sleep(50 * time.Millisecond)
	if n := len(q.List()); n != 1 {
		t.Fatalf("queue holds %d message(s) before the ledger answered, want 1 (kept)", n)
	}
	close(l.release)
	l.dones.Wait()
	waitFor(t, "the message removed once recorded", func() bool { return len(q.List()) == 0 })
	q.Close(context.Background())
	if l.accepted[id] != 1 {
		t.Errorf("Accepted called %d times, want 1", l.accepted[id])
	}
}

func TestLedgerSeesLoadedAndDeleted(t *testing.T) {
	dir := t.TempDir()
	f := newFakeNet()
	f.set("b@two.example", testErr{false, "down"})
	o := f.options(dir)
	q, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	id := q.NewID()
	q.Enqueue(context.Background(), id, env("b@two.example"), strings.NewReader("x\r\n"))
	q.Close(context.Background())

	l := &slowLedger{accepted: map[string]int{}, final: map[string]bool{}, states: map[string][]Status{}, release: make(chan struct{})}
	o.Ledger = l
	q, err = Open(o)
	if err != nil {
		t.Fatal(err)
	}
	if l.accepted[id] != 1 {
		t.Fatalf("a message found at Open was not given to the ledger")
	}
	if err := q.Delete(id); err != nil {
		t.Fatal(err)
	}
	if deleted, ok := l.final[id]; !ok || !deleted {
		t.Errorf("Delete did not tell the ledger the message was deleted (%v %v)", deleted, ok)
	}
	q.Close(context.Background())
}
