package ledger

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/envelope"
	"github.com/mailtee/mailtee/internal/queue"
)

func msg(id string, rcpts ...string) *queue.Message {
	env := &envelope.Envelope{From: "alice@example.org", ClientName: "mx.example.org", ClientAddr: "192.0.2.1",
		Arrival: time.Now().Add(-time.Minute), MessageID: "<1@example.org>"}
	for _, r := range rcpts {
		rc := envelope.Rcpt{Addr: r}
		if strings.HasPrefix(r, "copy-") {
			rc.Copy = true
		}
		env.Rcpts = append(env.Rcpts, rc)
	}
	return queue.NewMemMessage(id, env, []byte("x\r\n"))
}

type logs struct {
	mu    sync.Mutex
	lines []string
}

func (l *logs) Log(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, strings.TrimSpace(fmt.Sprintf(format, args...)))
}

func (l *logs) has(s string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, x := range l.lines {
		if strings.Contains(x, s) {
			return true
		}
	}
	return false
}

func newRec(t *testing.T, b *backend, dir string, lg *logs) *Recorder {
	t.Helper()
	return NewRecorder(RecorderOptions{Path: b.at(dir), Node: "mx1.example.org",
		Marker: filepath.Join(dir, "ledger.state"), Phase: func(string) string { return "recipient_bcc_maps=hash:/etc/postfix/bcc" }, Log: lg.Log})
}

// finalSync hands m to r as final and waits for the done.
func finalSync(t *testing.T, r *Recorder, m *queue.Message, deleted bool) {
	t.Helper()
	ch := make(chan struct{})
	r.Final(m, deleted, func() { close(ch) })
	select {
	case <-ch:
	case <-time.After(30 * time.Second):
		t.Fatal("Final's done never called")
	}
}

func TestRecorderRoundTrip(t *testing.T) {
	forBackends(t, func(t *testing.T, b *backend) {
		dir := t.TempDir()
		lg := &logs{}
		r := newRec(t, b, dir, lg)
		m := msg("A1", "user1@students.example", "copy-user1@relay.example", "bob@other.example")
		r.Accepted(m)
		m.Rcpts[0].Status, m.Rcpts[0].Attempts = queue.Sent, 1
		m.Rcpts[0].Attempt = &queue.Attempt{LastErr: "delivered to mailbox", DSN: "2.0.0", Relay: "local"}
		r.Delivery(m, 0, envelope.Hop{Transport: "local", Nexthop: "students.example"}, queue.Outcome{Relay: "local", Reply: "delivered to mailbox"}, "sent", time.Now())
		m.Rcpts[1].Status, m.Rcpts[1].Attempts = queue.Sent, 2
		m.Rcpts[1].Attempt = &queue.Attempt{LastErr: "250 2.0.0 Ok: queued as 4ZxRELAY1", DSN: "2.0.0", Relay: "relay.example[127.0.0.1]:2526"}
		r.Delivery(m, 1, envelope.Hop{Transport: "smtp", Nexthop: "relay.example"}, queue.Outcome{Relay: "relay.example[127.0.0.1]:2526", Reply: "250 2.0.0 Ok: queued as 4ZxRELAY1"}, "sent", time.Now())
		m.Rcpts[2].Status, m.Rcpts[2].Attempts = queue.Bounced, 1
		m.Rcpts[2].Attempt = &queue.Attempt{LastErr: "host mx.other.example[192.0.2.9] said: 550 5.1.1 no such user", DSN: "5.1.1", Relay: "mx.other.example[192.0.2.9]:25"}
		finalSync(t, r, m, false)
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}

		st, err := OpenReader(b.at(dir))
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		got, ok, err := st.Message(context.Background(), "", "A1")
		if err != nil || !ok {
			t.Fatalf("message not found: %v %v", ok, err)
		}
		if got.MessageID != "<1@example.org>" || got.From != "alice@example.org" || got.Client != "mx.example.org[192.0.2.1]" || got.Finished.IsZero() {
			t.Errorf("head %+v", got)
		}
		if strings.Join(got.Rcpts, ",") != "user1@students.example,bob@other.example" {
			t.Errorf("original recipients %v, want the two that were not copies", got.Rcpts)
		}
		if got.Phase == "" {
			t.Errorf("phase not recorded")
		}
		if len(got.Deliveries) != 3 {
			t.Fatalf("%d deliveries, want 3", len(got.Deliveries))
		}
		d := got.Deliveries
		if d[0].Status != Sent || d[0].Transport != "local" || d[0].Nexthop != "students.example" {
			t.Errorf("mailbox delivery %+v", d[0])
		}
		if d[1].Status != Sent || !d[1].Copy || d[1].RemoteID != "4ZxRELAY1" || d[1].Attempts != 3 { // two deferrals, then sent
			t.Errorf("copy %+v", d[1])
		}
		if d[2].Status != Bounced || !strings.Contains(d[2].Reply, "550 5.1.1") || d[2].DSN != "5.1.1" {
			t.Errorf("bounce %+v", d[2])
		}
		for _, f := range []Filter{{User: "user1"}, {User: "USER1@students.example"}, {User: "alice"}} {
			if ms, err := st.Messages(context.Background(), f); err != nil || len(ms) != 1 {
				t.Errorf("filter %+v: %d messages (%v), want 1", f, len(ms), err)
			}
		}
		for _, f := range []Filter{{User: "user"}, {User: "user1@relay.example"}, {Since: time.Now()}} {
			if ms, err := st.Messages(context.Background(), f); err != nil || len(ms) != 0 {
				t.Errorf("filter %+v: %d messages (%v), want 0", f, len(ms), err)
			}
		}
	})
}

