package ratelimit

import (
	"container/heap"
	"fmt"
	"math/rand"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var t0 = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

const s = time.Second

func mustTake(t *testing.T, l *Limiter, key string, now time.Time) *Token {
	t.Helper()
	tk, retry := l.Take(key, now)
	if tk == nil {
		t.Fatalf("Take(%q, %v) blocked until %v, want admitted", key, now.Sub(t0), retry.Sub(t0))
	}
	return tk
}

func mustBlock(t *testing.T, l *Limiter, key string, now time.Time, want time.Time) {
	t.Helper()
	tk, retry := l.Take(key, now)
	if tk != nil {
		t.Fatalf("Take(%q, %v) admitted, want blocked until %v", key, now.Sub(t0), want.Sub(t0))
	}
	if !retry.Equal(want) {
		t.Fatalf("Take(%q, %v) blocked until %v, want %v", key, now.Sub(t0), retry.Sub(t0), want.Sub(t0))
	}
}

func TestLimiterNoWindows(t *testing.T) {
	for _, l := range []*Limiter{nil, New(nil), New([]Window{})} {
		for i := 0; i < 100; i++ {
			tk := mustTake(t, l, "k", t0)
			if i%2 == 0 {
				tk.Done(t0)
			} else {
				tk.Cancel()
			}
		}
	}
}

func TestLimiterWindow(t *testing.T) {
	l := New([]Window{{3, 10 * s}})
	a := mustTake(t, l, "a", at(0))
	b := mustTake(t, l, "a", at(0))
	c := mustTake(t, l, "a", at(1*s))
	mustTake(t, l, "other", at(1*s)).Done(at(1 * s)) // keys are independent
	// Three in flight fill the window: they will count until at least
	// Per after now, whenever they end.
	mustBlock(t, l, "a", at(2*s), at(12*s))
	a.Done(at(3 * s))
	b.Done(at(4 * s))
	c.Done(at(5 * s))
	// The waiter told 12s comes back: the end at 3s counts until 13s.
	mustBlock(t, l, "a", at(12*s), at(13*s))
	mustTake(t, l, "a", at(13*s)).Done(at(13 * s))
	// Ends 4s, 5s, 13s: the next room is when 4s leaves, at 14s (an end
	// exactly Per ago no longer counts). A second caller meanwhile is
	// second in line: the slot after, when 5s leaves; a third waits for
	// 13s to leave, a fourth for the first slot of the next round.
	mustBlock(t, l, "a", at(13*s), at(14*s))
	mustBlock(t, l, "a", at(13*s), at(15*s))
	mustBlock(t, l, "a", at(13*s), at(23*s))
	mustBlock(t, l, "a", at(13*s), at(24*s))
	mustTake(t, l, "a", at(14*s)).Cancel()
	// Cancel frees the slot at once: it never reached the remote.
	mustTake(t, l, "a", at(14*s))
}

// TestLimiterBindingWindow: with several windows, the retry time is
// the latest of what each asks.
func TestLimiterBindingWindow(t *testing.T) {
	l := New([]Window{{2, 1 * s}, {3, 10 * s}})
	mustTake(t, l, "k", at(0)).Done(at(0))
	mustTake(t, l, "k", at(0)).Done(at(0))
	mustBlock(t, l, "k", at(0), at(1*s)) // the short window binds
	mustTake(t, l, "k", at(1*s)).Done(at(2 * s))
	mustBlock(t, l, "k", at(3*s), at(10*s)) // now the long one: the first end leaves at 10s
	mustTake(t, l, "k", at(10*s))
}

// TestRateDelay: Postfix's destination_rate_delay, concurrency 1 and
// the delay from the end of one delivery to the start of the next
// (qmgr_entry.c suspends the queue for rate_delay when a delivery
// finishes; qmgr_queue.c resumes it after), is Window{1, delay}.
func TestRateDelay(t *testing.T) {
	const delay = 3 * s
	l := New([]Window{{1, delay}})
	rnd := rand.New(rand.NewSource(1))
	now := at(0)
	var prevEnd time.Time
	for i := 0; i < 200; i++ {
		tk, retry := l.Take("dest", now)
		if tk == nil {
			now = retry
			tk, retry = l.Take("dest", now)
			if tk == nil {
				t.Fatalf("delivery %d: not admitted at the retry time it was given (%v), told %v", i, now.Sub(t0), retry.Sub(t0))
			}
		}
		if i > 0 && !now.Equal(prevEnd.Add(delay)) {
			t.Fatalf("delivery %d started %v after the previous ended, want exactly %v", i, now.Sub(prevEnd), delay)
		}
		end := now.Add(time.Duration(rnd.Int63n(int64(2 * s))))
		tk.Done(end)
		prevEnd, now = end, end
	}

	// Concurrency 1: a second delivery waits for the first to end, and
	// then delay.
	l = New([]Window{{1, delay}})
	tk := mustTake(t, l, "dest", at(0))
	mustBlock(t, l, "dest", at(1*s), at(1*s+delay)) // a bound: it is in flight
	tk.Done(at(2 * s))
	mustBlock(t, l, "dest", at(2*s+delay-1), at(2*s+delay))
	mustTake(t, l, "dest", at(2*s+delay))
}

// remote is one event as the remote saw it.
type simEvent struct {
	at    time.Duration
	seq   int
	kind  int // 0 attempt, 1 finish
	key   int
	tok   *Token
	end   time.Duration
	abort bool
}

type simQueue []*simEvent

func (q simQueue) Len() int { return len(q) }
func (q simQueue) Less(i, j int) bool {
	if q[i].at != q[j].at {
		return q[i].at < q[j].at
	}
	return q[i].seq < q[j].seq
}
func (q simQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *simQueue) Push(x any)   { *q = append(*q, x.(*simEvent)) }
func (q *simQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]
	return e
}

