package bounce

import (
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/envelope"
	"github.com/mailtee/mailtee/internal/queue"
)

// A status kept in a queue file from a server's reply before deliver
// kept it in RFC 3463's form must not make the bounce fail (internal/dsn
// refuses it, and the bounce was retried forever).
func TestRecipientStatusValid(t *testing.T) {
	now := time.Date(2026, 12, 7, 2, 0, 0, 0, time.UTC)
	for _, c := range []struct{ dsn, want string }{
		{"5.1.1", "5.1.1"},
		{"5.44315926.974", "5.0.0"},
		{"5.-1.0", "5.0.0"},
		{"4.7.1000", "4.0.0"},
		{"", "5.4.7"},
	} {
		r := Recipient(queue.RcptState{Rcpt: envelope.Rcpt{Addr: "v@remote.example"},
			Attempt: &queue.Attempt{DSN: c.dsn, LastErr: "550 no", Relay: "mx[192.0.2.1]:25"}}, now)
		if r.Status != c.want {
			t.Errorf("DSN %q: status %q, want %q", c.dsn, r.Status, c.want)
		}
	}
}
