package pace

import (
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/deliver"
	"github.com/mailtee/mailtee/internal/queue"
	"github.com/mailtee/mailtee/internal/ratelimit"
)

// When Go leaves a throttled mailbox out, Done's outcomes are the
// others', and each must reach its own mailbox: a 450 4.2.1 for u2
// suspends u2, not u1 (Admit computes each mailbox once, for Go and
// Done).
func TestGoThrottleReachesItsMailbox(t *testing.T) {
	l := base()
	l.RecipientRate = []ratelimit.Window{{N: 5, Per: time.Hour}}
	p := New(Options{
		Transport:  func(string) (Transport, bool) { return Transport{Profile: "none", SMTP: true, Limits: l}, true },
		MinSuspend: time.Minute, MaxSuspend: time.Hour,
	})
	busy := &deliver.Error{Code: 450, Enhanced: "4.2.1", Relay: "mx[192.0.2.1]:25", Text: "450 4.2.1 receiving mail too quickly"}
	waiting := admit(p, msg("u1@students.example", "u2@students.example"), 0, 1)
	admit(p, msg("u1@students.example"), 0).Done([]queue.Outcome{{Err: busy}})
	if later := waiting.Go(); len(later) != 1 || later[0].Rcpt != 0 {
		t.Fatalf("Go: %+v; want u1 held back, u2 sent", later)
	}
	waiting.Done([]queue.Outcome{{Err: busy}}) // u2's outcome alone
	if a := admit(p, msg("u2@students.example"), 0); len(a.Now) != 0 {
		t.Errorf("u2 was throttled but is admitted: its 450 4.2.1 went to another mailbox")
	}
}