// TestLimiterGuarantee: whatever the delays, the remote, which counts
// an event at some instant between our start and our end, never sees
// more than N in any Per of a key. Random keys, arrivals, durations
// (some longer than the windows), cancellations and remote instants;
// the checker looks at every run of N+1 remote events of every key.
func TestLimiterGuarantee(t *testing.T) {
	windows := []Window{{3, 1 * s}, {7, 5 * s}, {1, 100 * time.Millisecond}}
	for seed := int64(1); seed <= 20; seed++ {
		rnd := rand.New(rand.NewSource(seed))
		l := New(windows)
		const keys, msgs = 25, 2000
		var q simQueue
		seq := 0
		push := func(e *simEvent) { seq++; e.seq = seq; heap.Push(&q, e) }
		for i := 0; i < msgs; i++ {
			push(&simEvent{at: time.Duration(rnd.Int63n(int64(30 * s))), key: rnd.Intn(keys)})
		}
		remote := make([][]time.Duration, keys)
		delivered, takes := 0, 0
		for q.Len() > 0 {
			e := heap.Pop(&q).(*simEvent)
			now := at(e.at)
			if e.kind == 1 {
				if e.abort {
					e.tok.Cancel()
				} else {
					e.tok.Done(at(e.end))
				}
				continue
			}
			takes++
			tk, retry := l.Take(fmt.Sprint(e.key), now)
			if tk == nil {
				if !retry.After(now) {
					t.Fatalf("seed %d: blocked at %v with retry %v, not later", seed, e.at, retry.Sub(t0))
				}
				push(&simEvent{at: retry.Sub(t0), key: e.key})
				continue
			}
			var d time.Duration
			switch r := rnd.Intn(10); {
			case r < 5:
				d = time.Duration(rnd.Int63n(int64(200 * time.Millisecond)))
			case r < 8:
				d = time.Duration(rnd.Int63n(int64(2 * s)))
			default:
				d = time.Duration(rnd.Int63n(int64(8 * s)))
			}
			f := &simEvent{at: e.at + d, kind: 1, tok: tk, end: e.at + d}
			if rnd.Intn(10) == 0 {
				// Never reached the remote: retried later.
				f.abort = true
				push(&simEvent{at: e.at + d + time.Duration(rnd.Int63n(int64(s))), key: e.key})
			} else {
				delivered++
				r := e.at
				if d > 0 {
					r += time.Duration(rnd.Int63n(int64(d) + 1))
				}
				remote[e.key] = append(remote[e.key], r)
			}
			push(f)
		}
		if delivered != msgs {
			t.Fatalf("seed %d: %d of %d delivered", seed, delivered, msgs)
		}
		for k, rs := range remote {
			sort.Slice(rs, func(i, j int) bool { return rs[i] < rs[j] })
			for _, w := range windows {
				for i := 0; i+w.N < len(rs); i++ {
					if rs[i+w.N]-rs[i] < w.Per {
						t.Fatalf("seed %d key %d: the remote saw %d events within %v (window %v): %v",
							seed, k, w.N+1, rs[i+w.N]-rs[i], w, rs[i:i+w.N+1])
					}
				}
			}
		}
		// Callers behind a long delivery poll every Per (the bound the
		// limiter can give); a herd would cost hundreds per message.
		if takes > 6*msgs {
			t.Errorf("seed %d: %d Takes for %d messages", seed, takes, msgs)
		}
		if seed == 1 {
			t.Logf("%d messages, %d Takes", msgs, takes)
		}
	}
}

