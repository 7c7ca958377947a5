package reliability

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
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
	mnt := mountTmpfs(t, "4m")
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

	written, free := fillDisk(t, filepath.Join(mnt, "filler"))
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
