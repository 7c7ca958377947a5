package qmgr

import (
	"context"
	"testing"

	"github.com/mailtee/mailtee/internal/deliver"
	"github.com/mailtee/mailtee/internal/envelope"
	"github.com/mailtee/mailtee/internal/queue"
)

// txAgent records each call as one transaction: its MAIL FROM and
// recipients, and answers each recipient with its own address.
type txAgent struct {
	tx []struct {
		from  string
		rcpts []string
	}
}

func (a *txAgent) Deliver(ctx context.Context, nexthop string, msg *deliver.Message, rcpts []envelope.Rcpt) []queue.Outcome {
	var t struct {
		from  string
		rcpts []string
	}
	t.from = msg.From
	out := make([]queue.Outcome, len(rcpts))
	for i, r := range rcpts {
		t.rcpts = append(t.rcpts, r.Addr)
		out[i].Reply = r.Addr
	}
	a.tx = append(a.tx, t)
	return out
}

// TestSenderSplitsGroup: a copy's sender (SRS) and the original one
// never share a transaction, and outcomes come back in the group's order.
func TestSenderSplitsGroup(t *testing.T) {
	env := &envelope.Envelope{From: "a@example.org", Rcpts: []envelope.Rcpt{
		{Addr: "x@p.example"}, {Addr: "c1@p.example", Copy: true, Migration: envelope.MigrationCopy},
		{Addr: "y@p.example"}, {Addr: "c2@p.example", Copy: true, Migration: envelope.MigrationCopy}}}
	qm := queue.NewMemMessage("4AAA", env, []byte("Subject: s\r\n\r\nbody\r\n"))
	a := &txAgent{}
	m := New(map[string]Agent{"smtp": a})
	m.Sender = func(id, from string, r envelope.Rcpt) string {
		if r.Migration == envelope.MigrationCopy {
			return "SRS0=xxxx=AA=example.org=a@srs.example"
		}
		return from
	}
	out := m.Deliver(context.Background(), qm, envelope.Hop{Transport: "smtp", Nexthop: "[127.0.0.1]"}, []int{0, 1, 2, 3})
	if len(a.tx) != 2 || a.tx[0].from != "a@example.org" || len(a.tx[0].rcpts) != 2 ||
		a.tx[1].from != "SRS0=xxxx=AA=example.org=a@srs.example" || len(a.tx[1].rcpts) != 2 {
		t.Fatalf("transactions %+v", a.tx)
	}
	for i, want := range []string{"x@p.example", "c1@p.example", "y@p.example", "c2@p.example"} {
		if out[i].Reply != want {
			t.Errorf("outcome %d is %q's, want %q's", i, out[i].Reply, want)
		}
	}
	// One sender: one transaction, as before.
	a.tx = nil
	m.Deliver(context.Background(), qm, envelope.Hop{Transport: "smtp"}, []int{0, 2})
	if len(a.tx) != 1 || a.tx[0].from != "a@example.org" {
		t.Errorf("one sender: %+v", a.tx)
	}
}
