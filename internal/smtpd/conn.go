package smtpd

import (
	"bytes"
	"context"
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

// go-smtp has no hook for four things mailtee must do, so each accepted
// connection is wrapped (conn) before go-smtp sees it:
//
//   - The greeting. go-smtp writes "220 <Domain> ESMTP Service Ready";
//     Postfix writes "220 $smtpd_banner", which administrators set and
//     monitoring checks. The greeting is the first line written on a
//     connection, before any TLS, so conn.Write replaces it.
//   - Connection limits. Postfix refuses a client over its limit with a 421
//     instead of the greeting; the listener does that before go-smtp gets
//     the connection.
//   - Timeouts. smtpd_timeout bounds each read; go-smtp's ReadTimeout is set
//     once per command and would bound a whole DATA transfer. conn.Read sets
//     the deadline per read, and Shutdown uses the same place to end idle
//     sessions.
//   - Closing after a 421. go-smtp cannot be told to hang up after a reply;
//     a session that must (too many errors) marks the connection, and the
//     next write, which is that reply, closes it. After STARTTLS the
//     write is a TLS record carrying the reply, which works the same.
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
	mynet bool       // in Mynetworks at connect time, for the limit exemption

	mu         sync.Mutex
	greeted    bool // the greeting has been written
	sniffHello bool // the next write answers the first HELO/EHLO
	esmtp      bool // the client said EHLO
	tls        bool // STARTTLS done
	inTx       bool // between MAIL FROM and the end of the transaction
	closeAfter bool // close after the next write
	timedOut   bool // a read timed out: the next reply is a 421 timeout
	// replyCounted: the error reply about to be written was counted by
	// done already.
	replyCounted bool
	hungUp       bool // Close was called
	errors       int  // Postfix's error_count
	stats        stats
	closeOnce    sync.Once

	wmu  sync.Mutex // guards wbuf, and orders writes to Conn
	wbuf []byte     // written by go-smtp, not yet sent
}

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
	var dl time.Time
	switch {
	case c.srv.closing.Load() && !c.inTx:
		dl = aLongTimeAgo
	case c.srv.o.Timeout > 0:
		dl = time.Now().Add(c.srv.o.Timeout)
	}
	c.Conn.SetReadDeadline(dl)
	c.mu.Unlock()
	n, err := c.Conn.Read(b)
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

