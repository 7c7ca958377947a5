package ratelimit

import (
	"sync"
	"time"
)

// Suspender holds keys (a receiving site, a mailbox) back after the
// remote said it throttles them: "421 4.7.28" suspends a site, "450
// 4.2.1" a mailbox. Each consecutive suspension of a key lasts twice
// the one before, from min up to max, so that a remote that keeps
// refusing is asked less and less often; a delivery that gets through
// (Clear), or max without a suspension, starts it at min again.
//
// A Suspender is safe for concurrent use. Its memory is bounded by the
// keys suspended within the last max (plus their suspension).
type Suspender struct {
	min, max time.Duration

	mu     sync.Mutex
	keys   map[string]*suspension
	latest time.Time // the latest now seen, for Clear and sweeps
	calls  int
	nextGC int
}

type suspension struct {
	until  time.Time
	reason string
	next   time.Duration // the length of the next suspension
}

// NewSuspender returns a Suspender whose suspensions last from min to
// max. A min of 0 or less means 1s; a max below min means min.
func NewSuspender(min, max time.Duration) *Suspender {
	if min <= 0 {
		min = time.Second
	}
	if max < min {
		max = min
	}
	return &Suspender{min: min, max: max, keys: map[string]*suspension{}, nextGC: minSweep}
}

func (s *Suspender) see(now time.Time) {
	if now.After(s.latest) {
		s.latest = now
	}
	s.calls++
	if s.calls >= s.nextGC {
		for key, e := range s.keys {
			if s.forgotten(e, s.latest) {
				delete(s.keys, key)
			}
		}
		s.calls = 0
		s.nextGC = max(minSweep, len(s.keys))
	}
}

// forgotten says whether e has decayed: max has passed since its last
// suspension ended.
func (s *Suspender) forgotten(e *suspension, now time.Time) bool {
	return !now.Before(e.until.Add(s.max))
}

// Suspend suspends key from now and returns until when. The suspension
// lasts min, then twice the previous one for each consecutive
// suspension, at most max. A throttling reply that arrives while the
// key is already suspended comes from an attempt that started before
// the suspension: it is the same episode, and neither doubles nor
// extends it (only the reason is updated).
func (s *Suspender) Suspend(key, reason string, now time.Time) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.see(now)
	e := s.keys[key]
	if e != nil && now.Before(e.until) {
		e.reason = reason
		return e.until
	}
	if e == nil || s.forgotten(e, now) {
		e = &suspension{next: s.min}
		s.keys[key] = e
	}
	e.until = now.Add(e.next)
	e.reason = reason
	e.next = min(2*e.next, s.max)
	return e.until
}

// Until says whether key is suspended at now, until when and why.
func (s *Suspender) Until(key string, now time.Time) (until time.Time, reason string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.see(now)
	e := s.keys[key]
	if e == nil || !now.Before(e.until) {
		return time.Time{}, "", false
	}
	return e.until, e.reason, true
}

// Clear records that a delivery to key got through: the next
// suspension lasts min again. While the key is suspended (at the latest
// time the Suspender has been told), Clear does nothing: the delivery
// started before the suspension, and says nothing of whether the
// remote has lifted its limit; otherwise every suspension of a busy
// site would be cleared by the deliveries still in flight, and never
// grow.
func (s *Suspender) Clear(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.keys[key]
	if e == nil || s.latest.Before(e.until) {
		return
	}
	delete(s.keys, key)
}

// Remembers says whether key has been suspended recently enough at now
// that its next suspension would be longer than min: its latest
// suspension has not decayed yet. What a caller keeps about a key's
// suspension may be forgotten once this is false.
func (s *Suspender) Remembers(key string, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.keys[key]
	return e != nil && !s.forgotten(e, now)
}

// keyCount is for tests.
func (s *Suspender) keyCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.keys)
}
