// Package socketmap implements Postfix's socketmap lookup table client
// (socketmap_table(5), src/util/dict_sockmap.c), the Sendmail protocol
// that postsrsd and MTA-STS resolvers answer.
//
// A table is named socketmap:inet:HOST:PORT:NAME or
// socketmap:unix:/PATH:NAME; everything after the last ':' is the map
// name the server sees. Each lookup sends one netstring, "NAME KEY", and
// reads one netstring back:
//
//	OK <space> <data>      found: the value is data
//	NOTFOUND <space>       not found
//	TEMP <space> <reason>  \
//	TIMEOUT <space> <reason> > the lookup failed
//	PERM <space> <reason>  /
//
// Any failure — those three replies, anything else a server says, a
// malformed netstring, a reply above socketmap_max_reply_size, a server
// that closes or does not answer within the time limit — is an error,
// never "not found": the mail that needs the answer is deferred (4xx at
// RCPT), never bounced or sent elsewhere. Postfix does the same
// (DICT_ERR_RETRY, DICT_ERR_CONFIG for PERM).
//
// Connections are kept as Postfix's auto_clnt(3) keeps them, one endpoint
// shared by every table that names it: reused while they work, closed
// after 10 s without a lookup or 100 s after they were opened, and a
// connection that the server closed is reopened once within the same
// lookup, so that a server restart is transparent. Postfix has one
// connection per process; mailtee's sessions run in one process, so
// concurrent lookups each take an idle connection or open one.
//
// Keys are sent as given: Postfix opens socketmap tables as pattern
// tables (DICT_FLAG_PATTERN) and its callers ask only for fixed-table
// folding (DICT_FLAG_FOLD_FIX), so the server sees the address's own case
// and is asked only with the full address, never its parts.
package socketmap

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"
)

// Size limits, Postfix's defaults (dict_sockmap.c, mail_params.h), set
// with SetLimits: socketmap_max_reply_size (a longer reply is an error)
// and socketmap_max_query_size (a longer key is not found, as Postfix
// says for an invalid key).
var maxReply, maxQuery atomic.Int64

func init() { SetLimits(100000, 10000) }

// SetLimits sets socketmap_max_reply_size and socketmap_max_query_size
// for every table of the process, as Postfix's mail_params does; safe
// while lookups run (a reload). A value below 1 leaves a limit as it is.
func SetLimits(reply, query int) {
	if reply > 0 {
		maxReply.Store(int64(reply))
	}
	if query > 0 {
		maxQuery.Store(int64(query))
	}
}

// Timing, Postfix's auto_clnt settings for socketmap (dict_sockmap.c),
// set with SetTimes: the time limit for connecting, sending and
// receiving (unless the caller's context ends earlier), and when a kept
// connection is closed: unused for maxIdle, or maxTTL after it was
// opened.
var timeout, maxIdle, maxTTL atomic.Int64

func init() { SetTimes(100*time.Second, 10*time.Second, 100*time.Second) }

// SetTimes sets the time limit and the idle and age limits of kept
// connections for every table of the process; a value of 0 leaves one as
// it is.
func SetTimes(limit, idle, ttl time.Duration) {
	for _, x := range []struct {
		v *atomic.Int64
		d time.Duration
	}{{&timeout, limit}, {&maxIdle, idle}, {&maxTTL, ttl}} {
		if x.d > 0 {
			x.v.Store(int64(x.d))
		}
	}
}

func get(v *atomic.Int64) time.Duration { return time.Duration(v.Load()) }

// maxIdleConns is how many idle connections an endpoint keeps.
const maxIdleConns = 4

// Error is a lookup that got no answer. Every Error is temporary: the
// mail waits for the table, as Postfix's DICT_ERR_RETRY and
// DICT_ERR_CONFIG both defer it.
type Error struct {
	Table  string // "socketmap:inet:127.0.0.1:9000:name"
	Class  string // "temporary", "timeout", "permanent", "unknown" (a server's reply), or "" (no reply)
	Reason string
	Err    error // the I/O or netstring error, when there was no reply
}

func (e *Error) Error() string {
	if e.Class != "" {
		// dict_sockmap.c: "%s:%s socketmap server %s error%s%.200s"
		msg := fmt.Sprintf("%s socketmap server %s error", e.Table, e.Class)
		if e.Reason != "" {
			msg += ": " + e.Reason
		}
		return msg
	}
	return fmt.Sprintf("table %s lookup error: %s", e.Table, e.Reason)
}

func (e *Error) Unwrap() error { return e.Err }

// Temporary reports true: see Error.
func (e *Error) Temporary() bool { return true }

// Table is one socketmap table.
type Table struct {
	spec string // "socketmap:" + the name given to Open
	name string // the map name sent to the server
	ep   *endpoint
}

