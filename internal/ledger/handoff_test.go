package ledger

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/envelope"
	"github.com/mailtee/mailtee/internal/queue"
)

// A message another node handed over (mailtee drain) is recorded under
// the identity it was accepted with, so the two nodes' records make one
// message: the delivery made before the hand-off and the one after.
func TestHandedOverRecordedUnderOrigin(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ledger.db")
	ra := NewRecorder(RecorderOptions{Path: path, Node: "a.example"})
	m := msg("A1", "one@x.example", "two@y.example")
	ra.Accepted(m)
	m.Rcpts[0].Status, m.Rcpts[0].Attempt = queue.Sent, &queue.Attempt{LastErr: "250 ok", DSN: "2.0.0", Relay: "x[127.0.0.1]:25"}
	ra.Delivery(m, 0, envelope.Hop{Transport: "smtp", Nexthop: "x.example"}, queue.Outcome{Relay: "x[127.0.0.1]:25", Reply: "250 ok"}, "sent", time.Now())
	if err := ra.Close(); err != nil {
		t.Fatal(err)
	}

	rb := NewRecorder(RecorderOptions{Path: path, Node: "b.example"})
	m2 := msg("B99", "one@x.example", "two@y.example")
	m2.Env.LedgerNode, m2.Env.LedgerID = "a.example", "A1"
	m2.Rcpts[0].Status, m2.Rcpts[0].Attempt = queue.Sent, m.Rcpts[0].Attempt
	rb.Accepted(m2)
	m2.Rcpts[1].Status, m2.Rcpts[1].Attempt = queue.Sent, &queue.Attempt{LastErr: "250 queued as Q2", DSN: "2.0.0", Relay: "y[127.0.0.1]:25"}
	rb.Delivery(m2, 1, envelope.Hop{Transport: "smtp", Nexthop: "y.example"}, queue.Outcome{Relay: "y[127.0.0.1]:25", Reply: "250 queued as Q2"}, "sent", time.Now())
	finalSync(t, rb, m2, false)
	if err := rb.Close(); err != nil {
		t.Fatal(err)
	}

	st, err := OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ms, err := st.Messages(context.Background(), Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 1 || ms[0].Node != "a.example" || ms[0].ID != "A1" {
		t.Fatalf("messages %+v, want one, a.example's A1", ms)
	}
	got := ms[0]
	if got.Finished.IsZero() || len(got.Deliveries) != 2 || got.Deliveries[0].Status != Sent || got.Deliveries[1].Status != Sent || got.Deliveries[1].RemoteID != "Q2" {
		t.Fatalf("message %+v", got)
	}
}
