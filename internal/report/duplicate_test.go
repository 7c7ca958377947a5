package report

import (
	"testing"
	"time"

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

// An alias of one mailbox (aliases(5)'s "root: admin", the most common
// kind) is a required delivery to that mailbox, as a list's members
// are: a search for the mailbox finds the message, and a message to the
// alias and the mailbox both counts the mailbox once.
func TestOneMailboxAlias(t *testing.T) {
	l := memledger.New(
		ledger.Message{Node: "h", ID: "A", Rcpts: []string{"root@h"}, Arrival: t0,
			Deliveries: []ledger.Delivery{{Index: 0, Rcpt: "root@h", Status: ledger.Sent, Transport: "local", Relay: "local",
				Reply: "delivered to maildir of admin@h"}}},
		ledger.Message{Node: "h", ID: "B", Rcpts: []string{"root@h", "admin@h"}, Arrival: t0,
			Deliveries: []ledger.Delivery{
				{Index: 0, Rcpt: "root@h", Status: ledger.Sent, Transport: "local", Relay: "local",
					Reply: "delivered to maildir of admin@h"},
				{Index: 1, Rcpt: "admin@h", Status: ledger.Sent, Transport: "local", Relay: "local",
					Reply: "duplicate of admin@h, delivered once"},
			}},
	)
	r := build(t, Sources{Local: l}, ledger.Filter{})
	if rc := r.Reconciliation; rc.Required != 2 || rc.Delivered != 2 {
		t.Errorf("reconciliation %+v, want 2 of 2 (admin's mailbox once per message)", rc)
	}
	u := build(t, Sources{Local: l}, ledger.Filter{User: "admin@h"})
	if len(u.Messages) != 2 {
		t.Fatalf("--user admin@h: %d messages, want 2 (A reached admin's mailbox through root)", len(u.Messages))
	}
	if q := u.Messages[0].Required[0]; q.Rcpt != "admin@h" || q.Via != "root@h" {
		t.Errorf("message A's delivery: rcpt %q via %q, want admin@h via root@h", q.Rcpt, q.Via)
	}
}

// A Postfix primary's log (--postfix-log) with a virtual alias list@ →
// u1@, u2@ and u1@ both recipients: cleanup(8) keeps two recipients for
// u1 (enable_original_recipient = yes eliminates duplicates on
// (original, rewritten) pairs), and virtual(8) delivers each, so u1's
// mailbox is written twice. It is still one required delivery, the best
// of the two: delivered once either put the message there. Seen in
// test/e2e's TestLedgerSeedMigrationPostfixPrimary.
func TestPostfixDuplicateMailboxCountsOnce(t *testing.T) {
	virtual := func(i int, rcpt, orig string, st ledger.Status, reply string) ledger.Delivery {
		return ledger.Delivery{Index: i, Rcpt: rcpt, Orig: orig, Status: st, Transport: "virtual", Relay: "virtual", Reply: reply}
	}
	l := memledger.New(
		ledger.Message{Node: "pf", ID: "A", Rcpts: []string{"list@h", "u1@h"}, Arrival: t0,
			Deliveries: []ledger.Delivery{
				virtual(0, "u1@h", "list@h", ledger.Sent, "delivered to maildir"),
				virtual(1, "u2@h", "list@h", ledger.Sent, "delivered to maildir"),
				virtual(2, "u1@h", "", ledger.Sent, "delivered to maildir"),
			}},
		// The first write failed, the second put it there: delivered.
		ledger.Message{Node: "pf", ID: "B", Rcpts: []string{"list@h", "u1@h"}, Arrival: t0.Add(time.Second),
			Deliveries: []ledger.Delivery{
				virtual(0, "u1@h", "list@h", ledger.Bounced, "maildir delivery failed: quota exceeded"),
				virtual(1, "u2@h", "list@h", ledger.Sent, "delivered to maildir"),
				virtual(2, "U1@h", "", ledger.Sent, "delivered to maildir"),
			}},
		// Two deliveries to one address by smtp are two remote
		// recipients' worth: not a mailbox here, left alone.
		ledger.Message{Node: "pf", ID: "C", Rcpts: []string{"a@far", "b@far"}, Arrival: t0.Add(2 * time.Second),
			Deliveries: []ledger.Delivery{
				{Index: 0, Rcpt: "x@far", Orig: "a@far", Status: ledger.Sent, Transport: "smtp", Relay: "mx.far[192.0.2.1]:25", Reply: "250 ok"},
				{Index: 1, Rcpt: "x@far", Orig: "b@far", Status: ledger.Sent, Transport: "smtp", Relay: "mx.far[192.0.2.1]:25", Reply: "250 ok"},
			}},
	)
	r := build(t, Sources{Local: l}, ledger.Filter{})
	if rc := r.Reconciliation; rc.Required != 6 || rc.Delivered != 6 {
		t.Errorf("reconciliation %+v, want 6 of 6 (u1 and u2 of A and of B, x@far twice of C)", rc)
	}
	for _, m := range r.Messages {
		if m.State != Delivered {
			t.Errorf("message %s: %s, want delivered: %+v", m.ID, m.State, m.Required)
		}
	}
}
