package pace

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/ratelimit"
)

// A reload that tightens a mailbox's rate (2/1h to 1/1h, say after a
// lockout) counts what went out before it: the limiter was per list of
// windows, and the new list's started from nothing, so the mailbox got
// a whole new window's worth on top of the hour's.
func TestReloadKeepsCounts(t *testing.T) {
	var n atomic.Int64
	n.Store(2)
	p := New(Options{Transport: func(string) (Transport, bool) {
		l := base()
		l.RecipientRate = []ratelimit.Window{{N: int(n.Load()), Per: time.Hour}}
		return Transport{Profile: "none", SMTP: true, Limits: l}, true
	}})
	for k := 0; k < 2; k++ {
		a := admit(p, msg("busy@students.example"), 0)
		if len(a.Now) != 1 {
			t.Fatalf("message %d held back: %+v", k, a.Later)
		}
		a.Done(sent(1))
	}
	n.Store(1) // the reload
	if a := admit(p, msg("busy@students.example"), 0); len(a.Now) != 0 {
		t.Errorf("2 sent in the hour, the limit now 1/1h: a third admitted")
	}
	n.Store(3) // and back up: the hour's two still count
	if a := admit(p, msg("busy@students.example"), 0); len(a.Now) != 1 {
		t.Errorf("2 sent in the hour, the limit now 3/1h: held back: %+v", a.Later)
	} else if b := admit(p, msg("busy@students.example"), 0); len(b.Now) != 0 {
		t.Errorf("3 in the hour under 3/1h: a fourth admitted")
	}
}
