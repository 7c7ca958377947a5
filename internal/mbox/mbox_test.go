package mbox

import (
	"errors"
	"fmt"
	"io"
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

	"golang.org/x/sys/unix"

	"github.com/mailtee/mailtee/internal/deliver"
	"github.com/mailtee/mailtee/internal/mailcopy"
)

func message(body string) *deliver.Message {
	return &deliver.Message{ID: "Q1", From: "sender@example.org", Size: int64(len(body)),
		Open: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(body)), nil }}
}

func env() mailcopy.Envelope {
	return mailcopy.Envelope{Sender: "sender@example.org", DeliveredTo: "u@example.com",
		Time: time.Date(2026, 3, 3, 4, 5, 6, 0, time.Local)}
}

// fast are Options whose lock waits are short.
func fast() Options {
	return Options{Envelope: env(), User: "u", LockAttempts: 5, LockDelay: 10 * time.Millisecond}
}

// wantError checks that err is a *deliver.Error with status and text.
func wantError(t *testing.T, err error, status, text string) *deliver.Error {
	t.Helper()
	var de *deliver.Error
	if !errors.As(err, &de) {
		t.Fatalf("error %v (%T), want a *deliver.Error %s %q", err, err, status, text)
	}
	if de.Enhanced != status || de.Permanent != (status[0] == '5') || de.Text != text {
		t.Fatalf("error %s permanent=%v %q\nwant      %s %q", de.Enhanced, de.Permanent, de.Text, status, text)
	}
	return de
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The From_ line, the added headers, quoting and the blank line, byte
// for byte (mail_copy.c); a second delivery is appended after the first.
func TestFormat(t *testing.T) {
	path := filepath.Join(t.TempDir(), "u")
	o := fast()
	o.Envelope.OrigRcpt = "orig@example.com"
	body := "From: a@example.org\r\nSubject: x\r\n\r\nFrom the start\r\n>From already\r\nnot From here\r\nFrom\r\nFrom  two\r\nno line end"
	if err := Deliver(path, message(body), o); err != nil {
		t.Fatal(err)
	}
	want := "From sender@example.org  Tue Mar  3 04:05:06 2026\n" +
		"Return-Path: <sender@example.org>\n" +
		"X-Original-To: orig@example.com\n" +
		"Delivered-To: u@example.com\n" +
		"From: a@example.org\nSubject: x\n\n>From the start\n>From already\nnot From here\nFrom\n>From  two\nno line end\n\n"
	if got := readFile(t, path); got != want {
		t.Fatalf("mbox:\n%q\nwant\n%q", got, want)
	}
	o.Envelope = mailcopy.Envelope{Sender: "", DeliveredTo: "u@example.com", Time: time.Date(2026, 11, 20, 23, 0, 9, 0, time.Local)}
	if err := Deliver(path, message("Subject: y\r\n\r\nbody\r\n"), o); err != nil {
		t.Fatal(err)
	}
	want += "From MAILER-DAEMON  Fri Nov 20 23:00:09 2026\nReturn-Path: <>\nDelivered-To: u@example.com\nSubject: y\n\nbody\n\n"
	if got := readFile(t, path); got != want {
		t.Fatalf("mbox after a second delivery:\n%q\nwant\n%q", got, want)
	}
	st, _ := os.Stat(path)
	if st.Mode() != 0o600 {
		t.Errorf("new mailbox has mode %v, want 0600", st.Mode())
	}
	if _, err := os.Lstat(path + ".lock"); !os.IsNotExist(err) {
		t.Errorf("dotlock left behind: %v", err)
	}
}

// testUser adds a user (with its own group) for one test.
func testUser(t *testing.T) (name string, uid, gid uint32) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: adds a user")
	}
	name = fmt.Sprintf("mbx%d%d", os.Getpid()%100000, time.Now().UnixNano()%1000)
	if out, err := exec.Command("useradd", "-M", "-U", "-d", "/nonexistent", "-s", "/usr/sbin/nologin", name).CombinedOutput(); err != nil {
		t.Skipf("useradd: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("userdel", name).CombinedOutput(); err != nil {
			t.Errorf("userdel %s: %v: %s", name, err, out)
		}
	})
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	i, _ := strconv.Atoi(u.Uid)
	g, _ := strconv.Atoi(u.Gid)
	return name, uint32(i), uint32(g)
}

