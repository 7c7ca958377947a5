package fleet

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/ratelimit"
	"github.com/mailtee/mailtee/internal/standin"
	"github.com/mailtee/mailtee/internal/testdb"
)

// logs collects a node's log lines.
type logs struct {
	mu    sync.Mutex
	lines []string
}

func (l *logs) printf(format string, args ...any) {
	l.mu.Lock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
	l.mu.Unlock()
}

func (l *logs) has(s string) bool { return l.count(s) > 0 }

func (l *logs) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, line := range l.lines {
		if strings.Contains(line, s) {
			n++
		}
	}
	return n
}

// node joins the fleet at url as name, with its shared limits; a
// heartbeat every 200ms.
func node(t *testing.T, url, name string, timeout time.Duration) (*Fleet, *Limits, *logs) {
	return nodeWith(t, url, name, 200*time.Millisecond, timeout, LimitOptions{})
}

func nodeWith(t *testing.T, url, name string, heartbeat, timeout time.Duration, o LimitOptions) (*Fleet, *Limits, *logs) {
	t.Helper()
	lg := &logs{}
	f, err := Open(Options{URL: url, Node: name, Heartbeat: heartbeat, Timeout: timeout, Log: lg.printf})
	if err != nil {
		t.Fatal(err)
	}
	ls := NewLimits(f, o)
	t.Cleanup(func() { ls.Close(); f.Close() })
	return f, ls, lg
}

// kill stops a node as kill -9 would: no more heartbeats, nothing
// settled, not marked stopped.
func kill(f *Fleet, ls *Limits) {
	select {
	case <-f.stop:
		return
	default:
	}
	close(f.stop)
	<-f.done
	f.pool.Close()
	ls.Close() // its writes fail: the pool is closed
}

func fleetDB(t *testing.T) (*testdb.Server, string) {
	pg := testdb.Postgres(t)
	pg.CreateDB("fleet")
	_, url := pg.PassFile(t.TempDir(), "fleet")
	return pg, url
}

// interval is one admitted attempt, as its caller saw it: from after
// Take until before Done.
type interval struct{ s, e time.Time }

// checkWindows fails t if some choice of remote instants within the
// intervals puts more than N in any Per: it tries the starts, the ends
// and random instants in between, with standin.MaxInSpan (the
// rule the end-to-end tests apply to a provider stand-in).
func checkWindows(t *testing.T, what string, ivs []interval, ws []ratelimit.Window) {
	t.Helper()
	rnd := rand.New(rand.NewPCG(1, 2))
	for try := 0; try < 30; try++ {
		ts := make([]time.Time, len(ivs))
		for i, iv := range ivs {
			switch try {
			case 0:
				ts[i] = iv.s
			case 1:
				ts[i] = iv.e
			default:
				ts[i] = iv.s.Add(time.Duration(rnd.Int64N(int64(iv.e.Sub(iv.s)) + 1)))
			}
		}
		for _, w := range ws {
			if n := standin.MaxInSpan(ts, w.Per); n > w.N {
				t.Errorf("%s: %d attempts within %v (window %v)", what, n, w.Per, w)
				return
			}
		}
	}
}

// worker takes for keys until stop, holding each attempt up to 60ms
// and cancelling one in ten (never reached the remote); rec records the
// others.
func worker(lim ratelimit.Taker, keys []string, stop <-chan struct{}, rec func(key string, iv interval)) {
	for {
		select {
		case <-stop:
			return
		default:
		}
		key := keys[rand.IntN(len(keys))]
		tk, at := lim.Take(key, time.Now())
		if tk == nil {
			time.Sleep(min(max(time.Until(at), time.Millisecond), 100*time.Millisecond))
			continue
		}
		s := time.Now()
		time.Sleep(time.Duration(rand.IntN(60)) * time.Millisecond)
		if rand.IntN(10) == 0 {
			tk.Cancel()
			continue
		}
		e := time.Now()
		rec(key, interval{s, e})
		tk.Done(e)
	}
}

