package smtpd

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
)

// go-smtp has no hook for six things mailtee must do, so each accepted
// connection is wrapped (conn) before go-smtp sees it:
//
//   - The greeting. go-smtp writes "220 <Domain> ESMTP Service Ready";
//     Postfix writes "220 $smtpd_banner", which administrators set and
//     monitoring checks. The greeting is the first line written on a
//     connection, before any TLS, so conn.Write replaces it.
//   - Postfix's words. go-smtp answers MAIL, RCPT, NOOP, RSET and
//     others in its own words; conn.Write puts Postfix's in their place
//     (replies.go).
//   - Connection limits. Postfix refuses a client over its limit with a 421
//     instead of the greeting; the listener does that before go-smtp gets
//     the connection (limits.go). A client that must wait for a place
//     waits in the write of its greeting.
//   - Timeouts. smtpd_timeout bounds each read; go-smtp's ReadTimeout is set
//     once per command and would bound a whole DATA transfer. conn.Read sets
//     the deadline per read, and Shutdown and stress mode use the same
//     place to end idle sessions.
//   - Junk commands. go-smtp answers NOOP, RSET, VRFY, HELO and EHLO
//     without a word to the backend; conn.Write knows them by their
//     replies and counts them against smtpd_junk_command_limit.
//   - Closing after a 421. go-smtp cannot be told to hang up after a reply;
//     a session that must (too many errors) marks the connection, and the
//     next write, which is that reply, closes it.
//   - STARTTLS. conn does it itself (starttls.go), so that all of the
//     above goes on in TLS sessions: go-smtp only ever reads and writes
//     plaintext through conn.
//   - One write per reply. go-smtp flushes each line of a multi-line reply
//     (EHLO's eight) on its own; a client that reads one segment as the
//     whole reply (nmap's smtp-open-relay) then takes the rest as the
//     answers to its next commands. conn keeps what go-smtp writes and
//     sends it when go-smtp next reads (it then waits for the client,
//     so the reply is complete), at Close, or past wbufMax: a reply goes
//     out in one write, and so do the replies to pipelined commands, as
//     Postfix sends them.
//
// Everything else in the session's state lives in session; what must
// survive STARTTLS (go-smtp starts a new session after it) lives here.
type conn struct {
	net.Conn
	srv   *Server
	addr  netip.Addr // invalid when the transport has no IP address
	astr  string     // addr as text, made once: every queued message keeps it
	name  string     // "localhost" for loopback, else "unknown": no DNS lookups
	limit connLimits

	mu         sync.Mutex
	greeted    bool // the greeting has been written
	sniffHello bool // the next write answers the first HELO/EHLO
	esmtp      bool // the client said EHLO
	tls        bool // STARTTLS done
	inTx       bool // between MAIL FROM and the end of the transaction
	closeAfter bool // close after the next write
	timedOut   bool // a read timed out: the next reply is a 421 timeout
	// readSince is when the read in progress began; zero if none.
	readSince time.Time
	st        tlsState // STARTTLS (starttls.go)
	// replyCounted: the error reply about to be written was counted by
	// done already.
	replyCounted bool
	hungUp       bool // Close was called
	// bareLFCommand: a command line ended in a bare LF (bareline.go);
	// bdat: the content being read came by BDAT.
	bareLFCommand, bdat bool
	// hello: the verb of the last HELO/EHLO line read (bareline.go).
	hello string
	// midReply: the last plaintext write did not end a line.
	midReply bool
	// skipRest: a reply line was rewritten (replies.go) from its first
	// part; the rest of go-smtp's line, in later writes, is dropped.
	skipRest  bool
	errors    int // Postfix's error_count
	junk      int // Postfix's junk_cmds
	stats     stats
	closeOnce sync.Once

	crs  crFilter   // the plaintext stream's bare CRs (crfilter.go), used by go-smtp's goroutine only
	cmds cmdWatcher // its command lines' bare LFs (bareline.go), likewise

	wmu  sync.Mutex // guards wbuf, and orders writes to Conn
	wbuf []byte     // written by go-smtp, not yet sent
}

// place is where a connection stands with the process limit.
type place int

const (
	placeNone    place = iota // refused
	placeActive               // a session
	placeWaiting              // waiting for a place, not greeted yet
)

// wbufMax bounds what conn keeps before sending it: far more than any
// reply mailtee makes.
const wbufMax = 16 << 10

// closeFlushTimeout bounds sending the last reply at Close.
const closeFlushTimeout = 5 * time.Second

