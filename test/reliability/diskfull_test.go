package reliability

// Disk full: the queue lives on a 4 MB tmpfs that the test fills. New
// mail must be refused with a temporary error at the end of DATA, mail
// queued before must stay intact and be delivered, and once space is
// back mail is accepted again by the same process.

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailtee/mailtee/test/internal/harness"
)

// diskFullReply is smtpd's answer when the queue file cannot be written
// for lack of space (internal/smtpd/session.go), as Postfix's
// "452 4.3.1 Insufficient system storage".
const diskFullReply = "452 4.3.1 Insufficient system storage"

// expectDiskFull runs one SMTP transaction by hand and checks that the
// end of DATA gets exactly diskFullReply, and that the session goes on.
func expectDiskFull(t *testing.T, in *instance, body string) {
	t.Helper()
	t0 := time.Now()
	if r := dataReply(t, in, "rcpt@far.example", body); r != diskFullReply {
		t.Fatalf("end of DATA with the disk full: got %q, want %q", r, diskFullReply)
	}
	t.Logf("end of DATA refused with %q in %v", diskFullReply, time.Since(t0).Round(time.Millisecond))
}

// dataReply runs one SMTP transaction by hand to rcpt and returns the
// reply to the end of DATA; a refused message is followed by RSET.
func dataReply(t *testing.T, in *instance, rcpt, body string) string {
	t.Helper()
	c := dialRaw(t, in.Addr(), "")
	if r := c.Cmd("EHLO client.test.example"); !strings.HasPrefix(r, "250") {
		t.Fatalf("EHLO: %q", r)
	}
	if r := c.Cmd("MAIL FROM:<sender@test.example>"); !strings.HasPrefix(r, "250") {
		t.Fatalf("MAIL FROM with the disk full: %q", r)
	}
	if r := c.Cmd("RCPT TO:<" + rcpt + ">"); !strings.HasPrefix(r, "250") {
		t.Fatalf("RCPT TO with the disk full: %q", r)
	}
	if r := c.Cmd("DATA"); !strings.HasPrefix(r, "354") {
		t.Fatalf("DATA with the disk full: %q", r)
	}
	reply := c.Cmd(body + ".") // Cmd adds the CRLF
	if !strings.HasPrefix(reply, "250") {
		if r := c.Cmd("RSET"); !strings.HasPrefix(r, "250") {
			t.Errorf("RSET after the refusal: %q", r)
		}
	}
	if r := c.Cmd("QUIT"); !strings.HasPrefix(r, "221") {
		t.Errorf("QUIT after the refusal: %q", r)
	}
	return reply
}

// bigMessage is a message of about size bytes whose body is unique to tag.
func bigMessage(tag string, size int) (msg, body string) {
	var b strings.Builder
	for i := 0; b.Len() < size; i++ {
		fmt.Fprintf(&b, "%s line %06d: the queue must keep this text intact.\r\n", tag, i)
	}
	body = b.String()
	return "From: sender@test.example\r\nTo: rcpt@far.example\r\nSubject: " + tag + "\r\n\r\n" + body, body
}

// spoolMessages lists the message files (not state files, not hidden
// submissions) in a spool.
func spoolMessages(t *testing.T, qdir string) (msgs, other []string) {
	t.Helper()
	entries, err := os.ReadDir(qdir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if n := e.Name(); strings.HasSuffix(n, ".st") || strings.HasPrefix(n, ".") {
			other = append(other, n)
		} else {
			msgs = append(msgs, n)
		}
	}
	return msgs, other
}

