package preflight

import (
	"context"
	"testing"
	"time"
)

// Interrupted (Ctrl-C, or SIGTERM from a service manager) between two
// probes, preflight must not report success: the users it did not ask
// about were left out of the report, which then said "nothing failed"
// and the command exited 0, as if every account existed.
func TestInterruptedIsNotSuccess(t *testing.T) {
	f := startFake(t, &fakeMX{rcpt: noMadeUp})
	o := options(t, f, "u1@ex.test", "u2@ex.test", "u3@ex.test")
	o.Interval = time.Hour // the second probe waits: interrupted there
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(500*time.Millisecond, cancel)
	rep := Run(ctx, o)
	if !rep.Failed() {
		t.Errorf("an interrupted run did not fail: %+v", rep.Rows)
	}
	for _, u := range []string{"u2@ex.test", "u3@ex.test"} {
		if r := rowOf(t, rep, "account", u); r.Status == OK {
			t.Errorf("%s: %+v, never asked", u, r)
		}
	}
}