// aLongTimeAgo is a deadline that makes a read fail at once.
var aLongTimeAgo = time.Unix(1, 0)

func (c *conn) Read(b []byte) (int, error) {
	// go-smtp waits for the client now: what it wrote must go out.
	if err := c.flush(nil); err != nil {
		return 0, err
	}
	c.mu.Lock()
	now := time.Now()
	var dl time.Time
	switch {
	case c.srv.closing.Load() && !c.inTx:
		dl = aLongTimeAgo
	case c.srv.limits().Timeout > 0:
		dl = now.Add(c.srv.limits().Timeout)
	}
	c.Conn.SetReadDeadline(dl)
	c.readSince = now
	c.mu.Unlock()
	n, err := c.readPlain(b)
	c.noteBareLF()
	c.mu.Lock()
	c.readSince = time.Time{}
	c.mu.Unlock()
	if errors.Is(err, os.ErrDeadlineExceeded) {
		// A client that stalled mid-command or mid-message: whatever it
		// sends later is not to be read as commands (it could smuggle a
		// message after a half-sent one). The next reply, whichever path
		// of go-smtp writes it (DATA, BDAT, a half-read command), becomes
		// Postfix's timeout reply, and the connection closes after it.
		c.mu.Lock()
		c.timedOut = true
		c.mu.Unlock()
		c.closeAfterReply()
	}
	return n, err
}

// bareCR reports whether the client sent a bare CR since the last call.
// Like readPlain, it runs on go-smtp's goroutine for the connection.
func (c *conn) bareCR() bool { return c.crs.take() }

func (c *conn) Write(b []byte) (int, error) {
	if c.swallowReply(b) {
		return len(b), nil
	}
	c.cmds.dataVerdict(b) // bareline.go; go-smtp's goroutine, as readPlain
	c.mu.Lock()
	first := !c.greeted
	c.greeted = true
	if v := junkVerb(b); c.sniffHello && !first && (v == "HELO" || v == "EHLO") {
		// go-smtp does not tell the backend whether the client said HELO
		// or EHLO, but its reply does: one line for HELO, several for
		// EHLO. This is the first since the session began or TLS
		// started.
		c.sniffHello = false
		c.st.heloGone = false
		c.esmtp = v == "EHLO"
		if c.esmtp {
			c.stats.ehlo.add(true)
		} else {
			c.stats.helo.add(true)
		}
	}
	closeAfter, timedOut := c.closeAfter, c.timedOut
	inTx := c.inTx
	bareLF := c.bareLFCommand && !first
	c.mu.Unlock()
	if bareLF {
		return len(b), c.refuseBareLF()
	}
	if first {
		if err := c.waitForPlace(); err != nil {
			return 0, err
		}
		if err := c.wrapperHandshake(); err != nil {
			return 0, err
		}
	}
	if t := c.srv.limits().Timeout; t > 0 {
		c.Conn.SetWriteDeadline(time.Now().Add(t))
	}
	if timedOut && !bytes.HasPrefix(b, []byte("421 ")) {
		return len(b), c.replaceAndClose("421 4.4.2 %s Error: timeout exceeded")
	}
	if !first {
		verb := junkVerb(b)
		pause, limit := c.countReply(b, verb)
		if pause {
			if err := c.errorPause(); err != nil {
				return 0, err
			}
		}
		switch {
		case limit && verb == "":
			c.srv.log("too many errors from %s", c.namaddr())
			return len(b), c.replaceAndClose("421 4.7.0 %s Error: too many errors")
		case limit:
			// Postfix answers the junk command, then says 421 before
			// reading the next one.
			out := c.postfixReply(b, inTx)
			if err := c.flush(out); err != nil {
				c.Close()
				return 0, err
			}
			c.srv.log("too many errors after %s from %s", verb, c.namaddr())
			return len(b), c.replaceAndClose("421 4.7.0 %s Error: too many errors")
		}
	}
	n, out := len(b), b
	switch {
	case first && bytes.HasPrefix(b, []byte("220 ")):
		out = c.srv.greeting
	default:
		out = c.ehloReply(b, c.postfixReply(b, inTx)) // replies.go, starttls.go
	}
	if closeAfter {
		err := c.flush(out)
		c.Close()
		return n, err
	}
	c.wmu.Lock()
	c.wbuf = append(c.wbuf, out...)
	full := len(c.wbuf) >= wbufMax
	c.wmu.Unlock()
	if full {
		if err := c.flush(nil); err != nil {
			return 0, err
		}
	}
	return n, nil
}