// Open opens the table named name, the part after "socketmap:":
// "inet:host:port:mapname" or "unix:/path:mapname" ("local:" is taken as
// "unix:", as auto_clnt(3) does). Nothing is connected until the first
// lookup, so a server that is down never stops a table from opening.
func Open(name string) (*Table, error) {
	i := strings.LastIndexByte(name, ':')
	if i < 0 {
		return nil, fmt.Errorf("socketmap requires server:socketmap argument, such as socketmap:inet:127.0.0.1:10001:mapname or socketmap:unix:/run/socketmap.sock:mapname")
	}
	server, mapname := name[:i], name[i+1:]
	if mapname == "" {
		return nil, fmt.Errorf("%q: the map name after the last ':' is empty", name)
	}
	if strings.ContainsAny(mapname, " \t\r\n") {
		return nil, fmt.Errorf("%q: the map name %q holds white space, which the request's \"name key\" form cannot carry", name, mapname)
	}
	network, addr, err := parseServer(server)
	if err != nil {
		return nil, fmt.Errorf("%q: %w", name, err)
	}
	return &Table{spec: "socketmap:" + name, name: mapname, ep: endpointFor(network, addr)}, nil
}

func parseServer(s string) (network, addr string, err error) {
	typ, rest, ok := strings.Cut(s, ":")
	switch {
	case !ok || rest == "":
		return "", "", fmt.Errorf("server %q: expected inet:host:port or unix:/path", s)
	case typ == "inet":
		host, port, err := net.SplitHostPort(rest)
		if err != nil {
			return "", "", fmt.Errorf("server %q: %v (write an IPv6 address as inet:[::1]:port)", s, err)
		}
		if port == "" {
			return "", "", fmt.Errorf("server %q: no port", s)
		}
		return "tcp", net.JoinHostPort(host, port), nil
	case typ == "unix" || typ == "local":
		if !filepath.IsAbs(rest) {
			// Postfix's daemons resolve it in their queue directory;
			// mailtee has no such working directory.
			return "", "", fmt.Errorf("server %q: give the socket's absolute path (Postfix would look for %q under its queue directory)", s, rest)
		}
		return "unix", rest, nil
	}
	return "", "", fmt.Errorf("server %q: unknown transport %q; use inet:host:port or unix:/path", s, typ)
}

// String is the table's name as main.cf writes it.
func (t *Table) String() string { return t.spec }

// Lookup asks the server for key. A key above socketmap_max_query_size bytes or that is
// not UTF-8 is not found without asking, as Postfix's dict_sockmap.c
// and dict_utf8.c do.
func (t *Table) Lookup(ctx context.Context, key string) (string, bool, error) {
	if len(key) > int(maxQuery.Load()) || !utf8.ValidString(key) {
		return "", false, nil
	}
	reply, err := t.ep.roundTrip(ctx, AppendNetstring(nil, t.name+" "+key))
	if err != nil {
		return "", false, &Error{Table: t.spec, Reason: describe(err), Err: err}
	}
	return t.parse(reply)
}

// Probe checks that the server answers a lookup: any reply, even
// NOTFOUND or PERM, shows that it is there. The key is one no real map
// holds.
func (t *Table) Probe(ctx context.Context) error {
	_, err := t.ep.roundTrip(ctx, AppendNetstring(nil, t.name+" mailtee-check-probe.invalid"))
	if err != nil {
		// The caller names the table.
		if msg := describe(err); msg != err.Error() {
			return fmt.Errorf("%s: %w", msg, err)
		}
		return err
	}
	return nil
}

// parse reads a reply as dict_sockmap_lookup does: the word before the
// first space says what happened.
func (t *Table) parse(reply []byte) (string, bool, error) {
	status, payload, _ := strings.Cut(string(reply), " ")
	switch status {
	case "OK":
		if strings.IndexByte(payload, 0) >= 0 || !utf8.ValidString(payload) {
			// Postfix's C strings would cut the value at the NUL, and
			// dict_utf8.c fails a value that is not UTF-8: either
			// way no value is safe to route on.
			return "", false, &Error{Table: t.spec, Class: "unknown", Reason: "reply holds a NUL byte or is not UTF-8"}
		}
		return payload, true, nil
	case "NOTFOUND":
		return "", false, nil
	}
	class := map[string]string{"TEMP": "temporary", "TIMEOUT": "timeout", "PERM": "permanent"}[status]
	if class == "" {
		class = "unknown"
		payload = string(reply)
	}
	return "", false, &Error{Table: t.spec, Class: class, Reason: printable(strings.TrimLeft(payload, " \t\r\n\v\f"))}
}

// printable is Postfix's printable(s, '?') over the first 200 bytes: a
// server's reason goes into a log line.
func printable(s string) string {
	if len(s) > 200 {
		s = s[:200]
	}
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f || r == utf8.RuneError {
			return '?'
		}
		return r
	}, s)
}