func TestDiskFull(t *testing.T) {
	mnt := harness.MountTmpfs(t, "4m", 0o700, "the queue's file system")
	spool := filepath.Join(mnt, "spool")
	port := freePort(t) // the next hop is down at first
	in := newInstance(t, fltFarHop(port)+"queue_directory = "+spool+"\n", nil)
	in.Start()
	pid := in.Pid()

	// 1. Three messages are queued while the next hop is down.
	const n = 3
	bodies := map[string]string{}
	for i := 0; i < n; i++ {
		rcpt := fmt.Sprintf("before%d@far.example", i)
		msg, body := bigMessage(fmt.Sprintf("before-%d", i), 200<<10)
		if err := send(in.Addr(), "sender@test.example", []string{rcpt}, msg); err != nil {
			t.Fatalf("queueing %s before the disk fills: %v", rcpt, err)
		}
		bodies[rcpt] = body
	}
	ids := map[string]string{}
	for rcpt := range bodies {
		line := fltWaitLine(t, in, fltWait, "to=<"+rcpt+">", "status=deferred")
		ids[rcpt] = fltQueueID(t, line)
	}

	// 2. The disk fills up: new mail is refused at the end of DATA,
	// with nothing left behind in the spool.
	filler := filepath.Join(mnt, "filler")
	written, free := harness.FillDisk(t, filler)
	t.Logf("filler: %d bytes written, %d bytes free on the tmpfs", written, free)
	refused, _ := bigMessage("refused", 20<<10)
	expectDiskFull(t, in, refused)
	fltWaitLine(t, in, fltWait, "queue file write error", "no space left on device")
	msgs, other := spoolMessages(t, filepath.Join(spool, "queue"))
	if len(msgs) != n {
		t.Errorf("spool holds %d message files with the disk full, want the %d queued before: %v", len(msgs), n, msgs)
	}
	for _, o := range other {
		if strings.HasPrefix(o, ".") {
			t.Errorf("the refused message left %s in the spool", o)
		}
	}
	if !in.Running() {
		t.Fatalf("mailtee died with the disk full:\n%s", in.Log.String())
	}

	// 3. Mail queued before is intact and delivered, once, while the
	// disk is still full.
	out, err := in.Run("", "queue", "list")
	for rcpt, id := range ids {
		if err != nil || !strings.Contains(out, id) || !strings.Contains(out, rcpt) {
			t.Errorf("queue list with the disk full lacks %s (%s): %v\n%s", id, rcpt, err, out)
		}
	}
	t1 := time.Now()
	sk := newSink(t, fmt.Sprintf("127.0.0.1:%d", port), nil)
	for rcpt, id := range ids {
		waitUntil(t, "delivery of "+rcpt, fltWait, func() bool { return sk.Count(rcpt) >= 1 })
		fltWaitLine(t, in, fltWait, id+": to=<"+rcpt+">", "status=sent")
		in.WaitLogFor(id+": removed", fltWait)
	}
	t.Logf("next hop up -> %d queued messages delivered in %v with the disk full", n, time.Since(t1).Round(time.Millisecond))
	time.Sleep(4 * time.Second) // a repeated delivery would come within the backoff
	for _, m := range sk.Messages() {
		if len(m.To) != 1 {
			t.Errorf("unexpected transaction %+v", m.To)
			continue
		}
		want, ok := bodies[strings.ToLower(m.To[0])]
		if !ok {
			t.Errorf("unexpected delivery to %s", m.To[0])
			continue
		}
		_, got, _ := strings.Cut(fltLF(m.Data), "\n\n")
		if got != fltLF(want) {
			t.Errorf("%s: body not intact: got %d bytes, want %d", m.To[0], len(got), len(fltLF(want)))
		}
	}
	for rcpt := range bodies {
		if c := sk.Count(rcpt); c != 1 {
			t.Errorf("%s delivered %d times, want once", rcpt, c)
		}
	}
	if l := fltLines(in, "cannot record delivery state"); l != nil {
		t.Logf("with the disk full mailtee could not record some deliveries (a restart now would repeat them):\n%s", strings.Join(l, "\n"))
	}

	// 4. The delivered messages' files are kept for new ones to be
	// written over (their space is not freed): with the disk full again,
	// new mail may still be stored in them, whole, as long as that space
	// lasts (the next hop is down again, so that none is delivered and
	// its file reused meanwhile; a shorter message gives some back);
	// then it is refused.
	sk.Close()
	written, free = harness.FillDisk(t, filler)
	t.Logf("filler topped up by %d bytes, %d bytes free", written, free)
	var reused []string
	for i := 0; ; i++ {
		rcpt := fmt.Sprintf("reuse%d@far.example", i)
		r := dataReply(t, in, rcpt, refused)
		if r == diskFullReply {
			break
		}
		if !strings.HasPrefix(r, "250") || i == 10*n {
			t.Fatalf("end of DATA with the disk full, %d messages after %d were delivered: got %q, want %q", i+1, n, r, diskFullReply)
		}
		reused = append(reused, rcpt)
	}
	t.Logf("with the disk full, %d messages were stored in files of delivered ones, the next refused", len(reused))

	// 5. Space is back: the same process accepts and delivers new mail,
	// and what it stored in reused files.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	sk = newSink(t, fmt.Sprintf("127.0.0.1:%d", port), nil)
	if out, err := in.Run("", "queue", "flush"); err != nil {
		t.Fatalf("queue flush: %v\n%s", err, out)
	}
	for _, rcpt := range reused {
		waitUntil(t, "delivery of "+rcpt, fltWait, func() bool { return sk.Count(rcpt) == 1 })
	}
	t2 := time.Now()
	if err := send(in.Addr(), "sender@test.example", []string{"after@far.example"}, testMessage("after")); err != nil {
		t.Fatalf("new mail after space came back: %v", err)
	}
	t.Logf("accepted %v after the filler was removed", time.Since(t2).Round(time.Millisecond))
	waitUntil(t, "delivery of the new message", fltWait, func() bool { return sk.Count("after@far.example") == 1 })
	fltWaitLine(t, in, fltWait, "to=<after@far.example>", "status=sent")
	if in.Pid() != pid || !in.Running() || strings.Count(in.Log.String(), "daemon started") != 1 {
		t.Errorf("mailtee was restarted (pid %d, was %d):\n%s", in.Pid(), pid, in.Log.String())
	}
	if l := fltLines(in, "status=bounced"); l != nil {
		t.Errorf("nothing may bounce: %q", l)
	}
	in.Stop()
}
