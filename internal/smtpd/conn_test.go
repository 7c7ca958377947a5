package smtpd

import (
	"net"
	"strings"
	"sync"
	"testing"
)

// writeLog records every write the server makes to a connection.
type writeLog struct {
	mu     sync.Mutex
	writes []string
}

func (w *writeLog) all() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.writes...)
}

type loggedListener struct {
	net.Listener
	w *writeLog
}

func (l loggedListener) Accept() (net.Conn, error) {
	nc, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return loggedConn{nc, l.w}, nil
}

type loggedConn struct {
	net.Conn
	w *writeLog
}

func (c loggedConn) Write(b []byte) (int, error) {
	c.w.mu.Lock()
	c.w.writes = append(c.w.writes, string(b))
	c.w.mu.Unlock()
	return c.Conn.Write(b)
}

// A multi-line reply goes out in one write: nmap's smtp-open-relay reads
// one segment as the whole reply, and took the rest of an EHLO reply
// sent line by line as the answers to its next commands ("open relay"
// where nothing was relayed). Replies to pipelined commands go out
// together, as Postfix sends them.
func TestReplyOneWrite(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	w := &writeLog{}
	ts := startOn(t, loggedListener{l, w}, nil)
	c := dial(t, ts.addr)
	c.expect("220 ")
	ehlo := c.must("EHLO client.example", "250-")
	if n := strings.Count(ehlo, "\n") + 1; n < 5 {
		t.Fatalf("EHLO reply of %d lines, want several: %q", n, ehlo)
	}
	c.send("MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.com>\r\nRCPT TO:<c@example.com>\r\n")
	for range 3 {
		c.reply()
	}
	c.must("QUIT", "221 ")
	c.closed()

	got := w.all()
	want := []string{"220 ", "250-", "250 ", "221 "} // greeting, EHLO, MAIL+RCPT+RCPT, QUIT
	if len(got) != len(want) {
		t.Fatalf("%d writes, want %d (one per reply, one for the pipelined group):\n%q", len(got), len(want), got)
	}
	for i, p := range want {
		if !strings.HasPrefix(got[i], p) || !strings.HasSuffix(got[i], "\r\n") {
			t.Errorf("write %d: %q, want a whole reply starting %q", i, got[i], p)
		}
	}
	if strings.ReplaceAll(strings.TrimSuffix(got[1], "\r\n"), "\r\n", "\n") != ehlo {
		t.Errorf("EHLO reply not in one write: %q", got[1])
	}
	if strings.Count(got[2], "\r\n") != 3 {
		t.Errorf("pipelined replies: %q, want three replies in one write", got[2])
	}
}
