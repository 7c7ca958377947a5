package smtpd

import (
	"bytes"
	"time"
)

// Junk commands (smtpd_junk_command_limit). go-smtp answers NOOP, RSET,
// VRFY, HELO and EHLO without asking the backend, so mailtee counts them
// by their replies: in plaintext conn.Write reads the reply (junkVerb,
// counted in conn.countReply); in a TLS session, where conn.Write sees
// only records, by where a reply begins (tlsReplies). In TLS no 421 can
// be slipped in at the limit, so the session ends after the next reply
// instead: one reply later than Postfix.

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

// tlsReplies counts junk commands in a TLS session, where conn.Write sees
// records and not replies, so junkVerb cannot tell them. go-smtp sets a
// write deadline before each reply (because it has a WriteTimeout),
// through tls.Conn down to conn.SetWriteDeadline: that is where a reply
// starts. A reply that no backend command asked for is one go-smtp gave
// on its own: to NOOP, RSET, VRFY, EHLO, QUIT, a command it refused, or
// DATA's 354, which is taken back when Data begins. Each counts as junk;
// QUIT's and the errors' too, which only Postfix tells apart.
// Guarded by conn.mu.
type tlsReplies struct {
	on      bool // STARTTLS done: replies are TLS records
	own     bool // the next reply answers a backend command
	inData  bool // Data is running: BDAT's replies are its own
	last    bool // the last reply was counted as junk...
	lastErr bool // ...and as an error
}

// begin marks the reply to a backend command; a 354 counted just before
// DATA begins is taken back.
func (t *tlsReplies) begin(c *conn, verb string) {
	t.own = true
	if verb == "DATA" {
		t.inData = true
		if t.last {
			c.junk--
			if t.lastErr {
				c.errors--
			}
		}
	}
	t.last, t.lastErr = false, false
}

func (t *tlsReplies) done() {
	t.own, t.inData = true, false
}

// SetWriteDeadline sets the write deadline for the reply go-smtp is about
// to write (smtpd_timeout, shorter in stress mode), and counts the reply
// as junk in a TLS session when no backend command asked for it (see
// tlsReplies).
func (c *conn) SetWriteDeadline(time.Time) error {
	c.mu.Lock()
	t := &c.tlsReplies
	var junk, limit, pause bool
	if t.on && !t.inData {
		t.last, t.lastErr = false, false
		lim := c.srv.limits()
		switch {
		case t.own:
			t.own = false
		case c.errors >= lim.HardErrorLimit:
			// The limit was reached by an earlier reply, which may
			// have been a 354 taken back since: only now is it
			// sure. No 421 can be slipped into TLS: the connection
			// closes after this reply.
			limit = true
		default:
			junk, pause = true, c.errors >= lim.SoftErrorLimit
			if c.junk > lim.JunkCommandLimit {
				c.errors++
				t.lastErr = true
			}
			c.junk++
			t.last = true
		}
	}
	c.mu.Unlock()
	if junk && pause {
		c.errorPause() // a failed send shows at the next write
	}
	if limit {
		c.srv.log("too many errors after junk from %s", c.namaddr())
		c.closeAfterReply()
	}
	var dl time.Time
	if d := c.srv.limits().Timeout; d > 0 {
		dl = time.Now().Add(d)
	}
	return c.Conn.SetWriteDeadline(dl)
}
