package ledger

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/envelope"
	"github.com/mailtee/mailtee/internal/queue"
)

// The ledger holds every sender, recipient and reply: none of its files
// (the database, its -wal and -shm) may be readable by local users, even
// in a data_directory of mode 0755 and under umask 022.
func TestLedgerFilesPrivate(t *testing.T) {
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	if err := os.Mkdir(data, 0o755); err != nil {
		t.Fatal(err)
	}
	r := newRec(t, sqliteOnly, dir, &logs{})
	finalSync(t, r, msg("P1", "a@example.com"), false)
	// While it runs: the -wal and -shm exist.
	for _, sfx := range []string{"", "-wal", "-shm"} {
		fi, err := os.Stat(filepath.Join(data, "ledger.db"+sfx))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("ledger.db%s has mode %v: local users can read the ledger", sfx, fi.Mode().Perm())
		}
	}
	r.Close()
}

// A symbolic link where the ledger should be (a world-writable parent,
// an attacker's link) is refused, never followed: the target's mode is
// left alone.
func TestLedgerRefusesSymlink(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "victim")
	if err := os.WriteFile(target, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "ledger.db")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	st, err := Open(link)
	if err == nil {
		st.Close()
		t.Errorf("Open followed a symbolic link")
	}
	if fi, _ := os.Stat(target); fi.Mode().Perm() != 0o644 {
		t.Errorf("the link's target changed mode to %v", fi.Mode().Perm())
	}
}

// A ledger that still cannot write when the server stops must not forget
// what it lost: the messages finished meanwhile are gone from the queue,
// so the gap is kept (in the marker) and written by the next server.
func TestGapSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "data"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := newRec(t, sqliteOnly, dir, &logs{})
	finalSync(t, r, msg("G1", "a@example.com"), false)
	finalSync(t, r, msg("G2", "b@example.com"), false)
	r.Close() // still failing: the gap is not in any database
	// postsuper -d meanwhile finds the ledger through the marker.
	if rec := ForQueue(dir); rec == nil {
		t.Errorf("no ledger for postsuper -d: the marker names none")
	} else {
		rec.Close()
	}
	os.Remove(filepath.Join(dir, "data"))
	r = newRec(t, sqliteOnly, dir, &logs{})
	finalSync(t, r, msg("G3", "c@example.com"), false)
	r.Close()
	st, err := OpenReader(filepath.Join(dir, "data", "ledger.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	gaps, err := st.Gaps(context.Background(), time.Time{}, time.Time{})
	if err != nil || len(gaps) != 1 || gaps[0].Messages != 2 {
		t.Fatalf("gaps %+v (%v), want one of 2 messages", gaps, err)
	}
	// Written once: a third start adds no second copy of it.
	r = newRec(t, sqliteOnly, dir, &logs{})
	finalSync(t, r, msg("G4", "d@example.com"), false)
	r.Close()
	gaps, _ = st.Gaps(context.Background(), time.Time{}, time.Time{})
	if len(gaps) != 1 {
		t.Errorf("gaps %+v, want still one", gaps)
	}
}

// The accumulator is bounded: a flood of live events (a big queue loaded
// at a start, faster than batches are written) is written in bigger
// batches, not held in memory beyond the event channel's bound.
func TestAccumulatorBounded(t *testing.T) {
	acc := newBatch()
	now := time.Now()
	for i := range 50000 {
		acc.add(event{at: now, head: &Message{Node: "n", ID: fmt.Sprintf("Q%d", i)}})
	}
	out := acc.take(now, time.Hour, time.Hour, false) // none due yet
	if len(acc.msgs) > maxHeld || len(acc.order) != len(acc.msgs) {
		t.Errorf("accumulator holds %d messages (%d in order) after take, want at most %d", len(acc.msgs), len(acc.order), maxHeld)
	}
	if len(out.msgs)+len(acc.msgs) != 50000 {
		t.Errorf("%d taken + %d held, want 50000", len(out.msgs), len(acc.msgs))
	}
}

// The queries a big ledger answers often search an index, never scan a
// table: a peer's question by queue ID (once per copy in a report), the
// deliveries of each chunk of a report's messages, and the hourly prune
// (which holds the recorder up while it runs).
func TestQueriesUseIndexes(t *testing.T) {
	st, err := Open(filepath.Join(t.TempDir(), "ledger.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{messageByID + ` ORDER BY arrival DESC LIMIT 1`, []any{"Q1"}},
		{deliveriesOf(3), []any{"n", "Q1", "Q2", "Q3"}},
		{pruneDeliveries, []any{int64(5)}},
	} {
		rows, err := st.db.Query("EXPLAIN QUERY PLAN "+q.sql, q.args...)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var id, parent, notused int
			var detail string
			if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
				t.Fatal(err)
			}
			if strings.HasPrefix(detail, "SCAN messages") || strings.HasPrefix(detail, "SCAN deliveries") {
				t.Errorf("%s\n  scans a table: %s", q.sql, detail)
			}
		}
		rows.Close()
	}
}

