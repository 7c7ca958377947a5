package queue

import (
	"context"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// stateQueue is a queue on a fresh spool (not running: the tests drive
// the state records themselves) and a message of n recipients in a file
// of its own.
func stateQueue(t *testing.T, n int) (*Queue, *Message) {
	t.Helper()
	o := newFakeNet().options(t.TempDir())
	o.noJournal = true
	o.MinBackoff, o.MaxBackoff = time.Hour, time.Hour
	q, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close(context.Background()) })
	id := q.NewID()
	if err := q.Enqueue(context.Background(), id, rcptEnv(0, n), strings.NewReader("x\r\n")); err != nil {
		t.Fatal(err)
	}
	return q, q.msgs[id].m
}

func stSize(t *testing.T, m *Message) int64 {
	fi, err := os.Stat(m.file() + ".st")
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// sameState fails unless got and want hold the same state for every
// recipient, and the same hold flag.
func sameState(t *testing.T, what string, got, want *Message) {
	t.Helper()
	if got.Hold != want.Hold {
		t.Errorf("%s: hold %v, want %v", what, got.Hold, want.Hold)
	}
	for i := range want.Rcpts {
		g, w := got.Rcpts[i], want.Rcpts[i]
		if g.Status == Bounced || g.Status == Sent {
			g.Attempts, w.Attempts, g.next, w.next = 0, 0, 0, 0 // only what decides a retry is kept
		}
		if g.Rcpt != w.Rcpt || *g.Attempt != *w.Attempt || g.next != w.next || g.Attempts != w.Attempts ||
			g.Status != w.Status || g.Expired != w.Expired || g.Notified != w.Notified {
			t.Errorf("%s: recipient %d is %+v %+v, want %+v %+v", what, i, g, *g.Attempt, w, *w.Attempt)
			return
		}
	}
}

// A backlog behind a next hop that is down, retried 1,000 times: the
// state file stays within a block or two (before: one record per
// recipient per retry, 10 MB here), and what it records is what
// happened: 1,000 attempts, the last reason.
func TestStateFileBounded(t *testing.T) {
	q, m := stateQueue(t, 100)
	most := int64(0)
	for k := 0; k < 1000; k++ {
		deferAll(q, m)
		most = max(most, stSize(t, m))
	}
	if most > 2*stateCompactMin {
		t.Errorf("state file grew to %d bytes over 1000 deferrals of 100 recipients; want at most %d", most, 2*stateCompactMin)
	}
	m2, err := q.st().load(m.ID)
	if err != nil {
		t.Fatal(err)
	}
	sameState(t, "reloaded", m2, m)
	if r := m2.Rcpts[99]; r.Attempts != 1000 || !strings.Contains(r.LastErr, "suspended") || r.NextTry().IsZero() {
		t.Errorf("reloaded recipient: %d attempts, reason %q, next try %v", r.Attempts, r.LastErr, r.NextTry())
	}
	if n := q.st().compactErrs.Load(); n != 0 {
		t.Errorf("%d compactions failed", n)
	}
}

// Compaction keeps every kind of state: sent, bounced (expired or not,
// notified or not), deferred with reasons and attempt counts of their
// own, never tried, held. The compacted file replays to what the
// appended one did, and so does the file after more appends.
func TestStateCompactionKeepsState(t *testing.T) {
	q, m := stateQueue(t, 40)
	persist := func(recs ...record) {
		for i := range recs {
			q.st().intern(&recs[i])
			m.apply(recs[i])
		}
		q.persist(m, recs)
	}
	for k := 0; k < 30; k++ {
		var recs []record
		for i := 0; i < 40; i++ {
			if m.Rcpts[i].Status != Pending {
				continue
			}
			switch {
			case i < 5 && k == i: // sent, one reply each
				recs = append(recs, record{Rcpt: i, Op: "sent", Err: fmt.Sprintf("250 queued as %d", i), DSN: "2.0.0", Relay: "mx[192.0.2.1]:25"})
			case i >= 5 && i < 10 && k == 3:
				recs = append(recs, record{Rcpt: i, Op: "bounced", Err: "550 no such user", DSN: "5.1.1", Relay: "mx[192.0.2.1]:25", Expired: i%2 == 0})
			case i == 39 && k > 10: // not tried again
			case i == 38: // never tried
			default:
				reason := "451 try later"
				if i%3 == 0 {
					reason = fmt.Sprintf("451 greylisted %d", i) // a reason of its own
				}
				recs = append(recs, record{Rcpt: i, Op: "deferred", Err: reason, DSN: "4.7.1", Relay: "mx[192.0.2.1]:25", Next: int64(1700000000 + k + i%2)})
			}
		}
		persist(recs...)
		if k == 4 {
			persist(record{Rcpt: 5, Op: "notified"}, record{Rcpt: 6, Op: "notified"})
		}
		if k == 20 {
			persist(record{Rcpt: -1, Op: "hold"})
		}
	}
	if q.st().compactions.Load() == 0 {
		t.Fatal("no compaction happened")
	}
	m2, err := q.st().load(m.ID)
	if err != nil {
		t.Fatal(err)
	}
	sameState(t, "after compactions and appends", m2, m)
	// And once more, compacted just now.
	m.stMu.Lock()
	done, err := q.st().compactState(m, nil)
	m.stMu.Unlock()
	if !done || err != nil {
		t.Fatalf("compaction: %v %v", done, err)
	}
	m3, _ := q.st().load(m.ID)
	sameState(t, "compacted", m3, m)
	if !m3.Hold || m3.Rcpts[5].Status != Bounced || !m3.Rcpts[5].Notified || m3.Rcpts[7].Notified || !m3.Rcpts[6].Expired ||
		m3.Rcpts[39].Attempts != 11 || m3.Rcpts[37].Attempts != 30 || m3.Rcpts[38].Attempts != 0 || m3.Rcpts[38].LastErr != "" || m3.Rcpts[0].LastErr != "250 queued as 0" {
		t.Errorf("compacted state lost something: %+v", m3.Rcpts[:8])
	}
}

// A state file of the format before compaction (one record per
// recipient per attempt, no ranges, no attempt counts) loads as before,
// and is compacted at the next state change without losing anything.
func TestOldStateFileLoads(t *testing.T) {
	q, m := stateQueue(t, 3)
	var old []byte
	line := func(js string) {
		old = fmt.Appendf(old, "\n%s %08x", js, crc32c(js))
	}
	for k := 0; k < 60; k++ {
		line(`{"r":0,"op":"deferred","n":1700000100,"e":"connect to mx[192.0.2.1]:25: Connection refused","d":"4.4.1","relay":"none"}`)
		line(`{"r":2,"op":"deferred","n":1700000100,"e":"connect to mx[192.0.2.1]:25: Connection refused","d":"4.4.1","relay":"none"}`)
	}
	line(`{"r":1,"op":"sent","e":"250 ok","d":"2.0.0","relay":"mx[192.0.2.1]:25"}`)
	line(`{"r":-1,"op":"hold"}`)
	if err := os.WriteFile(m.file()+".st", old, 0o600); err != nil {
		t.Fatal(err)
	}
	m2, err := q.st().load(m.ID)
	if err != nil {
		t.Fatal(err)
	}
	r0, r1 := m2.Rcpts[0], m2.Rcpts[1]
	if r0.Attempts != 60 || r0.Status != Pending || r0.LastErr == "" || r0.next != 1700000100 || r1.Status != Sent || !m2.Hold || m2.Rcpts[2].Attempts != 60 {
		t.Fatalf("old state file loaded as %+v", m2.Rcpts)
	}
	before := stSize(t, m2)
	if err := q.st().appendState(m2, false, record{Rcpt: 0, Op: "deferred", Next: 1700000200, Err: "x", DSN: "4.4.1", Relay: "none"}); err != nil {
		t.Fatal(err)
	}
	m2.apply(record{Rcpt: 0, Op: "deferred", Next: 1700000200, Err: "x", DSN: "4.4.1", Relay: "none"})
	if after := stSize(t, m2); after >= before/4 {
		t.Errorf("old state file of %d bytes is %d bytes after a state change; want it compacted", before, after)
	}
	m3, _ := q.st().load(m.ID)
	sameState(t, "compacted old file", m3, m2)
}

// A crash in the middle of a compaction leaves its temporary file and
// the state file as it was: the message loads with its state, and a
// start-up later removes the leftover.
func TestCompactionCrashLeftover(t *testing.T) {
	q, m := stateQueue(t, 10)
	for k := 0; k < 3; k++ {
		deferAll(q, m)
	}
	tmp := filepath.Join(filepath.Dir(m.file()), "."+m.ID+".st.tmp")
	os.WriteFile(tmp, []byte("\n{\"r\":-1,\"rs\":\"0-9\",\"op\":\"se"), 0o600) // torn
	m2, err := q.st().load(m.ID)
	if err != nil {
		t.Fatal(err)
	}
	sameState(t, "beside a torn compaction", m2, m)
	if ids, _ := q.st().scan(false); len(ids) != 1 {
		t.Errorf("the leftover is listed as a message: %v", ids)
	}
	old := time.Now().Add(-2 * time.Hour)
	os.Chtimes(tmp, old, old)
	q.st().scan(true)
	if _, err := os.Stat(tmp); !os.IsNotExist(err) {
		t.Errorf("the leftover of a crashed compaction is still there at start-up")
	}
	// The next compaction writes over a fresh leftover.
	os.WriteFile(tmp, []byte("junk"), 0o600)
	m.stMu.Lock()
	done, err := q.st().compactState(m, nil)
	m.stMu.Unlock()
	if !done || err != nil {
		t.Fatal(done, err)
	}
	m3, _ := q.st().load(m.ID)
	sameState(t, "compacted over a leftover", m3, m)
}

func TestRanges(t *testing.T) {
	for _, c := range []struct {
		idx  []int
		want string
	}{
		{[]int{0}, "0"},
		{[]int{0, 1, 2, 3}, "0-3"},
		{[]int{0, 2, 3, 4, 7, 9, 10}, "0,2-4,7,9-10"},
	} {
		if got := ranges(c.idx); got != c.want {
			t.Errorf("ranges(%v) = %q, want %q", c.idx, got, c.want)
		}
		var back []int
		eachRcpt(c.want, 100, func(i int) { back = append(back, i) })
		if !reflect.DeepEqual(back, c.idx) {
			t.Errorf("eachRcpt(%q) = %v", c.want, back)
		}
	}
	// Nothing outside the message, whatever the text says.
	var got []int
	eachRcpt("-1,3-1,x,2-,5-999999999,1", 7, func(i int) { got = append(got, i) })
	if !reflect.DeepEqual(got, []int{5, 6, 1}) {
		t.Errorf("eachRcpt of junk gave %v, want [5 6 1]", got)
	}
	// A pass naming a recipient twice keeps its records as they are.
	recs := []record{{Rcpt: 1, Op: "deferred", Err: "a"}, {Rcpt: 1, Op: "sent"}}
	if got := coalesce(recs); len(got) != 2 || got[1].Op != "sent" {
		t.Errorf("coalesce reordered a recipient's records: %+v", got)
	}
}

func crc32c(s string) uint32 { return crc32.Checksum([]byte(s), crcTable) }
