package ratelimit

import (
	"sort"
	"time"
)

// What a restart must not forget. A Limiter's windows and a
// Suspender's suspensions live in memory; a relay restarted in the
// middle of a drain would otherwise give every mailbox a fresh window
// (Google's 60 a minute twice over in the minute of the restart).

// History is, per key, the end times of completed attempts that still
// count in some window, ascending.
type History map[string][]time.Time

// Save returns l's history at now: the ends that still count, and the
// attempts in flight as ending now (they may well have reached the
// remote). A nil or windowless Limiter has none.
func (l *Limiter) Save(now time.Time) History {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.windows) == 0 {
		return nil
	}
	t := l.at(now)
	h := History{}
	for key, k := range l.keys {
		k.prune(t, l.maxPer)
		var ends []time.Time
		for _, e := range k.ends {
			ends = append(ends, l.base.Add(time.Duration(e)))
		}
		for range k.inflight {
			ends = append(ends, now)
		}
		if len(ends) > 0 {
			h[key] = ends
		}
	}
	return h
}

// Load adds h's ends to l's, as if those attempts had ended here: the
// windows count them until they expire. Ends older than l's longest
// window, or later than now (a clock that went back), are dropped or
// taken as now.
func (l *Limiter) Load(h History, now time.Time) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.windows) == 0 {
		return
	}
	t := l.at(now)
	cut := t - int64(l.maxPer)
	for key, ends := range h {
		k := l.keys[key]
		if k == nil {
			k = &keyState{}
		}
		for _, e := range ends {
			at := min(l.at(e), t)
			if at > cut {
				k.add(at, l.maxN)
			}
		}
		if len(k.ends) > 0 || k.inflight > 0 {
			l.keys[key] = k
		}
	}
}

// Suspension is one suspended key, as Suspender.Save gives it.
type Suspension struct {
	Until  time.Time
	Reason string
	Next   time.Duration // the length of the key's next suspension
}

// Save returns the suspensions that still matter at now: those in force
// and those whose doubling has not decayed.
func (s *Suspender) Save(now time.Time) map[string]Suspension {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]Suspension{}
	for key, e := range s.keys {
		if !s.forgotten(e, now) {
			out[key] = Suspension{Until: e.until, Reason: e.reason, Next: e.next}
		}
	}
	return out
}

// Load restores suspensions that Save gave, keeping any the Suspender
// has that end later.
func (s *Suspender) Load(saved map[string]Suspension, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := make([]string, 0, len(saved))
	for k := range saved {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, key := range keys {
		v := saved[key]
		e := &suspension{until: v.Until, reason: v.Reason, next: min(max(v.Next, s.min), s.max)}
		if s.forgotten(e, now) {
			continue
		}
		if old := s.keys[key]; old != nil && old.until.After(e.until) {
			continue
		}
		s.keys[key] = e
	}
}
