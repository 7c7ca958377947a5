package e2e

import (
	"io"
	"log"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// lmtpServer is an LMTP server on a unix socket, as Dovecot's would be,
// recording each recipient it accepted.
type lmtpServer struct {
	mu    sync.Mutex
	rcpts []string
	data  []string
}

type lmtpSession struct {
	s  *lmtpServer
	to []string
}

func (ls *lmtpSession) Reset()                               { ls.to = nil }
func (ls *lmtpSession) Logout() error                        { return nil }
func (ls *lmtpSession) Mail(string, *smtp.MailOptions) error { return nil }
func (ls *lmtpSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	ls.to = append(ls.to, to)
	return nil
}
func (ls *lmtpSession) Data(r io.Reader) error {
	b, _ := io.ReadAll(r)
	ls.s.mu.Lock()
	ls.s.rcpts = append(ls.s.rcpts, ls.to...)
	ls.s.data = append(ls.s.data, string(b))
	ls.s.mu.Unlock()
	return nil
}

// startLMTP serves LMTP on the unix socket sock until the test ends.
func startLMTP(t *testing.T, sock string) *lmtpServer {
	t.Helper()
	ls := &lmtpServer{}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) { return &lmtpSession{s: ls}, nil }))
	srv.LMTP = true
	srv.Domain = "dovecot.test.example"
	srv.ErrorLog = log.New(io.Discard, "", 0)
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return ls
}

// count is how many messages the server took for rcpt.
func (ls *lmtpServer) count(rcpt string) int {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	n := 0
	for _, r := range ls.rcpts {
		if r == rcpt {
			n++
		}
	}
	return n
}

// mailbox_transport = lmtp:unix:/path hands local mailboxes to an LMTP
// server (Dovecot), after alias expansion.
func TestMailboxTransportLMTP(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "lmtp")
	ls := startLMTP(t, sock)
	in := newInstance(t, "mailbox_transport = lmtp:unix:"+sock+"\n", map[string]string{"aliases": "staff: alice, bob\n"})
	in.Start()
	if err := send(in.Addr(), "s@outside.example", []string{"staff@test.example"}, testMessage("lmtp")); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "LMTP delivery", 15*time.Second, func() bool {
		ls.mu.Lock()
		defer ls.mu.Unlock()
		return len(ls.rcpts) == 2
	})
	ls.mu.Lock()
	got := strings.Join(ls.rcpts, ",")
	ls.mu.Unlock()
	if got != "alice@test.example,bob@test.example" {
		t.Errorf("LMTP recipients %q", got)
	}
	in.WaitLog("delivered over LMTP for alice@test.example, bob@test.example")
}
