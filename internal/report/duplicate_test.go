package report

import (
	"testing"

	"github.com/mailtee/mailtee/internal/ledger"
	"github.com/mailtee/mailtee/internal/ledger/memledger"
)

// A list and one of its members, both recipients: local(8) fills the
// member's mailbox once ("duplicate of ..., delivered once"), and the
// report counts that mailbox once. Seen in test/e2e's ledger scenario.
func TestDuplicateMailboxCountsOnce(t *testing.T) {
	l := memledger.New(
		ledger.Message{Node: "h", ID: "A", Rcpts: []string{"list@h", "u1@h"}, Arrival: t0,
			Deliveries: []ledger.Delivery{
				{Index: 0, Rcpt: "list@h", Status: ledger.Sent, Transport: "local", Relay: "local",
					Reply: "delivered to maildir of u1@h; delivered to maildir of u2@h"},
				{Index: 1, Rcpt: "u1@h", Status: ledger.Sent, Transport: "local", Relay: "local",
					Reply: "duplicate of u1@h, delivered once"},
			}},
		// A duplicate whose mailbox no other delivery names stays.
		ledger.Message{Node: "h", ID: "B", Rcpts: []string{"u3@h"}, Arrival: t0,
			Deliveries: []ledger.Delivery{{Index: 0, Rcpt: "u3@h", Status: ledger.Sent, Transport: "local", Relay: "local",
				Reply: "duplicate of u4@h, delivered once"}}},
	)
	r := build(t, Sources{Local: l}, ledger.Filter{})
	if rc := r.Reconciliation; rc.Required != 3 || rc.Delivered != 3 {
		t.Errorf("reconciliation %+v, want 3 of 3 (u1 and u2 of message A, u3 of B)", rc)
	}
}
