package harness

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// Client says how Send connects; the packages differ in how long they
// let a transaction take and whether QUIT matters.
type Client struct {
	Local       string        // source address, "" for any
	DialTimeout time.Duration // none when zero
	Deadline    time.Duration // on the whole conversation; none when zero
	// IgnoreQuit makes the result nil exactly when DATA got 250: the
	// message is acknowledged then, whatever QUIT gets.
	IgnoreQuit bool
}

// Send submits one message with go-smtp and returns the error of the
// transaction (nil when the server said 250 to DATA, and to QUIT unless
// IgnoreQuit).
func (cl Client) Send(addr, from string, to []string, body string) error {
	d := net.Dialer{Timeout: cl.DialTimeout}
	if cl.Local != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(cl.Local)}
	}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		return err
	}
	if cl.Deadline > 0 {
		conn.SetDeadline(time.Now().Add(cl.Deadline))
	}
	c := smtp.NewClient(conn)
	defer c.Close()
	if err := c.Hello("client.test.example"); err != nil {
		return err
	}
	if err := c.Mail(from, nil); err != nil {
		return err
	}
	for _, r := range to {
		if err := c.Rcpt(r, nil); err != nil {
			return err
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := io.WriteString(w, body); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	if cl.IgnoreQuit {
		c.Quit()
		return nil
	}
	return c.Quit()
}

// Send is Client.Send with go-smtp's own dialling (smtp.Dial: 30 s to
// connect) and no deadline.
func Send(addr, from string, to []string, body string) error {
	return Client{DialTimeout: 30 * time.Second}.Send(addr, from, to, body)
}

// TestMessage is a minimal message whose subject tells it apart.
func TestMessage(subject string) string {
	return "From: sender@outside.example\r\nTo: someone\r\nSubject: " + subject + "\r\n\r\nHello.\r\n"
}

// RawSMTP is a line-level SMTP conversation, for checking exact replies
// and for sending what no SMTP client library would.
type RawSMTP struct {
	T    testing.TB
	Conn net.Conn
	R    *bufio.Reader
}

// DialRaw connects to addr from the source address local ("" for any),
// with 5 s to connect and 30 s for the whole conversation, and reads the
// greeting. The connection is closed at test cleanup.
func DialRaw(t testing.TB, addr, local string) *RawSMTP {
	t.Helper()
	r := DialRawNoGreeting(t, addr, local, 5*time.Second, 30*time.Second)
	r.Reply()
	return r
}

// DialRawNoGreeting is DialRaw with the given time to connect and for the
// conversation, leaving the greeting unread.
func DialRawNoGreeting(t testing.TB, addr, local string, dial, deadline time.Duration) *RawSMTP {
	t.Helper()
	d := net.Dialer{Timeout: dial}
	if local != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(deadline))
	t.Cleanup(func() { c.Close() })
	return &RawSMTP{T: t, Conn: c, R: bufio.NewReader(c)}
}

// Reply reads one (possibly multi-line) reply and returns its last line,
// or "EOF ..." when the connection ended or failed first.
func (r *RawSMTP) Reply() string {
	var last string
	for {
		line, err := r.R.ReadString('\n')
		if err != nil {
			return "EOF " + err.Error()
		}
		last = strings.TrimRight(line, "\r\n")
		if len(last) < 4 || last[3] != '-' {
			return last
		}
	}
}

// Cmd sends one command line and returns the last line of the reply. A
// failed write is not an error of its own: the reply then tells.
func (r *RawSMTP) Cmd(line string) string {
	fmt.Fprintf(r.Conn, "%s\r\n", line)
	return r.Reply()
}