// A pruning with a limit removes the oldest finished messages, about
// that many, with their deliveries (none left behind), and the next ones
// go at the next pruning: no transaction as long as the whole backlog.
func TestPruneInChunks(t *testing.T) {
	forBackends(t, func(t *testing.T, b *backend) {
		st, err := Open(b.at(t.TempDir()))
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		old := time.Now().Add(-200 * 24 * time.Hour)
		bt := newBatch()
		for i := range 5 {
			k := msgKey{"n", fmt.Sprintf("Q%d", i)}
			e := bt.entry(k, time.Now())
			at := old.Add(time.Duration(i) * time.Hour)
			e.head = &Message{Node: "n", ID: k.id, Arrival: at, Finished: at, Rcpts: []string{"a@example.com"}}
			e.row(&Delivery{Index: 0, Rcpt: "a@example.com", Status: Sent})
			e.row(&Delivery{Index: 1, Rcpt: "b@example.com", Status: Sent})
		}
		if err := st.write(context.Background(), bt); err != nil {
			t.Fatal(err)
		}
		cutoff := time.Now().Add(-90 * 24 * time.Hour)
		ctx := context.Background()
		if n, err := st.Prune(ctx, cutoff, 2); err != nil || n != 2 {
			t.Fatalf("pruned %d (%v), want 2", n, err)
		}
		ms, _ := st.Messages(ctx, Filter{})
		if len(ms) != 3 || ms[0].ID != "Q2" {
			t.Fatalf("left %d messages starting with %v, want Q2..Q4", len(ms), ms)
		}
		var orphans int
		st.db.QueryRow(`SELECT COUNT(*) FROM deliveries WHERE queue_id IN ('Q0', 'Q1')`).Scan(&orphans)
		if orphans != 0 {
			t.Errorf("%d deliveries of pruned messages left", orphans)
		}
		if n, err := st.Prune(ctx, cutoff, 10); err != nil || n != 3 {
			t.Fatalf("second pruning removed %d (%v), want the last 3", n, err)
		}
		var rows int
		st.db.QueryRow(`SELECT COUNT(*) FROM deliveries`).Scan(&rows)
		if rows != 0 {
			t.Errorf("%d deliveries left", rows)
		}
	})
}