func (c *conn) Write(b []byte) (int, error) {
	c.mu.Lock()
	first := !c.greeted
	c.greeted = true
	if c.sniffHello && !first {
		// go-smtp does not tell the backend whether the client said HELO
		// or EHLO, but its reply does: one line for HELO, several for
		// EHLO. Only plaintext replies are seen here; after STARTTLS the
		// client has necessarily used EHLO before.
		c.sniffHello = false
		c.esmtp = bytes.HasPrefix(b, []byte("250-"))
		if c.esmtp {
			c.stats.ehlo.add(true)
		} else {
			c.stats.helo.add(true)
		}
	}
	closeAfter, timedOut := c.closeAfter, c.timedOut
	c.mu.Unlock()
	if timedOut && !bytes.HasPrefix(b, []byte("421 ")) {
		return len(b), c.replaceAndClose("421 4.4.2 %s Error: timeout exceeded")
	}
	if !first && c.countReply(b) {
		c.srv.log("too many errors from %s", c.namaddr())
		return len(b), c.replaceAndClose("421 4.7.0 %s Error: too many errors")
	}
	n, out := len(b), b
	if first && bytes.HasPrefix(b, []byte("220 ")) {
		out = c.srv.greeting
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
		err = c.Conn.Close()
		c.srv.forget(c)
		c.mu.Lock()
		c.hungUp = true
		st := c.stats.String()
		c.mu.Unlock()
		c.srv.log("disconnect from %s%s", c.namaddr(), st)
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

// newSession is called by go-smtp's first HELO/EHLO, and again after
// STARTTLS.
func (c *conn) newSession(isTLS bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if isTLS {
		if !c.tls {
			c.stats.starttls.add(true)
		}
		c.tls = true
		c.esmtp = true
		c.stats.ehlo.add(true)
		return
	}
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
	if errs >= c.srv.hard {
		c.closeAfterReply()
		c.srv.log("too many errors after %s from %s", verb, c.namaddr())
		return reply(421, "4.7.0", "%s Error: too many errors", c.srv.o.Hostname)
	}
	if errs >= c.srv.soft {
		t := time.NewTimer(c.srv.errSleep)
		select {
		case <-t.C:
		case <-c.srv.ctx.Done():
			t.Stop()
		}
	}
	return nil
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

// countReply counts an error reply that go-smtp wrote on its own (bad
// syntax, a command out of sequence, an unimplemented command), which
// Postfix counts toward smtpd_hard_error_limit too. It reports whether
// the limit is now reached.
func (c *conn) countReply(b []byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	isErr := len(b) > 0 && (b[0] == '4' || b[0] == '5') && !bytes.HasPrefix(b, []byte("421"))
	if !isErr {
		return false
	}
	if c.replyCounted {
		c.replyCounted = false
		return false
	}
	c.errors++
	return c.errors >= c.srv.hard
}

// forgive clears the error count after a message was accepted, as Postfix
// does ("Forgive any previous client errors when a message was received
// successfully").
func (c *conn) forgive() {
	c.mu.Lock()
	c.errors = 0
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

// listener admits connections within the limits.
type listener struct {
	net.Listener
	srv *Server
}

func (l *listener) Accept() (net.Conn, error) {
	for {
		nc, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if c := l.srv.admit(nc); c != nil {
			return c, nil
		}
	}
}

// admit wraps a new connection, or refuses it with a 421 when it is over
// MaxClients or MaxClientsPerIP, and then returns nil.
func (s *Server) admit(nc net.Conn) *conn {
	c := &conn{Conn: nc, srv: s, name: "unknown"}
	if ap, err := netip.ParseAddrPort(nc.RemoteAddr().String()); err == nil {
		c.addr = ap.Addr().Unmap()
		c.astr = c.addr.String()
		if c.addr.IsLoopback() {
			c.name = "localhost"
		}
	}
	if c.addr.IsValid() && s.policy.Load().Mynetworks != nil {
		// A lookup error only loses the exemption from the limit; relay
		// permission is decided again at each RCPT.
		c.mynet, _ = s.policy.Load().Mynetworks.Match(context.Background(), c.addr)
	}
	s.log("connect from %s", c.namaddr())

	s.mu.Lock()
	total, fromIP := len(s.conns)+1, s.perIP[c.addr]+1
	over := ""
	switch {
	case s.o.MaxClients > 0 && total > s.o.MaxClients:
		over = fmt.Sprintf("warning: Connection concurrency limit exceeded: %d clients in all, new client %s for service smtp", total, c.namaddr())
	case s.o.MaxClientsPerIP > 0 && fromIP > s.o.MaxClientsPerIP && !c.mynet:
		over = fmt.Sprintf("warning: Connection concurrency limit exceeded: %d from %s for service smtp", fromIP, c.namaddr())
	}
	if over == "" {
		s.conns[c] = struct{}{}
		s.perIP[c.addr]++
	} else {
		s.refusing.Add(1)
	}
	s.mu.Unlock()
	if over == "" {
		return c
	}

	s.log("%s", over)
	go func() {
		defer s.refusing.Done()
		// Postfix answers this instead of the greeting.
		msg := fmt.Sprintf("421 4.7.0 %s Error: too many connections from %s\r\n", s.o.Hostname, c.addrString())
		nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
		nc.Write([]byte(msg))
		nc.Close()
		s.log("disconnect from %s commands=0/0", c.namaddr())
	}()
	return nil
}

// forget removes a closed connection from the counts.
func (s *Server) forget(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.conns[c]; !ok {
		return
	}
	delete(s.conns, c)
	if s.perIP[c.addr]--; s.perIP[c.addr] <= 0 {
		delete(s.perIP, c.addr)
	}
}
