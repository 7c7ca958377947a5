package ratelimit

import (
	"sort"
	"sync"
	"time"
)

// Limiter keeps sliding windows per key (a receiving site, a mailbox).
// Take at now succeeds iff, for every window, the key's events that are
// in flight or that ended after now-Per number fewer than N.
//
// Counting an attempt from its start until Per after its end, rather
// than at one instant, is what makes the limit hold at the remote
// whatever the network delay: the remote counts an event at some
// instant r in [start, end]. If N+1 of them fell within Per of each
// other at the remote, take the one that started last, at s <= r <
// r0+Per (r0 the earliest of them); each of the N others had started
// before s and either was still in flight at s or had ended at
// end >= r0 > s-Per, so Take at s saw N and refused. Hence r[i+N] -
// r[i] >= Per for the remote instants of one key, in any order of
// delays.
//
// Postfix's destination_rate_delay (concurrency 1 and delay between
// the end of one delivery and the start of the next, qmgr_entry.c's
// qmgr_queue_suspend after each delivery) is exactly Window{1, delay}.
//
// A nil or windowless Limiter never limits. A Limiter is safe for
// concurrent use.
type Limiter struct {
	windows []Window
	maxN    int           // the longest history any window needs
	maxPer  time.Duration // events older than this never count again

	mu     sync.Mutex
	base   time.Time // times are kept as offsets from base (int64 ns)
	based  bool
	keys   map[string]*keyState
	calls  int // Takes since the last sweep
	nextGC int // sweep when calls reaches this
}

type keyState struct {
	inflight int
	// ends holds the latest maxN ends, ascending, none older than
	// maxPer: with them every window's count (capped at its N) is
	// exact, since the ends that fall in a window are the largest ones.
	ends []int64
	// waits is a min-heap of retry times handed to blocked callers and
	// still in the future: their number is a new caller's place in the
	// waiting line.
	waits []int64
}

// Token is one admitted attempt. Exactly one of Done or Cancel should
// be called; later calls do nothing.
type Token struct {
	l     *Limiter
	k     *keyState
	start int64
	over  bool
}

// noLimit is handed out by a Limiter that never limits, so that callers
// need not check for nil.
var noLimit = &Token{over: true}

// minSweep keeps sweeps of small maps from running on every call.
const minSweep = 1024

// New returns a Limiter with the given windows; nil or empty never
// limits.
func New(windows []Window) *Limiter {
	l := &Limiter{keys: map[string]*keyState{}, nextGC: minSweep}
	for _, w := range windows {
		if w.N < 1 || w.Per <= 0 {
			continue
		}
		l.windows = append(l.windows, w)
		l.maxN = max(l.maxN, w.N)
		l.maxPer = max(l.maxPer, w.Per)
	}
	return l
}

// Windows returns the windows l enforces.
func (l *Limiter) Windows() []Window {
	if l == nil {
		return nil
	}
	return append([]Window(nil), l.windows...)
}

// at converts now into an offset from base. Sub uses the monotonic
// clock when both times carry it (time.Now), the wall clock otherwise
// (fake clocks in tests).
func (l *Limiter) at(now time.Time) int64 {
	if !l.based {
		l.base, l.based = now, true
	}
	return int64(now.Sub(l.base))
}

