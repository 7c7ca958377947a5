package maildir

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"testing/iotest"

	"golang.org/x/sys/unix"

	"github.com/mailtee/mailtee/internal/deliver"
	"github.com/mailtee/mailtee/internal/mailcopy"
	"github.com/mailtee/mailtee/internal/safeio"
)

func TestMaildir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "Maildir")
	msg := testMessage("Subject: hi\n\nline one\nbare\rcr\nno newline at end")
	if err := Deliver(dir, msg, "user@example.com"); err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{"", "tmp", "new", "cur"} {
		fi, err := os.Stat(filepath.Join(dir, sub))
		if err != nil || fi.Mode().Perm() != 0o700 || !fi.IsDir() {
			t.Errorf("%s: %v %v", sub, fi.Mode(), err)
		}
	}
	if tmp, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(tmp) != 0 {
		t.Errorf("tmp/ not empty: %v", tmp)
	}
	files, _ := os.ReadDir(filepath.Join(dir, "new"))
	if len(files) != 1 {
		t.Fatalf("new/ has %d files", len(files))
	}
	fi, _ := files[0].Info()
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("file mode %v", fi.Mode())
	}
	got, _ := os.ReadFile(filepath.Join(dir, "new", files[0].Name()))
	// mail_copy.c: Return-Path, then Delivered-To; LF line ends; a final
	// newline added.
	want := "Return-Path: <sender@example.org>\nDelivered-To: user@example.com\n" +
		"Subject: hi\n\nline one\nbare\rcr\nno newline at end\n"
	if string(got) != want {
		t.Errorf("got %q\nwant %q", got, want)
	}

	// A second delivery gets another name; the null sender is <>.
	msg.From = ""
	if err := Deliver(dir, msg, "user@example.com"); err != nil {
		t.Fatal(err)
	}
	files, _ = os.ReadDir(filepath.Join(dir, "new"))
	if len(files) != 2 {
		t.Fatalf("new/ has %d files", len(files))
	}
	for _, f := range files {
		b, _ := os.ReadFile(filepath.Join(dir, "new", f.Name()))
		if bytes.HasPrefix(b, []byte("Return-Path: <>\n")) {
			return
		}
	}
	t.Error("no Return-Path: <> for the null sender")
}