func owner(t *testing.T, path string) (uid, gid uint32, mode os.FileMode) {
	t.Helper()
	st, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	sys := st.Sys().(*syscall.Stat_t)
	return sys.Uid, sys.Gid, st.Mode()
}

// In a spool only root may write, root creates the mailbox and gives it
// to the user (mailbox.c's chown_uid/gid); an existing mailbox keeps its
// owner, and strict_mailbox_ownership refuses one that is not the
// recipient's.
func TestSpoolCredAndChown(t *testing.T) {
	name, uid, gid := testUser(t)
	base := t.TempDir()
	spool := filepath.Join(base, "spool")
	os.Mkdir(spool, 0o755)
	if u, g, c := SpoolCred(spool, uid, gid); u != 0 || g != 0 || c == nil || *c != (Owner{uid, gid}) {
		t.Fatalf("root-only spool: SpoolCred = %d %d %v, want 0 0 &{%d %d}", u, g, c, uid, gid)
	}
	path := filepath.Join(spool, name)
	o := fast()
	o.Chown, o.StrictOwnership, o.RecipientUID = &Owner{uid, gid}, true, uid
	if err := Deliver(path, message("Subject: x\r\n\r\nhi\r\n"), o); err != nil {
		t.Fatal(err)
	}
	if u, g, m := owner(t, path); u != uid || g != gid || m != 0o600 {
		t.Errorf("mailbox created as root is %d:%d %v, want %d:%d 0600", u, g, m, uid, gid)
	}
	// A mailbox of someone else (root) in its place.
	other := filepath.Join(spool, "other")
	os.WriteFile(other, []byte("x\n"), 0o600)
	err := Deliver(other, message("Subject: x\r\n\r\nhi\r\n"), o)
	wantError(t, err, "4.2.0", "cannot update mailbox "+other+" for user u. destination "+other+" is not owned by recipient")
	if got := readFile(t, other); got != "x\n" {
		t.Errorf("refused mailbox changed: %q", got)
	}
	o.StrictOwnership = false
	if err := Deliver(other, message("Subject: x\r\n\r\nhi\r\n"), o); err != nil {
		t.Errorf("strict_mailbox_ownership = no: %v", err)
	}

	world := filepath.Join(base, "world")
	os.Mkdir(world, 0o755)
	os.Chmod(world, 0o1777)
	if u, g, c := SpoolCred(world, uid, gid); u != uid || g != gid || c != nil {
		t.Errorf("world-writable spool: SpoolCred = %d %d %v, want the user", u, g, c)
	}
	group := filepath.Join(base, "group")
	os.Mkdir(group, 0o755)
	os.Chown(group, 0, 8)
	os.Chmod(group, 0o2775)
	if u, g, c := SpoolCred(group, uid, gid); u != uid || g != 8 || c != nil {
		t.Errorf("group-writable spool: SpoolCred = %d %d %v, want %d 8 nil", u, g, c, uid)
	}
	if u, g, c := SpoolCred("", uid, gid); u != uid || g != gid || c != nil {
		t.Errorf("home mailbox: SpoolCred = %d %d %v, want the user", u, g, c)
	}
	if u, g, c := SpoolCred(filepath.Join(base, "missing"), uid, gid); u != uid || g != gid || c != nil {
		t.Errorf("missing spool: SpoolCred = %d %d %v, want the user", u, g, c)
	}
}

