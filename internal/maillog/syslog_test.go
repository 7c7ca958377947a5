package maillog_test

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/maillog"
	"golang.org/x/sys/unix"
)

// listen makes a datagram syslog socket as rsyslog's imuxsock does.
func listen(t *testing.T, path string) *net.UnixConn {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func readRecord(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	buf := make([]byte, 64<<10)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("no syslog record: %v", err)
	}
	return string(buf[:n])
}

func newSyslog(t *testing.T, o maillog.SyslogOptions) *maillog.Syslog {
	t.Helper()
	s, err := maillog.NewSyslog(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

var when = time.Date(2026, 12, 6, 9, 5, 3, 0, time.UTC)

func handle(t *testing.T, h *maillog.Handler, level slog.Level, component, text string) {
	t.Helper()
	r := slog.NewRecord(when, level, text, 0)
	r.AddAttrs(slog.String(maillog.ComponentKey, component))
	if err := h.Handle(context.Background(), r); err != nil {
		t.Fatal(err)
	}
}

// The records are those glibc's syslog(3) sends for Postfix
// (openlog("postfix/qmgr", LOG_PID, LOG_MAIL)): "<PRI>", the time
// stamp, no host, the tag with the pid, and no newline.
func TestSyslogRecords(t *testing.T) {
	for _, tc := range []struct {
		facility  string
		level     slog.Level
		component string
		text      string
		want      string
	}{
		{"", slog.LevelInfo, "qmgr", "4F9D: removed", "<22>Dec  6 09:05:03 postfix/qmgr[4242]: 4F9D: removed"},
		{"mail", slog.LevelWarn, "smtpd", "hostname x does not resolve", "<20>Dec  6 09:05:03 postfix/smtpd[4242]: warning: hostname x does not resolve"},
		{"mail", slog.LevelError, "local", "bad", "<19>Dec  6 09:05:03 postfix/local[4242]: error: bad"},
		{"local3", slog.LevelInfo, "smtp", "x", "<158>Dec  6 09:05:03 postfix/smtp[4242]: x"},
		{"local7", slog.LevelWarn, "smtp", "x", "<188>Dec  6 09:05:03 postfix/smtp[4242]: warning: x"},
		{"daemon", slog.LevelDebug, "smtp", "x", "<31>Dec  6 09:05:03 postfix/smtp[4242]: debug: x"},
	} {
		path := filepath.Join(t.TempDir(), "log")
		l := listen(t, path)
		s := newSyslog(t, maillog.SyslogOptions{Socket: path, Facility: tc.facility})
		h := maillog.NewHandler(s, &maillog.Options{Host: "mx", Program: "postfix", PID: 4242, Location: time.UTC, Level: slog.LevelDebug})
		handle(t, h, tc.level, tc.component, tc.text)
		if got := readRecord(t, l); got != tc.want {
			t.Errorf("facility %q level %v:\n got %q\nwant %q", tc.facility, tc.level, got, tc.want)
		}
	}
}

// A warning written as text by Printf("warning: ...") is sent as a
// warning, as Postfix's msg_warn lines are.
func TestSyslogSeverityFromText(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	l := listen(t, path)
	s := newSyslog(t, maillog.SyslogOptions{Socket: path})
	maillog.NewWithHandler(maillog.NewHandler(s, &maillog.Options{Host: "mx", PID: 7})).Printf("local", "warning: %s", "x")
	if got := readRecord(t, l); !strings.HasPrefix(got, "<20>") || !strings.HasSuffix(got, " mailtee/local[7]: warning: x") {
		t.Errorf("got %q", got)
	}
}

// The text is cut at 2000 bytes, after the severity, as Postfix's
// MSG_SYSLOG_RECLEN.
func TestSyslogLongLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	l := listen(t, path)
	s := newSyslog(t, maillog.SyslogOptions{Socket: path})
	h := maillog.NewHandler(s, &maillog.Options{Host: "mx", Program: "postfix", PID: 1, Location: time.UTC})
	handle(t, h, slog.LevelWarn, "smtp", strings.Repeat("x", 5000))
	want := "<20>Dec  6 09:05:03 postfix/smtp[1]: warning: " + strings.Repeat("x", 2000)
	if got := readRecord(t, l); got != want {
		t.Errorf("got %d bytes %q...", len(got), got[:min(len(got), 80)])
	}
}

// A restarted syslog daemon (its socket removed and made again) gets the
// next lines, and the lines written while it was away, none lost.
func TestSyslogReconnects(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	l := listen(t, path)
	s := newSyslog(t, maillog.SyslogOptions{Socket: path})
	h := maillog.NewHandler(s, &maillog.Options{Host: "mx", Program: "postfix", PID: 1, Location: time.UTC})
	handle(t, h, slog.LevelInfo, "smtpd", "one")
	if got := readRecord(t, l); !strings.HasSuffix(got, ": one") {
		t.Fatalf("got %q", got)
	}

	// Restarted between two lines.
	l.Close()
	os.Remove(path)
	l = listen(t, path)
	handle(t, h, slog.LevelInfo, "smtpd", "two")
	if got := readRecord(t, l); !strings.HasSuffix(got, ": two") {
		t.Fatalf("after a restart: got %q", got)
	}

	// Away while lines are written.
	l.Close()
	os.Remove(path)
	handle(t, h, slog.LevelInfo, "smtpd", "three")
	handle(t, h, slog.LevelInfo, "smtpd", "four")
	time.Sleep(300 * time.Millisecond)
	l = listen(t, path)
	for _, w := range []string{"three", "four"} {
		if got := readRecord(t, l); !strings.HasSuffix(got, ": "+w) {
			t.Fatalf("after an absence: got %q, want %s", got, w)
		}
	}
	if n := s.Dropped(); n != 0 {
		t.Errorf("Dropped = %d", n)
	}
}

// A daemon that does not read never holds up the writer: lines past the
// queue are dropped and counted, Close gives up in bounded time, and once
// the daemon reads again a warning says how many were lost.
func TestSyslogStuckDaemon(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	l := listen(t, path)
	s, err := maillog.NewSyslog(maillog.SyslogOptions{Socket: path, QueueLen: 100, SendTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	h := maillog.NewHandler(s, &maillog.Options{Host: "mx", Program: "postfix", PID: 9, Location: time.UTC})
	start := time.Now()
	const lines = 5000
	for i := range lines {
		handle(t, h, slog.LevelInfo, "smtpd", "line "+string(rune('a'+i%26)))
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("%d lines to a stuck daemon took %v", lines, d)
	}
	dropped := s.Dropped()
	if dropped == 0 {
		t.Fatal("nothing dropped with a daemon that does not read")
	}
	t.Logf("%d lines written in %v, %d dropped", lines, time.Since(start), dropped)

	// The daemon reads again: every kept line arrives, then the warning.
	var warning string
	for deadline := time.Now().Add(10 * time.Second); warning == "" && time.Now().Before(deadline); {
		if rec := readRecord(t, l); strings.Contains(rec, "were dropped") {
			warning = rec
		}
	}
	if !strings.HasPrefix(warning, "<20>") || !strings.Contains(warning, " postfix/master[9]: warning: ") {
		t.Errorf("drop warning %q", warning)
	}
	go func() { // the rest of the queue
		buf := make([]byte, 4096)
		for {
			if _, err := l.Read(buf); err != nil {
				return
			}
		}
	}()
	if err := s.Close(); err != nil {
		t.Error(err)
	}

	// Close with a stuck daemon returns, in bounded time, with an error.
	l2 := listen(t, filepath.Join(t.TempDir(), "log2"))
	s2, err := maillog.NewSyslog(maillog.SyslogOptions{Socket: l2.LocalAddr().String(), QueueLen: 5000, SendTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	for range 3000 {
		s2.Write([]byte("Dec  6 09:05:03 mx postfix/smtpd[1]: " + strings.Repeat("y", 1000) + "\n"))
	}
	start = time.Now()
	if err := s2.Close(); err == nil {
		t.Error("Close with a stuck daemon: no error")
	}
	if d := time.Since(start); d > 7*time.Second {
		t.Errorf("Close took %v", d)
	}
}

// A daemon listening on a stream socket gets NUL-terminated records, as
// glibc sends them there.
func TestSyslogStream(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- nil
			return
		}
		defer c.Close()
		var b bytes.Buffer
		buf := make([]byte, 4096)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		for bytes.Count(b.Bytes(), []byte{0}) < 2 {
			n, err := c.Read(buf)
			b.Write(buf[:n])
			if err != nil {
				break
			}
		}
		got <- b.Bytes()
	}()
	s := newSyslog(t, maillog.SyslogOptions{Socket: path})
	h := maillog.NewHandler(s, &maillog.Options{Host: "mx", Program: "postfix", PID: 3, Location: time.UTC})
	handle(t, h, slog.LevelInfo, "pickup", "a")
	handle(t, h, slog.LevelInfo, "pickup", "b")
	want := "<22>Dec  6 09:05:03 postfix/pickup[3]: a\x00<22>Dec  6 09:05:03 postfix/pickup[3]: b\x00"
	if b := <-got; string(b) != want {
		t.Errorf("got %q\nwant %q", b, want)
	}
}

func TestSyslogBadOptions(t *testing.T) {
	if _, err := maillog.NewSyslog(maillog.SyslogOptions{Socket: filepath.Join(t.TempDir(), "none")}); err == nil {
		t.Error("no error without a socket")
	}
	path := filepath.Join(t.TempDir(), "log")
	listen(t, path)
	if _, err := maillog.NewSyslog(maillog.SyslogOptions{Socket: path, Facility: "mial"}); err == nil {
		t.Error("no error for facility mial")
	}
}

// Without a syslog socket the log stays on stderr, with a warning; a
// stderr that is not a file is used as is; with a socket, stderr gets a
// copy when it is a file or a pipe, not when it is /dev/null or a socket.
func TestDefaultLog(t *testing.T) {
	none := filepath.Join(t.TempDir(), "none")
	w, closeFn, warning := maillog.DefaultLog(os.Stderr, maillog.SyslogOptions{Socket: none})
	if w != os.Stderr || closeFn != nil || !strings.Contains(warning, none) {
		t.Errorf("no socket: %v %v %q", w, closeFn != nil, warning)
	}
	var buf bytes.Buffer
	if w, _, warning := maillog.DefaultLog(&buf, maillog.SyslogOptions{}); w != &buf || warning != "" {
		t.Errorf("buffer: %v %q", w, warning)
	}

	path := filepath.Join(t.TempDir(), "log")
	l := listen(t, path)
	const line = "Dec  6 09:05:03 mx mailtee/smtpd[1]: x\n"
	file, err := os.CreateTemp(t.TempDir(), "stderr")
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	sock, peer := os.NewFile(uintptr(fds[0]), "journal"), os.NewFile(uintptr(fds[1]), "peer")
	defer sock.Close()
	defer peer.Close()
	for _, tc := range []struct {
		f      *os.File
		copied bool
	}{{file, true}, {devnull, false}, {sock, false}} {
		w, closeFn, warning := maillog.DefaultLog(tc.f, maillog.SyslogOptions{Socket: path})
		if warning != "" || closeFn == nil {
			t.Fatalf("%s: %q", tc.f.Name(), warning)
		}
		w.Write([]byte(line))
		if got := readRecord(t, l); got != "<22>Dec  6 09:05:03 mailtee/smtpd[1]: x" {
			t.Errorf("%s: syslog got %q", tc.f.Name(), got)
		}
		closeFn()
		if _, isSyslog := w.(*maillog.Syslog); isSyslog == tc.copied {
			t.Errorf("%s: copied to stderr = %v, want %v", tc.f.Name(), !isSyslog, tc.copied)
		}
	}
	if b, _ := os.ReadFile(file.Name()); string(b) != line {
		t.Errorf("file stderr got %q", b)
	}
}

// A stderr that is a terminal gets the lines too: whoever runs serve by
// hand sees them.
func TestDefaultLogTerminal(t *testing.T) {
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	defer ptmx.Close()
	if err := unix.IoctlSetPointerInt(int(ptmx.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Skip(err)
	}
	n, err := unix.IoctlGetInt(int(ptmx.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Skip(err)
	}
	tty, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skip(err)
	}
	defer tty.Close()

	path := filepath.Join(t.TempDir(), "log")
	l := listen(t, path)
	w, closeFn, _ := maillog.DefaultLog(tty, maillog.SyslogOptions{Socket: path})
	defer closeFn()
	w.Write([]byte("Dec  6 09:05:03 mx mailtee/smtpd[1]: x\n"))
	if got := readRecord(t, l); got != "<22>Dec  6 09:05:03 mailtee/smtpd[1]: x" {
		t.Errorf("syslog got %q", got)
	}
	buf := make([]byte, 200)
	ptmx.SetReadDeadline(time.Now().Add(5 * time.Second))
	m, _ := ptmx.Read(buf)
	if got := string(buf[:m]); !strings.Contains(got, "mailtee/smtpd[1]: x") {
		t.Errorf("terminal got %q", got)
	}
}
