package queue

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/envelope"
)

// withAdds makes o's deliveries to the addresses in adds add those
// recipients (as local delivery does with mailbox_bcc_maps copies), and
// counts the recipients each pass was asked to deliver.
func withAdds(o Options, adds map[string][]envelope.Rcpt) Options {
	inner := o.Deliver
	o.Deliver = func(ctx context.Context, m *Message, hop envelope.Hop, rcpts []int) []Outcome {
		out := inner(ctx, m, hop, rcpts)
		for k, i := range rcpts {
			if out[k].Err == nil {
				out[k].Add = adds[m.Rcpts[i].Addr]
			}
		}
		return out
	}
	return o
}

func copyOf(addr, orig string) envelope.Rcpt {
	return envelope.Rcpt{Addr: addr, Orig: orig, Copy: true}
}

// A recipient added with a delivery (a mailbox_bcc_maps copy) is a
// recipient of the same message: delivered by a later pass, retried on
// its own when deferred, never making the delivery that added it happen
// again; an address that is a recipient already is not added again, so
// copies of copies end (b's copy to a, a's to b).
func TestAddedRecipientDeliveredOnce(t *testing.T) {
	dir := t.TempDir()
	f := newFakeNet()
	f.set("copy@two.example", testErr{false, "451 not now"})
	o := withAdds(f.options(dir), map[string][]envelope.Rcpt{
		"a@one.example":    {copyOf("copy@two.example", "a@one.example"), copyOf("A@One.Example", "a@one.example")},
		"copy@two.example": {copyOf("a@one.example", "copy@two.example"), copyOf("copy2@two.example", "copy@two.example")},
	})
	q := startQueue(t, o)
	id := q.NewID()
	if err := q.Enqueue(context.Background(), id, env("a@one.example"), strings.NewReader("x\r\n")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the copy deferred", func() bool {
		l := q.List()
		return len(l) == 1 && len(l[0].Rcpts) == 2 && l[0].Rcpts[1].Status == "deferred"
	})
	in := q.List()[0]
	if r := in.Rcpts[1]; r.Addr != "copy@two.example" {
		t.Errorf("added recipient %+v", r)
	}
	f.set("copy@two.example", nil)
	waitFor(t, "removal", func() bool { return drained(t, q, dir) })
	for rcpt, want := range map[string]int{"a@one.example": 1, "copy@two.example": 1, "copy2@two.example": 1, "A@One.Example": 0} {
		if n := f.count(rcpt); n != want {
			t.Errorf("%s delivered %d times, want %d", rcpt, n, want)
		}
	}
}

// An added recipient is a copy: its failure is reported as the
// recipient it is, Copy set and Orig the mailbox it copies, in the
// same message's bounce.
func TestAddedRecipientBounces(t *testing.T) {
	dir := t.TempDir()
	f := newFakeNet()
	f.set("copy@two.example", testErr{true, "550 no such user"})
	var got []RcptState
	var mu sync.Mutex
	o := withAdds(f.options(dir), map[string][]envelope.Rcpt{"a@one.example": {copyOf("copy@two.example", "a@one.example")}})
	bounce := o.Bounce
	o.Bounce = func(ctx context.Context, m *Message, failed []int, notified func([]int) error) error {
		mu.Lock()
		for _, i := range failed {
			got = append(got, m.Rcpts[i])
		}
		mu.Unlock()
		return bounce(ctx, m, failed, notified)
	}
	q := startQueue(t, o)
	q.Enqueue(context.Background(), q.NewID(), env("a@one.example"), strings.NewReader("x\r\n"))
	waitFor(t, "removal", func() bool { return drained(t, q, dir) })
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || got[0].Addr != "copy@two.example" || !got[0].Copy || got[0].Orig != "a@one.example" || got[0].Status != Bounced {
		t.Errorf("bounced %+v, want the copy", got)
	}
	if n := f.count("a@one.example"); n != 1 {
		t.Errorf("a delivered %d times", n)
	}
}

