package ratelimit

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

const m = time.Minute

func TestSuspenderBackoff(t *testing.T) {
	sp := NewSuspender(1*m, 10*m)
	// Each suspension right after the previous ended: 1, 2, 4, 8, then
	// the 10m cap.
	now := at(0)
	for i, want := range []time.Duration{1 * m, 2 * m, 4 * m, 8 * m, 10 * m, 10 * m} {
		if _, _, ok := sp.Until("site", now); ok {
			t.Fatalf("suspension %d: still suspended at %v", i, now.Sub(t0))
		}
		until := sp.Suspend("site", fmt.Sprint("421 4.7.28 #", i), now)
		if got := until.Sub(now); got != want {
			t.Fatalf("suspension %d lasts %v, want %v", i, got, want)
		}
		u, reason, ok := sp.Until("site", until.Add(-1))
		if !ok || !u.Equal(until) || reason != fmt.Sprint("421 4.7.28 #", i) {
			t.Fatalf("suspension %d: Until just before it ends = %v %q %v", i, u.Sub(t0), reason, ok)
		}
		if _, _, ok := sp.Until("other", now); ok {
			t.Fatalf("another key is suspended")
		}
		now = until
	}
}

// TestSuspenderSameEpisode: the replies of attempts in flight when the
// suspension began neither double nor extend it.
func TestSuspenderSameEpisode(t *testing.T) {
	sp := NewSuspender(1*m, 10*m)
	until := sp.Suspend("site", "421 4.7.0 first", at(0))
	for i := 0; i < 5; i++ {
		if u := sp.Suspend("site", "421 4.7.0 again", at(time.Duration(i)*s)); !u.Equal(until) {
			t.Fatalf("a reply during the suspension moved it to %v", u.Sub(t0))
		}
	}
	if _, reason, _ := sp.Until("site", at(30*s)); reason != "421 4.7.0 again" {
		t.Errorf("reason %q, want the latest", reason)
	}
	if u := sp.Suspend("site", "x", at(1*m)); u.Sub(at(1*m)) != 2*m {
		t.Errorf("the next suspension lasts %v, want 2m (doubled once)", u.Sub(at(1*m)))
	}
}

func TestSuspenderClear(t *testing.T) {
	sp := NewSuspender(1*m, 10*m)
	sp.Suspend("site", "r", at(0))
	// A delivery that was in flight gets through during the suspension:
	// it says nothing, the backoff keeps growing and the suspension
	// stays.
	sp.Clear("site")
	if _, _, ok := sp.Until("site", at(30*s)); !ok {
		t.Fatal("Clear during a suspension lifted it")
	}
	sp.Clear("site")
	if u := sp.Suspend("site", "r", at(1*m)); u.Sub(at(1*m)) != 2*m {
		t.Fatalf("after a Clear during the suspension, the next lasts %v, want 2m", u.Sub(at(1*m)))
	}
	// A delivery after the suspension: back to min.
	sp.Until("site", at(3*m))
	sp.Clear("site")
	if u := sp.Suspend("site", "r", at(4*m)); u.Sub(at(4*m)) != 1*m {
		t.Fatalf("after a Clear, the next suspension lasts %v, want 1m", u.Sub(at(4*m)))
	}
	sp.Clear("never-suspended") // does nothing
}

// TestSuspenderDecay: max without a suspension forgets the backoff.
func TestSuspenderDecay(t *testing.T) {
	sp := NewSuspender(1*m, 10*m)
	sp.Suspend("site", "r", at(0))        // until 1m
	u := sp.Suspend("site", "r", at(2*m)) // 2m, until 4m
	if u.Sub(at(2*m)) != 2*m {
		t.Fatalf("second suspension %v", u.Sub(at(2*m)))
	}
	if u := sp.Suspend("site", "r", at(4*m+10*m-1)); u.Sub(at(4*m+10*m-1)) != 4*m {
		t.Fatalf("just under max after the last: %v, want 4m", u.Sub(at(4*m+10*m-1)))
	}
	// That one ends at 18m-1ns; max later it is forgotten.
	if u := sp.Suspend("site", "r", at(28*m)); u.Sub(at(28*m)) != 1*m {
		t.Fatalf("max after the last suspension ended: %v, want 1m", u.Sub(at(28*m)))
	}
}

func TestSuspenderDefaults(t *testing.T) {
	sp := NewSuspender(0, -1)
	if u := sp.Suspend("k", "r", at(0)); u.Sub(t0) != time.Second {
		t.Errorf("default suspension %v, want 1s", u.Sub(t0))
	}
	if u := sp.Suspend("k", "r", at(1*s)); u.Sub(at(1*s)) != time.Second {
		t.Errorf("max below min: %v, want min", u.Sub(at(1*s)))
	}
}

func TestSuspenderMemory(t *testing.T) {
	sp := NewSuspender(1*s, 1*m)
	for i := 0; i < 10000; i++ {
		sp.Suspend(fmt.Sprint("mbox", i), "450 4.2.1", at(0))
	}
	if n := sp.keyCount(); n != 10000 {
		t.Fatalf("%d keys", n)
	}
	for i := 0; i < 2*10000; i++ {
		sp.Until("x", at(1*s+1*m))
	}
	if n := sp.keyCount(); n != 0 {
		t.Errorf("%d keys remembered after their backoff decayed, want 0", n)
	}
}

func TestSuspenderConcurrent(t *testing.T) {
	sp := NewSuspender(1*s, 1*m)
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 3000; i++ {
				now := at(time.Duration(i) * time.Millisecond)
				key := fmt.Sprint(i % 7)
				sp.Suspend(key, "r", now)
				sp.Until(key, now)
				sp.Clear(key)
			}
		}()
	}
	wg.Wait()
}
