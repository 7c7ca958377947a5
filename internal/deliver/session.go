package deliver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/textproto"
	"time"

	"github.com/emersion/go-smtp"
)

// session is one connection to a server, past the greeting and EHLO.
type session struct {
	cl      *smtp.Client
	raw     net.Conn // the socket
	conn    net.Conn // what cl talks over: raw, or TLS on top of it
	key     string
	namaddr string // "mx.example.com[192.0.2.1]", for texts
	relay   string // namaddr plus ":port", for logs
	lmtp    bool
	tp      *textproto.Conn // once the session pipelines (pipeline.go)

	timer     *time.Timer // closes the session when it idles too long
	idleSince time.Time

	born time.Time // the connection was initiated (MaxLifetime)
	uses int       // mail transactions begun on it (MaxReuse)
	tls  bool      // STARTTLS succeeded
}

// failure classifies an error from a command: a server reply (the
// session is usable) or an I/O problem (it is not).
func (s *session) failure(err error, command, where string) (e *Error, broken bool) {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return replyError(s.namaddr, s.relay, se, command), false
	}
	return s.ioError(err, where), true
}

// ioError is smtp_stream_except(): a timeout or a lost connection.
func (s *session) ioError(err error, where string) *Error {
	if isTimeout(err) {
		return tempf(s.relay, "4.4.2", "conversation with %s timed out while %s", s.namaddr, where)
	}
	return tempf(s.relay, "4.4.2", "lost connection with %s while %s", s.namaddr, where)
}

// reset ends a transaction that did not reach the end of DATA.
func (s *session) reset() bool { return s.cl.Reset() == nil }

// close says QUIT, briefly, and closes the connection.
func (s *session) close() {
	s.cl.CommandTimeout = min(s.cl.CommandTimeout, 5*time.Second)
	if s.cl.Quit() != nil {
		s.cl.Close()
	}
	s.raw.Close()
}

// connect takes a new connection to t past the greeting, EHLO and
// STARTTLS as level ("none", "may", "encrypt") says.
func (c *Client) connect(ctx context.Context, t target, key, level string, useTLS, helo bool) (s *session, retryPlain bool, e *Error) {
	born := time.Now() // smtp_connection_reuse_time_limit counts the connect too
	raw, e := c.dial(ctx, t)
	if e != nil {
		return nil, false, e
	}
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	defer func() {
		if !stop() && s != nil {
			s, e = nil, tempf(s.relay, "4.4.2", "lost connection with %s: %v", s.namaddr, ctx.Err())
			raw.Close()
		}
	}()
	w := &watchConn{Conn: raw, helo: helo}
	s = &session{raw: raw, conn: w, key: key, namaddr: t.namaddr(), relay: t.relay(), lmtp: c.LMTP, born: born}
	s.cl = c.newClient(w)
	if err := s.cl.Hello(c.helo()); err != nil {
		raw.Close()
		if !helo && !c.LMTP && w.ehloRefused(err) {
			return nil, false, errUseHELO
		}
		return nil, false, s.helloError(err, w.writes.Load() == 0)
	}
	if level == "none" || !useTLS || t.path != "" {
		return s, false, nil
	}
	if ok, _ := s.cl.Extension("STARTTLS"); !ok {
		if level == "encrypt" {
			s.close()
			return nil, false, tempf(s.relay, "4.7.4", "TLS is required, but was not offered by host %s", s.namaddr)
		}
		return s, false, nil
	}
	// go-smtp has no STARTTLS for a client that is already past EHLO
	// with our own HELO name, so the command goes over the socket here;
	// the session is idle, so nothing of go-smtp's is in flight.
	code, text, err := startTLS(w, c.commandTimeout())
	if err != nil {
		raw.Close()
		return nil, false, s.ioError(err, "performing the EHLO handshake")
	}
	if code != 220 {
		if level == "encrypt" {
			s.close()
			return nil, false, &Error{Permanent: code/100 == 5, Code: code, Enhanced: replyStatus(code, text), Relay: s.relay,
				Text: fmt.Sprintf("TLS is required, but host %s refused to start TLS: %s", s.namaddr, text)}
		}
		return s, false, nil // "Else try to continue in plain-text mode."
	}
	tc := tls.Client(raw, c.tlsConfig(t))
	hctx, cancel := context.WithTimeout(ctx, c.commandTimeout())
	err = tc.HandshakeContext(hctx)
	cancel()
	if err != nil {
		raw.Close()
		if level == "may" {
			c.log().Warn("TLS handshake failed; retrying in plaintext", "server", s.relay, "err", err)
		}
		return nil, level == "may", tempf(s.relay, "4.7.5", "Cannot start TLS: handshake failure")
	}
	// RFC 3207: the server sends no greeting after STARTTLS, but a new
	// go-smtp client reads one first; give it one.
	s.conn = &resumed{Conn: tc, greeting: []byte("220 TLS\r\n")}
	s.tls = true
	s.cl = c.newClient(s.conn)
	if err := s.cl.Hello(c.helo()); err != nil {
		raw.Close()
		return nil, false, s.helloError(err, false)
	}
	return s, false, nil
}

// helloError is a failed greeting, EHLO or HELO: "host %s refused to
// talk to me", always temporary so that the next MX host is tried.
// Postfix does so for a 5xx greeting (smtp_skip_5xx_greeting); a 5xx
// reply to HELO would bounce there, but a server that refuses to talk to
// us is better retried than bounced.
func (s *session) helloError(err error, greeting bool) *Error {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		text, status := reply(se)
		if status[0] == '5' {
			status = "4" + status[1:]
		}
		return &Error{Code: se.Code, Enhanced: status, Relay: s.relay,
			Text: fmt.Sprintf("host %s refused to talk to me: %s", s.namaddr, text)}
	}
	where := "performing the EHLO handshake"
	switch {
	case greeting:
		where = "receiving the initial server greeting"
	case s.lmtp:
		where = "performing the LHLO handshake"
	}
	return s.ioError(err, where)
}

func (c *Client) newClient(conn net.Conn) *smtp.Client {
	var cl *smtp.Client
	if c.LMTP {
		cl = smtp.NewClientLMTP(conn)
	} else {
		cl = smtp.NewClient(conn)
	}
	cl.CommandTimeout = c.commandTimeout()
	cl.SubmissionTimeout = 2 * cl.CommandTimeout
	return cl
}

func (c *Client) tlsConfig(t target) *tls.Config {
	cfg := &tls.Config{}
	if c.TLSConfig != nil {
		cfg = c.TLSConfig.Clone()
	}
	// Opportunistic ("may") and mandatory-but-unauthenticated
	// ("encrypt") TLS accept any certificate, as Postfix does at these
	// levels.
	cfg.InsecureSkipVerify = true
	if cfg.MinVersion == 0 {
		// Postfix's default smtp_tls_protocols allow TLS 1.0 and 1.1;
		// weak encryption still beats the plaintext a failed handshake
		// falls back to.
		cfg.MinVersion = tls.VersionTLS10
	}
	if cfg.ServerName == "" {
		if _, err := netip.ParseAddr(t.name); err != nil {
			cfg.ServerName = t.name // SNI
		}
	}
	return cfg
}
