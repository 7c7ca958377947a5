package master

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/envelope"
	"github.com/mailtee/mailtee/internal/queue"
)

// With no server, EditQueue edits the spool itself, only the messages
// asked for in the queues asked for, and skips what the op would not
// change; a spool that was never made is an empty queue and stays
// unmade.
func TestEditQueueOffline(t *testing.T) {
	qdir := filepath.Join(t.TempDir(), "queue")
	if changed, found, err := EditQueue(qdir, "hold", nil, nil, func(string, bool) {}, io.Discard); err != nil || changed+found != 0 {
		t.Fatalf("no spool: %d %d %v", changed, found, err)
	}
	if _, err := os.Stat(qdir); !os.IsNotExist(err) {
		t.Fatalf("EditQueue made the spool: %v", err)
	}
	var ids []string
	for _, r := range []string{"a@example.org", "b@example.org"} {
		id, err := queue.Put(qdir, &envelope.Envelope{From: "s@example.org", Rcpts: []envelope.Rcpt{{Addr: r}}, Arrival: time.Now()}, strings.NewReader("x\r\n"))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	var offline []string
	done := func(id string, off bool) {
		if off {
			offline = append(offline, id)
		}
	}
	if changed, found, err := EditQueue(qdir, "hold", ids[:1], nil, done, io.Discard); err != nil || changed != 1 || found != 1 {
		t.Fatalf("hold %s: %d %d %v", ids[0], changed, found, err)
	}
	// Held already: found, not changed; the other is in no "hold" queue.
	if changed, found, err := EditQueue(qdir, "hold", nil, []string{"hold"}, done, io.Discard); err != nil || changed != 0 || found != 1 {
		t.Fatalf("hold ALL hold: %d %d %v", changed, found, err)
	}
	list, err := queue.ListDir(qdir)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range list {
		if m.Hold != (m.ID == ids[0]) {
			t.Errorf("%s: hold %v", m.ID, m.Hold)
		}
	}
	if len(offline) != 1 || offline[0] != ids[0] {
		t.Errorf("done called offline for %v", offline)
	}
}
