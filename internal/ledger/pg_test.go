package ledger

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/envelope"
	"github.com/mailtee/mailtee/internal/queue"
)

// pgBackend is a PostgreSQL backend for the tests of what only a
// shared database has.
func pgBackend(t *testing.T) *backend {
	return &backend{name: "postgres", pg: pgServer(t), t: t, dbs: map[string]string{}}
}

// sent marks every recipient of m delivered, as the queue does before
// its Final.
func sent(m *queue.Message, reply string) {
	for i := range m.Rcpts {
		m.Rcpts[i].Status, m.Rcpts[i].Attempt = queue.Sent, &queue.Attempt{LastErr: reply, DSN: "2.0.0", Relay: "x[127.0.0.1]:25"}
	}
}

func TestRebind(t *testing.T) {
	for in, want := range map[string]string{
		`SELECT 1`:              `SELECT 1`,
		`a = ? AND b IN (?, ?)`: `a = $1 AND b IN ($2, $3)`,
		`x LIKE ? ESCAPE '\' AND y = '?' AND z = ?`:    `x LIKE $1 ESCAPE '\' AND y = '?' AND z = $2`,
		`v = 'it''s ?' OR w = ?`:                       `v = 'it''s ?' OR w = $1`,
		msgUpsert(2)[len(msgUpsert(2))-40:]:            msgUpsert(2)[len(msgUpsert(2))-40:],
		strings.Repeat("?,", 11) + "?":                 "$1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12",
		`INSERT INTO gaps VALUES (?, ?, ?, ?, ?)`:      `INSERT INTO gaps VALUES ($1, $2, $3, $4, $5)`,
		`UPDATE messages SET finished = ? WHERE n = ?`: `UPDATE messages SET finished = $1 WHERE n = $2`,
	} {
		if got := rebind(in); got != want {
			t.Errorf("rebind(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzRebind(f *testing.F) {
	f.Add(`a = ? AND b LIKE ? ESCAPE '\' AND c = 'x?'`)
	f.Add(`'unterminated ?`)
	f.Fuzz(func(t *testing.T, q string) {
		out := rebind(q)
		// Outside quotes each ? became $n, in order; nothing else moved.
		n, quoted, j := 0, false, 0
		for i := 0; i < len(q); i++ {
			c := q[i]
			if c == '\'' {
				quoted = !quoted
			}
			if c == '?' && !quoted {
				n++
				want := fmt.Sprintf("$%d", n)
				if !strings.HasPrefix(out[j:], want) {
					t.Fatalf("rebind(%q) = %q: placeholder %d is not %s", q, out, n, want)
				}
				j += len(want)
				continue
			}
			if j >= len(out) || out[j] != c {
				t.Fatalf("rebind(%q) = %q: byte %d changed", q, out, i)
			}
			j++
		}
		if j != len(out) {
			t.Fatalf("rebind(%q) = %q: %d bytes more", q, out, len(out)-j)
		}
	})
}

// Nodes that start at once on a new database all open it, with one
// identity: the first one's schema and id are everyone's.
func TestPGConcurrentStart(t *testing.T) {
	b := pgBackend(t)
	url := b.at(t.TempDir())
	const n = 8
	ids := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := Open(url)
			if err != nil {
				errs[i] = err
				return
			}
			ids[i] = st.id
			st.Close()
		}()
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("node %d: %v", i, errs[i])
		}
		if ids[i] == "" || ids[i] != ids[0] {
			t.Fatalf("identities %v, want one", ids)
		}
	}
}