// Take admits an attempt for key at now, or says when to try again.
// On success it returns the Token of the attempt (now in flight) and
// the zero time. When blocked it returns nil and a retry time: the
// earliest instant the rule can hold given the completed events (a
// lower bound, now+Per, when in-flight attempts alone fill a window).
// If another caller is already due by then, it is moved back by the
// caller's place p in the line of callers told to wait and not yet
// due, p/N*Per for the window that binds most. That spreads a
// backlog for one busy key over time instead of waking it all at the
// same instant to be refused again, which would cost O(n) Takes per
// freed slot. A caller that retries early simply gets a new time.
func (l *Limiter) Take(key string, now time.Time) (*Token, time.Time) {
	if l == nil || len(l.windows) == 0 {
		return noLimit, time.Time{}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	t := l.at(now)
	l.calls++
	if l.calls >= l.nextGC {
		l.sweep(t)
	}
	k := l.keys[key]
	if k == nil {
		k = &keyState{}
		l.keys[key] = k
	}
	k.prune(t, l.maxPer)
	blocked := false
	for _, w := range l.windows {
		if k.count(t, w) >= w.N {
			blocked = true
			break
		}
	}
	if !blocked {
		k.inflight++
		return &Token{l: l, k: k, start: t}, time.Time{}
	}
	for len(k.waits) > 0 && k.waits[0] <= t {
		heapPop(&k.waits)
	}
	free, guess := t, false
	for _, w := range l.windows {
		free = max(free, k.free(t, w))
		guess = guess || k.inflight >= w.N
	}
	retry := free
	// Nobody is due by the time the rule holds again: that slot is
	// this caller's. Typically it was told to come back, came a little
	// before the slot opened (the deliveries ahead of it took time) and
	// must not lose its place to the back of the line. Not when free is
	// only a bound: callers would poll a long delivery every Per.
	if guess || len(k.waits) > 0 && k.waits[0] <= free {
		p := float64(len(k.waits))
		for _, w := range l.windows {
			spread := p / float64(w.N) * float64(w.Per)
			if spread > maxSpread {
				spread = maxSpread
			}
			retry = max(retry, k.free(t, w)+int64(spread))
		}
	}
	if len(k.waits) < maxWaits {
		heapPush(&k.waits, retry)
	}
	return nil, l.base.Add(time.Duration(retry))
}

// maxWaits bounds the waiting line kept per key (8 bytes each): a
// caller that asks again before its time is counted twice, and one
// that polls in a loop must not grow it without end. Beyond it, callers
// still get a time at the back of the line.
const maxWaits = 1 << 18

// maxSpread keeps a huge backlog on a long window from overflowing a
// time.Duration (about 292 years); a century is "later" enough.
const maxSpread = float64(100 * 365 * 24 * time.Hour)

// Done records that the attempt finished at end (at the remote, the
// event happened no later than that). An end before the start counts
// as the start.
func (tk *Token) Done(end time.Time) {
	if tk == nil || tk.over {
		return
	}
	l := tk.l
	l.mu.Lock()
	defer l.mu.Unlock()
	if tk.over {
		return
	}
	tk.over = true
	k := tk.k
	k.inflight--
	k.add(max(l.at(end), tk.start), l.maxN)
}

// Cancel releases an attempt that never reached the remote (no
// connection, refused before MAIL): it counts as if it never happened.
func (tk *Token) Cancel() {
	if tk == nil || tk.over {
		return
	}
	l := tk.l
	l.mu.Lock()
	defer l.mu.Unlock()
	if tk.over {
		return
	}
	tk.over = true
	tk.k.inflight--
}

// count returns the key's events that count in w at t: in flight, or
// ended after t-Per.
func (k *keyState) count(t int64, w Window) int {
	cut := t - int64(w.Per)
	i := sort.Search(len(k.ends), func(i int) bool { return k.ends[i] > cut })
	return k.inflight + len(k.ends) - i
}

// free returns the earliest instant at which w admits one more event,
// assuming the in-flight attempts stay in flight and nothing new
// starts. When they alone fill w, an end no earlier than t keeps
// counting until t+Per at least: that is the bound.
func (k *keyState) free(t int64, w Window) int64 {
	c := k.count(t, w)
	if c < w.N {
		return t
	}
	if k.inflight >= w.N {
		return t + int64(w.Per)
	}
	// At most keep = N-1-inflight ends may still count: w is free
	// once the latest end but keep has left it. The window holds
	// N-inflight > keep ends, so that end is in the list.
	keep := w.N - 1 - k.inflight
	return k.ends[len(k.ends)-keep-1] + int64(w.Per)
}

// add inserts an end, keeping ends ascending and at most maxN long.
// Ends arrive nearly in order, so the search from the back is short.
func (k *keyState) add(e int64, maxN int) {
	if len(k.ends) >= maxN && e <= k.ends[0] {
		return // older than every end that can still matter
	}
	i := len(k.ends)
	for i > 0 && k.ends[i-1] > e {
		i--
	}
	k.ends = append(k.ends, 0)
	copy(k.ends[i+1:], k.ends[i:])
	k.ends[i] = e
	if len(k.ends) > maxN {
		k.ends = k.ends[len(k.ends)-maxN:]
	}
}

// prune drops ends that no window counts any more.
func (k *keyState) prune(t int64, maxPer time.Duration) {
	cut := t - int64(maxPer)
	i := 0
	for i < len(k.ends) && k.ends[i] <= cut {
		i++
	}
	if i > 0 {
		k.ends = k.ends[i:]
	}
}

// sweep forgets keys with nothing in flight, no end that still counts
// and nobody told to come back. It runs after as many Takes as there
// were keys (at least minSweep), so its cost per Take stays constant.
func (l *Limiter) sweep(t int64) {
	for key, k := range l.keys {
		k.prune(t, l.maxPer)
		for len(k.waits) > 0 && k.waits[0] <= t {
			heapPop(&k.waits)
		}
		if k.inflight == 0 && len(k.ends) == 0 && len(k.waits) == 0 {
			delete(l.keys, key)
		}
	}
	l.calls = 0
	l.nextGC = max(minSweep, len(l.keys))
}

// keyCount is for tests: how many keys l remembers.
func (l *Limiter) keyCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.keys)
}

func heapPush(h *[]int64, v int64) {
	*h = append(*h, v)
	s := *h
	for i := len(s) - 1; i > 0; {
		p := (i - 1) / 2
		if s[p] <= s[i] {
			break
		}
		s[p], s[i] = s[i], s[p]
		i = p
	}
}

func heapPop(h *[]int64) int64 {
	s := *h
	top := s[0]
	n := len(s) - 1
	s[0] = s[n]
	s = s[:n]
	for i := 0; ; {
		c := 2*i + 1
		if c >= n {
			break
		}
		if c+1 < n && s[c+1] < s[c] {
			c++
		}
		if s[i] <= s[c] {
			break
		}
		s[i], s[c] = s[c], s[i]
		i = c
	}
	*h = s
	return top
}
