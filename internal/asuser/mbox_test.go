package asuser

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/deliver"
	"github.com/mailtee/mailtee/internal/mailcopy"
	"github.com/mailtee/mailtee/internal/mbox"
)

// testUser adds a user with its own group for one test.
func testUser(t *testing.T) (name string, c Cred) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: adds a user")
	}
	name = fmt.Sprintf("mbh%d%d", os.Getpid()%100000, time.Now().UnixNano()%1000)
	if out, err := exec.Command("useradd", "-M", "-U", "-d", "/nonexistent", "-s", "/usr/sbin/nologin", name).CombinedOutput(); err != nil {
		t.Skipf("useradd: %v: %s", err, out)
	}
	t.Cleanup(func() {
		// After the pools' cleanup, but their helpers exit on their own
		// time, and userdel refuses a user with a process.
		for i := 0; exec.Command("userdel", name).Run() != nil && i < 100; i++ {
			time.Sleep(50 * time.Millisecond)
		}
		if _, err := user.Lookup(name); err == nil {
			t.Errorf("user %s not removed", name)
		}
	})
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return name, Cred{UID: uint32(uid), GID: uint32(gid)}
}

// mailSpool makes a spool as Debian's /var/mail: root:mail 2775, below
// directories anyone may pass through.
func mailSpool(t *testing.T) (spool string, mailGID uint32) {
	t.Helper()
	g, err := user.LookupGroup("mail")
	if err != nil {
		t.Skip("no group mail")
	}
	gid, _ := strconv.Atoi(g.Gid)
	base := t.TempDir()
	os.Chmod(filepath.Dir(base), 0o755)
	os.Chmod(base, 0o755)
	spool = filepath.Join(base, "mail")
	os.Mkdir(spool, 0o755)
	os.Chown(spool, 0, gid)
	os.Chmod(spool, 0o2775)
	return spool, uint32(gid)
}

func mboxOptions(name string) mbox.Options {
	return mbox.Options{
		Envelope: mailcopy.Envelope{Sender: "sender@example.com", DeliveredTo: name + "@example.com",
			Time: time.Date(2026, 3, 3, 4, 5, 6, 0, time.UTC)},
		User: name, StrictOwnership: true,
		LockAttempts: 5, LockDelay: 10 * time.Millisecond,
	}
}

