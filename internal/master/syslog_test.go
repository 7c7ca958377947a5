package master

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/maillog"
)

// With maillog_file empty and a syslog socket, the log goes to syslog,
// with syslog_name and syslog_facility (and a copy to a stderr that is a
// file). Without the socket it goes to stderr with one warning.
func TestSyslogWiring(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "log")
	l, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	old := maillog.DefaultSyslogSocket
	maillog.DefaultSyslogSocket = sock
	t.Cleanup(func() { maillog.DefaultSyslogSocket = old })

	stderr, err := os.Create(filepath.Join(dir, "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer stderr.Close()
	cfg := writeMainCF(t, dir, freePort(t), "", "syslog_name = postfix-test\nsyslog_facility = local1\n")
	findings, opened := Check(cfg)
	if findings.HasErrors() {
		t.Fatal(findings)
	}
	s, err := New(cfg, stderr, opened)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 8192)
	var got string
	for !strings.Contains(got, "daemon started") {
		l.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := l.Read(buf)
		if err != nil {
			t.Fatalf("no daemon started line in syslog: %v", err)
		}
		got = string(buf[:n])
	}
	// local1 (17) * 8 + info (6)
	if !strings.HasPrefix(got, "<142>") || !strings.Contains(got, " postfix-test/master[") || strings.Contains(got, cfg.Get("myhostname")+" postfix-test") {
		t.Errorf("syslog record %q", got)
	}
	s.Stop(5 * time.Second)
	if b, _ := os.ReadFile(stderr.Name()); !strings.Contains(string(b), " postfix-test/master[") {
		t.Errorf("stderr got %q", b)
	}

	// No socket: stderr, with a warning.
	maillog.DefaultSyslogSocket = filepath.Join(dir, "none")
	dir2 := t.TempDir()
	cfg = writeMainCF(t, dir2, freePort(t), "", "")
	_, opened = Check(cfg)
	stderr2, err := os.Create(filepath.Join(dir2, "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer stderr2.Close()
	s, err = New(cfg, stderr2, opened)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	s.Stop(5 * time.Second)
	b, _ := os.ReadFile(stderr2.Name())
	if !strings.Contains(string(b), "mailtee/master[") || !strings.Contains(string(b), "warning: syslog socket "+maillog.DefaultSyslogSocket) || !strings.Contains(string(b), "daemon started") {
		t.Errorf("stderr without a syslog socket:\n%s", b)
	}
}