// A symbolic link at the mailbox's path is refused, even when root
// writes (the spool case where SpoolCred says root), and what it points
// to is untouched; a root-owned link is accepted only in a directory
// only root may write, as safe_open() does.
func TestSymlinkRefused(t *testing.T) {
	_, uid, gid := testUser(t)
	base := t.TempDir()
	secret := filepath.Join(base, "secret")
	os.WriteFile(secret, []byte("root only\n"), 0o600)
	st0, _ := os.Stat(secret)

	spool := filepath.Join(base, "spool")
	os.Mkdir(spool, 0o755)
	path := filepath.Join(spool, "u")
	os.Symlink(secret, path)
	os.Lchown(path, int(uid), int(gid)) // the user planted it
	o := fast()
	o.Chown = &Owner{uid, gid}
	err := Deliver(path, message("Subject: x\r\n\r\nhi\r\n"), o)
	wantError(t, err, "4.2.0", "cannot update mailbox "+path+" for user u. file is a symbolic link")

	// Root's own link in a directory others may write: refused too.
	os.Chmod(spool, 0o775)
	os.Lchown(path, 0, 0)
	err = Deliver(path, message("Subject: x\r\n\r\nhi\r\n"), o)
	wantError(t, err, "4.2.0", "cannot update mailbox "+path+" for user u. file is a symbolic link")

	if got := readFile(t, secret); got != "root only\n" {
		t.Errorf("link target changed: %q", got)
	}
	if st, _ := os.Stat(secret); !st.ModTime().Equal(st0.ModTime()) || st.Mode() != 0o600 {
		t.Errorf("link target touched: %v %v", st.ModTime(), st.Mode())
	}
	if u, g, _ := owner(t, secret); u != 0 || g != 0 {
		t.Errorf("link target given to %d:%d", u, g)
	}
	if _, err := os.Lstat(path + ".lock"); !os.IsNotExist(err) {
		t.Errorf("dotlock left behind: %v", err)
	}

	// Root's link in a root-only directory: Postfix's exception.
	os.Chmod(spool, 0o755)
	if err := Deliver(path, message("Subject: x\r\n\r\nhi\r\n"), o); err != nil {
		t.Errorf("root's link in a root-only directory: %v", err)
	}
}

// A mailbox with a second hard link (a link to another's file) is
// refused.
func TestHardLinkRefused(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	os.WriteFile(target, []byte("precious\n"), 0o600)
	path := filepath.Join(dir, "u")
	if err := os.Link(target, path); err != nil {
		t.Fatal(err)
	}
	err := Deliver(path, message("Subject: x\r\n\r\nhi\r\n"), fast())
	wantError(t, err, "4.2.0", "cannot update mailbox "+path+" for user u. file has 2 hard links")
	if got := readFile(t, target); got != "precious\n" {
		t.Errorf("hard-linked file changed: %q", got)
	}
}

// Not a regular file: refused as a mailbox, written as a /file
// destination, and never dotlocked.
func TestNotRegular(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: /dev/null.lock would be refused anyway")
	}
	err := Deliver("/dev/null", message("Subject: x\r\n\r\nhi\r\n"), fast())
	wantError(t, err, "4.2.0", "cannot update mailbox /dev/null for user u. destination /dev/null is not a regular file")
	o := fast()
	o.File = true
	if err := Deliver("/dev/null", message("Subject: x\r\n\r\nhi\r\n"), o); err != nil {
		t.Errorf("file delivery to /dev/null: %v", err)
	}
	if _, err := os.Lstat("/dev/null.lock"); !os.IsNotExist(err) {
		t.Errorf("/dev/null.lock: %v", err)
	}
	dir := t.TempDir()
	err = Deliver(dir, message("Subject: x\r\n\r\nhi\r\n"), fast())
	wantError(t, err, "4.2.0", "cannot update mailbox "+dir+" for user u. cannot open file: Is a directory")

	exe := filepath.Join(dir, "prog")
	os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o700)
	err = Deliver(exe, message("Subject: x\r\n\r\nhi\r\n"), o)
	wantError(t, err, "5.7.1", "cannot append message to file "+exe+": file is executable")
	if got := readFile(t, exe); got != "#!/bin/sh\n" {
		t.Errorf("executable changed: %q", got)
	}

	err = Deliver(dir+"/", message("x"), fast())
	wantError(t, err, "4.3.0", "cannot update mailbox "+dir+"/ for user u. mailtee error: a mailbox path ending in \"/\" is a Maildir, not an mbox")
}

