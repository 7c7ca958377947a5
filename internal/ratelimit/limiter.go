package ratelimit

import (
	"sort"
	"sync"
	"sync/atomic"
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
	// waits holds, ascending, the retry times handed to blocked
	// callers that are still in the future: the waiting line, in which
	// a new caller finds its place.
	waits []int64
}

// Token is one admitted attempt. Exactly one of Done or Cancel should
// be called; later calls do nothing.
type Token struct {
	l     *Limiter
	k     *keyState
	start int64
	over  bool
	// ext settles a Token of a Taker that counts elsewhere (NewToken);
	// extOver makes it settle once.
	ext     func(end time.Time, reached bool)
	extOver atomic.Bool
}

// Taker admits attempts as a Limiter does. A Limiter is one; a limiter
// whose count lives elsewhere (internal/fleet's, shared by the nodes of
// a fleet in PostgreSQL) is another, and hands out Tokens from
// NewToken.
type Taker interface {
	Take(key string, now time.Time) (*Token, time.Time)
}

// NewToken returns a Token whose Done(end) calls settle(end, true) and
// whose Cancel calls settle(time.Time{}, false), once, whichever comes
// first: the Token of a Taker other than a Limiter.
func NewToken(settle func(end time.Time, reached bool)) *Token {
	return &Token{ext: settle}
}

var _ Taker = (*Limiter)(nil)

// noLimit is handed out by a Limiter that never limits, so that callers
// need not check for nil.
var noLimit = &Token{}

// minSweep keeps sweeps of small maps from running on every call.
const minSweep = 1024

// New returns a Limiter with the given windows; nil or empty never
// limits.
func New(windows []Window) *Limiter {
	l := &Limiter{keys: map[string]*keyState{}, nextGC: minSweep}
	l.setWindows(windows)
	return l
}

func (l *Limiter) setWindows(windows []Window) {
	l.windows, l.maxN, l.maxPer = nil, 0, 0
	for _, w := range windows {
		if w.N < 1 || w.Per <= 0 {
			continue
		}
		l.windows = append(l.windows, w)
		l.maxN = max(l.maxN, w.N)
		l.maxPer = max(l.maxPer, w.Per)
	}
}

// SetWindows has l enforce windows from now on, keeping what its keys
// have in flight and what they sent: a reload that tightens a limit
// applies to what went out before it. (History is kept for the windows
// in force, so a window longer or larger than before undercounts until
// it has filled.)
func (l *Limiter) SetWindows(windows []Window) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !sameWindows(l.windows, windows) {
		l.setWindows(windows)
	}
}

// sameWindows says whether have, the valid windows of some list, are
// those of windows.
func sameWindows(have, windows []Window) bool {
	n := 0
	for _, w := range windows {
		if w.N < 1 || w.Per <= 0 {
			continue
		}
		if n >= len(have) || have[n] != w {
			return false
		}
		n++
	}
	return n == len(have)
}

