package drain

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/envelope"
	"github.com/mailtee/mailtee/internal/fleet"
	"github.com/mailtee/mailtee/internal/migration"
	"github.com/mailtee/mailtee/internal/queue"
	"github.com/mailtee/mailtee/internal/testdb"
)

// The windows a crash may hit, each rebuilt as the crash leaves it
// (files and rows), then the node started on them: every message ends
// in exactly one queue and is delivered once.

type net struct {
	mu   sync.Mutex
	got  map[string]int // "queueID rcpt"
	down bool
}

func (n *net) deliver(ctx context.Context, m *queue.Message, hop envelope.Hop, rcpts []int) []queue.Outcome {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]queue.Outcome, len(rcpts))
	for k, i := range rcpts {
		if n.down {
			out[k].Err = tempErr{}
			continue
		}
		n.got[m.Env.MessageID+" "+m.Rcpts[i].Addr]++
	}
	return out
}

func (n *net) count(k string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.got[k]
}

type tempErr struct{}

func (tempErr) Error() string { return "451 down" }

func openQueue(t *testing.T, dir string, n *net) *queue.Queue {
	t.Helper()
	q, err := queue.Open(queue.Options{Dir: dir, MinBackoff: time.Hour, MaxBackoff: time.Hour,
		Route: func(ctx context.Context, rcpt string) (envelope.Hop, error) {
			return envelope.Hop{Transport: "smtp", Nexthop: "x"}, nil
		},
		Deliver: n.deliver})
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func fleetNode(t *testing.T, url, name string) *fleet.Fleet {
	t.Helper()
	f, err := fleet.Open(fleet.Options{URL: url, Node: name, Heartbeat: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(15 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// enqueue queues a message with one recipient, never tried.
func enqueue(t *testing.T, q *queue.Queue, mid string) string {
	t.Helper()
	id := q.NewID()
	env := &envelope.Envelope{From: "s@x.example", MessageID: mid, Rcpts: []envelope.Rcpt{{Addr: "r@x.example"}}}
	if err := q.Enqueue(context.Background(), id, env, strings.NewReader("x\r\n")); err != nil {
		t.Fatal(err)
	}
	return id
}

// payload is the hand-off payload of parked message id.
func payload(t *testing.T, q *queue.Queue, id string) []byte {
	t.Helper()
	q.Park(id)
	x, err := q.Export(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	rc, _ := q.Body(id)
	b, _ := io.ReadAll(rc)
	rc.Close()
	p, err := Encode(x, nil, b)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCrashWindows(t *testing.T) {
	t0 := time.Now()
	pg := testdb.Postgres(t)
	t.Logf("postgres up after %s", time.Since(t0))
	pg.CreateDB("fleet")
	_, url := pg.PassFile(t.TempDir(), "fleet")
	ctx := context.Background()
	nw := &net{got: map[string]int{}, down: true}
	dirA, dirB := t.TempDir(), t.TempDir()
	mkA := markers{filepath.Join(dirA, "handoff")}
	mkB := markers{filepath.Join(dirB, "handoff")}

	// a, before its crash: m1 offered and committed, not removed; m2
	// marked, its offer never committed.
	qa := openQueue(t, dirA, nw)
	m1, m2 := enqueue(t, qa, "m1"), enqueue(t, qa, "m2")
	fa := fleetNode(t, url, "a")
	p1 := payload(t, qa, m1)
	mkA.put("out", m1, []byte("b"))
	if _, err := fa.Offer(ctx, m1, "b", p1); err != nil {
		t.Fatal(err)
	}
	qa.Park(m2)
	mkA.put("out", m2, []byte("b"))
	qa.Close(ctx)
	fa.Close()

	// b, before its crash: m1 claimed and imported, not marked done.
	fb := fleetNode(t, url, "b")
	qb := openQueue(t, dirB, nw)
	hs, err := fb.Claim(ctx, 10)
	if err != nil || len(hs) != 1 {
		t.Fatalf("claim %+v %v", hs, err)
	}
	idB := QueueID("a", m1)
	note, _ := json.Marshal(inNote{"a", m1})
	mkB.put("in", idB, note)
	x, _, body, err := Decode(p1)
	if err != nil {
		t.Fatal(err)
	}
	if err := qb.Import(idB, x, strings.NewReader(string(body)), true); err != nil {
		t.Fatal(err)
	}
	qb.Close(ctx)
	fb.Close()

	t.Logf("crash state built after %s", time.Since(t0))
	// Both restart, the next hop up.
	nw.mu.Lock()
	nw.down = false
	nw.mu.Unlock()
	var logs []string
	var lmu sync.Mutex
	logf := func(format string, args ...any) {
		lmu.Lock()
		logs = append(logs, fmt.Sprintf(format, args...))
		lmu.Unlock()
	}
	for _, side := range []struct {
		dir  string
		name string
	}{{dirA, "a"}, {dirB, "b"}} {
		q := openQueue(t, side.dir, nw)
		f := fleetNode(t, url, side.name)
		n := Start(Options{Queue: q, Fleet: f, Settings: migration.NewStore(filepath.Join(side.dir, "settings"), nil), QueueDir: side.dir, Every: 100 * time.Millisecond, Log: logf})
		go q.Run()
		defer func() { n.Close(); q.Close(ctx); f.Close() }()
	}
	waitFor(t, "both messages delivered", func() bool { return nw.count("m1 r@x.example") >= 1 && nw.count("m2 r@x.example") >= 1 })
	t.Logf("delivered after %s", time.Since(t0))
	time.Sleep(500 * time.Millisecond)
	if a, b := nw.count("m1 r@x.example"), nw.count("m2 r@x.example"); a != 1 || b != 1 {
		t.Fatalf("m1 delivered %d times, m2 %d, want once each; log:\n%s", a, b, strings.Join(logs, "\n"))
	}
	for _, mk := range []markers{mkA, mkB} {
		for _, kind := range []string{"in", "out"} {
			if ms, _ := mk.list(kind); len(ms) != 0 {
				t.Errorf("markers left in %s/%s: %v", mk.dir, kind, ms)
			}
		}
	}
	fc := fleetNode(t, url, "c")
	defer fc.Close()
	h, err := fc.HandoffOf(ctx, "a", m1)
	if err != nil || h == nil || h.Done.IsZero() || h.NewID != idB {
		t.Fatalf("row of m1: %+v %v", h, err)
	}
	if h, _ := fc.HandoffOf(ctx, "a", m2); h != nil {
		t.Fatalf("m2 has a row: %+v", h)
	}
	// m1 went from a's queue as handed over: its file is gone.
	if _, err := os.Stat(filepath.Join(dirA, "queue", m1)); err == nil {
		t.Error("m1 still in a's spool")
	}
}

// drainAB starts what a drain test drains: node a's queue in dir, its
// next hop down, holding one message (m1), and nodes a and b in a fleet
// on a private PostgreSQL, all closed when the test ends.
func drainAB(t *testing.T) (pg *testdb.Server, dir string, qa *queue.Queue, fa *fleet.Fleet) {
	t.Helper()
	pg = testdb.Postgres(t)
	pg.CreateDB("fleet")
	_, url := pg.PassFile(t.TempDir(), "fleet")
	dir = t.TempDir()
	qa = openQueue(t, dir, &net{got: map[string]int{}, down: true})
	t.Cleanup(func() { qa.Close(context.Background()) })
	go qa.Run()
	fa, fb := fleetNode(t, url, "a"), fleetNode(t, url, "b")
	t.Cleanup(fa.Close)
	t.Cleanup(fb.Close)
	enqueue(t, qa, "m1")
	return pg, dir, qa, fa
}

// The database gone in the middle of a drain: the drain fails after its
// patience and says what is left, the message stays here and is
// delivered here; drained again with the database back, it goes.
func TestDrainDatabaseDown(t *testing.T) {
	pg, dir, qa, fa := drainAB(t)
	ctx := context.Background()
	old := handoffPatience
	handoffPatience = 300 * time.Millisecond
	defer func() { handoffPatience = old }()
	stopped := false
	n := Start(Options{Queue: qa, Fleet: fa, QueueDir: dir, Every: 100 * time.Millisecond,
		StopAccepting: func() {
			if !stopped {
				stopped = true
				pg.Stop()
			}
		}})
	defer n.Close()
	waitFor(t, "both nodes alive", func() bool { k, _ := fa.Alive(); return k == 2 })
	if _, err := n.Drain(Request{To: "b", Wait: 100 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	var st Status
	waitFor(t, "the drain to end", func() bool { st = n.Status(); return st.Final })
	if st.State != "failed" || !strings.Contains(st.Error, "1 messages left") {
		t.Fatalf("status %+v", st)
	}
	if len(qa.IDs()) != 1 {
		t.Fatalf("queue: %v", qa.IDs())
	}
	// Nothing reached the database: the message is this node's, and
	// delivered here when it can be.
	if ms, _ := n.mk.list("out"); len(ms) != 0 {
		t.Fatalf("an offer that never reached the database is kept undecided: %v", ms)
	}
	enqueue(t, qa, "m2")
	pg.Start()
	waitFor(t, "b alive again", func() bool { k, down := fa.Alive(); return k == 2 && !down })
	if _, err := n.Drain(Request{To: "b", Wait: 100 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the second drain to end", func() bool { st = n.Status(); return st.Final })
	if st.State != "done" || len(qa.IDs()) != 0 {
		t.Fatalf("second drain: %+v, queue %v", st, qa.IDs())
	}
	if w, err := fa.Waiting(ctx); err != nil || w != 2 {
		t.Fatalf("rows waiting for b: %d %v", w, err)
	}
	select {
	case <-n.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Done not closed")
	}
}

// Requests that come together start one drain, and a drain asked for
// again once the queue is empty ends the same way: Done is closed once,
// never twice (a panic that took the server down).
func TestDrainRequestsAtOnce(t *testing.T) {
	_, dir, qa, fa := drainAB(t)
	var mu sync.Mutex
	starts := 0
	n := Start(Options{Queue: qa, Fleet: fa, QueueDir: dir, Every: 100 * time.Millisecond,
		Log: func(format string, args ...any) {
			if strings.HasPrefix(format, "drain: stopping") {
				mu.Lock()
				starts++
				mu.Unlock()
			}
		}})
	defer n.Close()
	waitFor(t, "both nodes alive", func() bool { k, _ := fa.Alive(); return k == 2 })
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := n.Drain(Request{To: "b", Wait: 100 * time.Millisecond}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	waitFor(t, "the drain to end", func() bool { return n.Status().Final })
	if st := n.Status(); st.State != "done" || st.HandedOff != 1 {
		t.Fatalf("status %+v", st)
	}
	mu.Lock()
	if starts != 1 {
		t.Errorf("%d drains started by requests that came together", starts)
	}
	mu.Unlock()
	if _, err := n.Drain(Request{To: "b", Wait: 100 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the second drain to end", func() bool { st := n.Status(); return st.Final && st.HandedOff == 0 })
	select {
	case <-n.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Done not closed")
	}
}
