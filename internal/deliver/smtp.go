package deliver

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/mailtee/mailtee/internal/dnsresolve"
)

// Postfix's smtp_mx_address_limit and smtp_mx_session_limit defaults: per
// next-hop destination, at most this many addresses are tried, and at
// most this many sessions get as far as a mail transaction.
const (
	mxAddressLimit = 5
	mxSessionLimit = 2
)

// Message is what is delivered: the envelope sender and the content.
type Message struct {
	ID   string // queue ID, for logs
	From string // envelope sender as sent in MAIL FROM; "" for <>
	Size int64  // content size in bytes, for SIZE=
	// Open returns the content (headers and body, CRLF line ends). It is
	// called once per attempt, so it must return a fresh reader each time.
	Open func() (io.ReadCloser, error)
	// SMTPUTF8 says the message needs a server that supports SMTPUTF8.
	SMTPUTF8 bool
	// EightBit says the content has 8-bit data (BODY=8BITMIME).
	EightBit bool
}

// ContentReader reads a message's content and remembers a read error, so
// that a delivery agent tells a broken spool file from a failed write.
type ContentReader struct {
	R   io.Reader
	Err error
}

func (r *ContentReader) Read(p []byte) (int, error) {
	n, err := r.R.Read(p)
	if err != nil && err != io.EOF {
		r.Err = err
	}
	return n, err
}

// Result is the outcome for one recipient.
type Result struct {
	Rcpt  string
	Err   error  // nil: delivered; else an *Error
	Relay string // "host[ip]:port", or "none"
	Reply string // the server's final reply on success: "250 2.0.0 Ok: queued as X"
}

// Client delivers over SMTP (or LMTP) as Postfix's smtp(8) does. Its
// fields are the smtp_* parameters of main.cf; set them before the first
// Deliver. A Client is safe for concurrent use: each Deliver call has its
// own connection, and idle connections are shared through a cache.
type Client struct {
	HeloName string // smtp_helo_name ($myhostname); "localhost" if empty
	// TLSLevel is smtp_tls_security_level: "none", "may" (used when
	// empty) or "encrypt". Neither "may" nor "encrypt" verifies the
	// server's certificate, as in Postfix; "encrypt" only insists on TLS.
	// With "may", a failed handshake is retried in plaintext.
	TLSLevel string
	// TLSConfig, if set, is the base for the client's TLS settings
	// (versions, ciphers, client certificate); verification is turned off
	// whatever it says, see TLSLevel.
	TLSConfig *tls.Config
	// BindAddr and BindAddr6 are smtp_bind_address(6): the local source
	// address for IPv4 and IPv6 connections ("" for any; IPv6 may be
	// written in brackets).
	BindAddr, BindAddr6 string
	// BindEnforce is smtp_bind_address_enforce: when binding fails, defer
	// instead of connecting from another address (Postfix's default,
	// false, connects anyway).
	BindEnforce bool
	// Port is smtp_tcp_port (lmtp_tcp_port with LMTP), for next hops
	// without a port: "25" ("24" with LMTP) when empty.
	Port string
	// ConnectTimeout is smtp_connect_timeout (30s when 0). CommandTimeout
	// bounds each command and reply, the greeting included (5m when 0);
	// the reply to the end of DATA may take twice as long, as with
	// Postfix's smtp_data_done_timeout.
	ConnectTimeout, CommandTimeout time.Duration
	// Resolver finds MX hosts and addresses; nil uses /etc/resolv.conf.
	Resolver *dnsresolve.Resolver
	// LMTP makes the client speak LMTP (RFC 2033), as lmtp(8): LHLO, a
	// reply per recipient after DATA, no MX lookups, "unix:/path" and
	// "inet:host:port" next hops.
	LMTP bool
	// MaxIdle is smtp_connection_cache_time_limit: after a transaction, a
	// connection is kept this long for the next message to the same next
	// hop. 0 disables reuse.
	MaxIdle time.Duration
	// Log receives the warnings Postfix would log (a bind address that
	// does not work, a TLS handshake retried in plaintext); nil discards
	// them.
	Log *slog.Logger

	mu     sync.Mutex
	idle   map[string][]*session
	closed bool

	sysResolver dnsresolve.Resolver
}