// Windows returns the windows l enforces.
func (l *Limiter) Windows() []Window {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
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
// earliest slot the windows will open that the callers already told to
// wait leave free (see place). That spreads a backlog for one busy key
// over time, about N per Per, instead of waking it all at the same
// instant to be refused again, which would cost O(n) Takes per freed
// slot. The time is exact when completed attempts fill the windows;
// when attempts in flight do, now+Per is only a lower bound. A caller
// that comes back early simply gets a new time.
func (l *Limiter) Take(key string, now time.Time) (*Token, time.Time) {
	if l == nil {
		return noLimit, time.Time{}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.windows) == 0 {
		return noLimit, time.Time{}
	}
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
	k.dropWaits(t)
	retry := k.place(t, l.windows)
	if len(k.waits) < maxWaits {
		i := sort.Search(len(k.waits), func(i int) bool { return k.waits[i] > retry })
		k.waits = append(k.waits, 0)
		copy(k.waits[i+1:], k.waits[i:])
		k.waits[i] = retry
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
	if tk != nil && tk.ext != nil {
		if !tk.extOver.Swap(true) {
			tk.ext(end, true)
		}
		return
	}
	tk.settle(func(l *Limiter, k *keyState) { k.add(max(l.at(end), tk.start), l.maxN) })
}

// Cancel releases an attempt that never reached the remote (no
// connection, refused before MAIL): it counts as if it never happened.
func (tk *Token) Cancel() {
	if tk != nil && tk.ext != nil {
		if !tk.extOver.Swap(true) {
			tk.ext(time.Time{}, false)
		}
		return
	}
	tk.settle(nil)
}

// settle ends the attempt once: it is no longer in flight, and record,
// when set, keeps what it leaves in the windows.
func (tk *Token) settle(record func(*Limiter, *keyState)) {
	if tk == nil || tk.l == nil {
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
	if record != nil {
		record(l, tk.k)
	}
}

// count returns the key's events that count in w at t: in flight, or
// ended after t-Per.
func (k *keyState) count(t int64, w Window) int {
	cut := t - int64(w.Per)
	i := sort.Search(len(k.ends), func(i int) bool { return k.ends[i] > cut })
	return k.inflight + len(k.ends) - i
}

// place returns a blocked caller's retry time: the earliest of the
// slots S(0) <= S(1) <= ... the windows will open next that the
// callers already waiting do not claim. S(j) is claimed when more than
// j waiters are due by it; S(p), p the length of the line, never is.
// The least unclaimed j is the least fixed point of j = #waits due by
// S(j), found by iterating from 0: a caller that came back a little
// early keeps its place at the front (the slot opens a delivery's
// length after it was told), and callers arriving together share the
// N slots that open together. A line packed to the end needs about p/N
// steps; after maxSteps the caller goes to the back. So does a caller
// blocked by attempts in flight: its slots are only a bound (now+Per),
// and filling gaps there would have the line poll a long delivery
// every Per/N; at the back, each waiter comes back once per round.
func (k *keyState) place(t int64, windows []Window) int64 {
	p := len(k.waits)
	for _, w := range windows {
		if k.inflight >= w.N {
			return k.S(t, windows, p)
		}
	}
	j := 0
	for step := 0; step < maxSteps; step++ {
		due := sort.Search(len(k.waits), func(i int) bool { return k.waits[i] > k.S(t, windows, j) })
		if due <= j {
			return k.S(t, windows, j)
		}
		j = due
	}
	return k.S(t, windows, p)
}

const maxSteps = 32

// S returns when all windows admit the j-th of the key's next
// attempts: the (j mod N)-th of the next N slots of each window, j/N
// periods later.
func (k *keyState) S(t int64, windows []Window, j int) int64 {
	at := t
	for _, w := range windows {
		periods := float64(j/w.N) * float64(w.Per)
		if periods > maxSpread {
			periods = maxSpread
		}
		at = max(at, k.slot(t, w, j%w.N)+int64(periods))
	}
	return at
}

// dropWaits forgets the retry times that are due.
func (k *keyState) dropWaits(t int64) {
	i := 0
	for i < len(k.waits) && k.waits[i] <= t {
		i++
	}
	if i > 0 {
		k.waits = k.waits[i:]
	}
}

// slot returns when w admits the j-th (from 0, j < N) of the key's
// next attempts, if those before it start at their slots, the ones in
// flight stay in flight and nothing else starts: once all but keep =
// N-1-inflight-j of its ends have left the window. When in-flight
// attempts must leave too, an end no earlier than t keeps counting
// until t+Per at least: that is the bound.
func (k *keyState) slot(t int64, w Window, j int) int64 {
	keep := w.N - 1 - k.inflight - j
	if keep < 0 {
		return t + int64(w.Per)
	}
	i := len(k.ends) - keep - 1
	if i < 0 {
		return t
	}
	return max(t, k.ends[i]+int64(w.Per))
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
		k.dropWaits(t)
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