// A late "pending" (an Accepted snapshot taken before the outcome) never
// hides a final state, in one batch or across batches.
func TestFinalNotUndone(t *testing.T) {
	forBackends(t, func(t *testing.T, b *backend) {
		dir := t.TempDir()
		r := newRec(t, b, dir, &logs{})
		m := msg("B1", "a@example.com")
		m.Rcpts[0].Status = queue.Sent
		m.Rcpts[0].Attempt = &queue.Attempt{LastErr: "250 ok", DSN: "2.0.0", Relay: "x[127.0.0.1]:25"}
		finalSync(t, r, m, false)
		m2 := msg("B1", "a@example.com") // as loaded again after a crash, stale
		r.Accepted(m2)
		finalSync(t, r, msg("B2", "b@example.com"), true)
		r.Close()
		st, err := OpenReader(b.at(dir))
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		got, _, _ := st.Message(context.Background(), "", "B1")
		if got.Deliveries[0].Status != Sent {
			t.Errorf("B1 status %q after a stale pending record, want sent", got.Deliveries[0].Status)
		}
		got, _, _ = st.Message(context.Background(), "", "B2")
		if got.Deliveries[0].Status != Deleted {
			t.Errorf("B2 status %q, want deleted", got.Deliveries[0].Status)
		}
	})
}