// Two nodes on one database, many goroutines each, a few keys: the
// attempts never put more than N in any Per of a key, whichever node
// made them.
func TestSharedLimitsHold(t *testing.T) {
	pg, url := fleetDB(t)
	ws := []ratelimit.Window{{N: 4, Per: 400 * time.Millisecond}, {N: 10, Per: 2 * time.Second}}
	keys := []string{"smtp:google|a@example.com", "smtp:google|b@example.com", "smtp:google"}
	var mu sync.Mutex
	got := map[string][]interval{}
	byNode := map[string]int{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var lgs []*logs
	for _, name := range []string{"a", "b"} {
		// The guarantee is the shared count's: a loaded machine must
		// not make a heartbeat (bounded by its interval) or a Take
		// slow enough to fall back.
		_, ls, lg := nodeWith(t, url, name, 2*time.Second, 10*time.Second, LimitOptions{TakeTimeout: 10 * time.Second})
		lgs = append(lgs, lg)
		lim := ls.Limiter("box", "smtp", "google", ws)
		for range 6 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				worker(lim, keys, stop, func(key string, iv interval) {
					mu.Lock()
					got[key] = append(got[key], iv)
					byNode[name]++
					mu.Unlock()
				})
			}()
		}
	}
	time.Sleep(3 * time.Second)
	close(stop)
	wg.Wait()
	for _, lg := range lgs {
		if lg.has("unreachable") {
			t.Fatalf("a node fell back: %q", lg.lines)
		}
	}
	total := 0
	for _, key := range keys {
		checkWindows(t, key, got[key], ws)
		total += len(got[key])
		if len(got[key]) < ws[0].N {
			t.Errorf("%s: only %d attempts admitted in 3s", key, len(got[key]))
		}
	}
	if byNode["a"] == 0 || byNode["b"] == 0 {
		t.Errorf("admitted by node: %v; want both", byNode)
	}
	t.Logf("%d attempts admitted over %d keys in 3s: %v", total, len(keys), byNode)
	// The rows each key has, which spare a Take the count below N, are
	// what it has (never fewer), once the ends and cancellations are
	// written.
	db := pg.DB("fleet")
	defer db.Close()
	var bad int
	for range 30 {
		time.Sleep(100 * time.Millisecond)
		if err := db.QueryRow(`SELECT COUNT(*) FROM (SELECT key, COUNT(*) AS c FROM fleet_limit_attempts GROUP BY key) a
			FULL JOIN fleet_limit_keys k USING (key) WHERE COALESCE(k.n, 0) <> COALESCE(a.c, 0)`).Scan(&bad); err != nil {
			t.Fatal(err)
		}
		if bad == 0 {
			break
		}
	}
	if bad != 0 {
		t.Errorf("%d keys whose count in fleet_limit_keys is not their rows'", bad)
	}
}

