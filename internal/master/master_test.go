package master

import (
	"bytes"
	"net"
	"net/smtp"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/config"
	"github.com/mailtee/mailtee/internal/maildrop"
)

// syncBuffer is a log that the server writes while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// freePort is a loopback port nobody listens on now.
func freePort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port
}

// writeMainCF writes and loads a main.cf that discards all mail, with
// always_bcc = bcc and the lines of extra.
func writeMainCF(t *testing.T, dir, port, bcc, extra string) *config.Config {
	t.Helper()
	cf := "queue_directory = " + filepath.Join(dir, "queue") + "\n" +
		"myhostname = mx.example.org\nmydestination =\nalias_maps =\ninet_interfaces = 127.0.0.1\nsmtpd_port = " + port + "\n" +
		"mynetworks = 127.0.0.0/8\ndefault_transport = discard:test\nalways_bcc = " + bcc + "\n" + extra +
		"\ndata_directory = " + filepath.Join(dir, "data") + "\n"
	if err := os.WriteFile(filepath.Join(dir, "main.cf"), []byte(cf), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// serve checks cfg as serve does and runs a server on it until the test
// ends; its log is returned.
func serve(t *testing.T, cfg *config.Config) (*Server, *syncBuffer) {
	t.Helper()
	findings, opened := Check(cfg)
	if findings.HasErrors() {
		t.Fatal(findings)
	}
	log := new(syncBuffer)
	s, err := New(cfg, log, opened)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop(5 * time.Second) })
	return s, log
}

func waitLog(t *testing.T, log *syncBuffer, want string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if strings.Contains(log.String(), want) {
			return
		}
	}
	t.Fatalf("log lacks %q:\n%s", want, log.String())
}

// The server is wired end to end through cleanup's door, and a reload
// reaches every stage: a message after a reload gets the new
// configuration's always_bcc (the door's cleanup is replaced with the
// rest of the runtime).
func TestServeAndReload(t *testing.T) {
	dir := t.TempDir()
	port := freePort(t)
	s, log := serve(t, writeMainCF(t, dir, port, "arch1@example.net", ""))
	addr := s.listeners[0].Addr().String()
	send := func() {
		t.Helper()
		if err := smtp.SendMail(addr, nil, "a@example.org", []string{"b@example.com"}, []byte("Subject: x\r\n\r\nbody\r\n")); err != nil {
			t.Fatal(err)
		}
	}
	send()
	waitLog(t, log, "to=<arch1@example.net>")
	writeMainCF(t, dir, port, "arch2@example.net", "")
	if err := s.Reload(dir); err != nil {
		t.Fatal(err)
	}
	send()
	waitLog(t, log, "to=<arch2@example.net>")

	// A configuration serve would refuse is refused by reload too, and
	// the running one is kept.
	writeMainCF(t, dir, port, "a b c @@", "")
	if err := s.Reload(dir); err == nil || !strings.Contains(err.Error(), "always_bcc") {
		t.Errorf("reload with always_bcc = a b c @@: %v", err)
	}
	send()
	for deadline := time.Now().Add(10 * time.Second); strings.Count(log.String(), "to=<arch2@example.net>") < 2 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	if n := strings.Count(log.String(), "to=<arch2@example.net>"); n != 2 {
		t.Errorf("after a refused reload, %d copies to arch2, want 2:\n%s", n, log.String())
	}
}

// A local submission that cleanup refuses for good (too many hops) is
// set aside with the reason, not retried at every scan; sendmail's
// drop goes through the server's pickup and cleanup's door.
func TestPickupRefusedForGood(t *testing.T) {
	dir := t.TempDir()
	port := freePort(t)
	cfg := writeMainCF(t, dir, port, "", "hopcount_limit = 3\n")
	_, log := serve(t, cfg)
	qdir := QueueDir(cfg)
	drop := func(msg string) {
		t.Helper()
		d := &maildrop.Drop{UID: uint32(os.Getuid()), User: "root", Arrival: time.Now(), From: "root", Rcpts: []string{"b@example.com"}}
		if _, _, err := maildrop.Post(qdir, d, []byte(msg)); err != nil {
			t.Fatal(err)
		}
	}
	drop(strings.Repeat("Received: by loop.example\r\n", 3) + "Subject: loop\r\n\r\nx\r\n")
	drop("Subject: fine\r\n\r\nx\r\n")
	waitLog(t, log, "to=<b@example.com>")
	waitLog(t, log, "refused: 554 5.4.6 too many hops")
	left, _ := os.ReadDir(filepath.Join(qdir, maildrop.DropDir))
	aside, _ := os.ReadDir(filepath.Join(qdir, maildrop.CorruptDir))
	if len(left) != 0 || len(aside) != 1 {
		t.Errorf("%d files left in maildrop, %d set aside; want 0 and 1:\n%s", len(left), len(aside), log.String())
	}
}
