package deliver

import (
	"bufio"
	"context"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// scriptServer is a hand-written SMTP server on 127.0.0.1 for one
// session: it greets, answers EHLO with caps, then hands the connection
// to script.
func scriptServer(t *testing.T, caps []string, script func(r *bufio.Reader, c net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		r := bufio.NewReader(c)
		c.Write([]byte("220 script ESMTP\r\n"))
		if line, _ := r.ReadString('\n'); !strings.HasPrefix(line, "EHLO") {
			return
		}
		var b strings.Builder
		b.WriteString("250-script\r\n")
		for i, cp := range caps {
			sep := "-"
			if i == len(caps)-1 {
				sep = " "
			}
			b.WriteString("250" + sep + cp + "\r\n")
		}
		c.Write([]byte(b.String()))
		script(r, c)
	}()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

// readCommand reads one command line, failing the test on a timeout.
func readCommand(t *testing.T, r *bufio.Reader, c net.Conn, within time.Duration) string {
	c.SetReadDeadline(time.Now().Add(within))
	line, err := r.ReadString('\n')
	if err != nil {
		t.Errorf("no command within %v: %v", within, err)
	}
	return strings.TrimRight(line, "\r\n")
}

// With PIPELINING offered, MAIL, RCPT and DATA arrive before any reply:
// the server answers nothing until it has read all four.
func TestPipelining(t *testing.T) {
	got := make(chan []string, 1)
	port := scriptServer(t, []string{"PIPELINING", "SIZE 1000000"}, func(r *bufio.Reader, c net.Conn) {
		var cmds []string
		for i := 0; i < 4; i++ { // MAIL, RCPT, RCPT, DATA: no reply yet
			cmds = append(cmds, readCommand(t, r, c, 2*time.Second))
		}
		got <- cmds
		c.Write([]byte("250 2.1.0 Ok\r\n550 5.1.1 <b@example.com>: no such user\r\n250 2.1.5 Ok\r\n354 go on\r\n"))
		for {
			line := readCommand(t, r, c, 5*time.Second)
			if line == "." || line == "" {
				break
			}
		}
		c.Write([]byte("250 2.0.0 Ok: queued as X1\r\n"))
		readCommand(t, r, c, 5*time.Second) // QUIT
		c.Write([]byte("221 bye\r\n"))
	})
	c := testClient(port)
	res := c.Deliver(context.Background(), "[127.0.0.1]:"+port, testMessage(body), []string{"b@example.com", "a@example.com"})
	cmds := <-got
	want := []string{"MAIL FROM:<sender@example.org> SIZE=" + strconv.Itoa(len(strings.ReplaceAll(body, "\n", "\r\n"))), "RCPT TO:<b@example.com>", "RCPT TO:<a@example.com>", "DATA"}
	if strings.Join(cmds, "|") != strings.Join(want, "|") {
		t.Errorf("commands before the first reply:\n got %q\nwant %q", cmds, want)
	}
	wantErr(t, res[0], true, "5.1.1", "host 127.0.0.1[127.0.0.1] said: 550 5.1.1 <b@example.com>: no such user (in reply to RCPT TO command)")
	delivered(t, res[1])
	if res[1].Reply != "250 2.0.0 Ok: queued as X1" {
		t.Errorf("reply %q", res[1].Reply)
	}
}

// A refused sender refuses every recipient; the pipelined RCPT and DATA
// replies (503) are read and the session is reset, not broken.
func TestPipeliningSenderRefused(t *testing.T) {
	done := make(chan string, 1)
	port := scriptServer(t, []string{"PIPELINING"}, func(r *bufio.Reader, c net.Conn) {
		for i := 0; i < 3; i++ {
			readCommand(t, r, c, 2*time.Second)
		}
		c.Write([]byte("553 5.7.1 <sender@example.org>: sender refused\r\n503 5.5.1 need MAIL\r\n503 5.5.1 need RCPT\r\n"))
		done <- readCommand(t, r, c, 5*time.Second) // RSET, then (cached) nothing
		c.Write([]byte("250 2.0.0 Ok\r\n"))
	})
	c := testClient(port)
	res := c.Deliver(context.Background(), "[127.0.0.1]:"+port, testMessage(body), []string{"a@example.com"})
	wantErr(t, res[0], true, "5.7.1", "host 127.0.0.1[127.0.0.1] said: 553 5.7.1 <sender@example.org>: sender refused (in reply to MAIL FROM command)")
	if cmd := <-done; cmd != "RSET" {
		t.Errorf("after the refusals the client said %q, want RSET", cmd)
	}
}

// A server that takes DATA though it refused every recipient gets an
// empty message, then RSET; nothing of the body is sent.
func TestPipeliningDataWithoutRecipients(t *testing.T) {
	after := make(chan []string, 1)
	port := scriptServer(t, []string{"PIPELINING"}, func(r *bufio.Reader, c net.Conn) {
		for i := 0; i < 3; i++ {
			readCommand(t, r, c, 2*time.Second)
		}
		c.Write([]byte("250 2.1.0 Ok\r\n450 4.2.0 <a@example.com>: greylisted\r\n354 go on\r\n"))
		var lines []string
		lines = append(lines, readCommand(t, r, c, 5*time.Second))
		c.Write([]byte("554 5.5.1 no valid recipients\r\n"))
		lines = append(lines, readCommand(t, r, c, 5*time.Second))
		c.Write([]byte("250 2.0.0 Ok\r\n"))
		after <- lines
	})
	c := testClient(port)
	res := c.Deliver(context.Background(), "[127.0.0.1]:"+port, testMessage(body), []string{"a@example.com"})
	wantErr(t, res[0], false, "4.2.0", "host 127.0.0.1[127.0.0.1] said: 450 4.2.0 <a@example.com>: greylisted (in reply to RCPT TO command)")
	if lines := <-after; strings.Join(lines, "|") != ".|RSET" {
		t.Errorf("after DATA's 354 the client said %q, want \".\" then RSET", lines)
	}
}