// A pending delivery's time is its last attempt's, as its reply is the
// last failure's (Delivery.At says so): the first attempt's time beside
// the last reply made a deferral look older than it was. A final state
// keeps the time it was first recorded.
func TestPendingAtIsLastAttempt(t *testing.T) {
	forBackends(t, func(t *testing.T, b *backend) {
		errors := []string{"connect to relay.example: refused", "451 4.3.0 try later"}
		for _, sameBatch := range []bool{false, true} {
			dir := t.TempDir()
			every := time.Millisecond
			if sameBatch {
				every = time.Hour
			}
			r := NewRecorder(RecorderOptions{Path: b.at(dir), Node: "n", Every: every})
			m := msg("T1", "a@relay.example")
			r.Accepted(m)
			t1 := time.Now().Add(-time.Hour).Truncate(time.Microsecond)
			t2 := t1.Add(30 * time.Minute)
			for k, at := range []time.Time{t1, t2} {
				m.Rcpts[0].Attempts = int32(k + 1)
				r.Delivery(m, 0, envelope.Hop{Transport: "smtp", Nexthop: "relay.example"}, queue.Outcome{Err: fmt.Errorf("%s", errors[k])}, "deferred", at)
				if !sameBatch {
					waitFor(t, func() bool { return r.Stats().Waiting == 0 })
				}
			}
			r.Close()
			st, err := OpenReader(b.at(dir))
			if err != nil {
				t.Fatal(err)
			}
			got, ok, _ := st.Message(context.Background(), "", "T1")
			st.Close()
			if !ok || len(got.Deliveries) != 1 {
				t.Fatalf("same batch %v: %+v", sameBatch, got)
			}
			d := got.Deliveries[0]
			if d.Status != Pending || d.Reply != errors[1] || !d.At.Equal(t2) {
				t.Errorf("same batch %v: pending %q at %v, want %q at %v", sameBatch, d.Reply, d.At, errors[1], t2)
			}
		}
	})
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(30 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatal("timed out")
}

// A ledger in a directory every user may write to, or in a file another
// user made there first, would be theirs to read and to forge: refused,
// with what to do.
func TestLedgerRefusesOthersFiles(t *testing.T) {
	dir := t.TempDir()
	open := filepath.Join(dir, "open")
	if err := os.Mkdir(open, 0o777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(open, 0o1777) // as /tmp
	if st, err := Open(filepath.Join(open, "ledger.db")); err == nil {
		st.Close()
		t.Errorf("Open accepted a world-writable directory")
	} else if !strings.Contains(err.Error(), "chmod o-w") {
		t.Errorf("error %q does not say what to do", err)
	}
	if os.Geteuid() != 0 {
		t.Skip("the rest needs root (chown)")
	}
	squat := filepath.Join(dir, "ledger.db")
	if err := os.WriteFile(squat, nil, 0o666); err != nil {
		t.Fatal(err)
	}
	os.Chown(squat, 65534, 65534)
	if st, err := Open(squat); err == nil {
		st.Close()
		t.Errorf("Open took a file another user owns")
	}
	os.Remove(squat)
	os.WriteFile(squat+"-wal", nil, 0o666)
	os.Chown(squat+"-wal", 65534, 65534)
	if st, err := Open(squat); err == nil {
		st.Close()
		t.Errorf("Open took a -wal another user owns")
	}
}

// A message whose Accepted was dropped (the recorder behind, its queue
// of events full) is recorded by its next attempt: a deferred message
// is in the report as pending, not missing until it leaves the queue.
func TestDroppedHeadComesWithNextAttempt(t *testing.T) {
	forBackends(t, func(t *testing.T, b *backend) {
		dir := t.TempDir()
		r := NewRecorder(RecorderOptions{Path: b.at(dir), Node: "n", Every: time.Millisecond})
		// Stall the writer (it waits for r.mu in commit) until events drop.
		r.mu.Lock()
		var dropped *queue.Message
		for i := 0; dropped == nil && i < 1<<16; i++ {
			m := msg(fmt.Sprintf("H%d", i), "a@relay.example")
			before := r.dropped.Load()
			r.Accepted(m)
			if r.dropped.Load() > before {
				dropped = m
			}
		}
		r.mu.Unlock()
		if dropped == nil {
			t.Fatal("no Accepted was dropped: the test cannot stall the recorder")
		}
		waitFor(t, func() bool { return r.Stats().Waiting == 0 })
		dropped.Rcpts[0].Attempts = 1
		r.Delivery(dropped, 0, envelope.Hop{Transport: "smtp", Nexthop: "relay.example"}, queue.Outcome{Err: fmt.Errorf("connect refused")}, "deferred", time.Now())
		r.Close()
		st, err := OpenReader(b.at(dir))
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		got, ok, err := st.Message(context.Background(), "", dropped.ID)
		if err != nil || !ok {
			t.Fatalf("message %s, whose Accepted was dropped, missing after its attempt (%v)", dropped.ID, err)
		}
		if len(got.Deliveries) != 1 || got.Deliveries[0].Status != Pending || got.From != "alice@example.org" || len(got.Rcpts) != 1 {
			t.Errorf("recorded %+v", got)
		}
	})
}