// In a spool like Debian's /var/mail (root:mail 2775) the helper runs as
// the user with the group mail (mbox.SpoolCred): the mailbox it creates
// is the user's, group mail, mode 0600, and it can make the dotlock.
// With the user's own group it cannot.
func TestMboxInMailSpool(t *testing.T) {
	name, c := testUser(t)
	spool, mailGID := mailSpool(t)
	uid, gid, chown := mbox.SpoolCred(spool, c.UID, c.GID)
	if uid != c.UID || gid != mailGID || chown != nil {
		t.Fatalf("SpoolCred = %d %d %v, want %d %d nil", uid, gid, chown, c.UID, mailGID)
	}
	p := testPool(t, Options{})
	path := filepath.Join(spool, name)
	o := mboxOptions(name)
	o.RecipientUID = c.UID

	// With the user's own group: no dotlock in the spool.
	err := p.Mbox(context.Background(), c, path, message("Q0", "Subject: x\r\n\r\nhi\r\n"), o)
	var de *deliver.Error
	if !errors.As(err, &de) || de.Enhanced != "4.2.0" ||
		de.Text != "cannot update mailbox "+path+" for user "+name+". unable to create lock file "+path+".lock: Permission denied" {
		t.Fatalf("delivery without the spool's group: %v", err)
	}

	body := "Subject: x\r\n\r\n" + strings.Repeat("From the body, a line of it\r\n", 5000) // through a pipe
	for i := range 2 {
		if err := p.Mbox(context.Background(), Cred{uid, gid}, path, message("Q"+strconv.Itoa(i), body), o); err != nil {
			t.Fatalf("delivery %d: %v", i, err)
		}
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	sys := st.Sys().(*syscall.Stat_t)
	if sys.Uid != c.UID || sys.Gid != mailGID || st.Mode() != 0o600 {
		t.Errorf("mailbox is %d:%d %v, want %d:%d -rw-------", sys.Uid, sys.Gid, st.Mode(), c.UID, mailGID)
	}
	one := "From sender@example.com  Tue Mar  3 04:05:06 2026\nReturn-Path: <sender@example.com>\nDelivered-To: " + name + "@example.com\n" +
		strings.ReplaceAll(strings.ReplaceAll(body, "\r\n", "\n"), "\nFrom the", "\n>From the") + "\n"
	if got, _ := os.ReadFile(path); string(got) != one+one {
		t.Errorf("mailbox differs: %d bytes, want %d", len(got), 2*len(one))
	}
	if _, err := os.Lstat(path + ".lock"); !os.IsNotExist(err) {
		t.Errorf("dotlock left: %v", err)
	}
}

// A link planted by the user at her mailbox's path, to a file only root
// may read, gets nothing: the helper has only her rights. The target is
// untouched.
func TestMboxSymlinkToRootFile(t *testing.T) {
	name, c := testUser(t)
	spool, mailGID := mailSpool(t)
	secret := filepath.Join(filepath.Dir(spool), "secret")
	os.WriteFile(secret, []byte("root only\n"), 0o600)
	path := filepath.Join(spool, name)
	os.Symlink(secret, path)
	os.Lchown(path, int(c.UID), int(mailGID))
	p := testPool(t, Options{})
	err := p.Mbox(context.Background(), Cred{c.UID, mailGID}, path, message("Q1", "Subject: x\r\n\r\nhi\r\n"), mboxOptions(name))
	var de *deliver.Error
	if !errors.As(err, &de) || de.Enhanced != "4.2.0" ||
		de.Text != "cannot update mailbox "+path+" for user "+name+". cannot open file: Permission denied" {
		t.Errorf("delivery through a link to a root file: %v", err)
	}
	if got, _ := os.ReadFile(secret); string(got) != "root only\n" {
		t.Errorf("target changed: %q", got)
	}
	if _, err := os.Lstat(path + ".lock"); !os.IsNotExist(err) {
		t.Errorf("dotlock left: %v", err)
	}
}

// Two helper processes (two pools) for one user, each with many
// deliveries at once, into one mailbox: every message is whole, once.
func TestMboxTwoHelpers(t *testing.T) {
	name, c := testUser(t)
	spool, mailGID := mailSpool(t)
	path := filepath.Join(spool, name)
	cred := Cred{c.UID, mailGID}
	pools := []*Pool{testPool(t, Options{}), testPool(t, Options{})}
	const each = 12
	want := map[string]string{}
	var wg sync.WaitGroup
	for pi, p := range pools {
		for i := range each {
			tag := fmt.Sprintf("p%dm%02d", pi, i)
			var b strings.Builder
			b.WriteString("Subject: " + tag + "\r\n\r\n")
			for j := 0; b.Len() < 150<<10; j++ {
				fmt.Fprintf(&b, "%s line %06d, long enough to need several writes\r\n", tag, j)
			}
			body := b.String()
			want[tag] = body
			wg.Add(1)
			go func() {
				defer wg.Done()
				o := mboxOptions(name)
				o.RecipientUID = c.UID
				o.LockAttempts, o.LockDelay = 100000, 2*time.Millisecond
				if err := p.Mbox(context.Background(), cred, path, message(tag, body), o); err != nil {
					t.Error(err)
				}
			}()
		}
	}
	wg.Wait()
	if pools[0].helpers[cred] == nil || pools[1].helpers[cred] == nil ||
		pools[0].helpers[cred].cmd.Process.Pid == pools[1].helpers[cred].cmd.Process.Pid {
		t.Fatalf("want two helper processes")
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var msgs []string
	for _, line := range strings.SplitAfter(string(got), "\n") {
		if strings.HasPrefix(line, "From ") {
			msgs = append(msgs, "")
		}
		if len(msgs) == 0 {
			t.Fatalf("mbox does not start with a From_ line")
		}
		msgs[len(msgs)-1] += line
	}
	if len(msgs) != len(want) {
		t.Errorf("%d From_ lines, want %d", len(msgs), len(want))
	}
	seen := map[string]bool{}
	for i, m := range msgs {
		_, rest, _ := strings.Cut(m, "\nDelivered-To: "+name+"@example.com\n")
		subj, _, _ := strings.Cut(strings.TrimPrefix(rest, "Subject: "), "\n")
		if body, ok := want[subj]; !ok || seen[subj] || rest != strings.ReplaceAll(body, "\r\n", "\n")+"\n" {
			t.Errorf("message %d (%q) is not one whole message of the test", i, subj)
		}
		seen[subj] = true
	}
}

// The envelope crosses to the helper: the From_ line's time is the
// server's local time (TZ goes to the helper), mailbox_size_limit is
// applied there, and a Maildir gets X-Original-To:.
func TestMboxEnvelopeAndLimit(t *testing.T) {
	name, c := testUser(t)
	loc, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Skip("no time zone data")
	}
	t.Setenv("TZ", "America/New_York")
	p := testPool(t, Options{})
	box := spoolFor(t, c)
	path := filepath.Join(box, "mbox")
	o := mboxOptions(name)
	o.Envelope.OrigRcpt = "orig@example.com"
	o.RecipientUID = c.UID
	if err := p.Mbox(context.Background(), c, path, message("Q1", "Subject: x\r\n\r\nhi\r\n"), o); err != nil {
		t.Fatal(err)
	}
	want := "From sender@example.com  " + o.Envelope.Time.In(loc).Format("Mon Jan _2 15:04:05 2006") + "\n" +
		"Return-Path: <sender@example.com>\nX-Original-To: orig@example.com\nDelivered-To: " + name + "@example.com\nSubject: x\n\nhi\n\n"
	got, _ := os.ReadFile(path)
	if string(got) != want {
		t.Errorf("mbox:\n%q\nwant\n%q", got, want)
	}

	o.SizeLimit = int64(len(got)) + 10
	err = p.Mbox(context.Background(), c, path, message("Q2", "Subject: x\r\n\r\nhi\r\n"), o)
	var de *deliver.Error
	if !errors.As(err, &de) || !de.Permanent || de.Enhanced != "5.2.2" || !strings.HasSuffix(de.Text, "error writing message: File too large") {
		t.Errorf("over mailbox_size_limit: %v", err)
	}
	if after, _ := os.ReadFile(path); string(after) != string(got) {
		t.Errorf("mailbox changed by a failed delivery")
	}

	env := mailcopy.Envelope{Sender: "sender@example.com", OrigRcpt: "orig@example.com", DeliveredTo: "rcpt@example.com"}
	if err := p.MaildirEnv(context.Background(), c, box+"/", message("Q3", "Subject: x\r\n\r\nhi\r\n"), env); err != nil {
		t.Fatal(err)
	}
	files := newFiles(t, box)
	if len(files) != 1 {
		t.Fatalf("%d files in new/", len(files))
	}
	b, _ := os.ReadFile(files[0])
	if string(b) != "Return-Path: <sender@example.com>\nX-Original-To: orig@example.com\nDelivered-To: rcpt@example.com\nSubject: x\n\nhi\n" {
		t.Errorf("Maildir file: %q", b)
	}
}

// A delivery whose context ends once the helper has the whole message
// reports what the helper did, not a guess: a stop must not record as
// deferred (and deliver again after a restart) what is in the mailbox.
func TestInterruptedDeliveryAnswersTruly(t *testing.T) {
	c, home := realUser(t)
	p := testPool(t, Options{})
	// The command takes the message, then works a little longer than the
	// server's patience.
	s := commandSpec("cat > msg; sleep 1", home)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := p.Command(ctx, c, s, message("Q", "A: b\r\n\r\nbody\r\n")); err != nil {
		t.Errorf("got %v; the command succeeded, and that is what must be reported", err)
	}
	if b, _ := os.ReadFile(filepath.Join(home, "msg")); !strings.Contains(string(b), "body") {
		t.Errorf("the command got %q", b)
	}
}
