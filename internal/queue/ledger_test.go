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
	// Counted before the test can see this Final (finals), so that its
	// dones.Wait never starts before this Add (a race otherwise).
	if done != nil {
		l.dones.Add(1)
	}
	l.mu.Lock()
	l.final[m.ID] = deleted
	for _, r := range m.Rcpts {
		l.states[m.ID] = append(l.states[m.ID], r.Status)
	}
	l.mu.Unlock()
	if done == nil {
		return
	}
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

// A crash while a delivered message waits for the ledger delivers it
// no second time: its S record (journal) or sidecar says it was sent,
// with the replies, and the next start hands it to the ledger as it was.
func TestLedgerWaitSurvivesCrash(t *testing.T) {
	for _, journal := range []bool{true, false} {
		dir := t.TempDir()
		f := newFakeNet()
		l := &slowLedger{accepted: map[string]int{}, final: map[string]bool{}, states: map[string][]Status{}, release: make(chan struct{})}
		o := f.options(dir)
		o.noJournal = !journal
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
		waitFor(t, "the message handed to the ledger", func() bool { return l.finals() == 1 })
		// The crash: this queue is abandoned as it is (its ledger never
		// answers); a new one starts on the same directory.
		f2 := newFakeNet()
		l2 := &slowLedger{accepted: map[string]int{}, final: map[string]bool{}, states: map[string][]Status{}, release: make(chan struct{})}
		close(l2.release)
		o2 := f2.options(dir)
		o2.noJournal = !journal
		o2.Ledger = l2
		q2, err := Open(o2)
		if err != nil {
			t.Fatal(err)
		}
		go q2.Run()
		waitFor(t, "the message handed to the new ledger", func() bool { return l2.finals() == 1 })
		waitFor(t, "the message removed", func() bool { return len(q2.List()) == 0 })
		q2.Close(context.Background())
		f2.mu.Lock()
		n := len(f2.delivered)
		f2.mu.Unlock()
		if n != 0 {
			t.Errorf("journal=%v: %d recipients delivered again after the crash", journal, n)
		}
		if got := l2.states[id]; len(got) != 2 || got[0] != Sent || got[1] != Sent {
			t.Errorf("journal=%v: states after restart %v, want both sent", journal, got)
		}
	}
}
