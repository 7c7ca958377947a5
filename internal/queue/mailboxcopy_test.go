package queue_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/deliver"
	"github.com/mailtee/mailtee/internal/envelope"
	"github.com/mailtee/mailtee/internal/local"
	"github.com/mailtee/mailtee/internal/maps"
	"github.com/mailtee/mailtee/internal/queue"
)

// Issue 13, defect 4: a mailbox_bcc_maps copy was re-injected as a new
// message after the Maildir was written, and when that failed (a full
// disk) the retry wrote the mailbox again, and again. The copy is now a
// recipient of the same message, recorded with the delivery: with
// re-injection failing throughout, alice's Maildir gets the message
// once and her copy, deferred once by its next hop, arrives once.
func TestMailboxCopyWithDelivery(t *testing.T) {
	dir := t.TempDir()
	spool := filepath.Join(dir, "mail")
	bcc, _, err := maps.Open("inline:{ alice=alice@far.example }")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	reinjected, far, farTries := 0, 0, 0
	l := local.New(local.Options{
		Myorigin:   "example.org",
		IsLocal:    func(d string) bool { return d == "example.org" },
		SpoolDir:   spool + "/",
		MailboxBCC: bcc,
		Forward: func(context.Context, string, []envelope.Rcpt, *deliver.Message, string) error {
			mu.Lock()
			reinjected++
			mu.Unlock()
			return errors.New("write queue file: no space left on device")
		},
	})
	o := queue.Options{
		Dir:        filepath.Join(dir, "spool"),
		MinBackoff: 20 * time.Millisecond,
		MaxBackoff: 20 * time.Millisecond,
		Route: func(_ context.Context, rcpt string) (envelope.Hop, error) {
			if strings.HasSuffix(rcpt, "@example.org") {
				return envelope.Hop{Transport: "local", Nexthop: "example.org"}, nil
			}
			return envelope.Hop{Transport: "smtp", Nexthop: "far.example"}, nil
		},
		Deliver: func(ctx context.Context, m *queue.Message, hop envelope.Hop, idx []int) []queue.Outcome {
			out := make([]queue.Outcome, len(idx))
			msg := &deliver.Message{ID: m.ID, From: m.Env.From, Size: m.Size, Open: m.Open}
			if hop.Transport == "local" {
				lr := make([]local.Rcpt, len(idx))
				for k, i := range idx {
					lr[k] = local.Rcpt{Addr: m.Rcpts[i].Addr, Copy: m.Rcpts[i].Copy}
				}
				for k, r := range l.Deliver(ctx, msg, lr) {
					out[k] = localOutcome(r)
				}
				return out
			}
			mu.Lock()
			defer mu.Unlock()
			for k, i := range idx {
				if m.Rcpts[i].Addr != "alice@far.example" || !m.Rcpts[i].Copy || m.Rcpts[i].Orig != "alice@example.org" {
					out[k] = queue.Outcome{Err: &deliver.Error{Permanent: true, Text: "unexpected " + m.Rcpts[i].Addr}}
					continue
				}
				if farTries++; farTries == 1 {
					out[k] = queue.Outcome{Err: &deliver.Error{Enhanced: "4.4.1", Text: "connection refused"}, Relay: "far.example"}
					continue
				}
				far++
				out[k] = queue.Outcome{Relay: "far.example", Reply: "250 ok"}
			}
			return out
		},
	}
	q, err := queue.Open(o)
	if err != nil {
		t.Fatal(err)
	}
	go q.Run()
	defer q.Close(context.Background())
	e := &envelope.Envelope{From: "bob@outside.example", Rcpts: []envelope.Rcpt{{Addr: "alice@example.org"}}}
	if err := q.Enqueue(context.Background(), q.NewID(), e, strings.NewReader("Subject: x\r\n\r\nhi\r\n")); err != nil {
		t.Fatal(err)
	}
	// Before the fix the message never leaves the queue: bounded wait,
	// then the counts say what went wrong.
	for end := time.Now().Add(3 * time.Second); len(q.List()) > 0 && time.Now().Before(end); {
		time.Sleep(10 * time.Millisecond)
	}
	files, _ := os.ReadDir(filepath.Join(spool, "alice", "new"))
	mu.Lock()
	defer mu.Unlock()
	if len(files) != 1 || far != 1 || farTries != 2 || reinjected != 0 || len(q.List()) != 0 {
		t.Errorf("alice's Maildir has %d files (want 1); her copy arrived %d times in %d tries (want 1 in 2); %d re-injections (want 0); %d messages left in the queue",
			len(files), far, farTries, reinjected, len(q.List()))
	}
}

// localOutcome is qmgr.LocalAgent's mapping of a local delivery's result.
func localOutcome(r local.Result) queue.Outcome {
	return queue.Outcome{Err: r.Err, Relay: "local", Reply: r.Done, Add: r.Add}
}