// Deliver sends msg to rcpts via nexthop and returns one Result per
// recipient, in order. nexthop is as Postfix writes it: "[host]:port",
// "[host]", "host:port", "host" (MX lookup), a list of those separated by
// commas or spaces (tried in order, as Postfix 3.5 does), and for LMTP
// also "unix:/path" and "inet:host:port".
//
// As smtp(8): the addresses of the MX hosts are tried in order; a
// connection failure, a greeting other than 220, or a 4xx reply moves the
// affected recipients on to the next address, and the last error counts
// when none is left. A 5xx reply to a recipient bounces that recipient;
// a 5xx reply to MAIL FROM or DATA bounces all of them.
func (c *Client) Deliver(ctx context.Context, nexthop string, msg *Message, rcpts []string) []Result {
	d := &delivery{ctx: ctx, c: c, msg: msg, key: nexthop,
		res: make([]Result, len(rcpts)), errs: make([]*Error, len(rcpts))}
	for i, r := range rcpts {
		d.res[i].Rcpt = r
		if r == "" || strings.ContainsAny(r, "\r\n") {
			d.finish(i, permf("none", "5.1.3", "bad recipient address syntax: %q", r))
			continue
		}
		d.pending = append(d.pending, i)
	}
	if strings.ContainsAny(msg.From, "\r\n") {
		d.finishAll(permf("none", "5.1.7", "bad sender address syntax: %q", msg.From))
	}
	if len(d.pending) > 0 {
		d.run(nexthop)
	}
	return d.res
}

// delivery is the state of one Deliver call: which recipients are still
// pending, and the last error each of them met.
type delivery struct {
	ctx     context.Context
	c       *Client
	msg     *Message
	key     string // connection cache key: the next hop
	res     []Result
	errs    []*Error
	pending []int
	talked  bool // some server got past its greeting
}

func (d *delivery) finish(i int, e *Error) {
	d.res[i].Err, d.res[i].Relay = e, e.Relay
	d.pending = slices.DeleteFunc(d.pending, func(j int) bool { return j == i })
}

func (d *delivery) finishAll(e *Error) {
	for _, i := range d.pending {
		d.res[i].Err, d.res[i].Relay = e, e.Relay
	}
	d.pending = nil
}

func (d *delivery) succeed(i int, relay, reply string) {
	d.res[i] = Result{Rcpt: d.res[i].Rcpt, Relay: relay, Reply: reply}
	d.pending = slices.DeleteFunc(d.pending, func(j int) bool { return j == i })
}

// keep records e for pending recipient i, which stays pending for the
// next server; e is its final error if none is left.
func (d *delivery) keep(i int, e *Error) { d.errs[i] = e }

func (d *delivery) keepAll(e *Error) {
	for _, i := range d.pending {
		d.errs[i] = e
	}
}

// outcome applies a server's reply to recipients: 5xx is final, the rest
// is kept for the next server.
func (d *delivery) outcome(idx []int, e *Error) {
	for _, i := range idx {
		if e.Permanent {
			d.finish(i, e)
		} else {
			d.keep(i, e)
		}
	}
}

