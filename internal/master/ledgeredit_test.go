package master

import (
	"context"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/envelope"
	"github.com/mailtee/mailtee/internal/ledger"
	"github.com/mailtee/mailtee/internal/queue"
)

// postsuper -d with no server running records the deletion in the
// ledger the queue last wrote to, as a running server would: the
// report then says "deleted", not "pending" for ever.
func TestEditOfflineRecordsDeletion(t *testing.T) {
	dir := t.TempDir()
	qdir := filepath.Join(dir, "queue")
	id, err := queue.Put(qdir, &envelope.Envelope{From: "s@example.org", Rcpts: []envelope.Rcpt{{Addr: "a@example.org"}}, Arrival: time.Now()}, strings.NewReader("x\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(dir, "data", "ledger.db")
	// What a server that ran on this queue left: its ledger and the marker.
	ledger.NewRecorder(ledger.RecorderOptions{Path: db, Node: "mx.example.org", Marker: ledger.DefaultMarker(qdir)}).Close()
	if changed, _, err := EditQueue(qdir, "delete", []string{id}, nil, func(string, bool) {}, io.Discard); err != nil || changed != 1 {
		t.Fatalf("delete: %d %v", changed, err)
	}
	st, err := ledger.OpenReader(db)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	m, ok, err := st.Message(context.Background(), "mx.example.org", id)
	if err != nil || !ok {
		t.Fatalf("message not in the ledger: %v %v", ok, err)
	}
	if len(m.Deliveries) != 1 || m.Deliveries[0].Status != ledger.Deleted || m.Finished.IsZero() {
		t.Errorf("recorded %+v, want its recipient deleted and the message finished", m)
	}
}