// checkMaildirOne checks that tmp/ is empty and new/ holds exactly one
// file, mode 0600, with a Maildir name and the content want.
func checkMaildirOne(t *testing.T, dir, want string) {
	t.Helper()
	if tmp, err := os.ReadDir(filepath.Join(dir, "tmp")); err != nil || len(tmp) != 0 {
		t.Errorf("tmp/ not empty: %v %v", tmp, err)
	}
	if cur, err := os.ReadDir(filepath.Join(dir, "cur")); err != nil || len(cur) != 0 {
		t.Errorf("cur/ not empty: %v %v", cur, err)
	}
	files, _ := os.ReadDir(filepath.Join(dir, "new"))
	if len(files) != 1 {
		t.Fatalf("new/ has %d files, want 1", len(files))
	}
	name := files[0].Name()
	if !regexp.MustCompile(`^[0-9]+\.M[0-9]+P[0-9]+Q[0-9]+\.` + regexp.QuoteMeta(maildirHost()) + `$`).MatchString(name) {
		t.Errorf("file name %q", name)
	}
	fi, _ := files[0].Info()
	if !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o600 {
		t.Errorf("file mode %v", fi.Mode())
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && (st.Nlink != 1 || st.Uid != uint32(os.Getuid())) {
		t.Errorf("nlink %d uid %d", st.Nlink, st.Uid)
	}
	got, _ := os.ReadFile(filepath.Join(dir, "new", name))
	if string(got) != want {
		t.Errorf("got %q\nwant %q", got, want)
	}
}

// watchCreate reports, once called, whether a file was created or moved
// into dir since watchCreate(dir).
func watchCreate(t *testing.T, dir string) func() bool {
	t.Helper()
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		t.Skipf("inotify: %v", err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if _, err := unix.InotifyAddWatch(fd, dir, unix.IN_CREATE|unix.IN_MOVED_TO); err != nil {
		t.Skipf("inotify: %v", err)
	}
	return func() bool {
		var buf [4096]byte
		n, _ := unix.Read(fd, buf[:])
		return n > 0
	}
}

const maildirWant = "Return-Path: <sender@example.org>\nDelivered-To: user@example.com\nSubject: hi\n\nbody\n"

// With an unnamed file, the file never appears in tmp/: it goes straight
// into new/.
func TestMaildirUnnamed(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "Maildir")
	os.MkdirAll(filepath.Join(dir, "tmp"), 0o700)
	if !safeio.TmpfileWorks(filepath.Join(dir, "tmp")) {
		t.Skip("no O_TMPFILE here")
	}
	created := watchCreate(t, filepath.Join(dir, "tmp"))
	if err := maildirDeliver(dir, testMessage("Subject: hi\n\nbody"), testEnv("user@example.com"), maildirUnnamed); err != nil {
		t.Fatal(err)
	}
	checkMaildirOne(t, dir, maildirWant)
	// The probe made a file in tmp/ at the first delivery; the next
	// delivery makes none.
	created()
	os.RemoveAll(filepath.Join(dir, "new"))
	if err := maildirDeliver(dir, testMessage("Subject: hi\n\nbody"), testEnv("user@example.com"), maildirUnnamed); err != nil {
		t.Fatal(err)
	}
	if created() {
		t.Error("a file was created in tmp/")
	}
	checkMaildirOne(t, dir, maildirWant)
}

// Maildir takes the unnamed file only where that is as durable as a named
// one.
func TestMaildirAuto(t *testing.T) {
	for _, base := range []string{t.TempDir(), "/dev/shm"} {
		var fs unix.Statfs_t
		if unix.Statfs(base, &fs) != nil {
			continue
		}
		base, err := os.MkdirTemp(base, "maildirtest")
		if err != nil {
			continue
		}
		defer os.RemoveAll(base)
		dir := filepath.Join(base, "Maildir")
		os.MkdirAll(filepath.Join(dir, "tmp"), 0o700)
		works := safeio.TmpfileWorks(filepath.Join(dir, "tmp"))
		durable := safeio.TmpfileDurable(filepath.Join(dir, "tmp"))
		t.Logf("%s: file system %#x, O_TMPFILE works %v, durable %v", base, fs.Type, works, durable)
		switch fs.Type {
		case unix.TMPFS_MAGIC, unix.XFS_SUPER_MAGIC:
			if !durable {
				t.Errorf("%s: tmpfs and XFS are fine", base)
			}
		case unix.EXT4_SUPER_MAGIC:
		default:
			if durable {
				t.Errorf("%s: file system %#x taken for durable", base, fs.Type)
			}
		}
		if err := Deliver(dir, testMessage("Subject: hi\n\nbody"), "user@example.com"); err != nil {
			t.Fatal(err)
		}
		created := watchCreate(t, filepath.Join(dir, "tmp"))
		os.RemoveAll(filepath.Join(dir, "new"))
		if err := Deliver(dir, testMessage("Subject: hi\n\nbody"), "user@example.com"); err != nil {
			t.Fatal(err)
		}
		if got, want := !created(), works && durable; got != want {
			t.Errorf("%s: unnamed file %v, want %v", base, got, want)
		}
		checkMaildirOne(t, dir, maildirWant)
	}
}

// Without O_TMPFILE, the file is written to tmp/, linked into new/ and
// removed from tmp/.
func TestMaildirNamed(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "Maildir")
	os.MkdirAll(filepath.Join(dir, "tmp"), 0o700)
	created := watchCreate(t, filepath.Join(dir, "tmp"))
	if err := maildirDeliver(dir, testMessage("Subject: hi\n\nbody"), testEnv("user@example.com"), maildirNamed); err != nil {
		t.Fatal(err)
	}
	if !created() {
		t.Error("no file was created in tmp/")
	}
	checkMaildirOne(t, dir, maildirWant)

	// Failures leave nothing behind on this path either.
	os.RemoveAll(filepath.Join(dir, "new"))
	msg := &deliver.Message{ID: "Q1", Open: func() (io.ReadCloser, error) {
		return io.NopCloser(iotest.ErrReader(errors.New("disk error"))), nil
	}}
	var e *deliver.Error
	err := maildirDeliver(dir, msg, testEnv("u@example.com"), maildirNamed)
	if !errors.As(err, &e) || e.Permanent || e.Text != "maildir delivery failed: error reading message Q1: disk error" {
		t.Errorf("got %#v", err)
	}
	for _, sub := range []string{"tmp", "new"} {
		if f, _ := os.ReadDir(filepath.Join(dir, sub)); len(f) != 0 {
			t.Errorf("%s/ not empty after a failure: %v", sub, f)
		}
	}
}