// failingReader returns n bytes of its message, then an error.
type failingReader struct {
	r io.Reader
	n int
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, syscall.EIO
	}
	if len(p) > f.n {
		p = p[:f.n]
	}
	n, err := f.r.Read(p)
	f.n -= n
	return n, err
}

func bigBody(tag string, kb int) string {
	var b strings.Builder
	b.WriteString("Subject: " + tag + "\r\n\r\n")
	for i := 0; b.Len() < kb<<10; i++ {
		fmt.Fprintf(&b, "%s line %06d of a long message, long enough to need several writes\r\n", tag, i)
	}
	return b.String()
}

// A failed delivery leaves the mailbox byte for byte as it was: the
// size limit crossed in the middle of the message (after a first buffer
// was written), a reader failing halfway, a mailbox already at its
// limit. mailbox_size_limit failures are Postfix's: EFBIG, 5.2.2.
func TestFailureTruncates(t *testing.T) {
	path := filepath.Join(t.TempDir(), "u")
	if err := Deliver(path, message("Subject: first\r\n\r\nfirst\r\n"), fast()); err != nil {
		t.Fatal(err)
	}
	before := readFile(t, path)
	big := bigBody("big", 300)

	o := fast()
	o.SizeLimit = int64(len(before)) + 150<<10
	var grew bool
	err := Deliver(path, &deliver.Message{ID: "Q2", Open: func() (io.ReadCloser, error) {
		return io.NopCloser(&watchReader{r: strings.NewReader(big), path: path, size: int64(len(before)), grew: &grew}), nil
	}}, o)
	wantError(t, err, "5.2.2", "cannot update mailbox "+path+" for user u. error writing message: File too large")
	if !grew {
		t.Errorf("nothing was written before the limit: the test proves no truncation")
	}
	if got := readFile(t, path); got != before {
		t.Fatalf("mailbox after a delivery over mailbox_size_limit: %d bytes, want the %d before", len(got), len(before))
	}

	grew = false
	err = Deliver(path, &deliver.Message{ID: "Q3", Open: func() (io.ReadCloser, error) {
		return io.NopCloser(&watchReader{r: &failingReader{r: strings.NewReader(big), n: 200 << 10}, path: path, size: int64(len(before)), grew: &grew}), nil
	}}, fast())
	wantError(t, err, "4.3.0", "cannot update mailbox "+path+" for user u. error reading message: Input/output error")
	if !grew {
		t.Errorf("nothing was written before the read error: the test proves no truncation")
	}
	if got := readFile(t, path); got != before {
		t.Fatalf("mailbox after a failed read: %d bytes, want the %d before", len(got), len(before))
	}

	// Exactly at the limit fits; one byte more does not.
	scratch := filepath.Join(t.TempDir(), "scratch")
	small := "Subject: small\r\n\r\nsmall\r\n"
	Deliver(scratch, message(small), fast())
	n := int64(len(readFile(t, scratch)))
	o = fast()
	o.SizeLimit = int64(len(before)) + n - 1
	err = Deliver(path, message(small), o)
	wantError(t, err, "5.2.2", "cannot update mailbox "+path+" for user u. error writing message: File too large")
	o.SizeLimit++
	if err := Deliver(path, message(small), o); err != nil {
		t.Fatalf("a message that fills the mailbox to its limit: %v", err)
	}
	full := readFile(t, path)
	if int64(len(full)) != o.SizeLimit {
		t.Fatalf("mailbox is %d bytes, want %d", len(full), o.SizeLimit)
	}
	err = Deliver(path, message(small), o)
	wantError(t, err, "5.2.2", "cannot update mailbox "+path+" for user u. error writing message: File too large")
	if got := readFile(t, path); got != full {
		t.Fatalf("full mailbox changed")
	}
}

// watchReader notes whether the file has grown while the message is
// read, to show that a failure undid a partial write.
type watchReader struct {
	r    io.Reader
	path string
	size int64
	grew *bool
}

func (w *watchReader) Read(p []byte) (int, error) {
	if st, err := os.Stat(w.path); err == nil && st.Size() > w.size {
		*w.grew = true
	}
	return w.r.Read(p)
}

