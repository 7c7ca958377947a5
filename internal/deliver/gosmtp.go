// Package deliver hands a message to its next hop, an SMTP or LMTP server,
// as Postfix's smtp(8) and lmtp(8) do. Its Message and Error are also
// those of the other delivery agents (package maildir, local(8)).
//
// Every failure is an *Error, which says whether it is permanent (bounce)
// or transient (try again later) and carries Postfix's wording, so that
// the queue decides per recipient and the mail log reads like Postfix's:
//
//	connect to mx.example.com[192.0.2.1]:25: Connection refused
//	host mx.example.com[192.0.2.1] said: 550 5.1.1 <u@example.com>: Recipient address rejected: User unknown (in reply to RCPT TO command)
//	lost connection with mx.example.com[192.0.2.1] while sending message body
//	Host or domain name not found. Name service error for name=example.invalid type=A: Host not found
//
// The SMTP client is github.com/emersion/go-smtp's. What Postfix's smtp(8)
// does and go-smtp's client does not is gathered in this file, gosmtp.go,
// and used by connect (session.go) and transaction:
//
//   - HELO after any refused EHLO but 421, on a new connection (go-smtp
//     falls back only after 500 and 502): open, ehloRefused, and
//     watchConn, which turns the connection's first command into HELO;
//   - a failed greeting told from a failed EHLO, for Postfix's texts:
//     watchConn counts the commands written;
//   - STARTTLS after our own EHLO, sent on the socket and its reply read a
//     byte at a time (startTLS), then a new go-smtp client over TLS, given
//     the greeting it waits for (resumed);
//   - a write deadline for each chunk of the body (deadlineWriter), as
//     go-smtp sets none while DATA content is written;
//   - RFC 2920 PIPELINING (pipelined), through the session's own textproto
//     connection, as go-smtp sends one command at a time.
//
// The rest: smtp.go is the client and its loop over next hops and
// addresses, dial.go turns a next hop into connected sockets, session.go
// takes a connection past greeting, EHLO and STARTTLS, transaction.go runs
// one mail transaction, cache.go keeps idle sessions (within the reuse
// limits, smtp_connection_reuse_count_limit and _time_limit), policy.go
// is the caller's per-delivery Policy (WithPolicy: TLS level, messages
// per connection, a bandwidth Shape), error.go words failures.
package deliver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/mailtee/mailtee/internal/maillog"
)

// open connects to t and gets a session as far as the mail transaction:
// greeting, EHLO (HELO when EHLO is refused), STARTTLS per the TLS
// level. retryPlain asks the caller to try t again without TLS.
func (c *Client) open(ctx context.Context, t target, key, level string, useTLS bool) (*session, bool, *Error) {
	s, retryPlain, e := c.connect(ctx, t, key, level, useTLS, false)
	if e == errUseHELO {
		// Postfix falls back to HELO after any EHLO reply but 2xx and
		// 421; go-smtp does only after 500 and 502, so the fall-back is
		// done here, on a new connection.
		s, retryPlain, e = c.connect(ctx, t, key, level, useTLS, true)
	}
	return s, retryPlain, e
}

// errUseHELO asks open to connect again and say HELO.
var errUseHELO = &Error{Text: "EHLO refused"}

// watchConn counts the commands written, which tells a failed greeting
// from a failed EHLO, and with helo set turns the first command, EHLO,
// into HELO.
type watchConn struct {
	net.Conn
	helo   bool
	writes atomic.Int32
}

func (w *watchConn) Write(p []byte) (int, error) {
	if w.writes.Add(1) == 1 && w.helo && bytes.HasPrefix(p, []byte("EHLO ")) {
		q := append([]byte("HELO "), p[5:]...)
		return w.Conn.Write(q)
	}
	return w.Conn.Write(p)
}

// ehloRefused says whether err, from go-smtp's Hello, is the server's
// refusal of EHLO (after the greeting, the one command written) with a
// reply other than 421: Postfix says HELO then.
func (w *watchConn) ehloRefused(err error) bool {
	var se *smtp.SMTPError
	return w.writes.Load() == 1 && errors.As(err, &se) && se.Code != 421
}

// resumed replays a greeting before the connection's own data.
type resumed struct {
	net.Conn
	greeting []byte
}

func (r *resumed) Read(p []byte) (int, error) {
	if len(r.greeting) > 0 {
		n := copy(p, r.greeting)
		r.greeting = r.greeting[n:]
		return n, nil
	}
	return r.Conn.Read(p)
}

