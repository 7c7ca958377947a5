package web

import (
	"net/netip"
	"sync"
	"time"
)

// throttle limits failed logins per client: a bucket of burst
// attempts that refills at rate per second. A client whose bucket is
// empty is refused before its credentials are checked, so that
// guessing costs the server no hash computation either. IPv6 clients
// count per /64, which one host usually has to itself.
type throttle struct {
	rate  float64
	burst float64
	now   func() time.Time

	mu      sync.Mutex
	buckets map[netip.Addr]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time
}

// maxBuckets bounds the map: past it, buckets that have refilled go.
const maxBuckets = 10000

func newThrottle(rate, burst float64) *throttle {
	return &throttle{rate: rate, burst: burst, now: time.Now, buckets: map[netip.Addr]*bucket{}}
}

func throttleKey(a netip.Addr) netip.Addr {
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.Addr()
	}
	return a
}

// allow reports whether a may try its credentials now.
func (t *throttle) allow(a netip.Addr) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.buckets[throttleKey(a)]
	if b == nil {
		return true
	}
	t.refill(b)
	return b.tokens >= 1
}

// fail takes one attempt from a's bucket.
func (t *throttle) fail(a netip.Addr) {
	t.mu.Lock()
	defer t.mu.Unlock()
	k := throttleKey(a)
	b := t.buckets[k]
	if b == nil {
		if len(t.buckets) >= maxBuckets {
			t.prune()
		}
		b = &bucket{tokens: t.burst, at: t.now()}
		t.buckets[k] = b
	}
	t.refill(b)
	if b.tokens >= 1 {
		b.tokens--
	}
}

func (t *throttle) refill(b *bucket) {
	now := t.now()
	b.tokens = min(t.burst, b.tokens+now.Sub(b.at).Seconds()*t.rate)
	b.at = now
}

// prune drops the buckets that are full again; if every one is still
// draining (a spread-out attack), all go: the limit then restarts,
// which is better than a map without bound.
func (t *throttle) prune() {
	for k, b := range t.buckets {
		t.refill(b)
		if b.tokens >= t.burst {
			delete(t.buckets, k)
		}
	}
	if len(t.buckets) >= maxBuckets {
		clear(t.buckets)
	}
}