// A dotlock older than stale_lock_time is removed; a fresh one makes the
// delivery wait deliver_lock_attempts × deliver_lock_delay, then defer,
// and is left to its owner.
func TestDotlock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "u")
	lock := path + ".lock"
	os.WriteFile(lock, nil, 0)
	o := fast()
	o.Locks = []string{"dotlock"}
	o.LockAttempts, o.LockDelay = 4, 40*time.Millisecond
	start := time.Now()
	err := Deliver(path, message("Subject: x\r\n\r\nhi\r\n"), o)
	wantError(t, err, "4.2.0", "cannot update mailbox "+path+" for user u. unable to create lock file "+lock+": File exists")
	// Three sleeps of 40 ms ± 10 ms.
	if d := time.Since(start); d < 90*time.Millisecond {
		t.Errorf("gave up after %v, want 3 waits of about 40 ms", d)
	}
	if _, err := os.Lstat(lock); err != nil {
		t.Errorf("another's dotlock removed: %v", err)
	}
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Errorf("mailbox created without its lock: %v", err)
	}

	time.Sleep(120 * time.Millisecond)
	o.StaleLockTime = 100 * time.Millisecond
	if err := Deliver(path, message("Subject: x\r\n\r\nhi\r\n"), o); err != nil {
		t.Fatalf("stale dotlock: %v", err)
	}
	if _, err := os.Lstat(lock); !os.IsNotExist(err) {
		t.Errorf("dotlock left behind: %v", err)
	}

	// A lock that cannot be made (a directory the user cannot write) is
	// a mailbox failure (deferred, 4.2.0), and only a warning for a /file.
	if os.Geteuid() != 0 {
		dir := t.TempDir()
		os.Chmod(dir, 0o500)
		defer os.Chmod(dir, 0o700)
		err := Deliver(filepath.Join(dir, "u"), message("x"), o)
		wantError(t, err, "4.2.0", "cannot update mailbox "+dir+"/u for user u. unable to create lock file "+dir+"/u.lock: Permission denied")
	}
}

// The kernel locks keep out a mail reader holding a classic fcntl()
// lock (mutt, dovecot) or a flock() lock: the delivery waits, then
// defers. The test holds them itself: a classic lock conflicts with the
// delivery's open file description lock even in one process, and a
// flock() lock belongs to the test's own open of the file.
func TestKernelLocks(t *testing.T) {
	path := filepath.Join(t.TempDir(), "u")
	os.WriteFile(path, []byte("x\n"), 0o600)
	for _, kind := range []string{"fcntl", "flock"} {
		reader, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		if kind == "fcntl" {
			err = syscall.FcntlFlock(reader.Fd(), syscall.F_SETLK, &syscall.Flock_t{Type: syscall.F_WRLCK})
		} else {
			err = syscall.Flock(int(reader.Fd()), syscall.LOCK_EX)
		}
		if err != nil {
			t.Fatal(err)
		}
		o := fast()
		o.Locks = []string{kind}
		start := time.Now()
		err = Deliver(path, message("Subject: x\r\n\r\nhi\r\n"), o)
		d := time.Since(start)
		wantError(t, err, "4.2.0", "cannot update mailbox "+path+" for user u. unable to lock for exclusive access: Resource temporarily unavailable")
		if d < 25*time.Millisecond {
			t.Errorf("%s: gave up after %v, want 4 waits of about 10 ms", kind, d)
		}
		if got := readFile(t, path); got != "x\n" {
			t.Fatalf("%s: locked mailbox changed: %q", kind, got)
		}
		reader.Close() // releases both kinds
		if err := Deliver(path, message("Subject: x\r\n\r\nhi\r\n"), o); err != nil {
			t.Fatalf("%s: after the reader let go: %v", kind, err)
		}
		os.WriteFile(path, []byte("x\n"), 0o600)
	}
}