// startTLS sends STARTTLS and reads the reply a byte at a time, so that
// nothing after it is consumed before the TLS handshake.
func startTLS(conn net.Conn, timeout time.Duration) (int, string, error) {
	conn.SetDeadline(time.Now().Add(timeout))
	defer conn.SetDeadline(time.Time{})
	if _, err := io.WriteString(conn, "STARTTLS\r\n"); err != nil {
		return 0, "", err
	}
	var lines []string
	for {
		line, err := readLine(conn)
		if err != nil {
			return 0, "", err
		}
		code, err := strconv.Atoi(line[:min(3, len(line))])
		if err != nil || len(line) < 3 || len(line) > 3 && line[3] != ' ' && line[3] != '-' {
			return 0, "", fmt.Errorf("malformed reply %q", line)
		}
		lines = append(lines, line)
		if len(line) == 3 || line[3] == ' ' {
			return code, strings.Join(lines, " "), nil
		}
	}
}

func readLine(r io.Reader) (string, error) {
	var b []byte
	var c [1]byte
	for len(b) < 2000 {
		if _, err := io.ReadFull(r, c[:]); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return "", err
		}
		if c[0] == '\n' {
			return strings.TrimSuffix(string(b), "\r"), nil
		}
		b = append(b, c[0])
	}
	return "", errors.New("reply line too long")
}

// replyStatus is the enhanced status code of a raw reply line such as
// "454 4.7.0 TLS not available": the server's when its class matches the
// reply code, else X.0.0.
func replyStatus(code int, line string) string {
	class := strconv.Itoa(code / 100)
	if f := strings.Fields(line); len(f) > 1 && strings.HasPrefix(f[1], class+".") && strings.Count(f[1], ".") == 2 {
		return f[1]
	}
	return class + ".0.0"
}

// deadlineWriter refreshes the write deadline for each chunk of the body:
// go-smtp sets none while DATA content is written, and a server that stops
// reading must not hang the delivery.
type deadlineWriter struct {
	w    io.Writer
	conn net.Conn
	d    time.Duration
	err  error // the first write error: the server's side failed
}

func (t *deadlineWriter) Write(p []byte) (int, error) {
	t.conn.SetWriteDeadline(time.Now().Add(t.d))
	n, err := t.w.Write(p)
	if err != nil && t.err == nil {
		t.err = err
	}
	return n, err
}

// RFC 2920 PIPELINING, as Postfix's smtp(8) uses it: MAIL FROM, every
// RCPT TO and DATA go out in one write and their replies are read in
// order; the body and the final dot go out together. Two round trips per
// message instead of four or more. go-smtp's client sends one command at
// a time, so a session that pipelines talks through its own textproto
// connection once past EHLO (and STARTTLS): go-smtp's reader holds
// nothing then, since the server says nothing until asked.

// canPipeline says whether the transaction for msg on s can be pipelined.
func (s *session) canPipeline(from string, rcpts []string) bool {
	if s.lmtp {
		return false
	}
	if ok, _ := s.cl.Extension("PIPELINING"); !ok {
		return false
	}
	// go-smtp refuses line breaks in addresses; so does this path, by
	// leaving such (impossible from the queue) addresses to it.
	if strings.ContainsAny(from, "\r\n") {
		return false
	}
	for _, r := range rcpts {
		if strings.ContainsAny(r, "\r\n") {
			return false
		}
	}
	return true
}

func (s *session) text() *textproto.Conn {
	if s.tp == nil {
		s.tp = textproto.NewConn(s.conn)
	}
	return s.tp
}

// readReply reads one reply; a reply other than expect (a class, like
// 25, or a code) is an *smtp.SMTPError, anything else an I/O problem.
func (s *session) readReply(expect int, timeout time.Duration) (string, error) {
	s.conn.SetReadDeadline(time.Now().Add(timeout))
	_, msg, err := s.text().ReadResponse(expect)
	var pe *textproto.Error
	if errors.As(err, &pe) {
		return "", toSMTPError(pe)
	}
	return msg, err
}

// toSMTPError is go-smtp's reading of a reply: an enhanced status code
// at the start of its text is taken out of the text (RFC 2034).
func toSMTPError(pe *textproto.Error) *smtp.SMTPError {
	e := &smtp.SMTPError{Code: pe.Code, Message: pe.Msg}
	first, rest, ok := strings.Cut(pe.Msg, " ")
	if !ok {
		return e
	}
	code, ok := parseEnhanced(first)
	if !ok {
		return e
	}
	e.EnhancedCode = code
	e.Message = strings.ReplaceAll(rest, "\n"+first+" ", "\n")
	return e
}

