package report

import (
	"testing"

	"github.com/mailtee/mailtee/internal/ledger"
	"github.com/mailtee/mailtee/internal/ledger/memledger"
)

// One box (issue 18): the mailbox's copy has the very address that was
// delivered here (mailbox_bcc_maps user1 -> user1@students.iiit.ac.in,
// copy_transport to the provider). "Delivered here" and "copied there"
// are two required deliveries, each counted once, not a duplicate of
// each other: also when a list and a member name the mailbox twice.
func TestOneBoxCopyToSameAddress(t *testing.T) {
	const u1, u2, list = "user1@" + primary, "user2@" + primary, "list@" + primary
	google := "aspmx.l.google.com[127.0.0.12]:25"
	l := memledger.New(
		ledger.Message{Node: primary, ID: "A", Rcpts: []string{u1}, Arrival: t0,
			Deliveries: []ledger.Delivery{
				{Index: 0, Rcpt: u1, Status: ledger.Sent, Transport: "local", Relay: "local", Reply: "delivered to maildir"},
				{Index: 1, Rcpt: u1, Orig: u1, Copy: true, Status: ledger.Sent, Transport: "google", Relay: google,
					Reply: "250 2.0.0 OK 1700000000 a1 - gsmtp"},
			}},
		ledger.Message{Node: primary, ID: "B", Rcpts: []string{list, u1}, Arrival: t0,
			Deliveries: []ledger.Delivery{
				{Index: 0, Rcpt: list, Status: ledger.Sent, Transport: "local", Relay: "local",
					Reply: "delivered to maildir of " + u1 + "; delivered to maildir of " + u2},
				{Index: 1, Rcpt: u1, Status: ledger.Sent, Transport: "local", Relay: "local",
					Reply: "duplicate of " + u1 + ", delivered once"},
				{Index: 2, Rcpt: u1, Orig: u1, Copy: true, Status: ledger.Sent, Transport: "google", Relay: google,
					Reply: "250 2.0.0 OK 1700000001 b1 - gsmtp"},
				{Index: 3, Rcpt: u2, Orig: u2, Copy: true, Status: ledger.Pending, Transport: "google", Relay: "none",
					Reply: "connect to aspmx.l.google.com[127.0.0.12]:25: Connection refused"},
			}},
	)
	r := build(t, Sources{Local: l}, ledger.Filter{})
	// A: user1 here, user1 there. B: user1 and user2 here (the direct
	// user1 is the duplicate), user1 there, user2 there pending.
	if rc := r.Reconciliation; rc.Required != 6 || rc.Delivered != 5 {
		t.Errorf("reconciliation %+v, want 5 of 6", rc)
	}
	if s := r.Summary; s.Copies.Delivered != 2 || s.Copies.Pending != 1 || s.Messages.Delivered != 1 || s.Messages.Pending != 1 {
		t.Errorf("summary copies %+v, messages %+v; want 2 copies delivered and 1 pending, message A delivered and B pending", s.Copies, s.Messages)
	}
	for _, m := range r.Messages {
		here, there := 0, 0
		for _, q := range m.Required {
			if q.Rcpt != u1 {
				continue
			}
			if q.Copy {
				there++
			} else {
				here++
			}
		}
		if here != 1 || there != 1 {
			t.Errorf("message %s: user1 %d here, %d there; want 1 and 1: %+v", m.ID, here, there, m.Required)
		}
	}
	// A search for the user finds both messages, with both deliveries.
	u := build(t, Sources{Local: l}, ledger.Filter{User: u1})
	if len(u.Messages) != 2 {
		t.Errorf("--user %s: %d messages, want 2", u1, len(u.Messages))
	}
}
