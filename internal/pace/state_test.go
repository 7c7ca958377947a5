package pace

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/deliver"
	"github.com/mailtee/mailtee/internal/provider"
	"github.com/mailtee/mailtee/internal/queue"
	"github.com/mailtee/mailtee/internal/ratelimit"
)

// A restart keeps a mailbox's window and a site's suspension: the
// pacer saved to a file and loaded by a new one refuses what the old
// one would have refused.
func TestStateAcrossRestart(t *testing.T) {
	l := base()
	l.RecipientRate = []ratelimit.Window{{N: 2, Per: time.Hour}}
	tr := Transport{Profile: "none", SMTP: true, Limits: l}
	old, _ := pacerWith(tr)
	for range 2 {
		admit(old, msg("busy@students.example"), 0).Done(sent(1))
	}
	admit(old, msg("x@elsewhere.example"), 0) // in flight at the "crash"
	throttled := New(Options{Transport: func(string) (Transport, bool) { return tr, true }, MinSuspend: time.Hour, MaxSuspend: 2 * time.Hour})
	admit(throttled, msg("u@students.example"), 0).Done([]queue.Outcome{{Err: &deliver.Error{Code: 421, Enhanced: "4.7.28", Relay: "mx[192.0.2.1]:25", Text: "421 4.7.28 unusual rate"}}})

	dir := t.TempDir()
	path := filepath.Join(dir, "pacing.state")
	if err := old.SaveFile(path); err != nil {
		t.Fatal(err)
	}
	fresh, _ := pacerWith(tr)
	if err := fresh.LoadFile(path); err != nil {
		t.Fatal(err)
	}
	if a := admit(fresh, msg("busy@students.example"), 0); len(a.Now) != 0 {
		t.Errorf("after the restart the busy mailbox got a fresh window: %+v", a)
	}
	if a := admit(fresh, msg("other@students.example"), 0); len(a.Now) != 1 {
		t.Errorf("another mailbox held back after the restart: %+v", a.Later)
	}

	if err := throttled.SaveFile(path); err != nil {
		t.Fatal(err)
	}
	fresh, _ = pacerWith(tr)
	if err := fresh.LoadFile(path); err != nil {
		t.Fatal(err)
	}
	if a := admit(fresh, msg("v@students.example"), 0); len(a.Now) != 0 {
		t.Errorf("after the restart the throttled site was not suspended: %+v", a)
	}

	// No file: nothing to load; a damaged one says what to do.
	if err := fresh.LoadFile(filepath.Join(dir, "none")); err != nil {
		t.Errorf("missing file: %v", err)
	}
	os.WriteFile(path, []byte("{"), 0o600)
	if err := fresh.LoadFile(path); err == nil {
		t.Error("a damaged state file loaded without an error")
	}
}

// A state saved when limiters were per list of windows (no transport)
// loads into the limiter its keys' transport and its windows' profile
// name.
func TestStateOfLimitersPerWindows(t *testing.T) {
	l := base()
	l.RecipientRate = []ratelimit.Window{{N: 2, Per: time.Hour}}
	p, _ := pacerWith(Transport{Profile: "none", SMTP: true, Limits: l})
	now := time.Now()
	p.Load(State{Saved: now, Limiters: []SavedLimiter{{Kind: "box", Windows: "2/1h",
		History: ratelimit.History{"smtp:students.example|busy@students.example": {now, now}}}}}, now)
	if a := admit(p, msg("busy@students.example"), 0); len(a.Now) != 0 {
		t.Errorf("the saved window was not restored: %+v", a)
	}
	g, _ := pacerWith(Transport{Profile: "auto", SMTP: true, Limits: base()})
	prof, _ := provider.Lookup("google")
	var ends []time.Time
	for range prof.RecipientRate[0].N {
		ends = append(ends, now)
	}
	g.Load(State{Saved: now, Limiters: []SavedLimiter{{Kind: "box", Windows: ratelimit.FormatWindows(prof.RecipientRate),
		History: ratelimit.History{"smtp:google|busy@students.example": ends}}}}, now)
	if a := admit(g, msg("busy@students.example"), 0); len(a.Now) != 0 {
		t.Errorf("the saved window of a Google mailbox was not restored: %+v", a)
	}
}