func parseEnhanced(s string) (smtp.EnhancedCode, bool) {
	var c smtp.EnhancedCode
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return c, false
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || len(p) > 3 {
			return c, false
		}
		c[i] = n
	}
	return c, c[0] >= 2 && c[0] <= 5
}

// pipelined runs one mail transaction with PIPELINING, with the same
// outcomes, texts and session handling as transaction's one command at a
// time, and reports whether s may be reused.
func (d *delivery) pipelined(s *session, body io.Reader) bool {
	msg := d.msg
	tp := s.text()
	timeout := s.cl.CommandTimeout
	defer s.conn.SetDeadline(time.Time{})

	var b strings.Builder
	b.WriteString("MAIL FROM:<" + msg.From + ">")
	// As go-smtp: BODY=8BITMIME whenever offered, SIZE when offered.
	if ok, _ := s.cl.Extension("8BITMIME"); ok {
		b.WriteString(" BODY=8BITMIME")
	}
	if ok, _ := s.cl.Extension("SIZE"); ok && msg.Size != 0 {
		b.WriteString(" SIZE=" + strconv.FormatInt(msg.Size, 10))
	}
	if d.smtputf8 {
		b.WriteString(" SMTPUTF8") // asked for and offered (transaction)
	}
	dsn, _ := s.cl.Extension("DSN")
	if dsn {
		b.WriteString(msg.dsnMailParams())
	}
	b.WriteString("\r\n")
	rcpts := slices.Clone(d.pending)
	for _, i := range rcpts {
		b.WriteString("RCPT TO:<" + d.res[i].Rcpt + ">")
		if dsn {
			b.WriteString(msg.dsnRcptParams(i))
		}
		b.WriteString("\r\n")
	}
	b.WriteString("DATA\r\n")
	s.conn.SetWriteDeadline(time.Now().Add(timeout))
	tp.W.WriteString(b.String())
	if err := tp.W.Flush(); err != nil {
		d.keepAll(s.ioError(err, "sending MAIL FROM"))
		return false
	}

	// MAIL FROM.
	var mailErr *Error
	if _, err := s.readReply(250, timeout); err != nil {
		e, ok := d.refused(s, err, "MAIL FROM command", "sending MAIL FROM")
		if !ok {
			return false
		}
		mailErr = e
	}
	// RCPT TO, one reply each.
	var accepted []int
	for _, i := range rcpts {
		_, err := s.readReply(25, timeout) // 250 or 251
		if err == nil {
			if mailErr == nil {
				accepted = append(accepted, i)
			}
			continue
		}
		e, ok := d.refused(s, err, "RCPT TO command", "sending RCPT TO")
		if !ok {
			return false
		}
		if mailErr == nil {
			d.outcome([]int{i}, e)
		}
	}
	if mailErr != nil {
		// A refused sender refuses the message, for every recipient.
		d.outcome(rcpts, mailErr)
	}
	// DATA.
	_, err := s.readReply(354, timeout)
	if err != nil {
		e, ok := d.refused(s, err, "DATA command", "sending DATA command")
		if !ok {
			return false
		}
		if len(accepted) > 0 {
			d.outcome(accepted, e)
		}
		return s.reset()
	}
	if len(accepted) == 0 {
		// The server took DATA though nothing is to be sent: an empty
		// message ends it (RFC 2920 section 3.1), refused or not.
		s.conn.SetWriteDeadline(time.Now().Add(timeout))
		tp.W.WriteString(".\r\n")
		if tp.W.Flush() != nil {
			return false
		}
		if _, err := s.readReply(250, timeout); err != nil {
			var se *smtp.SMTPError
			if !errors.As(err, &se) {
				return false
			}
		}
		return s.reset()
	}
	dw := tp.DotWriter()
	if !d.sendBody(s, dw, body) {
		return false
	}
	s.conn.SetWriteDeadline(time.Now().Add(timeout))
	if err := dw.Close(); err != nil {
		d.keepAll(s.ioError(err, "sending message body"))
		return false
	}
	text, err := s.readReply(250, s.cl.SubmissionTimeout)
	if err != nil {
		e, ok := d.refused(s, err, "end of DATA command", afterDot)
		if !ok {
			return false
		}
		d.outcome(accepted, e)
		return true
	}
	for _, i := range accepted {
		d.succeed(i, s.relay, "250 "+maillog.OneLine(text))
	}
	return true
}
