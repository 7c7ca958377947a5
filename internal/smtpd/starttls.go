package smtpd

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"os"
	"time"

	"github.com/mailtee/mailtee/internal/maillog"
)

// STARTTLS is done here, below go-smtp, and not by go-smtp: go-smtp's
// own STARTTLS runs tls.Server on top of conn, after which conn would
// see only TLS records, and Postfix's replies, the bare LF and bare CR
// checks and junk counting (replies.go, bareline.go, crfilter.go,
// junk.go) would stop at the moment most sessions begin. Instead conn
// reads the client's command lines before go-smtp does (readPlain): a
// STARTTLS line never reaches go-smtp. conn answers it as Postfix's
// starttls_cmd (smtpd.c) does, runs the handshake on the network
// connection, and puts the tls.Conn under itself, so go-smtp goes on
// reading and writing plaintext through conn. go-smtp is given no TLS
// configuration; conn adds "250-STARTTLS" to EHLO's reply.
//
// RFC 3207 asks for a fresh session after the handshake. conn gives
// go-smtp an RSET of its own (whose reply conn drops), which ends the
// mail transaction, and forgets the HELO name until the client says
// HELO or EHLO again (Postfix's helo_reset): MAIL without a new EHLO is
// taken, as Postfix takes it (smtpd_helo_required = no), and its
// Received: header names the client as Postfix's does without HELO.
//
// Plaintext that the client sent after its STARTTLS line, before the
// handshake, is thrown away and never read as commands: a man in the
// middle could otherwise prepend commands to the encrypted session
// (CVE-2011-0411; Postfix purges its buffer the same way). What arrives
// afterwards is read by the TLS layer, which refuses it.
//
// The handshake has smtpd_starttls_timeout (SessionLimits.StartTLS).
// When it fails, Postfix can say nothing more (the state of the stream
// is unknown) and ends the session, logging "SSL_accept error from ..."
// and "lost connection after STARTTLS"; conn does the same.
//
// In wrapper mode (smtps: the listener is a tls.Listener) the session is
// TLS from the first byte: conn runs the handshake itself, with the same
// timeout, before the greeting, and STARTTLS is answered "554 5.5.1
// Error: TLS already active".

// tlsState is conn's part in STARTTLS. in and err are used by go-smtp's
// goroutine for the connection only; the rest under conn.mu.
type tlsState struct {
	// in is plaintext read from the client (after crFilter) and not
	// yet given to go-smtp; err is the read error that comes after it.
	in  []byte
	err error
	// swallow: drop go-smtp's reply to conn's own RSET.
	swallow bool
	// heloGone: TLS started since the last HELO/EHLO; go-smtp still
	// holds the name given before it.
	heloGone bool
	// wrapped: the transport is a tls.Conn from the start (smtps).
	wrapped bool
	buf     []byte // fill's, kept for the session
}

// maxStartTLSLine is as much of a line as is held back to see whether it
// is STARTTLS: longer, it is some other command, passed on to go-smtp.
const maxStartTLSLine = 1024

// readChunk is how much is read from the network at a time.
const readChunk = 4096

// scanStartTLS looks at p, the start of a command line, for a line that
// begins with STARTTLS, in any case: go-smtp takes every such line for
// STARTTLS ("STARTTLSX" too), so none may reach it. It returns the
// length of the line (up to its LF) when it is one, 0 when p holds too
// little to tell (the rest of the line is yet to come), or -1 when the
// line is some other command.
func scanStartTLS(p []byte) int {
	const verb = "STARTTLS"
	n := min(len(p), len(verb))
	if !bytes.EqualFold(p[:n], []byte(verb[:n])) {
		return -1
	}
	i := bytes.IndexByte(p, '\n')
	switch {
	case i >= 0 && i+1 <= maxStartTLSLine:
		return i + 1
	case i >= 0 || len(p) >= maxStartTLSLine:
		// go-smtp answers an overlong line, whether its end is in p
		// already or not: how the client's bytes were cut into reads
		// must not decide.
		return -1
	}
	return 0
}

// startTLSVerb reports how a line that begins with STARTTLS (with its
// line end) reads to Postfix: the verb alone, with an argument, or
// another verb (STARTTLSX).
func startTLSVerb(line []byte) (verb, args bool) {
	line = bytes.TrimRight(line, "\r\n")
	if len(line) > len("STARTTLS") {
		switch line[len("STARTTLS")] {
		case ' ', '\t', '\r':
		default:
			return false, false
		}
	}
	return true, len(bytes.TrimSpace(line)) > len("STARTTLS")
}

