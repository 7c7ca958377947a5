package ledgerhttp

import (
	"context"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/envelope"
	"github.com/mailtee/mailtee/internal/ledger"
	"github.com/mailtee/mailtee/internal/queue"
	"github.com/mailtee/mailtee/internal/testdb"
)

// A peer's ledger served from PostgreSQL, as serve's observer serves it
// (a ledger.Lazy on ledger_database): a question by queue ID alone finds
// the message whichever node of the fleet recorded it.
func TestServedFromPostgres(t *testing.T) {
	pg := testdb.Postgres(t)
	pg.CreateDB("ledger")
	_, url := pg.PassFile(t.TempDir(), "ledger")
	for _, node := range []string{"relay1.example", "relay2.example"} {
		r := ledger.NewRecorder(ledger.RecorderOptions{Path: url, Node: node})
		env := &envelope.Envelope{From: "a@example.org", Arrival: time.Now(), Rcpts: []envelope.Rcpt{{Addr: "user1@example.com"}}}
		m := queue.NewMemMessage("Q-"+node, env, []byte("x\r\n"))
		m.Rcpts[0].Status, m.Rcpts[0].Attempt = queue.Sent, &queue.Attempt{LastErr: "250 2.0.0 Ok: queued as G-" + node, Relay: "x[127.0.0.1]:25"}
		done := make(chan struct{})
		r.Final(m, false, func() { close(done) })
		select {
		case <-done:
		case <-time.After(60 * time.Second):
			t.Fatal("the ledger never committed")
		}
		r.Close()
	}
	lazy := &ledger.Lazy{Path: url}
	defer lazy.Close()
	const token = "0123456789abcdef-peer-token"
	c, err := NewClient(serve(t, lazy, token), token)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	m, ok, err := c.Message(ctx, "", "Q-relay2.example")
	if err != nil || !ok || m.Node != "relay2.example" || len(m.Deliveries) != 1 || m.Deliveries[0].RemoteID != "G-relay2.example" {
		t.Fatalf("Message: %v %v %+v", ok, err, m)
	}
	all, err := c.Messages(ctx, ledger.Filter{})
	if err != nil || len(all) != 2 {
		t.Fatalf("Messages: %d (%v), want both nodes'", len(all), err)
	}
}
