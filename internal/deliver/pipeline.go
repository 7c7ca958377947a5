package deliver

import (
	"errors"
	"io"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-smtp"
)

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
	if msg.SMTPUTF8 {
		b.WriteString(" SMTPUTF8") // offered: transaction checked
	}
	b.WriteString("\r\n")
	rcpts := slices.Clone(d.pending)
	for _, i := range rcpts {
		b.WriteString("RCPT TO:<" + d.res[i].Rcpt + ">\r\n")
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
		d.succeed(i, s.relay, "250 "+oneLine(text))
	}
	return true
}