func (d *delivery) run(nexthop string) {
	c := d.c
	if err := c.checkConfig(); err != nil {
		d.finishAll(err)
		return
	}
	dests, err := c.destinations(nexthop)
	if err != nil {
		d.finishAll(tempf("none", "4.3.5", "%v", err))
		return
	}
	// Cached connections first (Postfix's smtp_reuse_session); they count
	// against the limits of the first destination.
	sessions := 0
	for len(d.pending) > 0 && sessions < mxSessionLimit {
		s := c.takeIdle(d.key)
		if s == nil {
			break
		}
		sessions++
		d.transact(s)
	}
	addrs := sessions
	for _, dst := range dests {
		if len(d.pending) == 0 || d.ctx.Err() != nil {
			break
		}
		targets, err := c.targets(d.ctx, dst)
		if err != nil {
			d.keepAll(err)
		}
		for _, t := range targets {
			if len(d.pending) == 0 || addrs >= mxAddressLimit || sessions >= mxSessionLimit || d.ctx.Err() != nil {
				break
			}
			addrs++
			s, retryPlain, e := c.open(d.ctx, t, d.key, true)
			if retryPlain {
				// "When an opportunistic TLS handshake fails, try the
				// same address again, with TLS disabled" (smtp_connect.c).
				s, _, e = c.open(d.ctx, t, d.key, false)
			}
			if e != nil {
				d.keepAll(e)
				continue
			}
			sessions++
			d.transact(s)
		}
		sessions, addrs = 0, 0
	}
	for _, i := range slices.Clone(d.pending) {
		e := d.errs[i]
		if e == nil {
			e = tempf("none", "4.3.0", "server unavailable or unable to receive mail")
			if err := d.ctx.Err(); err != nil {
				e = tempf("none", "4.4.7", "delivery interrupted: %v", err)
			}
		}
		if !d.talked && !e.Permanent && d.ctx.Err() == nil {
			site := *e
			site.Unreachable = true
			e = &site
		}
		d.finish(i, e)
	}
}

// transact runs one mail transaction on s and then caches or closes it.
func (d *delivery) transact(s *session) {
	d.talked = true
	stop := context.AfterFunc(d.ctx, func() { s.raw.Close() })
	ok := d.transaction(s)
	if stop() && ok {
		d.c.release(s)
	} else {
		s.close()
	}
}