// describe says what went wrong with the connection, in
// netstring_strerror's words where one applies.
func describe(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, ErrFormat), errors.Is(err, ErrSize):
		return err.Error()
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return "time limit exceeded"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "unexpected disconnect"
	}
	return err.Error()
}

// endpoint is one server, shared by the tables that name it, as
// dict_sockmap.c shares one auto_clnt per inet:host:port or unix:path.
type endpoint struct {
	network, addr string

	mu    sync.Mutex
	idle  []*conn // most recently used last
	sweep *time.Timer
}

type conn struct {
	net.Conn
	r        *bufio.Reader
	born     time.Time
	lastUsed time.Time
}

var (
	endpointsMu sync.Mutex
	endpoints   = map[string]*endpoint{}
)

func endpointFor(network, addr string) *endpoint {
	endpointsMu.Lock()
	defer endpointsMu.Unlock()
	k := network + ":" + addr
	ep := endpoints[k]
	if ep == nil {
		ep = &endpoint{network: network, addr: addr}
		endpoints[k] = ep
	}
	return ep
}

// roundTrip sends req and reads one reply. A reused connection that
// turns out closed (the server restarted, or dropped it while idle) is
// replaced once, as dict_sockmap_lookup retries NETSTRING_ERR_EOF once;
// a time-out is not retried.
func (ep *endpoint) roundTrip(ctx context.Context, req []byte) ([]byte, error) {
	deadline := time.Now().Add(get(&timeout))
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	for attempt := 0; ; attempt++ {
		c, reused, err := ep.get(ctx, deadline)
		if err != nil {
			return nil, err
		}
		reply, err := exchange(ctx, c, req, deadline)
		if err == nil {
			ep.put(c)
			return reply, nil
		}
		c.Close()
		if attempt == 0 && reused && closedByPeer(err) {
			continue
		}
		return nil, err
	}
}

func closedByPeer(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET)
}

func exchange(ctx context.Context, c *conn, req []byte, deadline time.Time) ([]byte, error) {
	c.SetDeadline(deadline)
	// A context cancelled without a deadline (a client that went away)
	// ends the wait too.
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if _, err := c.Write(req); err != nil {
		return nil, err
	}
	reply, err := ReadNetstring(c.r, int(maxReply.Load()))
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
		return nil, err
	}
	return reply, nil
}

// get returns an idle connection (reused = true) or a new one.
func (ep *endpoint) get(ctx context.Context, deadline time.Time) (*conn, bool, error) {
	now := time.Now()
	ep.mu.Lock()
	for len(ep.idle) > 0 {
		c := ep.idle[len(ep.idle)-1]
		ep.idle = ep.idle[:len(ep.idle)-1]
		if now.Sub(c.lastUsed) < get(&maxIdle) && now.Sub(c.born) < get(&maxTTL) {
			ep.mu.Unlock()
			return c, true, nil
		}
		c.Close()
	}
	ep.mu.Unlock()
	d := net.Dialer{Deadline: deadline}
	nc, err := d.DialContext(ctx, ep.network, ep.addr)
	if err != nil {
		return nil, false, err
	}
	return &conn{Conn: nc, r: bufio.NewReader(nc), born: now}, false, nil
}

// put keeps c for the next lookup, unless it is too old or enough are
// kept already.
func (ep *endpoint) put(c *conn) {
	now := time.Now()
	c.lastUsed = now
	ep.mu.Lock()
	defer ep.mu.Unlock()
	if now.Sub(c.born) >= get(&maxTTL) || len(ep.idle) >= maxIdleConns || c.r.Buffered() > 0 {
		// Bytes after the reply are a server out of step: start afresh.
		c.Close()
		return
	}
	ep.idle = append(ep.idle, c)
	if ep.sweep == nil {
		ep.sweep = time.AfterFunc(get(&maxIdle), ep.closeIdle)
	}
}

// closeIdle closes the connections unused for maxIdle, so that a server
// is not held open by a quiet mailtee (auto_clnt's idle timer).
func (ep *endpoint) closeIdle() {
	now := time.Now()
	ep.mu.Lock()
	defer ep.mu.Unlock()
	keep := ep.idle[:0]
	for _, c := range ep.idle {
		if now.Sub(c.lastUsed) >= get(&maxIdle) {
			c.Close()
		} else {
			keep = append(keep, c)
		}
	}
	ep.idle = keep
	ep.sweep = nil
	if len(ep.idle) > 0 {
		ep.sweep = time.AfterFunc(get(&maxIdle), ep.closeIdle)
	}
}

// KeyAsGiven marks the table as one whose keys are not folded
// (maps.KeyAsGiven): see the package comment.
func (*Table) KeyAsGiven() {}