// Many deliveries at once into one mailbox never interleave, with each
// lock method on its own: the fcntl lock keeps apart deliveries of one
// process too.
func TestConcurrent(t *testing.T) {
	for _, locks := range [][]string{{"fcntl"}, {"flock"}, {"dotlock"}, nil} {
		t.Run(strings.Join(locks, "+"), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "u")
			const workers, each = 12, 4
			var wg sync.WaitGroup
			want := map[string]string{}
			for w := range workers {
				for i := range each {
					tag := fmt.Sprintf("w%02dm%02d", w, i)
					want[tag] = bigBody(tag, 150)
				}
			}
			for w := range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range each {
						tag := fmt.Sprintf("w%02dm%02d", w, i)
						o := fast()
						o.Locks = locks
						o.LockAttempts, o.LockDelay = 100000, 2*time.Millisecond
						if err := Deliver(path, message(want[tag]), o); err != nil {
							t.Error(err)
						}
					}
				}()
			}
			wg.Wait()
			CheckMbox(t, readFile(t, path), want)
		})
	}
}

// CheckMbox parses an mbox written with mailcopy.Mbox and the test's
// envelope and checks that it holds each message of want (by Subject)
// whole, once.
func CheckMbox(t *testing.T, mbox string, want map[string]string) {
	t.Helper()
	var msgs []string
	for _, line := range strings.SplitAfter(mbox, "\n") {
		if strings.HasPrefix(line, "From ") {
			msgs = append(msgs, "")
		}
		if len(msgs) == 0 {
			t.Fatalf("mbox does not start with a From_ line: %.60q", mbox)
		}
		msgs[len(msgs)-1] += line
	}
	if len(msgs) != len(want) {
		t.Errorf("%d From_ lines, want %d", len(msgs), len(want))
	}
	seen := map[string]bool{}
	for i, m := range msgs {
		_, rest, _ := strings.Cut(m, "\nDelivered-To: u@example.com\n")
		subj, _, _ := strings.Cut(strings.TrimPrefix(rest, "Subject: "), "\n")
		body, ok := want[subj]
		if !ok || seen[subj] {
			t.Errorf("message %d: unexpected or repeated (Subject %q)", i, subj)
			continue
		}
		seen[subj] = true
		if rest != strings.ReplaceAll(body, "\r\n", "\n")+"\n" {
			t.Errorf("message %d (%s) is not whole: %d bytes, want %d", i, subj, len(rest), len(body))
		}
	}
}

func TestCheckLocks(t *testing.T) {
	if err := CheckLocks([]string{"fcntl", "dotlock"}); err != nil {
		t.Error(err)
	}
	if err := CheckLocks([]string{"fcntl", "lockf"}); err == nil || !strings.Contains(err.Error(), `"lockf"`) {
		t.Errorf("unknown lock method: %v", err)
	}
	if err := CheckLocks([]string{}); err == nil {
		t.Errorf("no lock method: no error")
	}
	path := filepath.Join(t.TempDir(), "u")
	err := Deliver(path, message("x"), Options{Locks: []string{"lockf"}})
	wantError(t, err, "4.3.0", "cannot update mailbox "+path+". unknown mailbox_delivery_lock value \"lockf\" in \"lockf\": use fcntl, flock and/or dotlock")
}

// A FIFO that is open but never read (a user's .forward names it) gives
// EAGAIN and a deferral, as in Postfix, instead of a delivery that waits
// for ever.
func TestFIFONeverReadDefers(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	// A reader that never reads keeps the FIFO open.
	r, err := os.OpenFile(fifo, os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	big := strings.Repeat("x", 1<<20) // more than a pipe holds
	done := make(chan error, 1)
	go func() {
		done <- Deliver(fifo, &deliver.Message{ID: "Q", From: "s@x", Open: func() (io.ReadCloser, error) {
			return io.NopCloser(strings.NewReader("Subject: x\r\n\r\n" + big + "\r\n")), nil
		}}, Options{File: true, Locks: []string{"fcntl"}})
	}()
	select {
	case err := <-done:
		var de *deliver.Error
		if !errors.As(err, &de) || de.Permanent || de.Enhanced != "4.2.0" {
			t.Errorf("got %v, want a 4.2.0 deferral", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("delivery to a FIFO nobody reads still waits after 10 s")
	}
}