// Two nodes write one ledger; a message accepted on one and handed to
// the other (a drain) is one message, finished by the second, and the
// first node's late "deleted" for it does not undo its delivery. Either
// node's reader sees every node's messages; both prune at once without
// a conflict.
func TestPGTwoNodes(t *testing.T) {
	b := pgBackend(t)
	shared := t.TempDir()
	url := b.at(shared)
	dirA, dirB := t.TempDir(), t.TempDir()
	lg := &logs{}
	handed := map[string][2]string{"4dB9": {"mx1.example.org", "4dA2"}} // B's queue ID -> the identity it carries
	a := NewRecorder(RecorderOptions{Path: url, Node: "mx1.example.org", Marker: filepath.Join(dirA, "ledger.state"), Log: lg.Log})
	bn := NewRecorder(RecorderOptions{Path: url, Node: "mx2.example.org", Marker: filepath.Join(dirB, "ledger.state"), Log: lg.Log,
		Identity: func(m *queue.Message) (string, string) { id := handed[m.ID]; return id[0], id[1] }})

	a1 := msg("4dA1", "user1@example.com")
	sent(a1, "250 2.0.0 Ok: queued as R1")
	finalSync(t, a, a1, false)
	b1 := msg("4dB1", "user2@example.com")
	sent(b1, "250 2.0.0 Ok: queued as R2")
	finalSync(t, bn, b1, false)

	// 4dA2 accepted on mx1, deferred there, handed to mx2 as 4dB9.
	a2 := msg("4dA2", "user3@example.com")
	a.Accepted(a2)
	a2.Rcpts[0].Attempts = 1
	a.Delivery(a2, 0, envelope.Hop{Transport: "smtp", Nexthop: "example.com"}, queue.Outcome{Err: fmt.Errorf("451 4.3.0 later")}, "deferred", time.Now())
	b9 := msg("4dB9", "user3@example.com")
	b9.Env.Arrival = a2.Env.Arrival
	b9.Rcpts[0].Attempts = 1 // its recipients' state came with it
	bn.Accepted(b9)
	sent(b9, "250 2.0.0 Ok: queued as R3")
	bn.Delivery(b9, 0, envelope.Hop{Transport: "smtp", Nexthop: "example.com"}, queue.Outcome{Relay: "x[127.0.0.1]:25", Reply: "250 2.0.0 Ok: queued as R3"}, "sent", time.Now())
	finalSync(t, bn, b9, false)
	finalSync(t, a, a2, true) // mx1's queue lets go of it (late)
	a.Close()
	bn.Close()

	st, err := OpenReader(url)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ms, err := st.Messages(context.Background(), Filter{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range ms {
		got = append(got, m.Node+"/"+m.ID)
	}
	if strings.Join(got, " ") != "mx1.example.org/4dA1 mx2.example.org/4dB1 mx1.example.org/4dA2" {
		t.Fatalf("messages %v, want both nodes' three (the handed one once, as mx1's 4dA2)", got)
	}
	h := ms[2]
	if len(h.Deliveries) != 1 || h.Deliveries[0].Status != Sent || h.Deliveries[0].RemoteID != "R3" || h.Finished.IsZero() {
		t.Errorf("the handed message: %+v", h)
	}
	if d := h.Deliveries[0]; d.Attempts != 2 {
		t.Errorf("the handed message's attempts %d, want 2 (mx1's deferral, mx2's delivery)", d.Attempts)
	}

	// Both nodes prune the same old messages at once.
	old := newBatch()
	for i := range 200 {
		k := msgKey{"mx1.example.org", fmt.Sprintf("OLD%03d", i)}
		e := old.entry(k, time.Now())
		at := time.Now().Add(-200 * 24 * time.Hour).Add(time.Duration(i) * time.Second)
		e.head = &Message{Node: k.node, ID: k.id, Arrival: at, Finished: at}
		e.row(&Delivery{Index: 0, Rcpt: "a@example.com", Status: Sent})
	}
	w, err := Open(url)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.write(context.Background(), old); err != nil {
		t.Fatal(err)
	}
	var pruned [2]int64
	var total atomic.Int64
	var perr [2]error
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := Open(url)
			if err != nil {
				perr[i] = err
				return
			}
			defer s.Close()
			// Each prunes in chunks until all are gone (a node that
			// finds the other pruning skips its turn).
			for end := time.Now().Add(30 * time.Second); total.Load() < 200 && time.Now().Before(end); {
				n, err := s.Prune(context.Background(), time.Now().Add(-90*24*time.Hour), 7)
				if err != nil {
					perr[i] = err
					return
				}
				pruned[i] += n
				total.Add(n)
			}
		}()
	}
	wg.Wait()
	if perr[0] != nil || perr[1] != nil {
		t.Fatalf("prune errors: %v", perr)
	}
	if pruned[0]+pruned[1] != 200 {
		t.Errorf("pruned %d + %d, want 200", pruned[0], pruned[1])
	}
}

// waitDone hands m to r as final and waits for the done: it must come
// whether the database answers or not.
func waitDone(t *testing.T, r *Recorder, m *queue.Message) {
	t.Helper()
	ch := make(chan struct{})
	r.Final(m, false, func() { close(ch) })
	select {
	case <-ch:
	case <-time.After(60 * time.Second):
		t.Fatalf("%s: Final's done not called in 60 s (the queue would hold it)", m.ID)
	}
}

