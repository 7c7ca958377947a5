package ledger

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/envelope"
	"github.com/mailtee/mailtee/internal/queue"
)

func openStore(t *testing.T, b *backend, dir string) *Store {
	t.Helper()
	st, err := OpenReader(b.at(dir))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// A Final is never held: its done comes after one batch, however long
// live events are held (Every), and a message held since its Accepted
// leaves with it, with the phase it was accepted with, not the one in
// force at its end.
func TestHoldNeverDelaysFinal(t *testing.T) {
	forBackends(t, func(t *testing.T, b *backend) {
		dir := t.TempDir()
		var phase atomic.Value
		phase.Store("recipient_bcc_maps=hash:/etc/postfix/bcc")
		r := NewRecorder(RecorderOptions{Path: b.at(dir), Node: "mx1.example.org",
			Phase: func(string) string { return phase.Load().(string) }, Every: time.Hour})
		m := msg("H1", "user1@students.example", "copy-user1@relay.example")
		r.Accepted(m)
		time.Sleep(50 * time.Millisecond) // several batches: the Accepted is held, not written
		phase.Store("")                   // the copy map removed before the message ends
		for i := range m.Rcpts {
			m.Rcpts[i].Status, m.Rcpts[i].Attempt = queue.Sent, &queue.Attempt{LastErr: "250 2.0.0 Ok: queued as 4ZxH1", DSN: "2.0.0", Relay: "x[127.0.0.1]:25"}
			r.Delivery(m, i, envelope.Hop{Transport: "smtp", Nexthop: "x"}, queue.Outcome{Relay: "x[127.0.0.1]:25", Reply: "250 2.0.0 Ok: queued as 4ZxH1"}, "sent", time.Now())
		}
		start := time.Now()
		finalSync(t, r, m, false) // fails after 30 s: a held Final would wait an hour
		if d := time.Since(start); d > 20*time.Second {
			t.Errorf("Final's done after %v", d)
		}
		st := openStore(t, b, dir) // read while the Recorder runs: the Final is committed
		got, ok, err := st.Message(context.Background(), "", "H1")
		if err != nil || !ok {
			t.Fatalf("H1 not written with its Final: %v %v", ok, err)
		}
		if got.Phase != "recipient_bcc_maps=hash:/etc/postfix/bcc" {
			t.Errorf("phase %q, want the one H1 was accepted with", got.Phase)
		}
		if len(got.Deliveries) != 2 || got.Deliveries[1].Status != Sent || got.Deliveries[1].RemoteID != "4ZxH1" || got.Finished.IsZero() {
			t.Errorf("H1 %+v", got)
		}
		r.Close()
	})
}

// Held messages are written once Every has passed with no event coming
// (a message deferred for hours shows in the ledger meanwhile), and at
// Close.
func TestHeldWrittenAfterHoldAndAtClose(t *testing.T) {
	forBackends(t, func(t *testing.T, b *backend) {
		dir := t.TempDir()
		r := NewRecorder(RecorderOptions{Path: b.at(dir), Node: "mx1.example.org",
			Every: 200 * time.Millisecond})
		r.Accepted(msg("P1", "a@example.com"))
		st := openStore(t, b, dir)
		deadline := time.Now().Add(30 * time.Second)
		for {
			if _, ok, err := st.Message(context.Background(), "", "P1"); err != nil {
				t.Fatal(err)
			} else if ok {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("P1, pending, not written 30 s after its Accepted (Every is 200 ms)")
			}
			time.Sleep(20 * time.Millisecond)
		}
		if s := r.Stats(); s.Waiting != 0 {
			t.Errorf("stats %+v after the held message was written, want nothing waiting", s)
		}
		r.Close()

		dir = t.TempDir()
		r = NewRecorder(RecorderOptions{Path: b.at(dir), Node: "mx1.example.org", Every: time.Hour})
		r.Accepted(msg("P2", "a@example.com"))
		if s := r.Stats(); s.Waiting != 1 {
			t.Errorf("stats %+v with P2 held, want 1 event waiting", s)
		}
		r.Close()
		if _, ok, err := openStore(t, b, dir).Message(context.Background(), "", "P2"); err != nil || !ok {
			t.Errorf("P2, held, not written at Close: %v %v", ok, err)
		}
	})
}

// A batch larger than one statement's rows (upsertRows), with messages
// of 1 to 3 recipients, some held and finished across batches, writes
// every message and delivery with its own values.
func TestManyRowsPerStatement(t *testing.T) {
	forBackends(t, func(t *testing.T, b *backend) {
		dir := t.TempDir()
		r := NewRecorder(RecorderOptions{Path: b.at(dir), Node: "mx1.example.org",
			Every: time.Hour, Gather: time.Millisecond})
		const n = 3*upsertRows + 7
		var msgs []*queue.Message
		for i := 0; i < n; i++ {
			var rcpts []string
			for j := 0; j <= i%3; j++ {
				rcpts = append(rcpts, fmt.Sprintf("u%d.%d@example.com", i, j))
			}
			m := msg(fmt.Sprintf("M%03d", i), rcpts...)
			msgs = append(msgs, m)
			r.Accepted(m)
		}
		for i, m := range msgs {
			if i%2 == 1 {
				continue // stays pending: written at Close
			}
			for j := range m.Rcpts {
				reply := fmt.Sprintf("250 2.0.0 Ok: queued as R%dx%d", i, j)
				m.Rcpts[j].Status, m.Rcpts[j].Attempt = queue.Sent, &queue.Attempt{LastErr: reply, DSN: "2.0.0", Relay: "x[127.0.0.1]:25"}
			}
			finalSync(t, r, m, false)
		}
		r.Close()
		st := openStore(t, b, dir)
		all, err := st.Messages(context.Background(), Filter{})
		if err != nil || len(all) != n {
			t.Fatalf("%d messages (%v), want %d", len(all), err, n)
		}
		for _, got := range all {
			var i int
			fmt.Sscanf(got.ID, "M%03d", &i)
			if len(got.Deliveries) != i%3+1 {
				t.Errorf("%s: %d deliveries, want %d", got.ID, len(got.Deliveries), i%3+1)
				continue
			}
			for j, d := range got.Deliveries {
				want := Pending
				if i%2 == 0 {
					want = Sent
				}
				if d.Rcpt != fmt.Sprintf("u%d.%d@example.com", i, j) || d.Status != want {
					t.Errorf("%s delivery %d: %+v, want %s to u%d.%d", got.ID, j, d, want, i, j)
				}
				if want == Sent && d.RemoteID != fmt.Sprintf("R%dx%d", i, j) {
					t.Errorf("%s delivery %d: remote ID %q", got.ID, j, d.RemoteID)
				}
			}
			if (i%2 == 0) == got.Finished.IsZero() {
				t.Errorf("%s: finished %v", got.ID, got.Finished)
			}
		}
	})
}

// The dones of one batch run at once: each removes a message from the
// queue and waits for the journal's fsync, so one after another they
// held the writer for an fsync per message. Here the first done of the
// batch returns only once the second has been called.
func TestDonesAtOnce(t *testing.T) {
	dir := t.TempDir()
	r := NewRecorder(RecorderOptions{Path: filepath.Join(dir, "data", "ledger.db"), Node: "mx1.example.org",
		Every: time.Hour})
	defer r.Close()
	second := make(chan struct{})
	result := make(chan bool, 1)
	r.Final(msg("D1", "a@example.com"), false, func() {
		select {
		case <-second:
			result <- true
		case <-time.After(20 * time.Second):
			result <- false
		}
	})
	r.Final(msg("D2", "b@example.com"), false, func() { close(second) })
	select {
	case ok := <-result:
		if !ok {
			t.Fatal("the second Final's done was not called while the first one's ran (dones called one after another)")
		}
	case <-time.After(60 * time.Second):
		t.Fatal("no done called")
	}
}

// Finished messages that come within Gather of each other share one
// commit (about 1 ms of CPU each, whatever its size): committed as they
// came, a relay's made one commit for every message or two.
func TestFinalsGathered(t *testing.T) {
	dir := t.TempDir()
	r := NewRecorder(RecorderOptions{Path: filepath.Join(dir, "data", "ledger.db"), Node: "mx1.example.org",
		Gather: 2 * time.Second})
	defer r.Close()
	before := r.commits.Load()
	const n = 20
	done := make(chan struct{}, n)
	for i := 0; i < n; i++ {
		r.Final(msg(fmt.Sprintf("G%02d", i), "a@example.com"), false, func() { done <- struct{}{} })
		time.Sleep(5 * time.Millisecond)
	}
	for i := 0; i < n; i++ {
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Fatalf("%d of %d dones after 30 s", i, n)
		}
	}
	if c := r.commits.Load() - before; c > 2 {
		t.Errorf("%d commits for %d finished messages 5 ms apart, want 1 (2 on a slow machine)", c, n)
	}
}