// With the database stopped mid-run, each node admits at most its
// share (N/2 of two nodes) in any Per, says so once, and counts across
// the fleet again once the database is back, its own attempts of the
// meantime included.
func TestSharedLimitsFallback(t *testing.T) {
	pg, url := fleetDB(t)
	ws := []ratelimit.Window{{N: 6, Per: time.Second}}
	type nd struct {
		f   *Fleet
		ls  *Limits
		lg  *logs
		lim ratelimit.Taker
	}
	var nodes []nd
	for _, name := range []string{"a", "b"} {
		f, ls, lg := node(t, url, name, 5*time.Second)
		nodes = append(nodes, nd{f, ls, lg, ls.Limiter("box", "smtp", "google", ws)})
	}
	// Each sees the other alive (a loaded machine may miss a beat).
	for _, n := range nodes {
		for i := 0; ; i++ {
			if alive, down := n.f.Alive(); alive == 2 && !down {
				break
			}
			if i == 100 {
				t.Fatalf("%s does not see 2 nodes alive", n.f.Node())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	pg.Stop()
	stopped := time.Now()
	var mu sync.Mutex
	got := map[string][]interval{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var slowest time.Duration
	for _, n := range nodes {
		name := n.f.Node()
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				timed := takerFunc(func(key string, now time.Time) (*ratelimit.Token, time.Time) {
					t0 := time.Now()
					tk, at := n.lim.Take(key, now)
					mu.Lock()
					slowest = max(slowest, time.Since(t0))
					mu.Unlock()
					return tk, at
				})
				worker(timed, []string{"k"}, stop, func(_ string, iv interval) {
					mu.Lock()
					got[name] = append(got[name], iv)
					mu.Unlock()
				})
			}()
		}
	}
	time.Sleep(2500 * time.Millisecond)
	mu.Lock()
	down := map[string][]interval{}
	for name, ivs := range got {
		down[name] = append([]interval(nil), ivs...)
	}
	mu.Unlock()
	// An attempt of the meantime on a long window, for the database to
	// get once it is back.
	long := nodes[0].ls.Limiter("box", "smtp", "long", []ratelimit.Window{{N: 5, Per: time.Minute}})
	tk, _ := long.Take("late", time.Now())
	if tk == nil {
		t.Fatal("the fallback refused the first attempt of a fresh key")
	}
	tk.Done(time.Now())
	pg.Start()
	// The workers go on until both nodes count across the fleet again:
	// their last attempts alone are written then.
	deadline := time.Now().Add(15 * time.Second)
	for _, n := range nodes {
		for {
			if _, d := n.f.Alive(); !d && !n.ls.Fallback() {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("node %s still falling back 15s after the database started again", n.f.Node())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	close(stop)
	wg.Wait()
	for _, n := range nodes {
		name := n.f.Node()
		if len(down[name]) == 0 {
			t.Errorf("node %s admitted nothing with the database down", name)
		}
		checkWindows(t, "node "+name+" with the database down", down[name], []ratelimit.Window{{N: 3, Per: time.Second}})
		if c := n.lg.count("shared limits: database unreachable, going on with 1/2 of each limit"); c != 1 {
			t.Errorf("node %s said %d times that it fell back, want once: %q", name, c, n.lg.lines)
		}
	}
	if slowest > 3*time.Second {
		t.Errorf("a Take took %v with the database down; want it bounded (TakeTimeout 1s)", slowest)
	}
	t.Logf("with the database down (%v): a admitted %d, b %d; slowest Take %v", time.Since(stopped).Round(time.Millisecond), len(down["a"]), len(down["b"]), slowest)
	// The meantime's attempt reached the database.
	var backlog int
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for range 50 {
		if err := nodes[0].f.pool.QueryRow(ctx, `SELECT COUNT(*) FROM fleet_limit_attempts WHERE key = 'box smtp long late' AND started = ended`).Scan(&backlog); err == nil && backlog > 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if backlog == 0 {
		t.Errorf("the attempt made while the database was down was not written once it was back")
	}
	// Shared again: one node alone gets the whole N of a fresh key, and
	// then neither node gets more.
	a, b := nodes[0].lim, nodes[1].lim
	for i := range ws[0].N {
		tk, _ := a.Take("fresh", time.Now())
		if tk == nil {
			t.Fatalf("node a refused attempt %d of %d for a fresh key: not counting across the fleet", i+1, ws[0].N)
		}
		defer tk.Done(time.Now())
	}
	if tk, _ := b.Take("fresh", time.Now()); tk != nil {
		t.Errorf("node b admitted a 7th attempt within the window: the count is not shared")
	}
	for _, n := range nodes {
		if !n.lg.has("shared limits: database reachable again") {
			t.Errorf("node %s did not say it counts across the fleet again: %q", n.f.Node(), n.lg.lines)
		}
	}
}

type takerFunc func(key string, now time.Time) (*ratelimit.Token, time.Time)

func (f takerFunc) Take(key string, now time.Time) (*ratelimit.Token, time.Time) { return f(key, now) }

// A node killed with attempts in flight blocks their key only until
// its heartbeat is stale and Per has passed; restarted (same name), it
// ends its previous run's attempts at once.
func TestSharedLimitsCrash(t *testing.T) {
	_, url := fleetDB(t)
	ws := []ratelimit.Window{{N: 2, Per: 300 * time.Millisecond}}
	const timeout = 2 * time.Second
	_, la, alog := node(t, url, "a", timeout)
	a := la.Limiter("box", "smtp", "google", ws)
	// Alone, a would not see the others' attempts: the test means
	// nothing then.
	defer func() {
		if alog.has("unreachable") {
			t.Errorf("node a fell back during the test: %q", alog.lines)
		}
	}()
	for _, c := range []struct {
		key     string
		restart bool
		within  time.Duration
	}{
		{"restarted", true, timeout}, // before the heartbeat could go stale
		{"killed", false, timeout + ws[0].Per + 3*time.Second},
	} {
		kf, kl, _ := node(t, url, c.key, timeout)
		k := kl.Limiter("box", "smtp", "google", ws)
		for range 2 {
			if tk, _ := k.Take(c.key, time.Now()); tk == nil {
				t.Fatalf("%s: the node refused", c.key)
			}
		}
		if tk, _ := a.Take(c.key, time.Now()); tk != nil {
			t.Fatalf("%s: node a admitted a third attempt beside the other's two in flight", c.key)
		}
		kill(kf, kl)
		killed := time.Now()
		if c.restart {
			node(t, url, c.key, timeout)
		}
		for {
			tk, at := a.Take(c.key, time.Now())
			if tk != nil {
				tk.Done(time.Now())
				t.Logf("%s: the key was free again %v after the kill", c.key, time.Since(killed).Round(time.Millisecond))
				break
			}
			if time.Since(killed) > c.within {
				t.Fatalf("%s: the key still blocked %v after the kill", c.key, time.Since(killed).Round(time.Millisecond))
			}
			time.Sleep(min(max(time.Until(at), 10*time.Millisecond), 100*time.Millisecond))
		}
	}
}

// A suspension one node's pacer started reaches the others; one that
// ends later replaces it; one that is over does not.
func TestSharedSuspensions(t *testing.T) {
	_, url := fleetDB(t)
	_, la, _ := node(t, url, "a", 5*time.Second)
	_, lb, _ := node(t, url, "b", 5*time.Second)
	ctx := context.Background()
	now := time.Now()
	box := "smtp:google|busy@example.com"
	mine := Suspensions{
		Mailboxes: map[string]ratelimit.Suspension{
			box:                         {Until: now.Add(time.Minute), Reason: "452 4.2.1 over its limit", Next: 2 * time.Minute},
			"smtp:google|x@example.com": {Until: now.Add(-time.Second), Reason: "over"},
		},
		Sites: map[string]ratelimit.Suspension{"smtp:outlook": {Until: now.Add(time.Hour), Reason: "451 4.7.500 Server busy"}},
	}
	if theirs, err := la.SyncSuspensions(ctx, mine, now); err != nil || len(theirs) != 0 {
		t.Fatalf("a: %v, %v; want nothing of the others", theirs, err)
	}
	theirs, err := lb.SyncSuspensions(ctx, Suspensions{}, now)
	if err != nil {
		t.Fatal(err)
	}
	got := theirs["box"][box]
	if got.Node != "a" || !got.Until.Equal(now.Add(time.Minute).Truncate(time.Microsecond)) || got.Reason != "452 4.2.1 over its limit" || got.Next != 2*time.Minute {
		t.Errorf("b sees %+v for %s", got, box)
	}
	if _, ok := theirs["box"]["smtp:google|x@example.com"]; ok {
		t.Errorf("a suspension already over was shared")
	}
	if s := theirs["site"]["smtp:outlook"]; s.Node != "a" {
		t.Errorf("b sees %+v for the site", s)
	}
	// b's own, later, replaces a's.
	later := Suspensions{Mailboxes: map[string]ratelimit.Suspension{box: {Until: now.Add(2 * time.Minute), Reason: "again"}}}
	if _, err := lb.SyncSuspensions(ctx, later, now); err != nil {
		t.Fatal(err)
	}
	theirs, err = la.SyncSuspensions(ctx, mine, now)
	if err != nil {
		t.Fatal(err)
	}
	if s := theirs["box"][box]; s.Node != "b" || s.Reason != "again" {
		t.Errorf("a sees %+v, want b's later suspension", s)
	}
}