// The database stopped mid-run: mail keeps flowing (every done comes),
// the records wait in the queue directory, and once the database is
// back every outcome is in it, with no gap, whether it came back while
// this server ran or only after a restart.
func TestPGDownNoGap(t *testing.T) {
	b := pgBackend(t)
	dir := t.TempDir()
	url := b.at(dir)
	lg := &logs{}
	open := func() *Recorder {
		return NewRecorder(RecorderOptions{Path: url, Node: "mx1.example.org", Marker: filepath.Join(dir, "ledger.state"), Log: lg.Log,
			Every: 50 * time.Millisecond, Gather: time.Millisecond})
	}
	r := open()
	var ids []string
	final := func(r *Recorder, id string) {
		m := msg(id, "user@example.com")
		r.Accepted(m)
		sent(m, "250 2.0.0 Ok: queued as R"+id)
		waitDone(t, r, m)
		ids = append(ids, id)
	}
	final(r, "UP1")
	b.pg.Stop()
	for i := range 5 {
		final(r, fmt.Sprintf("DOWN%d", i))
	}
	if s := r.Stats(); s.Held == 0 || s.Lost != 0 {
		t.Errorf("stats while down: %+v, want records held, none lost", s)
	}
	if fi, err := os.Stat(SpillFile(filepath.Join(dir, "ledger.state"))); err != nil || fi.Size() == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("spill file: %v %v", fi, err)
	}
	if !lg.has("holding its records") {
		t.Errorf("not logged: %v", lg.lines)
	}
	b.pg.Start()
	final(r, "BACK1")
	waitFor(t, func() bool { return r.Stats().Held == 0 })
	if !lg.has("answers again") {
		t.Errorf("not logged: %v", lg.lines)
	}

	// Down again, and this server stops before it is back: the next one
	// writes what this one held.
	b.pg.Stop()
	final(r, "DOWN9")
	r.Close()
	b.pg.Start()
	r = open()
	final(r, "AFTER1")
	waitFor(t, func() bool { return r.Stats().Held == 0 })
	r.Close()

	// Down when the server starts: it starts at once, and writes once
	// the database answers.
	b.pg.Stop()
	start := time.Now()
	r = open()
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("the recorder took %v to start with the database down", d)
	}
	final(r, "START1")
	b.pg.Start()
	final(r, "START2")
	waitFor(t, func() bool { return r.Stats().Held == 0 })
	r.Close()

	st, err := OpenReader(url)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, id := range ids {
		m, ok, err := st.Message(context.Background(), "mx1.example.org", id)
		if err != nil || !ok || len(m.Deliveries) != 1 || m.Deliveries[0].Status != Sent || m.Finished.IsZero() {
			t.Errorf("%s: %v %v %+v", id, ok, err, m)
		}
	}
	if gaps, err := st.Gaps(context.Background(), time.Time{}, time.Time{}); err != nil || len(gaps) != 0 {
		t.Errorf("gaps %+v (%v), want none", gaps, err)
	}
	if _, err := os.Stat(SpillFile(filepath.Join(dir, "ledger.state"))); !os.IsNotExist(err) {
		t.Errorf("spill file left: %v", err)
	}
}

// A database recreated (dropped, restored empty) under the nodes is a
// gap, as a lost file is: its ledger_meta id changed.
func TestPGRecreated(t *testing.T) {
	b := pgBackend(t)
	dir := t.TempDir()
	url := b.at(dir)
	lg := &logs{}
	rec := func() *Recorder {
		return NewRecorder(RecorderOptions{Path: url, Node: "mx1.example.org", Marker: filepath.Join(dir, "ledger.state"), Log: lg.Log})
	}
	r := rec()
	finalSync(t, r, msg("R1", "a@example.com"), false)
	r.Close()
	b.pg.Exec(dbName(url), "DROP TABLE messages, deliveries, gaps, ledger_meta")
	r = rec()
	finalSync(t, r, msg("R2", "a@example.com"), false)
	r.Close()
	st, err := OpenReader(url)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	gaps, _ := st.Gaps(context.Background(), time.Time{}, time.Time{})
	if len(gaps) != 1 || !strings.Contains(gaps[0].Reason, "recreated") || gaps[0].Since.IsZero() {
		t.Fatalf("gaps %+v, want one for the recreated database", gaps)
	}
}