// readPlain gives go-smtp the client's plaintext (from the tls.Conn after
// STARTTLS), through crFilter and cmdWatcher, and takes each STARTTLS
// command line out of the stream to answer it itself.
//
// Within a command line it fills b before returning (unless the line
// ends or the stream does): go-smtp's bufio.Reader hands a partial line
// to go-smtp as a whole one when the read after it fails, and the read
// that fails is go-smtp's own line length limit. With b always full, the
// limit falls on an empty buffer, and the head of an overlong line never
// runs as a command.
func (c *conn) readPlain(b []byte) (int, error) {
	// go-smtp answered the last DATA line before it read again; without
	// a reply (never), what follows stays content.
	c.cmds.dataPending = false
	n := 0
	for {
		if len(c.st.in) > 0 {
			m, line := c.pass(b[n:], n > 0)
			n += m
			switch {
			case line > 0 && n == 0:
				if err := c.startTLS(line); err != nil {
					return 0, err
				}
				continue
			case line > 0, n == len(b), n > 0 && !c.cmds.midLine(), c.cmds.dataPending:
				return n, nil
			}
		}
		if c.st.err != nil {
			if n > 0 {
				return n, nil
			}
			if len(c.st.in) == 0 {
				err := c.st.err
				c.st.err = nil
				return 0, err
			}
			// What may be the start of a STARTTLS line, and nothing
			// more will come: go-smtp reads it as it is.
			n = copy(b, c.st.in)
			c.cmds.feed(b[:n])
			c.st.in = c.st.in[n:]
			return n, nil
		}
		c.fill()
	}
}

// fill reads once from the network into st.in, through crFilter.
func (c *conn) fill() {
	// A reply to STARTTLS may be waiting (conn.Read sent go-smtp's).
	if err := c.flush(nil); err != nil {
		c.st.err = err
		return
	}
	if c.st.buf == nil {
		c.st.buf = make([]byte, readChunk+1)
	}
	buf := c.st.buf
	off := 0
	if c.crs.held {
		buf[0], off = '\r', 1
		c.crs.held = false
	}
	n, err := c.Conn.Read(buf[off : off+readChunk])
	n += off
	m := c.crs.filter(buf, n, err != nil)
	c.st.in = append(c.st.in, buf[:m]...)
	c.st.err = err
}

// pass copies what may go to go-smtp from st.in into b and returns its
// length: up to the start of a STARTTLS line, or of a DATA line unless
// it is the first thing in go-smtp's read (more: b follows what this read
// already holds), and up to the end of a DATA line. When st.in starts
// with a whole STARTTLS line and the read holds nothing yet, it returns
// 0 and that line's length instead. 0, 0: st.in starts with what may be
// a STARTTLS line, not whole yet.
func (c *conn) pass(b []byte, more bool) (n, startTLS int) {
	in := c.st.in
	for n < len(b) && n < len(in) {
		if c.cmds.lineStart() {
			switch l := scanStartTLS(in[n:]); {
			case l > 0 && n == 0 && !more:
				return 0, l
			case l >= 0:
				c.st.in = in[n:]
				return n, 0
			}
			// A DATA line goes in a read of its own, so that the
			// next reply is its own (cmdWatcher.dataVerdict).
			if (n > 0 || more) && scanData(in[n:]) >= 0 {
				c.st.in = in[n:]
				return n, 0
			}
		}
		b[n] = in[n]
		c.cmds.feed(b[n : n+1])
		n++
		if c.cmds.dataPending {
			break
		}
	}
	c.st.in = in[n:]
	return n, 0
}

// lineStart reports whether the watcher is at the start of a command
// line.
func (w *cmdWatcher) lineStart() bool {
	return w.mode == watchCommand && len(w.line) == 0
}

// midLine reports whether the watcher is inside a command line, its LF
// still to come.
func (w *cmdWatcher) midLine() bool {
	return w.mode == watchCommand && len(w.line) > 0
}

// startTLS answers the STARTTLS line at the start of st.in (its length
// is n) as Postfix's starttls_cmd does, and starts TLS. A non-nil error
// ends go-smtp's session.
func (c *conn) startTLS(n int) error {
	line := c.st.in[:n]
	c.cmds.feed(line) // for its line end: a bare LF is refused as in any command
	c.noteBareLF()
	c.st.in = c.st.in[n:]
	verb, args := startTLSVerb(line)
	if !verb {
		// Postfix does not know it; it is no STARTTLS in its counts.
		if _, err := c.Write([]byte("500 5.5.2 Error: command not recognized\r\n")); err != nil {
			return err
		}
		return c.hungUpErr()
	}
	c.mu.Lock()
	c.stats.starttls.total++
	active := c.tls
	c.mu.Unlock()
	var reply string
	switch {
	case args:
		reply = "501 5.5.4 Syntax: STARTTLS"
	case active:
		reply = "554 5.5.1 Error: TLS already active"
	case c.srv.tlsConfig == nil:
		reply = "502 5.5.1 Error: command not implemented"
	default:
		return c.handshake()
	}
	if _, err := c.Write([]byte(reply + "\r\n")); err != nil {
		return err
	}
	return c.hungUpErr()
}