// flush sends what go-smtp wrote and not yet sent, followed by more, in
// one write.
func (c *conn) flush(more []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if len(c.wbuf) == 0 && len(more) == 0 {
		return nil
	}
	out := append(c.wbuf, more...)
	_, err := c.Conn.Write(out)
	c.wbuf = out[:0]
	if cap(c.wbuf) > wbufMax {
		c.wbuf = nil // a long reply's buffer is not kept for the session
	}
	return err
}

// replaceAndClose writes Postfix's reply (format takes the host name) in
// place of the one go-smtp was writing, and closes the connection.
func (c *conn) replaceAndClose(format string) error {
	err := c.flush(fmt.Appendf(nil, format+"\r\n", c.srv.o.Hostname))
	c.Close()
	return err
}

// closeAfterReply closes the connection once the next reply is written.
func (c *conn) closeAfterReply() {
	c.mu.Lock()
	c.closeAfter = true
	c.mu.Unlock()
}

// Close sends what is left to send (go-smtp's 221 to QUIT), closes the
// connection once and logs the disconnect.
func (c *conn) Close() error {
	var err error
	c.closeOnce.Do(func() {
		// Not when another goroutine is stuck writing to a client that
		// does not read (Shutdown closing it), and not for long.
		if c.wmu.TryLock() {
			c.wmu.Unlock()
			c.Conn.SetWriteDeadline(time.Now().Add(closeFlushTimeout))
			c.flush(nil)
		}
		c.mu.Lock()
		nc := c.Conn // a tls.Conn after STARTTLS
		c.mu.Unlock()
		err = nc.Close()
		close(c.limit.gone)
		c.srv.forget(c)
		c.mu.Lock()
		c.hungUp = true
		st := c.stats.String()
		c.mu.Unlock()
		c.srv.log("disconnect from %s%s", c.namaddr(), st)
		c.srv.o.Observer.Disconnect()
	})
	return err
}

// interruptIfIdle ends a blocked read of an idle session, for Shutdown.
func (c *conn) interruptIfIdle() {
	c.mu.Lock()
	if !c.inTx {
		c.Conn.SetReadDeadline(aLongTimeAgo)
	}
	c.mu.Unlock()
}

// shortenWait gives a read in progress the timeout d counted from when it
// began, for stress mode.
func (c *conn) shortenWait(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.readSince.IsZero() && !(c.srv.closing.Load() && !c.inTx) {
		c.Conn.SetReadDeadline(c.readSince.Add(d))
	}
}

// setTx records whether a mail transaction is open: Shutdown lets one
// finish.
func (c *conn) setTx(on bool) {
	c.mu.Lock()
	c.inTx = on
	if !on && c.srv.closing.Load() {
		c.Conn.SetReadDeadline(aLongTimeAgo)
	}
	c.mu.Unlock()
}

// newSession is called by go-smtp's first HELO/EHLO.
func (c *conn) newSession() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sniffHello = true
}

// baseProtocol is Postfix's name for the session's protocol, as its logs
// show it: "SMTP" after HELO, "ESMTP" after EHLO, with or without TLS.
func (c *conn) baseProtocol() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.esmtp {
		return "ESMTP"
	}
	return "SMTP"
}

func (c *conn) isTLS() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.tls
}

// begin starts a command that reaches the backend (ctr is its counter in
// c.stats, written under c.mu): it counts it, slows
// down a client past the soft error limit, and after the hard limit
// answers 421 and hangs up, as Postfix does before reading each command.
func (c *conn) begin(ctr *counter, verb string) *smtp.SMTPError {
	c.mu.Lock()
	ctr.total++
	errs, hungUp := c.errors, c.hungUp
	c.mu.Unlock()
	if hungUp {
		// go-smtp goes on with pipelined commands it had read before the
		// connection was closed; none of them may take effect.
		return reply(421, "4.4.2", "%s Error: connection closed", c.srv.o.Hostname)
	}
	lim := c.srv.limits()
	if errs >= lim.HardErrorLimit {
		c.closeAfterReply()
		c.srv.log("too many errors after %s from %s", verb, c.namaddr())
		return reply(421, "4.7.0", "%s Error: too many errors", c.srv.o.Hostname)
	}
	if errs >= lim.SoftErrorLimit {
		c.errorPause() // a failed send shows at the next write
	}
	return nil
}

