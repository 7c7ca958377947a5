package smtpd

import (
	"bytes"
	"time"
)

// Junk commands (smtpd_junk_command_limit). go-smtp answers NOOP, RSET,
// VRFY, HELO and EHLO without asking the backend, so mailtee counts them
// by their replies, which conn.Write reads (junkVerb, counted in
// conn.countReply), in TLS sessions too (starttls.go).

// junkVerb names the command that reply b of go-smtp answers, when it is
// one that Postfix counts against smtpd_junk_command_limit (smtpd.c:
// SMTPD_CMD_FLAG_LIMIT) and go-smtp answers without asking the backend:
// NOOP, RSET, VRFY, HELO and EHLO. Else "". ETRN is
// junk too, but go-smtp refuses it as unknown, which counts as an error
// anyway.
func junkVerb(b []byte) string {
	for _, r := range []struct{ prefix, verb string }{
		{"250 2.0.0 I have successfully done nothing", "NOOP"},
		{"250 2.0.0 Session reset", "RSET"},
		{"252 ", "VRFY"},
		{"250-Hello ", "EHLO"},
		{"250 2.0.0 Hello ", "HELO"},
	} {
		if bytes.HasPrefix(b, []byte(r.prefix)) {
			return r.verb
		}
	}
	return ""
}

// SetWriteDeadline sets the write deadline for the reply go-smtp is about
// to write: smtpd_timeout, shorter in stress mode.
func (c *conn) SetWriteDeadline(time.Time) error {
	var dl time.Time
	if d := c.srv.limits().Timeout; d > 0 {
		dl = time.Now().Add(d)
	}
	return c.Conn.SetWriteDeadline(dl)
}
