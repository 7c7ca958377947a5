package ratelimit

import (
	"testing"
	"time"
)

// A limiter saved and loaded into a new one (a restart) refuses what
// the old one would have refused, and forgets what no window counts.
func TestLimiterSaveLoad(t *testing.T) {
	t0 := time.Unix(1e9, 0)
	ws := []Window{{N: 2, Per: time.Minute}, {N: 3, Per: time.Hour}}
	old := New(ws)
	for k, at := range []time.Duration{0, 10 * time.Second} {
		tok, _ := old.Take("busy", t0.Add(at))
		if tok == nil {
			t.Fatalf("take %d refused", k)
		}
		tok.Done(t0.Add(at + time.Second))
	}
	inflight, _ := old.Take("other", t0.Add(20*time.Second))
	_ = inflight // a crash while it runs
	h := old.Save(t0.Add(30 * time.Second))
	if len(h["busy"]) != 2 || len(h["other"]) != 1 {
		t.Fatalf("saved %v", h)
	}

	restarted := New(ws)
	now := t0.Add(40 * time.Second)
	restarted.Load(h, now)
	if tok, at := restarted.Take("busy", now); tok != nil || !at.Equal(t0.Add(61*time.Second)) {
		t.Errorf("after the restart busy was admitted (%v) or told %v; want a refusal until 1m01s", tok != nil, at)
	}
	// The hour window still remembers both: one more, then none.
	later := t0.Add(2 * time.Minute)
	if tok, _ := restarted.Take("busy", later); tok == nil {
		t.Error("busy refused once the minute passed")
	} else {
		tok.Done(later)
	}
	if tok, _ := restarted.Take("busy", later.Add(2*time.Minute)); tok != nil {
		t.Error("busy admitted a fourth time within the hour")
	}
	// Ends older than the longest window are not loaded at all.
	fresh := New(ws)
	fresh.Load(h, t0.Add(2*time.Hour))
	if n := fresh.keyCount(); n != 0 {
		t.Errorf("%d keys loaded from an hour-old history", n)
	}
}

func TestSuspenderSaveLoad(t *testing.T) {
	t0 := time.Unix(1e9, 0)
	s := NewSuspender(time.Minute, time.Hour)
	s.Suspend("site", "421 4.7.28", t0)
	s.Suspend("site", "421 4.7.28", t0.Add(2*time.Minute)) // second: 2 minutes
	saved := s.Save(t0.Add(3 * time.Minute))
	r := NewSuspender(time.Minute, time.Hour)
	r.Load(saved, t0.Add(3*time.Minute))
	if until, reason, ok := r.Until("site", t0.Add(3*time.Minute)); !ok || !until.Equal(t0.Add(4*time.Minute)) || reason != "421 4.7.28" {
		t.Errorf("restored: %v %q %v", until, reason, ok)
	}
	if until := r.Suspend("site", "again", t0.Add(5*time.Minute)); !until.Equal(t0.Add(9 * time.Minute)) {
		t.Errorf("the doubling was forgotten: next suspension until %v, want 4 minutes", until)
	}
	gone := NewSuspender(time.Minute, time.Hour)
	gone.Load(saved, t0.Add(3*time.Hour))
	if gone.keyCount() != 0 {
		t.Error("a decayed suspension was loaded")
	}
}