// TestLimiterHerd: a backlog for one busy key is told to come back at
// instants spread over time, about N per Per, not all at the same one.
func TestLimiterHerd(t *testing.T) {
	w := Window{5, 5 * s}
	l := New([]Window{w})
	for i := 0; i < w.N; i++ {
		mustTake(t, l, "busy", at(0)).Done(at(0))
	}
	const n = 1000
	retries := make([]time.Duration, n)
	for i := range retries {
		tk, retry := l.Take("busy", at(0))
		if tk != nil {
			t.Fatalf("caller %d admitted", i)
		}
		retries[i] = retry.Sub(t0)
	}
	sort.Slice(retries, func(i, j int) bool { return retries[i] < retries[j] })
	if retries[0] != w.Per {
		t.Errorf("first retry at %v, want %v (when the first end leaves)", retries[0], w.Per)
	}
	for i := 0; i+2*w.N < n; i++ {
		if retries[i+2*w.N]-retries[i] < w.Per {
			t.Fatalf("%d callers told to retry within %v: %v", 2*w.N+1, retries[i+2*w.N]-retries[i], retries[i:i+2*w.N+1])
		}
	}

	// The whole backlog, each caller coming back when told: the work
	// stays linear and the drain takes about what the limit allows.
	l = New([]Window{w})
	var q simQueue
	seq := 0
	for i := 0; i < n; i++ {
		seq++
		heap.Push(&q, &simEvent{seq: seq})
	}
	takes := 0
	var last time.Duration
	for q.Len() > 0 {
		e := heap.Pop(&q).(*simEvent)
		takes++
		tk, retry := l.Take("busy", at(e.at))
		if tk == nil {
			seq++
			heap.Push(&q, &simEvent{at: retry.Sub(t0), seq: seq})
			continue
		}
		tk.Done(at(e.at + 100*time.Millisecond))
		last = e.at
	}
	ideal := time.Duration(n/w.N-1) * (w.Per + 100*time.Millisecond)
	t.Logf("%d callers: %d Takes, last admitted at %v (limit allows %v)", n, takes, last, ideal)
	if takes > 4*n {
		t.Errorf("%d Takes for %d callers: the backlog is woken in herds", takes, n)
	}
	if last < ideal {
		t.Errorf("last admitted at %v, before the limit allows (%v)", last, ideal)
	}
	if last > ideal*12/10 {
		t.Errorf("last admitted at %v, the limit allows %v: the spreading holds callers back", last, ideal)
	}
}

