package report

import (
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/ledger"
)

// Any server the primary delivers to writes its own reply: one that
// says "queued as R1", R1 being a relay's queue ID (Received headers
// show them), must not graft the relay's message, with its outcome,
// onto a delivery the relay never received.
func TestForeignQueueIDNotFollowed(t *testing.T) {
	prim, rel := seed()
	prim.Add(ledger.Message{Node: primary, ID: "P9", From: "u@" + primary, Rcpts: []string{"x@evil.example"}, Arrival: t0,
		Deliveries: []ledger.Delivery{{Index: 0, Rcpt: "x@evil.example", Status: ledger.Sent, Transport: "smtp",
			Relay: "mx.evil.example[192.0.2.66]:25", Reply: "250 2.0.0 Ok: queued as R1", Attempts: 1, At: t0.Add(5 * time.Second)}}})
	r := build(t, Sources{Local: prim, Peers: []Peer{{URL: "http://127.0.0.2:9100", Reader: rel}}}, ledger.Filter{})
	var p9 *Message
	for i := range r.Messages {
		if r.Messages[i].ID == "P9" {
			p9 = &r.Messages[i]
		}
	}
	if p9 == nil {
		t.Fatal("no P9 in the report")
	}
	if len(p9.Required) != 1 {
		t.Fatalf("P9 has %d required deliveries, want 1: %+v", len(p9.Required), p9.Required)
	}
	q := p9.Required[0]
	if q.State != Delivered || len(q.Chain) != 1 || q.Rcpt != "x@evil.example" {
		t.Errorf("P9's delivery: state %s, rcpt %s, chain %+v; want delivered, x@evil.example, its own hop only", q.State, q.Rcpt, q.Chain)
	}
	// The seed's own chain is still followed.
	if rc := r.Reconciliation; rc.Required != 5 || rc.Delivered != 4 {
		t.Errorf("reconciliation %+v, want 4 of 5", rc)
	}
}
