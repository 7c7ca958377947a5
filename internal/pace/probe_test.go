package pace

import (
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/deliver"
	"github.com/mailtee/mailtee/internal/queue"
)

// A probe that gets through while the destination is suspended again
// (a delivery that started before the probe drew a new 421 meanwhile)
// says nothing of whether the site lifted its new limit, as Clear
// says: once that suspension ends, one delivery probes again rather
// than the whole concurrency going at once.
func TestProbeThroughDuringNewSuspension(t *testing.T) {
	p := New(Options{
		Transport:  func(string) (Transport, bool) { return Transport{Profile: "none", SMTP: true, Limits: base()}, true },
		MinSuspend: 100 * time.Millisecond, MaxSuspend: time.Second,
	})
	throttle := []queue.Outcome{{Err: &deliver.Error{Code: 421, Enhanced: "4.7.28", Relay: "mx[192.0.2.1]:25", Text: "421 4.7.28 unusual rate"}}}
	slow := admit(p, msg("slow@students.example"), 0) // in flight all along
	if later := slow.Go(); len(later) != 0 {
		t.Fatal(later)
	}
	admit(p, msg("u1@students.example"), 0).Done(throttle)
	time.Sleep(150 * time.Millisecond) // the first suspension is over
	probe := admit(p, msg("u2@students.example"), 0)
	if len(probe.Now) != 1 || len(probe.Go()) != 0 {
		t.Fatalf("no probe: %+v", probe.Later)
	}
	slow.Done(throttle)                // the site throttles again (200ms)
	probe.Done(sent(1))                // the probe, started before, gets through
	time.Sleep(250 * time.Millisecond) // the second suspension is over
	a, b := admit(p, msg("u3@students.example"), 0), admit(p, msg("u4@students.example"), 0)
	if len(a.Now)+len(b.Now) != 1 {
		t.Errorf("after the second suspension: %d deliveries at once (%+v, %+v); want one probe", len(a.Now)+len(b.Now), a.Later, b.Later)
	}
}

// A throttling reply to an older delivery while the probe still runs
// does not make a second probe once its suspension ends: the probe
// under way is still the one.
func TestOneProbeAtATime(t *testing.T) {
	p := New(Options{
		Transport:  func(string) (Transport, bool) { return Transport{Profile: "none", SMTP: true, Limits: base()}, true },
		MinSuspend: 100 * time.Millisecond, MaxSuspend: time.Second,
	})
	throttle := []queue.Outcome{{Err: &deliver.Error{Code: 421, Enhanced: "4.7.28", Relay: "mx[192.0.2.1]:25", Text: "421 4.7.28 unusual rate"}}}
	slow := admit(p, msg("slow@students.example"), 0) // in flight all along
	if later := slow.Go(); len(later) != 0 {
		t.Fatal(later)
	}
	admit(p, msg("u1@students.example"), 0).Done(throttle)
	time.Sleep(150 * time.Millisecond) // the first suspension is over
	probe := admit(p, msg("u2@students.example"), 0)
	if len(probe.Now) != 1 || len(probe.Go()) != 0 {
		t.Fatalf("no probe: %+v", probe.Later)
	}
	slow.Done(throttle)                // the site throttles again (200ms)
	time.Sleep(250 * time.Millisecond) // that suspension is over; the probe still runs
	if b := admit(p, msg("u3@students.example"), 0); len(b.Now) != 0 {
		t.Errorf("a second probe beside the one under way: %+v", b)
	}
	probe.Done(sent(1))
	if b := admit(p, msg("u4@students.example"), 0); len(b.Now) != 1 {
		t.Errorf("held back after the probe got through: %+v", b.Later)
	}
}