// TestLimiterMemory: per key only the last maxN ends are kept, and idle
// keys are forgotten.
func TestLimiterMemory(t *testing.T) {
	l := New([]Window{{2, 1 * s}, {4, time.Minute}})
	now := at(0)
	for i := 0; i < 500; i++ {
		if tk, _ := l.Take("k", now); tk != nil {
			tk.Done(now)
		}
		now = now.Add(time.Second / 3)
		if n := len(l.keys["k"].ends); n > 4 {
			t.Fatalf("after %d Takes, %d ends kept, want at most 4", i, n)
		}
	}
	for i := 0; i < 5000; i++ {
		mustTake(t, l, fmt.Sprint("key", i), now).Done(now)
	}
	held := mustTake(t, l, "held", now) // in flight: must survive sweeps
	if n := l.keyCount(); n < 5000 {
		t.Fatalf("%d keys right after use, want all", n)
	}
	now = now.Add(time.Minute)
	for i := 0; i < 2*5000; i++ {
		l.Take("k", now)
	}
	if n := l.keyCount(); n > 2 {
		t.Errorf("%d keys remembered a window after their last event, want only k and the in-flight one", n)
	}
	held.Done(now)
	if len(l.keys["held"].ends) != 1 {
		t.Errorf("the in-flight key was forgotten")
	}

	// A caller polling in a loop does not grow the line without end.
	l = New([]Window{{1, time.Hour}})
	mustTake(t, l, "poll", t0)
	for i := 0; i < maxWaits+1000; i++ {
		l.Take("poll", t0)
	}
	if n := len(l.keys["poll"].waits); n > maxWaits {
		t.Errorf("%d retry times kept, want at most %d", n, maxWaits)
	}
}

// TestLimiterConcurrent is for the race detector, and checks that the
// in-flight count never exceeds N with real goroutines.
func TestLimiterConcurrent(t *testing.T) {
	l := New([]Window{{3, time.Hour}})
	var mu sync.Mutex
	inflight, maxIn, admitted := 0, 0, 0
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				tk, _ := l.Take("k", time.Now())
				if tk == nil {
					continue
				}
				mu.Lock()
				inflight++
				admitted++
				maxIn = max(maxIn, inflight)
				mu.Unlock()
				mu.Lock()
				inflight--
				mu.Unlock()
				tk.Cancel()
			}
		}()
	}
	wg.Wait()
	if maxIn > 3 || admitted == 0 {
		t.Errorf("max %d in flight (want <= 3), %d admitted", maxIn, admitted)
	}
}

func benchmarkTake(b *testing.B, windows []Window) {
	l := New(windows)
	keys := make([]string, 1000)
	for i := range keys {
		keys[i] = fmt.Sprintf("user%d@example.com", i)
	}
	now := t0
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		now = now.Add(time.Millisecond) // each key once a second: at its 60/1m limit
		if tk, _ := l.Take(keys[i%len(keys)], now); tk != nil {
			tk.Done(now)
		}
	}
}

// BenchmarkTake: Take+Done over 1000 keys, Google's per-mailbox windows.
func BenchmarkTake(b *testing.B) {
	benchmarkTake(b, []Window{{60, time.Minute}, {3600, time.Hour}})
}

// BenchmarkTakeParallel measures the one mutex under contention, with
// the same load as BenchmarkTake.
func BenchmarkTakeParallel(b *testing.B) {
	l := New([]Window{{60, time.Minute}, {3600, time.Hour}})
	keys := make([]string, 1000)
	for i := range keys {
		keys[i] = fmt.Sprintf("user%d@example.com", i)
	}
	var clock atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := clock.Add(1)
			now := t0.Add(time.Duration(i) * time.Millisecond)
			if tk, _ := l.Take(keys[i%int64(len(keys))], now); tk != nil {
				tk.Done(now)
			}
		}
	})
}

