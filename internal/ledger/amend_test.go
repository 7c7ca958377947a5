package ledger

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/envelope"
	"github.com/mailtee/mailtee/internal/queue"
)

// A copy the provider bounced to its SRS sender (Amend) stays bounced
// when the message's own records come after: the queue, which knows
// only the 250, says sent, in a later batch (the message was still
// queued for another recipient) or in the same one.
func TestAmendNotUndone(t *testing.T) {
	forBackends(t, func(t *testing.T, b *backend) {
		for _, sameBatch := range []bool{false, true} {
			dir := t.TempDir()
			r := newRec(t, b, dir, &logs{})
			m := msg("A1", "user1@students.example", "copy-user1@relay.example")
			r.Accepted(m)
			rs := &m.Rcpts[1]
			rs.Status, rs.Attempt = queue.Sent, &queue.Attempt{LastErr: "250 2.0.0 OK 1 g1 - gsmtp", DSN: "2.0.0", Relay: "x[127.0.0.1]:25"}
			r.Delivery(m, 1, envelope.Hop{Transport: "smtp", Nexthop: "x"}, queue.Outcome{Relay: "x[127.0.0.1]:25", Reply: "250 2.0.0 OK 1 g1 - gsmtp"}, "sent", time.Now())
			if !sameBatch {
				time.Sleep(600 * time.Millisecond) // written (Every 200 ms)
			}
			r.Amend("mx1.example.org", "A1", Delivery{Index: 1, Rcpt: "copy-user1@relay.example", Copy: true, Status: Bounced, At: time.Now(),
				DSN: "5.1.1", Reply: "host mx.google.com said: 550 5.1.1 no such user (in a bounce to the SRS sender)"})
			if !sameBatch {
				time.Sleep(600 * time.Millisecond)
			}
			m.Rcpts[0].Status = queue.Sent
			finalSync(t, r, m, false)
			got, ok, err := openStore(t, b, dir).Message(context.Background(), "", "A1")
			if err != nil || !ok || len(got.Deliveries) != 2 {
				t.Fatalf("A1: %v %v %+v", ok, err, got)
			}
			d := got.Deliveries[1]
			if d.Status != Bounced || d.DSN != "5.1.1" || !strings.Contains(d.Reply, "no such user") {
				t.Errorf("same batch %v: the copy is %s (%s %s), want bounced as amended", sameBatch, d.Status, d.DSN, d.Reply)
			}
			if got.Deliveries[0].Status != Sent {
				t.Errorf("the mailbox delivery is %s", got.Deliveries[0].Status)
			}
			r.Close()
		}
	})
}