// transaction sends the message to the pending recipients over s and
// reports whether s is still in a state to be reused.
func (d *delivery) transaction(s *session) bool {
	msg := d.msg
	if msg.SMTPUTF8 {
		if ok, _ := s.cl.Extension("SMTPUTF8"); !ok {
			// Permanent, but other servers may still be tried
			// (Postfix's SMTP_MISC_FAIL_SOFT_NON_FINAL).
			d.keepAll(permf(s.relay, "5.6.7", "message requires SMTPUTF8, but no server was found that supports SMTPUTF8. The last attempted server was %s", s.namaddr))
			return true
		}
	}
	if max, ok := s.cl.MaxMessageSize(); ok && max > 0 && msg.Size > int64(max) {
		d.finishAll(permf(s.relay, "5.3.4", "message size %d exceeds size limit %d of server %s", msg.Size, max, s.namaddr))
		return true
	}
	body, err := msg.Open()
	if err != nil {
		d.keepAll(tempf("none", "4.3.0", "cannot read message %s: %v", msg.ID, err))
		return true
	}
	defer body.Close()

	rcpts := make([]string, len(d.pending))
	for k, i := range d.pending {
		rcpts[k] = d.res[i].Rcpt
	}
	if s.canPipeline(msg.From, rcpts) {
		return d.pipelined(s, body)
	}

	// go-smtp adds SIZE= and BODY=8BITMIME itself when the server offers
	// them (the latter whatever Body says; that is harmless, RFC 6152
	// allows 7-bit content under BODY=8BITMIME). 8-bit content goes out
	// even to a server without 8BITMIME, as Postfix sends it.
	opts := &smtp.MailOptions{Size: msg.Size, UTF8: msg.SMTPUTF8}
	if msg.EightBit {
		opts.Body = smtp.Body8BitMIME
	}
	if err := s.cl.Mail(msg.From, opts); err != nil {
		e, ok := d.refused(s, err, "MAIL FROM command", "sending MAIL FROM")
		if !ok {
			return false
		}
		// A refused sender refuses the message, for every recipient.
		d.outcome(slices.Clone(d.pending), e)
		return s.reset()
	}
	var accepted []int
	for _, i := range slices.Clone(d.pending) {
		err := s.cl.Rcpt(d.res[i].Rcpt, nil)
		if err == nil {
			accepted = append(accepted, i)
			continue
		}
		e, ok := d.refused(s, err, "RCPT TO command", "sending RCPT TO")
		if !ok {
			return false
		}
		d.outcome([]int{i}, e)
	}
	if len(accepted) == 0 {
		return s.reset()
	}
	w, err := s.cl.Data()
	if err != nil {
		e, ok := d.refused(s, err, "DATA command", "sending DATA command")
		if !ok {
			return false
		}
		d.outcome(accepted, e)
		return s.reset()
	}
	if !d.sendBody(s, w, body) {
		return false
	}
	s.conn.SetWriteDeadline(time.Now().Add(s.cl.CommandTimeout))
	if !s.lmtp {
		resp, err := w.CloseWithResponse()
		if err != nil {
			e, broken := s.failure(err, "end of DATA command", afterDot)
			if broken {
				if isWrite(err) {
					e = s.ioError(err, "sending message body")
				}
				d.keepAll(e)
				return false
			}
			d.outcome(accepted, e)
			return true
		}
		for _, i := range accepted {
			d.succeed(i, s.relay, "250 "+oneLine(resp.StatusText))
		}
		return true
	}
	// LMTP: one reply per accepted recipient, in order.
	resps, err := w.CloseWithLMTPResponse()
	var refused smtp.LMTPDataError
	errors.As(err, &refused)
	where := afterDot
	if isWrite(err) {
		where = "sending message body"
	}
	healthy := true
	for _, i := range accepted {
		rcpt := d.res[i].Rcpt
		if r, ok := resps[rcpt]; ok {
			d.succeed(i, s.relay, "250 "+oneLine(r.StatusText))
		} else if se, ok := refused[rcpt]; ok {
			d.outcome([]int{i}, replyError(s.namaddr, s.relay, se, "end of DATA command"))
		} else {
			healthy = false
			d.keep(i, s.ioError(err, where))
		}
	}
	return healthy
}

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

// refused returns the error of a command the server refused; when the
// connection broke instead, every recipient still pending keeps that
// error and ok is false: the transaction, and the session, are over.
func (d *delivery) refused(s *session, err error, command, where string) (e *Error, ok bool) {
	e, broken := s.failure(err, command, where)
	if broken {
		d.keepAll(e)
		return nil, false
	}
	return e, true
}

// afterDot is where a lost connection at the end of DATA leaves us: the
// server may have taken the message.
const afterDot = "sending end of data -- message may be sent more than once"

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

// target is one address to connect to.
type target struct {
	name string     // host name, for texts
	ip   netip.Addr // for TCP
	port int
	path string // UNIX-domain socket, for LMTP
}

func (t target) namaddr() string {
	if t.path != "" {
		return t.name + "[" + t.path + "]"
	}
	return t.name + "[" + t.ip.String() + "]"
}

func (t target) relay() string {
	if t.path != "" {
		return t.namaddr()
	}
	return t.namaddr() + ":" + strconv.Itoa(t.port)
}

// destination is one element of a next-hop list.
type destination struct {
	text string // as written, for the resolver
	path string // LMTP "unix:" socket
	port int
	mx   bool
}