// The added recipient is in the message's durable state with the
// delivery that added it: a restart (journal or not) delivers the copy
// and not the original again, and a listing of the stopped queue shows
// it.
func TestAddedRecipientSurvivesRestart(t *testing.T) {
	for _, journal := range []bool{true, false} {
		dir := t.TempDir()
		f := newFakeNet()
		f.set("copy@two.example", testErr{false, "451 not now"})
		adds := map[string][]envelope.Rcpt{"a@one.example": {copyOf("copy@two.example", "a@one.example")}}
		o := withAdds(f.options(dir), adds)
		o.noJournal = !journal
		o.MinBackoff, o.MaxBackoff = time.Hour, time.Hour
		q, err := Open(o)
		if err != nil {
			t.Fatal(err)
		}
		go q.Run()
		e := env("a@one.example")
		e.Parent = "ABCDEF012345"
		q.Enqueue(context.Background(), q.NewID(), e, strings.NewReader("x\r\n"))
		waitFor(t, "the copy deferred", func() bool {
			l := q.List()
			return len(l) == 1 && len(l[0].Rcpts) == 2 && l[0].Rcpts[1].Status == "deferred"
		})
		q.Close(context.Background())

		list, err := ListDir(dir)
		if err != nil || len(list) != 1 || len(list[0].Rcpts) != 2 || list[0].Rcpts[1].Addr != "copy@two.example" ||
			list[0].Rcpts[1].Status != "deferred" || list[0].Rcpts[0].Status != "sent" || list[0].Parent != "ABCDEF012345" {
			t.Fatalf("journal %v: stopped queue lists %+v, %v", journal, list, err)
		}

		f.set("copy@two.example", nil)
		o.MinBackoff, o.MaxBackoff = 50*time.Millisecond, 200*time.Millisecond
		q2 := startQueue(t, o)
		q2.Flush()
		waitFor(t, "removal after restart", func() bool { return drained(t, q2, dir) })
		if a, c := f.count("a@one.example"), f.count("copy@two.example"); a != 1 || c != 1 {
			t.Errorf("journal %v: a delivered %d times, the copy %d; want once each", journal, a, c)
		}
	}
}

// Add records survive compaction of the sidecar, keep their indexes
// when one never reached the disk (a failed write: its place is kept,
// lost, and never delivered or listed), and replaying a record twice
// adds nothing.
func TestAddRecordsCompaction(t *testing.T) {
	q, m := stateQueue(t, 3)
	persist := func(recs ...record) {
		for i := range recs {
			q.st().intern(&recs[i])
			m.apply(recs[i])
		}
		q.persist(m, recs)
	}
	c1, c2 := copyOf("c1@far.example", "m0000.user0000@far.example"), copyOf("c2@far.example", "m0000.user0001@far.example")
	persist(record{Rcpt: 0, Op: "sent", Err: "250 ok", DSN: "2.0.0", Relay: "local"}, record{Rcpt: 3, Op: "add", Add: &c1})
	// Index 4's record was lost with a write that failed; 5 was written.
	m.Rcpts = append(m.Rcpts, RcptState{Rcpt: copyOf("c-lost@far.example", "x"), Attempt: &noAttempt})
	persist(record{Rcpt: 1, Op: "sent", Err: "250 ok", DSN: "2.0.0", Relay: "local"}, record{Rcpt: 5, Op: "add", Add: &c2})
	persist(record{Rcpt: 5, Op: "add", Add: &c2}) // replayed: nothing new
	for k := 0; k < 200; k++ {
		persist(record{Rcpt: -1, Rcpts: "2-5", Op: "deferred", Err: "451 later", DSN: "4.0.0", Relay: "mx", Next: int64(1700000000 + k)})
	}
	if q.st().compactions.Load() == 0 {
		t.Fatal("no compaction happened")
	}
	m2, err := q.st().load(m.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(m2.Rcpts) != 6 || m2.Rcpts[3].Rcpt != c1 || m2.Rcpts[5].Rcpt != c2 || !m2.Rcpts[4].lost || m2.Rcpts[4].Status != Sent ||
		m2.Rcpts[3].Attempts != 200 || m2.Rcpts[5].Attempts != 200 || m2.Rcpts[0].Status != Sent || m2.Rcpts[2].Attempts != 200 {
		t.Fatalf("reloaded: %+v", m2.Rcpts)
	}
	if got := info(m2, false); len(got.Rcpts) != 5 || got.Rcpts[4].Addr != "c2@far.example" {
		t.Errorf("listing: %+v", got.Rcpts)
	}
	// Compacted once more, from this state: the same again.
	m2.stMu.Lock()
	done, err := q.st().compactState(m2, nil)
	m2.stMu.Unlock()
	if !done || err != nil {
		t.Fatal(done, err)
	}
	m3, _ := q.st().load(m.ID)
	if len(m3.Rcpts) != 6 || m3.Rcpts[5].Rcpt != c2 || !m3.Rcpts[4].lost || m3.Rcpts[5].Attempts != 200 {
		t.Errorf("compacted again: %+v", m3.Rcpts)
	}
	// The stored envelope never takes the added recipients.
	if n := len(m3.envelope().Rcpts); n != 3 {
		t.Errorf("envelope has %d recipients, want 3", n)
	}
}
