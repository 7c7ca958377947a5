package deliver

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

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
	// SMTPUTF8 says the sender asked for SMTPUTF8: it is sent on when the
	// server offers it, and a message that needs it (smtputf8.go) waits
	// for a server that does.
	SMTPUTF8 bool
	// EightBit says the content has 8-bit data (BODY=8BITMIME).
	EightBit bool
	// The client that sent the message, for local(8)'s command
	// environment (CLIENT_HOSTNAME, ...); empty when unknown.
	ClientName, ClientAddr, ClientHelo, ClientProtocol string
	// DSN parameters (dsn.go): RET, ENVID, and per recipient, indexed
	// like Deliver's rcpts (nil: none).
	Ret, EnvID string
	RcptDSN    []RcptDSN
	// Settings is the ID of the migration settings the message was
	// accepted with (envelope.Envelope.Settings), for local delivery's
	// mailbox_bcc_maps and phase.
	Settings string
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
	// Setup is the time spent before the session that settled this
	// recipient could transmit: DNS, connections tried, greeting, EHLO,
	// TLS (Postfix's delays=c). Zero on a cached connection.
	Setup time.Duration
	// ConnUse is how many mail transactions the connection that settled
	// this recipient has carried, this one included: Postfix logs it as
	// "conn_use=N" when above 1 (log_adhoc.c, maillog.Delivery.ConnUse).
	// 0 when no session settled it.
	ConnUse int
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
	// SocketDir is where a relative LMTP "unix:" socket is, as
	// "unix:private/dovecot-lmtp": Postfix's queue_directory, where
	// lmtp(8) runs. Empty leaves it relative to the working directory.
	SocketDir string
	// MaxIdle is smtp_connection_cache_time_limit: after a transaction, a
	// connection is kept this long for the next message to the same next
	// hop. 0 disables reuse.
	MaxIdle time.Duration
	// MaxReuse is smtp_connection_reuse_count_limit: how many times a
	// connection may be reused after its first transaction before it is
	// closed, so that it carries at most MaxReuse+1 messages; 0: no
	// limit. MaxLifetime is smtp_connection_reuse_time_limit: a
	// connection older than this, counted from when it was initiated, is
	// not reused; 0: no limit (Postfix's default is 300s).
	MaxReuse    int
	MaxLifetime time.Duration
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
// a 5xx reply to MAIL FROM or DATA bounces all of them. A 421, to any
// command, ends the session: the recipients it leaves undecided keep it
// (Code 421 and the server's enhanced code) for the next address, or as
// their result. A Policy in ctx (WithPolicy) tightens the client's
// settings for this delivery.
func (c *Client) Deliver(ctx context.Context, nexthop string, msg *Message, rcpts []string) []Result {
	d := &delivery{ctx: ctx, c: c, msg: msg, key: nexthop, start: time.Now(), policy: policyOf(ctx),
		res: make([]Result, len(rcpts)), errs: make([]*Error, len(rcpts)), here: make([]bool, len(rcpts))}
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
	talked  bool          // some server got past its greeting
	start   time.Time     // Deliver was called
	setup   time.Duration // Setup of the session in use
	connUse int           // ConnUse of the session in use
	// smtputf8: the transaction in progress sends MAIL FROM ... SMTPUTF8
	// (smtputf8.go).
	smtputf8 bool
	policy   Policy // from the context (policy.go)
	// here marks the recipients that got a reply of their own in the
	// transaction in progress, which a 421 that ends it does not replace.
	here []bool
}

// pendingRcpts are the addresses of the recipients still to deliver.
func (d *delivery) pendingRcpts() []string {
	out := make([]string, len(d.pending))
	for k, i := range d.pending {
		out[k] = d.res[i].Rcpt
	}
	return out
}

func (d *delivery) finish(i int, e *Error) {
	d.res[i].Err, d.res[i].Relay, d.res[i].Setup, d.res[i].ConnUse = e, e.Relay, d.setup, d.connUse
	d.pending = slices.DeleteFunc(d.pending, func(j int) bool { return j == i })
}

func (d *delivery) finishAll(e *Error) {
	for _, i := range d.pending {
		d.res[i].Err, d.res[i].Relay, d.res[i].Setup, d.res[i].ConnUse = e, e.Relay, d.setup, d.connUse
	}
	d.pending = nil
}

func (d *delivery) succeed(i int, relay, reply string) {
	d.res[i] = Result{Rcpt: d.res[i].Rcpt, Relay: relay, Reply: reply, Setup: d.setup, ConnUse: d.connUse}
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
			d.here[i] = true
		}
	}
}

func (d *delivery) run(nexthop string) {
	c := d.c
	if err := c.checkConfig(); err != nil {
		d.finishAll(err)
		return
	}
	if l := d.policy.TLSLevel; l != "" && tlsRank(l) < 0 {
		d.finishAll(tempf("none", "4.7.0", "client TLS configuration problem: unsupported TLS level %q in the delivery policy", l))
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
		s := c.takeIdle(d.key, d.fits)
		if s == nil {
			break
		}
		sessions++
		d.setup = 0
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
			s, retryPlain, e := c.open(d.ctx, t, d.key, d.tlsLevel(), true)
			if retryPlain {
				// "When an opportunistic TLS handshake fails, try the
				// same address again, with TLS disabled" (smtp_connect.c).
				s, _, e = c.open(d.ctx, t, d.key, d.tlsLevel(), false)
			}
			if e != nil {
				d.keepAll(e)
				continue
			}
			sessions++
			d.setup = time.Since(d.start)
			d.transact(s)
		}
		sessions, addrs = 0, 0
	}
	// What no session settled was spent connecting.
	d.setup, d.connUse = time.Since(d.start), 0
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