// Concurrent deliveries into one Maildir, in all three ways (sharing its
// probe and the fsyncs of new/), each get their own file.
func TestMaildirConcurrent(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "Maildir")
	const n = 40
	errs := make(chan error, n)
	for i := range n {
		go func() {
			errs <- maildirDeliver(dir, testMessage("Subject: hi\n\nbody"), testEnv("user@example.com"), maildirMode(i%3))
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if tmp, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(tmp) != 0 {
		t.Errorf("tmp/ not empty: %v", tmp)
	}
	files, _ := os.ReadDir(filepath.Join(dir, "new"))
	if len(files) != n {
		t.Fatalf("new/ has %d files, want %d", len(files), n)
	}
	for _, f := range files {
		if got, _ := os.ReadFile(filepath.Join(dir, "new", f.Name())); string(got) != maildirWant {
			t.Errorf("%s: %q", f.Name(), got)
		}
	}
}

// A CR at the end of one read and the LF at the start of the next are one
// line end.
func TestMaildirSplitCRLF(t *testing.T) {
	dir := t.TempDir()
	content := strings.Repeat("0123456789abcde\r\n", 1000)
	msg := &deliver.Message{Open: func() (io.ReadCloser, error) {
		return io.NopCloser(iotest.OneByteReader(strings.NewReader(content))), nil
	}}
	if err := Deliver(dir, msg, "u@example.com"); err != nil {
		t.Fatal(err)
	}
	files, _ := os.ReadDir(filepath.Join(dir, "new"))
	got, _ := os.ReadFile(filepath.Join(dir, "new", files[0].Name()))
	want := "Return-Path: <>\nDelivered-To: u@example.com\n" + strings.ReplaceAll(content, "\r\n", "\n")
	if string(got) != want {
		t.Error("CRLF split across reads not converted")
	}
}

func TestMaildirErrors(t *testing.T) {
	// A file where the Maildir should be: ENOTDIR, deferred.
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o600)
	err := Deliver(filepath.Join(file, "Maildir"), testMessage("x\n"), "u@example.com")
	var e *deliver.Error
	if !errors.As(err, &e) || e.Permanent || e.Enhanced != "4.2.0" || e.Relay != "local" ||
		!strings.HasPrefix(e.Text, "maildir delivery failed: create maildir directory ") || !strings.HasSuffix(e.Text, ": Not a directory") {
		t.Errorf("got %#v", err)
	}

	// The message cannot be read: deferred, and nothing is left behind.
	dir := t.TempDir()
	msg := &deliver.Message{ID: "Q1", Open: func() (io.ReadCloser, error) {
		return io.NopCloser(iotest.ErrReader(errors.New("disk error"))), nil
	}}
	err = Deliver(dir, msg, "u@example.com")
	if !errors.As(err, &e) || e.Permanent || e.Text != "maildir delivery failed: error reading message Q1: disk error" {
		t.Errorf("got %#v", err)
	}
	for _, sub := range []string{"tmp", "new"} {
		if f, _ := os.ReadDir(filepath.Join(dir, sub)); len(f) != 0 {
			t.Errorf("%s/ not empty after a failure: %v", sub, f)
		}
	}

	// mbox_dsn(): full file system 4.3.0, full mailbox 5.2.2.
	for errno, want := range map[syscall.Errno]struct {
		perm   bool
		status string
	}{
		syscall.ENOSPC: {false, "4.3.0"},
		syscall.EDQUOT: {true, "5.2.2"},
		syscall.EFBIG:  {true, "5.2.2"},
		syscall.EACCES: {false, "4.2.0"},
		syscall.ESTALE: {false, "4.2.0"},
	} {
		e := maildirError(&os.PathError{Op: "write", Path: "x", Err: errno}, "error writing message")
		if e.Permanent != want.perm || e.Enhanced != want.status {
			t.Errorf("%v: got %v %s, want %v %s", errno, e.Permanent, e.Enhanced, want.perm, want.status)
		}
	}
}

