package maillog

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestHandlerPrefix(t *testing.T) {
	var buf bytes.Buffer
	h := NewHandler(&buf, &Options{Host: "mx1", PID: 31337, Location: time.UTC})
	r := slog.NewRecord(time.Date(2025, time.November, 5, 9, 3, 7, 0, time.UTC), slog.LevelInfo, "4F9D1: removed", 0)
	r.AddAttrs(slog.String("component", "qmgr"))
	if err := h.Handle(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	// syslog's "Jan _2 15:04:05": the day of month is padded with a blank.
	want := "Nov  5 09:03:07 mx1 mailtee/qmgr[31337]: 4F9D1: removed\n"
	if buf.String() != want {
		t.Errorf("got  %q\nwant %q", buf.String(), want)
	}
}

func TestHandlerLocalTime(t *testing.T) {
	var buf bytes.Buffer
	loc := time.FixedZone("IST", 5*3600+1800)
	h := NewHandler(&buf, &Options{Host: "mx1", PID: 1, Location: loc})
	r := slog.NewRecord(time.Date(2025, time.November, 25, 23, 0, 0, 0, time.UTC), slog.LevelInfo, "x", 0)
	_ = h.Handle(context.Background(), r)
	if !strings.HasPrefix(buf.String(), "Nov 26 04:30:00 ") {
		t.Errorf("time not in the configured zone: %q", buf.String())
	}
}

func TestSlog(t *testing.T) {
	l, buf := newTest()
	s := l.Slog()
	s.Info("daemon started", "version", "0.1")
	smtpd := s.With("component", "smtpd")
	smtpd.Warn("hostname verification failed", "addr", "203.0.113.9", "err", "no such host")
	smtpd.Error("table lookup failed", slog.Group("map", "type", "hash", "file", "/etc/postfix/transport"))
	s.WithGroup("tls").Info("handshake", "version", "TLS1.3", "component", "not-a-component")
	s.Debug("not written at the default level")
	want := []string{
		"mailtee/master[4242]: daemon started version=0.1",
		`mailtee/smtpd[4242]: warning: hostname verification failed addr=203.0.113.9 err="no such host"`,
		"mailtee/smtpd[4242]: error: table lookup failed map.type=hash map.file=/etc/postfix/transport",
		"mailtee/master[4242]: handshake tls.version=TLS1.3 tls.component=not-a-component",
	}
	got := lines(t, buf)
	if len(got) != len(want) {
		t.Fatalf("got %d lines: %q", len(got), got)
	}
	for i := range got {
		if _, rest, _ := strings.Cut(got[i], " mail "); rest != want[i] {
			t.Errorf("got  %s\nwant %s", rest, want[i])
		}
	}
}

func TestSlogLevel(t *testing.T) {
	var buf bytes.Buffer
	l := NewWithHandler(NewHandler(&buf, &Options{Host: "h", PID: 1, Level: slog.LevelDebug}))
	l.Slog().Debug("probe", "component", "smtp")
	if !strings.HasSuffix(buf.String(), "mailtee/smtp[1]: debug: probe\n") {
		t.Errorf("got %q", buf.String())
	}

	// Mail log events are written even when operational logs are
	// turned down to errors only.
	buf.Reset()
	l = NewWithHandler(NewHandler(&buf, &Options{Host: "h", PID: 1, Level: slog.LevelError}))
	l.Slog().Warn("dropped")
	l.Removed("ABC")
	if got := buf.String(); !strings.HasSuffix(got, "mailtee/qmgr[1]: ABC: removed\n") || strings.Count(got, "\n") != 1 {
		t.Errorf("got %q", got)
	}
}

// A remote SMTP reply, an address or a Message-ID may carry CR, LF or
// invalid UTF-8; none of them may split a line or forge another.
func TestOneLinePerEvent(t *testing.T) {
	l, buf := newTest()
	forged := "x\nNov 25 12:00:00 mail mailtee/qmgr[1]: FAKE: removed"
	l.Delivery(Delivery{ID: "A1", To: "u@example.com", Status: "deferred", DSN: "4.0.0",
		Reason: "host mx said: 451 try\r\nagain " + forged})
	l.Printf("cleanup", "A1: message-id=%s", "<a\rb@\xffexample.com>")
	l.Slog().Info("reload", "file", "/etc/postfix/x\ny")
	l.Printf("smtpd", "helo=<jöran.example>")
	got := lines(t, buf)
	if len(got) != 4 {
		t.Fatalf("got %d lines: %q", len(got), got)
	}
	if !strings.Contains(got[0], "451 try??again x?Nov 25") {
		t.Errorf("control characters not masked: %q", got[0])
	}
	if !strings.HasSuffix(got[1], "message-id=<a?b@?example.com>") {
		t.Errorf("got %q", got[1])
	}
	if !strings.HasSuffix(got[2], `reload file="/etc/postfix/x\ny"`) {
		t.Errorf("got %q", got[2])
	}
	if !strings.HasSuffix(got[3], "helo=<jöran.example>") {
		t.Errorf("valid UTF-8 must pass: %q", got[3])
	}
}

func TestSanitizeNames(t *testing.T) {
	var buf bytes.Buffer
	l := NewWithHandler(NewHandler(&buf, &Options{Host: "my host", PID: 7, Location: time.UTC}))
	l.Printf("bad[comp]: x", "hello")
	p := parse(t, strings.TrimSuffix(buf.String(), "\n"))
	if p.component != "bad_comp___x" || p.text != "hello" {
		t.Errorf("got %+v from %q", p, buf.String())
	}
}

// Concurrent writers: every line must come out whole (run with -race).
func TestConcurrent(t *testing.T) {
	l, buf := newTest()
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := l.Slog().With("component", "smtp")
			for i := 0; i < 200; i++ {
				l.Removed("ABCDEF")
				s.Info("tick", "i", i)
			}
		}()
	}
	wg.Wait()
	got := lines(t, buf)
	if len(got) != 8*200*2 {
		t.Fatalf("got %d lines", len(got))
	}
	for _, line := range got {
		p := parse(t, line)
		if p.text != "ABCDEF: removed" && !strings.HasPrefix(p.text, "tick i=") {
			t.Fatalf("torn line %q", line)
		}
	}
}

func TestPrintable(t *testing.T) {
	for in, want := range map[string]string{
		"451 4.3.0 try later":                       "451 4.3.0 try later",
		"\x1b]0;owned\x07\x1b[2J\x1b[31mred\x1b[0m": "?]0;owned??[2J?[31mred?[0m",
		"nul\x00cr\rlf\ndel\x7f":                    "nul?cr?lf?del?",
		"csi\u009b2J bad\xff jöran €":               "csi?2J bad? jöran €",
	} {
		if got := Printable(in); got != want {
			t.Errorf("Printable(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestOneLine(t *testing.T) {
	// A multi-line SMTP reply as go-smtp joins it, with every kind of line
	// end a client could send, and a trailing one.
	got := OneLine("250-first\nsecond\r\nthird\rfourth\r\n")
	if want := "250-first second third fourth"; got != want {
		t.Errorf("OneLine = %q; want %q", got, want)
	}
}