// hungUpErr is io.EOF once the connection was closed (after a 421 or a
// refused bare LF), for go-smtp to end the session.
func (c *conn) hungUpErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.hungUp {
		return io.EOF
	}
	return nil
}

// handshake says 220, runs the TLS handshake and puts the tls.Conn under
// conn.
func (c *conn) handshake() error {
	if _, err := c.Write([]byte("220 2.0.0 Ready to start TLS\r\n")); err != nil {
		return err
	}
	if err := c.flush(nil); err != nil {
		c.Close()
		return io.EOF
	}
	if err := c.hungUpErr(); err != nil {
		return err
	}
	// What the client sent after STARTTLS, before the handshake, is
	// not to be read (CVE-2011-0411).
	c.st.in = nil
	c.crs = crFilter{}
	// The transaction is over (RSET follows a handshake, and a failed
	// one ends the session): Shutdown is not to wait for a client that
	// said MAIL and then stalls in the handshake.
	c.setTx(false)
	tc := tls.Server(c.Conn, c.srv.tlsConfig)
	if err := c.runHandshake(tc, "STARTTLS"); err != nil {
		return err
	}
	c.mu.Lock()
	c.wmu.Lock()
	c.Conn = tc
	c.wmu.Unlock()
	c.tls = true
	c.stats.starttls.ok++
	// helo_reset, mail_reset, rcpt_reset (smtpd.c starttls_cmd).
	c.sniffHello = true
	c.st.heloGone = true
	c.st.swallow = true
	c.mu.Unlock()
	c.st.in = []byte("RSET\r\n")
	return nil
}

// runHandshake runs tc's handshake within smtpd_starttls_timeout. A
// failure is logged as Postfix logs it ("after" names the command, or is
// "CONNECT" in wrapper mode) and closes the connection.
func (c *conn) runHandshake(tc *tls.Conn, after string) error {
	c.mu.Lock()
	now := time.Now()
	dl := now.Add(c.srv.limits().StartTLSTimeout)
	if c.srv.closing.Load() && !c.inTx {
		dl = aLongTimeAgo
	}
	c.Conn.SetDeadline(dl)
	c.mu.Unlock()
	err := tc.HandshakeContext(c.srv.ctx)
	if err == nil {
		// The deadlines of the session's reads and writes are set
		// before each.
		c.Conn.SetDeadline(time.Time{})
		c.srv.o.Observer.TLS(tc.ConnectionState())
		return nil
	}
	// Postfix's tls_server_start, then smtpd's end of the session (as
	// Postfix 3.7 logs them: test/e2e/starttls_log_test.go).
	switch {
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		c.srv.log("SSL_accept error from %s: lost connection", c.namaddr())
	case errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.Canceled):
		c.srv.log("SSL_accept error from %s: Connection timed out", c.namaddr())
	default:
		c.srv.log("SSL_accept error from %s: -1", c.namaddr())
		c.srv.log("warning: TLS library problem: %s", maillog.OneLine(err.Error()))
	}
	c.srv.log("lost connection after %s from %s", after, c.namaddr())
	c.srv.o.Observer.Lost(after)
	c.Close()
	return io.EOF
}

// wrapperHandshake is wrapper mode's handshake, before the greeting.
func (c *conn) wrapperHandshake() error {
	c.mu.Lock()
	tc, ok := c.Conn.(*tls.Conn)
	wrapped := c.st.wrapped
	c.mu.Unlock()
	if !ok || !wrapped {
		return nil
	}
	return c.runHandshake(tc, "CONNECT")
}

// ehloReply is what conn writes for a line of go-smtp's EHLO reply: with
// "250-STARTTLS" after CHUNKING (go-smtp's own place for it) when
// STARTTLS is offered. Postfix lists it after ETRN, which mailtee does
// not offer.
func (c *conn) ehloReply(b, out []byte) []byte {
	if !bytes.HasPrefix(b, []byte("250-CHUNKING\r\n")) || c.srv.tlsConfig == nil || c.isTLS() {
		return out
	}
	return append(out[:len(out):len(out)], "250-STARTTLS\r\n"...)
}

// swallowReply reports whether b is the reply to conn's own RSET, not to
// be sent.
func (c *conn) swallowReply(b []byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.st.swallow || !bytes.HasPrefix(b, []byte("250 2.0.0 Session reset")) {
		return false
	}
	c.st.swallow = false
	return true
}

// heloName is the HELO name for the transaction: "" when TLS started
// since the client last said HELO or EHLO.
func (c *conn) heloName(goSMTP string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.st.heloGone {
		return ""
	}
	return goSMTP
}
