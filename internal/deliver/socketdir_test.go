package deliver

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"
)

// Issue 13, defect 7: "lmtp:unix:private/dovecot-lmtp" is under
// Postfix's queue_directory, where lmtp(8) runs and Dovecot puts the
// socket; mailtee connected to private/ under its working directory.
func TestDeliverLMTPRelativeSocket(t *testing.T) {
	qdir := t.TempDir()
	os.Mkdir(filepath.Join(qdir, "private"), 0o755)
	path := filepath.Join(qdir, "private", "lmtp")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	s := startSink(t, l, func(s *sink) { s.srv.LMTP = true })
	t.Chdir(t.TempDir()) // elsewhere, as a server started from /
	c := testClient("")
	c.LMTP = true
	c.HeloName = "mail.example.com"
	c.SocketDir = qdir
	r := c.Deliver(context.Background(), "unix:private/lmtp", testMessage(body), []string{"a@example.com"})[0]
	delivered(t, r)
	if len(s.messages()) != 1 {
		t.Errorf("LMTP server got %d messages, want 1", len(s.messages()))
	}
	// An absolute path stays as it is.
	delivered(t, c.Deliver(context.Background(), "unix:"+path, testMessage(body), []string{"b@example.com"})[0])
}