func (c *Client) destinations(nexthop string) ([]destination, error) {
	var out []destination
	for _, el := range strings.FieldsFunc(nexthop, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
		if c.LMTP {
			// Only lmtp(8) knows these prefixes; for smtp(8) they would
			// be host names.
			if p, ok := strings.CutPrefix(el, "unix:"); ok {
				out = append(out, destination{text: el, path: p})
				continue
			}
			el = strings.TrimPrefix(el, "inet:")
		}
		host, port, bracketed := dnsresolve.SplitNexthop(el)
		if host == "" {
			return nil, fmt.Errorf("bad next hop %q", nexthop)
		}
		if port == "" {
			port = c.Port
		}
		if port == "" {
			port = "25"
			if c.LMTP {
				port = "24"
			}
		}
		n, err := dnsresolve.ParsePort(port)
		if err != nil {
			return nil, fmt.Errorf("%v for destination: %s", err, el)
		}
		out = append(out, destination{text: el, port: n, mx: !c.LMTP && !bracketed})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("empty next hop")
	}
	return out, nil
}

// targets resolves a destination to the addresses to try, in order.
func (c *Client) targets(ctx context.Context, dst destination) ([]target, *Error) {
	if dst.path != "" {
		return []target{{name: c.helo(), path: dst.path}}, nil
	}
	r := c.Resolver
	if r == nil {
		r = &c.sysResolver
	}
	hosts, err := r.Hosts(ctx, dst.text, dst.mx)
	if err != nil {
		var re *dnsresolve.Error
		if errors.As(err, &re) {
			return nil, &Error{Permanent: !re.Temporary, Enhanced: re.Status, Text: re.Text, Relay: "none"}
		}
		return nil, tempf("none", "4.4.3", "%v", err)
	}
	var out []target
	for _, h := range hosts {
		for _, a := range h.Addrs {
			out = append(out, target{name: h.Name, ip: a, port: dst.port})
		}
	}
	return out, nil
}

func (c *Client) log() *slog.Logger {
	if c.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Log
}

func (c *Client) helo() string {
	if c.HeloName == "" {
		return "localhost"
	}
	return c.HeloName
}

func (c *Client) level() string {
	if c.TLSLevel == "" {
		return "may"
	}
	return c.TLSLevel
}

func (c *Client) commandTimeout() time.Duration {
	if c.CommandTimeout <= 0 {
		return 5 * time.Minute
	}
	return c.CommandTimeout
}

func (c *Client) checkConfig() *Error {
	switch c.level() {
	case "none", "may", "encrypt":
	default:
		// Postfix's wording for a TLS level it cannot apply.
		return tempf("none", "4.7.0", "client TLS configuration problem: unsupported smtp_tls_security_level %q", c.TLSLevel)
	}
	for _, a := range []string{c.BindAddr, c.BindAddr6} {
		if _, err := parseBind(a); err != nil {
			return tempf("none", "4.3.5", "%v", err)
		}
	}
	return nil
}

func parseBind(s string) (netip.Addr, error) {
	if s == "" {
		return netip.Addr{}, nil
	}
	a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]"))
	if err != nil {
		return netip.Addr{}, fmt.Errorf("bad smtp_bind_address %q: %v", s, err)
	}
	return a, nil
}

// dial connects to t, from the bind address if one is set.
func (c *Client) dial(ctx context.Context, t target) (net.Conn, *Error) {
	timeout := c.ConnectTimeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	d := net.Dialer{Timeout: timeout}
	if t.path != "" {
		conn, err := d.DialContext(ctx, "unix", t.path)
		if err != nil {
			return nil, tempf(t.relay(), "4.4.1", "connect to %s: %s", t.namaddr(), Strerror(err))
		}
		return conn, nil
	}
	bind := c.BindAddr
	if t.ip.Is6() {
		bind = c.BindAddr6
	}
	addr := netip.AddrPortFrom(t.ip, uint16(t.port)).String()
	if b, _ := parseBind(bind); b.IsValid() {
		d.LocalAddr = &net.TCPAddr{IP: b.AsSlice()}
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err == nil || !isBindError(err) {
			if err != nil {
				return nil, c.connectError(t, err)
			}
			return conn, nil
		}
		if c.BindEnforce {
			return nil, tempf("none", "4.4.0", "server configuration error: bind %s: %s", bind, Strerror(err))
		}
		// Postfix warns and connects from another address.
		c.log().Warn("bind failed; connecting from another address", "bind", bind, "err", Strerror(err), "server", t.relay())
		d.LocalAddr = nil
	}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, c.connectError(t, err)
	}
	return conn, nil
}

