package e2e

import (
	"io"
	"log"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// Issue 13, defect 7: "lmtp:unix:private/dovecot-lmtp", Dovecot's usual
// line, is a socket under Postfix's queue directory
// (postfix_queue_directory), not under the directory mailtee was
// started from.
func TestMailboxTransportLMTPRelativeSocket(t *testing.T) {
	pq := t.TempDir()
	os.Mkdir(filepath.Join(pq, "private"), 0o755)
	ls := &lmtpServer{}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) { return &lmtpSession{s: ls}, nil }))
	srv.LMTP = true
	srv.Domain = "dovecot.test.example"
	srv.ErrorLog = log.New(io.Discard, "", 0)
	l, err := net.Listen("unix", filepath.Join(pq, "private", "dovecot-lmtp"))
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })

	in := newInstance(t, "mailbox_transport = lmtp:unix:private/dovecot-lmtp\npostfix_queue_directory = "+pq+"\n", nil)
	in.Start()
	if err := send(in.Addr(), "s@outside.example", []string{"postmaster@test.example"}, testMessage("lmtp")); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "LMTP delivery", 15*time.Second, func() bool {
		ls.mu.Lock()
		defer ls.mu.Unlock()
		return len(ls.rcpts) == 1
	})
}