// errorPause is smtpd_error_sleep_time's pause for a client past the soft
// error limit. What is answered already goes out first, as Postfix
// flushes before it sleeps: held replies would otherwise wait through
// every pause.
func (c *conn) errorPause() error {
	err := c.flush(nil)
	c.srv.errorSleep()
	return err
}

// errorSleep is smtpd_error_sleep_time's pause, cut short by a Shutdown
// that gives up waiting.
func (s *Server) errorSleep() {
	if s.errSleep <= 0 {
		return
	}
	t := time.NewTimer(s.errSleep)
	select {
	case <-t.C:
	case <-s.ctx.Done():
		t.Stop()
	}
}

// done ends a command begun with begin: err nil counts a success; a
// non-nil err counts a client error when counts is set.
func (c *conn) done(ctr *counter, err error, counts bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err == nil {
		ctr.ok++
	} else {
		// The reply go-smtp writes for this error is ours: Write must
		// not count it again.
		c.replyCounted = true
		if counts {
			c.errors++
		}
	}
}

// countReply counts a reply that go-smtp wrote on its own: an error (bad
// syntax, a command out of sequence, an unimplemented command), which
// Postfix counts toward smtpd_hard_error_limit too, or the answer to a
// junk command (verb, see junkVerb), which counts as an error past
// smtpd_junk_command_limit. It reports whether the reply must wait
// smtpd_error_sleep_time first (Postfix pauses before every reply once
// the soft limit is reached) and whether the hard limit is now reached.
func (c *conn) countReply(b []byte, verb string) (pause, limit bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	lim := c.srv.limits()
	isErr := len(b) > 0 && (b[0] == '4' || b[0] == '5') && !bytes.HasPrefix(b, []byte("421"))
	switch {
	case verb != "":
		pause = c.errors >= lim.SoftErrorLimit
		// smtpd.c: "if (state->junk_cmds++ > var_smtpd_junk_cmd_limit)
		// state->error_count++".
		if c.junk > lim.JunkCommandLimit {
			c.errors++
		}
		c.junk++
	case !isErr:
		return false, false
	case c.replyCounted:
		// Counted, and paused for, by begin and done.
		c.replyCounted = false
		return false, false
	default:
		pause = c.errors >= lim.SoftErrorLimit
		c.errors++
	}
	return pause, c.errors >= lim.HardErrorLimit
}

// forgive clears the error and junk counts after a message was accepted,
// as Postfix does ("Forgive any previous client errors when a message was
// received successfully").
func (c *conn) forgive() {
	c.mu.Lock()
	c.errors = 0
	c.junk = 0
	c.mu.Unlock()
}

// namaddr is Postfix's "name[addr]".
func (c *conn) namaddr() string { return c.name + "[" + c.addrString() + "]" }

func (c *conn) addrString() string {
	if !c.addr.IsValid() {
		return "unknown"
	}
	return c.astr
}

// rfcAddr is the address as the Received: header writes it.
func (c *conn) rfcAddr() string {
	if c.addr.Is6() {
		return "IPv6:" + c.addr.String()
	}
	return c.addrString()
}

type counter struct{ ok, total int }

func (c *counter) add(ok bool) {
	c.total++
	if ok {
		c.ok++
	}
}

// stats are the per-command counts of Postfix's disconnect line. Only the
// commands that reach the backend are seen; QUIT, RSET, NOOP and the
// commands go-smtp rejects itself are not counted.
type stats struct {
	helo, ehlo, starttls, mail, rcpt, data counter
}

// String formats the counts as Postfix does: " ehlo=1 mail=1 rcpt=0/1
// commands=2/3" (success/total where they differ).
func (s *stats) String() string {
	var b strings.Builder
	ok, total := 0, 0
	for _, c := range []struct {
		name string
		c    counter
	}{{"helo", s.helo}, {"ehlo", s.ehlo}, {"starttls", s.starttls}, {"mail", s.mail}, {"rcpt", s.rcpt}, {"data", s.data}} {
		if c.c.total == 0 {
			continue
		}
		fmt.Fprintf(&b, " %s=%d", c.name, c.c.ok)
		if c.c.ok != c.c.total {
			fmt.Fprintf(&b, "/%d", c.c.total)
		}
		ok += c.c.ok
		total += c.c.total
	}
	fmt.Fprintf(&b, " commands=%d", ok)
	if ok != total || total == 0 {
		fmt.Fprintf(&b, "/%d", total)
	}
	return b.String()
}