func testMessage(body string) *deliver.Message {
	body = strings.ReplaceAll(body, "\n", "\r\n")
	return &deliver.Message{
		ID:   "TESTID",
		From: "sender@example.org",
		Size: int64(len(body)),
		Open: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(body)), nil },
	}
}

// BenchmarkMaildir delivers a 2 KB message into a Maildir: "tmpfile" is
// the O_TMPFILE path, taken even where Maildir would not take it (see
// safeio.TmpfileDurable), "named" the file in tmp/ that is linked into new/ and
// removed (the only path before O_TMPFILE), each from one goroutine and
// from 4×GOMAXPROCS goroutines (which share the fsyncs of new/).
//
// The Maildirs are removed only at the end: on ext4 without a journal,
// every inode freed in the last few minutes slows down each inode
// allocation (ext4's find_inode_bit skips recently deleted inodes), so
// removing one sub-benchmark's files would slow down the next one.
func BenchmarkMaildir(b *testing.B) {
	line := "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.\n" // 65 bytes
	msg := testMessage("From: sender@example.org\nTo: rcpt@example.com\nSubject: bench\n\n" +
		strings.Repeat(line, 30)) // 2 KB
	root := b.TempDir()
	var seq int
	for _, bc := range []struct {
		name     string
		mode     maildirMode
		parallel bool
	}{
		{"tmpfile", maildirUnnamed, false},
		{"named", maildirNamed, false},
		{"tmpfile-parallel", maildirUnnamed, true},
		{"named-parallel", maildirNamed, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			seq++
			dir := filepath.Join(root, "Maildir"+strconv.Itoa(seq))
			if err := maildirDeliver(dir, msg, testEnv("u@example.com"), bc.mode); err != nil {
				b.Fatal(err)
			}
			if bc.mode == maildirUnnamed && !safeio.TmpfileWorks(filepath.Join(dir, "tmp")) {
				b.Skip("no O_TMPFILE here")
			}
			b.ReportAllocs()
			var ru0 syscall.Rusage
			syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
			b.ResetTimer()
			if bc.parallel {
				b.SetParallelism(4)
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if err := maildirDeliver(dir, msg, testEnv("u@example.com"), bc.mode); err != nil {
							b.Error(err)
							return
						}
					}
				})
			} else {
				for i := 0; i < b.N; i++ {
					if err := maildirDeliver(dir, msg, testEnv("u@example.com"), bc.mode); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.StopTimer()
			// The process's CPU time (user + system, every thread) per
			// delivery, as deliver's benchmarks report it.
			var ru1 syscall.Rusage
			syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
			cpu := ru1.Utime.Nano() + ru1.Stime.Nano() - ru0.Utime.Nano() - ru0.Stime.Nano()
			b.ReportMetric(float64(cpu)/1e3/float64(b.N), "cpu-µs/op")
		})
	}
}

func testEnv(to string) mailcopy.Envelope {
	return mailcopy.Envelope{Sender: "sender@example.org", DeliveredTo: to}
}

// X-Original-To: comes between Return-Path: and Delivered-To:, as
// local(8) writes it into a Maildir file; addresses are quoted as
// quote_822_local() does.
func TestMaildirOriginalRecipient(t *testing.T) {
	dir := t.TempDir()
	env := mailcopy.Envelope{Sender: "a b@example.org", OrigRcpt: "orig@example.com", DeliveredTo: "user@example.com"}
	if err := DeliverEnv(dir, testMessage("Subject: hi\n\nbody"), env); err != nil {
		t.Fatal(err)
	}
	checkMaildirOne(t, dir, "Return-Path: <\"a b\"@example.org>\nX-Original-To: orig@example.com\nDelivered-To: user@example.com\nSubject: hi\n\nbody\n")
}