func (c *Client) connectError(t target, err error) *Error {
	// Postfix logs relay=none for a server it could not reach.
	return tempf("none", "4.4.1", "connect to %s:%d: %s", t.namaddr(), t.port, Strerror(err))
}

// isBindError reports a failure to bind to the source address, which is
// EADDRNOTAVAIL when this host does not have it.
func isBindError(err error) bool {
	return errors.Is(err, syscall.EADDRNOTAVAIL)
}

// open connects to t and gets a session as far as the mail transaction:
// greeting, EHLO (HELO when EHLO is refused), STARTTLS per the TLS
// level. retryPlain asks the caller to try t again without TLS.
func (c *Client) open(ctx context.Context, t target, key string, useTLS bool) (*session, bool, *Error) {
	s, retryPlain, e := c.connect(ctx, t, key, useTLS, false)
	if e == errUseHELO {
		// Postfix falls back to HELO after any EHLO reply but 2xx and
		// 421; go-smtp does only after 500 and 502, so the fall-back is
		// done here, on a new connection.
		s, retryPlain, e = c.connect(ctx, t, key, useTLS, true)
	}
	return s, retryPlain, e
}

// errUseHELO asks open to connect again and say HELO.
var errUseHELO = &Error{Text: "EHLO refused"}

func (c *Client) connect(ctx context.Context, t target, key string, useTLS, helo bool) (s *session, retryPlain bool, e *Error) {
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
	s = &session{raw: raw, conn: w, key: key, namaddr: t.namaddr(), relay: t.relay(), lmtp: c.LMTP}
	s.cl = c.newClient(w)
	if err := s.cl.Hello(c.helo()); err != nil {
		raw.Close()
		var se *smtp.SMTPError
		if !helo && !c.LMTP && w.writes.Load() == 1 && errors.As(err, &se) && se.Code != 421 {
			return nil, false, errUseHELO
		}
		return nil, false, s.helloError(err, w.writes.Load() == 0)
	}
	level := c.level()
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

// deadlineWriter refreshes the write deadline for each chunk of the body:
// go-smtp sets none while DATA content is written, and a server that stops
// reading must not hang the delivery.
type deadlineWriter struct {
	w    io.Writer
	conn net.Conn
	d    time.Duration
}

func (t *deadlineWriter) Write(p []byte) (int, error) {
	t.conn.SetWriteDeadline(time.Now().Add(t.d))
	return t.w.Write(p)
}

// sendBody copies the message body to w, the DATA stream, and reports
// whether it all went; if not, every pending recipient keeps the reason
// and the session is not to be used again.
func (d *delivery) sendBody(s *session, w io.Writer, body io.Reader) bool {
	src := &ContentReader{R: body}
	buf := copyBufs.Get().(*[]byte)
	_, err := io.CopyBuffer(&deadlineWriter{w: w, conn: s.conn, d: s.cl.CommandTimeout}, src, *buf)
	copyBufs.Put(buf)
	if err == nil {
		return true
	}
	if src.Err != nil {
		// Closing without the final dot makes the server drop the
		// message.
		d.keepAll(tempf("none", "4.3.0", "error reading message %s: %v", d.msg.ID, src.Err))
	} else {
		d.keepAll(s.ioError(err, "sending message body"))
	}
	return false
}

// copyBufs are the buffers message bodies are sent through, reused
// rather than allocated for every message.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func isWrite(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "write"
}

func oneLine(s string) string { return strings.ReplaceAll(s, "\n", " ") }