// TestLimiterDrain: the backlog at scaled-down rates, the
// mailbox limit only: 1,000 messages for one busy mailbox and 10,000
// over 1,000 others, all queued at once, each delivery 50ms, every
// message retried when told. The busy mailbox must not hold the others
// back, and each drains in about the time its window allows.
func TestLimiterDrain(t *testing.T) {
	w := Window{5, 5 * s}
	const dur = 50 * time.Millisecond
	l := New([]Window{w})
	var q simQueue
	seq := 0
	push := func(at time.Duration, key int) { seq++; heap.Push(&q, &simEvent{at: at, seq: seq, key: key}) }
	for i := 0; i < 1000; i++ {
		push(0, 0)
	}
	for k := 1; k <= 1000; k++ {
		for i := 0; i < 10; i++ {
			push(0, k)
		}
	}
	takes := 0
	var busyLast, spreadLast time.Duration
	remote := map[int][]time.Duration{}
	for q.Len() > 0 {
		e := heap.Pop(&q).(*simEvent)
		takes++
		tk, retry := l.Take(fmt.Sprint("mbox", e.key), at(e.at))
		if tk == nil {
			push(retry.Sub(t0), e.key)
			continue
		}
		tk.Done(at(e.at + dur))
		remote[e.key] = append(remote[e.key], e.at+dur) // counted at the end: the latest instant
		if e.key == 0 {
			busyLast = e.at
		} else {
			spreadLast = max(spreadLast, e.at)
		}
	}
	for k, rs := range remote {
		for i := 0; i+w.N < len(rs); i++ {
			if rs[i+w.N]-rs[i] < w.Per {
				t.Fatalf("mailbox %d: %d deliveries within %v", k, w.N+1, rs[i+w.N]-rs[i])
			}
		}
	}
	// A mailbox's k-th group of N starts Per+dur after the previous.
	busyIdeal := time.Duration(1000/w.N-1) * (w.Per + dur)
	spreadIdeal := time.Duration(10/w.N-1) * (w.Per + dur)
	t.Logf("11,000 messages: %d Takes; busy mailbox drained at %v (limit allows %v), the 1,000 others by %v (limit allows %v)",
		takes, busyLast, busyIdeal, spreadLast, spreadIdeal)
	if takes > 3*11000 {
		t.Errorf("%d Takes for 11,000 messages", takes)
	}
	if busyLast > busyIdeal*12/10 {
		t.Errorf("the busy mailbox drained at %v, the limit allows %v", busyLast, busyIdeal)
	}
	if spreadLast > spreadIdeal*12/10 {
		t.Errorf("the other mailboxes drained by %v, the limit allows %v: held back", spreadLast, spreadIdeal)
	}
}

// BenchmarkTakeBacklog: a refused Take on a key with 100,000 callers
// already in its waiting line.
func BenchmarkTakeBacklog(b *testing.B) {
	l := New([]Window{{60, time.Minute}, {3600, time.Hour}})
	for i := 0; i < 3600; i++ {
		if tk, _ := l.Take("busy", t0); tk != nil {
			tk.Done(t0)
		}
	}
	for i := 0; i < 100000; i++ {
		l.Take("busy", t0)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// Callers coming back at their time, a millisecond apart.
		if tk, _ := l.Take("busy", t0.Add(time.Duration(i)*time.Millisecond)); tk != nil {
			tk.Done(t0)
		}
	}
}

// TestTokenOnce: Done and Cancel race on one token; it is released
// once (the in-flight count stays right).
func TestTokenOnce(t *testing.T) {
	l := New([]Window{{2, time.Hour}})
	for i := 0; i < 100; i++ {
		tk := mustTake(t, l, "k", t0)
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); tk.Cancel() }()
		go func() { defer wg.Done(); tk.Cancel() }()
		wg.Wait()
	}
	a, b := mustTake(t, l, "k", t0), mustTake(t, l, "k", t0)
	if tk, _ := l.Take("k", t0); tk != nil {
		t.Fatal("a third admitted: a token was released twice")
	}
	a.Cancel()
	b.Cancel()
}