// A ledger that cannot write keeps the queue going (done is called) and
// records the gap, with its time range, once it can write again.
func TestGapWhenUnwritable(t *testing.T) {
	dir := t.TempDir()
	// data_directory is a file: nothing can be created under it.
	if err := os.WriteFile(filepath.Join(dir, "data"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	lg := &logs{}
	r := newRec(t, sqliteOnly, dir, lg)
	before := time.Now()
	finalSync(t, r, msg("C1", "a@example.com"), false)
	finalSync(t, r, msg("C2", "b@example.com"), false)
	if s := r.Stats(); s.Failures == 0 || s.Lost != 2 {
		t.Errorf("stats %+v, want failures and 2 lost", s)
	}
	if !lg.has("warning: ledger") {
		t.Errorf("no warning logged: %v", lg.lines)
	}
	os.Remove(filepath.Join(dir, "data"))
	finalSync(t, r, msg("C3", "c@example.com"), false)
	r.Close()
	st, err := OpenReader(filepath.Join(dir, "data", "ledger.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	gaps, err := st.Gaps(context.Background(), time.Time{}, time.Time{})
	if err != nil || len(gaps) != 1 {
		t.Fatalf("gaps %v (%v), want 1", gaps, err)
	}
	g := gaps[0]
	if g.Messages != 2 || g.Since.Before(before.Add(-time.Second)) || g.Until.Before(g.Since) || g.Reason == "" {
		t.Errorf("gap %+v", g)
	}
	if _, ok, _ := st.Message(context.Background(), "", "C3"); !ok {
		t.Errorf("C3, written after the failure, missing")
	}
}

// A ledger file that disappears (deleted, a disk replaced) is a gap from
// its creation to its last known commit.
func TestGapWhenFileLost(t *testing.T) {
	dir := t.TempDir()
	r := newRec(t, sqliteOnly, dir, &logs{})
	finalSync(t, r, msg("D1", "a@example.com"), false)
	r.Close()
	os.Remove(filepath.Join(dir, "data", "ledger.db"))
	os.Remove(filepath.Join(dir, "data", "ledger.db-wal"))
	lg := &logs{}
	r = newRec(t, sqliteOnly, dir, lg)
	finalSync(t, r, msg("D2", "a@example.com"), false)
	r.Close()
	st, err := OpenReader(filepath.Join(dir, "data", "ledger.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	gaps, _ := st.Gaps(context.Background(), time.Time{}, time.Time{})
	if len(gaps) != 1 || !strings.Contains(gaps[0].Reason, "lost or replaced") || gaps[0].Since.IsZero() {
		t.Fatalf("gaps %+v, want one for the lost file", gaps)
	}
	if !lg.has("lost or replaced") {
		t.Errorf("not logged: %v", lg.lines)
	}
}

func TestPrune(t *testing.T) {
	forBackends(t, func(t *testing.T, b *backend) {
		dir := t.TempDir()
		r := newRec(t, b, dir, &logs{})
		old := msg("E1", "a@example.com")
		old.Env.Arrival = time.Now().Add(-100 * 24 * time.Hour)
		finalSync(t, r, old, false)
		finalSync(t, r, msg("E2", "a@example.com"), false)
		pending := msg("E3", "a@example.com")
		pending.Env.Arrival = old.Env.Arrival
		r.Accepted(pending)
		r.Close()
		st, err := Open(b.at(dir))
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		if n, err := st.Prune(context.Background(), time.Now().Add(-90*24*time.Hour), 0); err != nil || n != 1 {
			t.Fatalf("pruned %d (%v), want 1", n, err)
		}
		ms, _ := st.Messages(context.Background(), Filter{})
		if len(ms) != 2 {
			t.Errorf("%d messages left, want 2 (the recent one and the old one still in the queue)", len(ms))
		}
	})
}

func TestRemoteID(t *testing.T) {
	for reply, want := range map[string]string{
		"250 2.0.0 Ok: queued as 4ZxY1234ABC":                                                    "4ZxY1234ABC",
		"250 2.0.0 Ok: queued as 4ZxY1234ABC (in 0.1s)":                                          "4ZxY1234ABC",
		"250 2.0.0 OK  1733533200 d9443c01a7336-21613c5b2d2si123456a.12 - gsmtp":                 "d9443c01a7336-21613c5b2d2si123456a.12",
		"250 2.6.0 <x@y> [InternalId=123456789, Hostname=AM0PR.eurprd] Queued mail for delivery": "123456789",
		"delivered to mailbox": "",
		// Lower-casing these changes their length (a panic once).
		"İİİİ queued as X":    "X",
		"\xfb\xfbqueued As 0": "0",
		"":                    "",
	} {
		if got := RemoteID(reply); got != want {
			t.Errorf("RemoteID(%q) = %q, want %q", reply, got, want)
		}
	}
}

func FuzzRemoteID(f *testing.F) {
	f.Add("250 2.0.0 Ok: queued as 4ZxY1234ABC")
	f.Add("250 OK x - gsmtp")
	f.Fuzz(func(t *testing.T, s string) {
		id := RemoteID(s)
		if len(id) > len(s) {
			t.Fatalf("id %q longer than the reply", id)
		}
		if id != "" && !strings.Contains(s, id) {
			t.Fatalf("id %q not in the reply %q", id, s)
		}
	})
}
