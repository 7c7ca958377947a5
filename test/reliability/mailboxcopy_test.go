package reliability

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/queue"

	"github.com/mailtee/mailtee/test/internal/harness"
)

// Issue 13, defect 4: a mailbox_bcc_maps copy used to be queued as a new
// message after the Maildir was written; with the queue's disk full that
// failed, and every retry wrote the mailbox again. Now the copy is a
// recipient of the same message, recorded with the delivery.
//
// alice's Maildir is blocked at first (a file where it goes), so her
// message waits; then the queue's disk fills and the Maildir is
// unblocked. alice gets the message once; her copy, a recipient of the
// same queued message, is deferred while its next hop is down and
// arrives once when it is back.
func TestMailboxCopyDiskFull(t *testing.T) {
	mnt := harness.MountTmpfs(t, "4m", 0o700, "the queue's file system")
	spool := filepath.Join(mnt, "spool")
	port := freePort(t) // the copy's next hop is down at first
	in := newInstance(t, fltFarHop(port)+"queue_directory = "+spool+"\nmailbox_bcc_maps = inline:{ alice=alice@far.example }\n", nil)
	blocker := filepath.Join(in.Dir, "mail", "alice")
	if err := os.MkdirAll(filepath.Dir(blocker), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(blocker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	in.Start()
	if err := send(in.Addr(), "sender@outside.example", []string{"alice@test.example"}, testMessage("mailbox copy")); err != nil {
		t.Fatal(err)
	}
	id := fltQueueID(t, fltWaitLine(t, in, fltWait, "to=<alice@test.example>", "status=deferred", "not a directory"))

	written, free := harness.FillDisk(t, filepath.Join(mnt, "filler"))
	t.Logf("filler: %d bytes written, %d bytes free on the tmpfs", written, free)
	if err := os.Remove(blocker); err != nil {
		t.Fatal(err)
	}

	// The copy, deferred as a recipient of the same message. (Before,
	// it never got that far: each retry wrote the Maildir and failed to
	// queue the copy.)
	deadline := time.Now().Add(20 * time.Second)
	for len(fltLines(in, id+": to=<alice@far.example>", "status=deferred")) == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if len(fltLines(in, id+": to=<alice@far.example>", "status=deferred")) == 0 {
		t.Fatalf("no deferral of alice's copy as a recipient of %s; %d messages in alice's Maildir (want 1); log:\n%s",
			id, len(in.MaildirMessages("alice")), in.Log.String())
	}
	sk := newSink(t, fmt.Sprintf("127.0.0.1:%d", port), nil)
	waitUntil(t, "alice's copy", fltWait, func() bool { return sk.Count("alice@far.example") >= 1 })
	in.WaitLogFor(id+": removed", fltWait)
	time.Sleep(4 * time.Second) // a second delivery would come within the backoff
	if n := len(in.MaildirMessages("alice")); n != 1 {
		t.Errorf("%d messages in alice's Maildir, want 1", n)
	}
	if n := sk.Count("alice@far.example"); n != 1 {
		t.Errorf("alice's copy delivered %d times, want once", n)
	}
	if n := len(fltLines(in, "forwarded as")); n != 0 {
		t.Errorf("the copy was re-injected as a message of its own: %d lines", n)
	}
}

// A message mailtee makes from another (an alias's forward, a bounce
// notice) carries the original's queue ID in its envelope (Parent), kept
// in the queue file: the delivery ledger will need it.
func TestParentQueueID(t *testing.T) {
	port := freePort(t) // far.example is down: what goes there stays queued
	in := newInstance(t, "transport_maps = inline:{ far.example=smtp:[127.0.0.1]:"+fmt.Sprint(port)+", refused.example=error:refused }\n",
		map[string]string{"aliases": "postmaster: admin\nfwd: someone@far.example\n"})
	in.Start()
	if err := send(in.Addr(), "sender@test.example", []string{"fwd@test.example"}, testMessage("forward")); err != nil {
		t.Fatal(err)
	}
	line := fltWaitLine(t, in, fltWait, "forwarded as")
	f := strings.Fields(line)
	orig, fwd := strings.TrimSuffix(f[len(f)-4], ":"), f[len(f)-1]
	if err := send(in.Addr(), "sender@far.example", []string{"x@refused.example"}, testMessage("bounce")); err != nil {
		t.Fatal(err)
	}
	line = fltWaitLine(t, in, fltWait, "sender non-delivery notification:")
	f = strings.Fields(line)
	bounced, notice := strings.TrimSuffix(f[len(f)-5], ":"), f[len(f)-1]
	parents := map[string]string{}
	waitUntil(t, "the forward and the notice in the queue", fltWait, func() bool {
		list, err := queue.ListDir(filepath.Join(in.Dir, "queue"))
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range list {
			parents[m.ID] = m.Parent
		}
		_, a := parents[fwd]
		_, b := parents[notice]
		return a && b
	})
	if parents[fwd] != orig || parents[notice] != bounced {
		t.Errorf("forward %s has parent %q, want %s; notice %s has parent %q, want %s", fwd, parents[fwd], orig, notice, parents[notice], bounced)
	}
}
