package queue

import (
	"context"
	"strings"
	"testing"
)

// A delivered message waiting for the ledger that compaction moves out
// of the journal keeps its delivered state: the move's D record voids
// the S record, so the state must go to the new file's sidecar, or a
// crash before the ledger answers delivers the message a second time.
func TestLedgerWaitSurvivesCompaction(t *testing.T) {
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
	waitFor(t, "the message handed to the ledger", func() bool { return l.finals() == 1 })
	q.mu.Lock()
	m := q.msgs[id].m
	q.mu.Unlock()
	st := q.sp.(*store)
	if m.jn.Load() == nil {
		t.Fatal("the message is not in the journal: the test needs it there")
	}
	// Compaction picks it (its segment pinned by older messages).
	if err := st.evacuate(m); err != nil {
		t.Fatal(err)
	}
	// The crash, then a new start on the same directory.
	f2 := newFakeNet()
	l2 := &slowLedger{accepted: map[string]int{}, final: map[string]bool{}, states: map[string][]Status{}, release: make(chan struct{})}
	close(l2.release)
	o2 := f2.options(dir)
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
		t.Errorf("%d recipients delivered again after compaction and a crash", n)
	}
}
