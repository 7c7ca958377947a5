package memledger

import (
	"time"

	"github.com/mailtee/mailtee/internal/ledger"
)

// The seed's hosts.
const (
	Primary = "students.iiit.ac.in"
	Relay   = "relay.students.iiit.ac.in"
)

const (
	primary = Primary
	relay   = Relay
)

// Seed builds the seed's layout: the primary delivers user1 and user2
// locally and copies both to the relay in one transaction (queued there
// as R1) at t0; on the relay both copy addresses are aliases forwarded to the
// provider, which takes user1's and refuses user2's with 550.
func Seed(t0 time.Time) (prim, rel *Ledger) {
	prim = New(ledger.Message{
		Node: primary, ID: "P1", MessageID: "<m1@example.org>", From: "alice@example.org",
		Rcpts: []string{"user1@" + primary, "user2@" + primary}, Arrival: t0, Client: "mx.example.org[192.0.2.1]",
		Deliveries: []ledger.Delivery{
			{Index: 0, Rcpt: "user1@" + primary, Status: ledger.Sent, Transport: "local", Relay: "local", Reply: "delivered to maildir", Attempts: 1, At: t0.Add(time.Second)},
			{Index: 1, Rcpt: "user1@" + relay, Orig: "user1@" + primary, Copy: true, Status: ledger.Sent, Transport: "smtp",
				Relay: relay + "[127.0.0.2]:2525", Reply: "250 2.0.0 Ok: queued as R1", Attempts: 1, At: t0.Add(2 * time.Second)},
			{Index: 2, Rcpt: "user2@" + primary, Status: ledger.Sent, Transport: "local", Relay: "local", Attempts: 1},
			{Index: 3, Rcpt: "user2@" + relay, Orig: "user2@" + primary, Copy: true, Status: ledger.Sent, Transport: "smtp",
				Relay: relay + "[127.0.0.2]:2525", Reply: "250 2.0.0 Ok: queued as R1", Attempts: 1},
		},
	})
	rel = New(
		ledger.Message{Node: relay, ID: "R1", From: "alice@example.org", Rcpts: []string{"user1@" + relay, "user2@" + relay},
			Arrival: t0.Add(2 * time.Second), Client: primary + "[127.0.0.1]",
			Deliveries: []ledger.Delivery{
				{Rcpt: "user1@" + relay, Copy: true, Status: ledger.Sent, Transport: "local", Relay: "local", Reply: "forwarded as F1"},
				{Rcpt: "user2@" + relay, Copy: true, Status: ledger.Sent, Transport: "local", Relay: "local", Reply: "forwarded as F1"},
			}},
		ledger.Message{Node: relay, ID: "F1", Parent: "R1", From: "alice@example.org", Rcpts: []string{"user1@" + primary, "user2@" + primary},
			Arrival: t0.Add(3 * time.Second), Client: "local",
			Deliveries: []ledger.Delivery{
				{Rcpt: "user1@" + primary, Orig: "user1@" + relay, Copy: true, Status: ledger.Sent, Transport: "smtp",
					Relay: "aspmx.l.google.com[142.250.1.1]:25", Reply: "250 2.0.0 OK 1700000000 abc123 - gsmtp"},
				{Rcpt: "user2@" + primary, Orig: "user2@" + relay, Copy: true, Status: ledger.Bounced, Transport: "smtp",
					Relay: "aspmx.l.google.com[142.250.1.1]:25", DSN: "5.1.1", Reply: "550 5.1.1 The email account that you tried to reach does not exist"},
			}},
		ledger.Message{Node: relay, ID: "N1", Parent: "F1", Notice: true, Rcpts: []string{"postmaster@" + relay},
			Arrival: t0.Add(4 * time.Second), Client: "local",
			Deliveries: []ledger.Delivery{{Rcpt: "postmaster@" + relay, Status: ledger.Sent, Transport: "local"}}},
	)
	return prim, rel
}