func dbName(url string) string {
	p := url[strings.LastIndex(url[:strings.Index(url, "?")], "/")+1:]
	return p[:strings.Index(p, "?")]
}

// main.cf is readable by every user: a password in the URL is refused,
// without showing it; the password file named by passfile= (as every
// test here) and by PGPASSFILE both work.
func TestPGPassword(t *testing.T) {
	b := pgBackend(t)
	dir := t.TempDir()
	url := b.at(dir) // ...?sslmode=disable&passfile=DIR/pgpass
	withPW := strings.Replace(url, "postgres@", "postgres:"+b.pg.Password+"@", 1)
	if _, err := Open(withPW); err == nil || strings.Contains(err.Error(), b.pg.Password) || !strings.Contains(err.Error(), "passfile") {
		t.Errorf("a password in the URL: %v", err)
	}
	if err := Probe(context.Background(), withPW); err == nil {
		t.Errorf("Probe took a password in the URL")
	}
	noFile := url[:strings.Index(url, "&passfile=")]
	t.Setenv("PGPASSFILE", filepath.Join(dir, "pgpass"))
	st, err := Open(noFile)
	if err != nil {
		t.Fatalf("with PGPASSFILE: %v", err)
	}
	st.Close()
	if err := Probe(context.Background(), noFile); err != nil {
		t.Errorf("Probe with PGPASSFILE: %v", err)
	}
	t.Setenv("PGPASSFILE", filepath.Join(dir, "none"))
	if err := Probe(context.Background(), noFile); err == nil {
		t.Errorf("Probe without a password succeeded: the test proves nothing")
	}
}

// Every statement of the schema names what it creates (initPG skips
// what exists).
func TestSchemaObjects(t *testing.T) {
	for _, q := range schema {
		if o := schemaObject(q); o == "" || strings.ContainsAny(o, "( ") {
			t.Errorf("%q: object %q", q, o)
		}
	}
}

// A long spill is written a turn at a time, the batches that come
// meanwhile after it: every record gets there, the last state of each
// message wins, and the writer keeps taking events.
func TestPGLongSpill(t *testing.T) {
	defer func(c, n int) { spillChunk, replayChunks = c, n }(spillChunk, replayChunks)
	spillChunk, replayChunks = 50, 2
	b := pgBackend(t)
	dir := t.TempDir()
	url := b.at(dir)
	lg := &logs{}
	r := NewRecorder(RecorderOptions{Path: url, Node: "n", Marker: filepath.Join(dir, "ledger.state"), Log: lg.Log,
		Every: 10 * time.Millisecond, Gather: time.Millisecond})
	finalSync(t, r, msg("FIRST", "a@example.com"), false)
	b.pg.Stop()
	const n = 600
	var wg sync.WaitGroup
	msgs := make([]*queue.Message, n)
	for i := range n {
		m := msg(fmt.Sprintf("L%03d", i), "a@example.com", "b@example.com")
		msgs[i] = m
		r.Accepted(m)
		if i%2 == 0 { // half finish while the database is down
			sent(m, "250 ok")
			wg.Add(1)
			r.Final(m, false, wg.Done)
		}
	}
	wg.Wait()
	waitFor(t, func() bool { return r.Stats().Waiting == 0 })
	b.pg.Start()
	commits := r.commits.Load()
	for i := 1; i < n; i += 2 { // the others during the replay
		sent(msgs[i], "250 ok")
		wg.Add(1)
		r.Final(msgs[i], false, wg.Done)
	}
	wg.Wait()
	waitFor(t, func() bool { return r.Stats().Held == 0 })
	if c := r.commits.Load() - commits; c < 3 {
		t.Errorf("%d turns of the writer for the replay, want several", c)
	}
	r.Close()
	st, err := OpenReader(url)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ms, err := st.Messages(context.Background(), Filter{})
	if err != nil || len(ms) != n+1 {
		t.Fatalf("%d messages (%v), want %d", len(ms), err, n+1)
	}
	for _, m := range ms {
		if m.ID == "FIRST" {
			continue
		}
		if m.Finished.IsZero() || len(m.Deliveries) != 2 || m.Deliveries[0].Status != Sent || m.Deliveries[1].Status != Sent {
			t.Errorf("%s: %+v", m.ID, m)
		}
	}
	if !lg.has("answers again") {
		t.Errorf("not logged: %v", lg.lines)
	}
}
