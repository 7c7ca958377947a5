package report

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/ledger"
	"github.com/mailtee/mailtee/internal/ledger/memledger"
)

var t0 = time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)

const (
	primary = "students.iiit.ac.in"
	relay   = "relay.students.iiit.ac.in"
)

// seed builds the seed's layout: the primary delivers user1 and user2
// locally and copies both to the relay in one transaction (queued there
// as R1); on the relay both copy addresses are aliases forwarded to the
// provider, which takes user1's and refuses user2's with 550.
func seed() (prim, rel *memledger.Ledger) {
	prim = memledger.New(ledger.Message{
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
	rel = memledger.New(
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

func build(t *testing.T, src Sources, f ledger.Filter) *Report {
	t.Helper()
	r, err := Build(context.Background(), src, f, t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestChainAcrossHosts(t *testing.T) {
	prim, rel := seed()
	r := build(t, Sources{Local: prim, Peers: []Peer{{URL: "http://127.0.0.2:9100", Reader: rel}}}, ledger.Filter{})
	rc := r.Reconciliation
	if rc.Required != 4 || rc.Delivered != 3 || !rc.Complete {
		t.Fatalf("reconciliation %+v, want 3 of 4, complete", rc)
	}
	if len(r.Misses) != 1 {
		t.Fatalf("misses %+v, want one", r.Misses)
	}
	m := r.Misses[0]
	if m.Rcpt != "user2@"+relay || m.State != Failed || !strings.HasPrefix(m.Reply, "550 5.1.1") || !m.Copy {
		t.Errorf("miss %+v, want user2's copy failed with the provider's 550", m)
	}
	// accepted → relay → alias on the relay → the provider's reply
	var nodes []string
	for _, h := range m.Chain {
		nodes = append(nodes, h.Node+":"+h.QueueID+":"+h.Rcpt)
	}
	want := "students.iiit.ac.in:P1:user2@relay.students.iiit.ac.in relay.students.iiit.ac.in:R1:user2@relay.students.iiit.ac.in relay.students.iiit.ac.in:F1:user2@students.iiit.ac.in"
	if got := strings.Join(nodes, " "); got != want {
		t.Errorf("chain\n got %s\nwant %s", got, want)
	}
	if r.Summary.Accepted != 1 || r.Summary.Messages.Failed != 1 || r.Summary.Copies.Failed != 1 || r.Summary.Copies.Delivered != 1 {
		t.Errorf("summary %+v", r.Summary)
	}
	if r.Peers[0].Followed != 2 {
		t.Errorf("peer %+v, want 2 followed", r.Peers[0])
	}
}
