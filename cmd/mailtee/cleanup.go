package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"

	"github.com/mailtee/mailtee/internal/config"
	"github.com/mailtee/mailtee/internal/envelope"
	"github.com/mailtee/mailtee/internal/header"
	"github.com/mailtee/mailtee/internal/maillog"
	"github.com/mailtee/mailtee/internal/rewrite"
	"github.com/mailtee/mailtee/internal/smtpd"
)

// cleanup is what Postfix's cleanup(8) does to every message before it
// is queued: address rewriting of the envelope and the header, BCC
// copies for mail from outside, the hop count check, and the relay's
// "everything is a copy" rule.
type cleanup struct {
	external *rewrite.Rewriter // mail from SMTP clients and sendmail
	internal *rewrite.Rewriter // forwards and notifications: no BCC, as in Postfix
	copies   bool              // dual_delivery_relay
	hopLimit int               // hopcount_limit
	maxHdr   int               // header_size_limit
	log      func(line string) // the mail log (cleanup's lines); may be nil
	// headerClients is local_header_rewrite_clients: whose mail gets its
	// header addresses rewritten. Mail from other clients keeps its
	// header as sent, as in Postfix (remote_header_rewrite_domain empty).
	headerClients func(clientAddr string) bool
}

// rewriteHeaders says whether env's header is rewritten: for local
// submissions, and for clients local_header_rewrite_clients allows.
func (c *cleanup) rewriteHeaders(env *envelope.Envelope) bool {
	return env.ClientAddr == "" || c.headerClients != nil && c.headerClients(env.ClientAddr)
}

// newCleanup builds cleanup from main.cf and its opened tables; log
// takes its log lines.
func newCleanup(cfg *config.Config, t *tables, log func(line string)) *cleanup {
	bare := bareKeyDomains(cfg, t)
	relayCopies, _ := cfg.Bool("dual_delivery_relay")
	return &cleanup{
		external:      rewriterFor(cfg, t, bare, true),
		internal:      rewriterFor(cfg, t, bare, false),
		copies:        relayCopies,
		hopLimit:      mustInt(cfg, "hopcount_limit"),
		maxHdr:        mustInt(cfg, "header_size_limit"),
		headerClients: headerRewriteClients(cfg, t),
		log:           log,
	}
}

// process rewrites env and returns the content to store: the header
// field by field, each within header_size_limit and with its addresses
// rewritten, then the body as it is, read as the queue reads the
// returned reader. That reader fails with an error made by smtpd.Refuse
// when the message is refused (too many hops), after reading body to its
// end. id is the queue ID for the log ("" when not known yet).
func (c *cleanup) process(ctx context.Context, id string, env *envelope.Envelope, body io.Reader, external bool) (*envelope.Envelope, io.Reader, error) {
	rw := c.internal
	if external {
		rw = c.external
	}
	out, err := rw.Envelope(ctx, env)
	if err != nil {
		return nil, nil, fmt.Errorf("address rewriting: %w", err)
	}
	if c.copies && external {
		for i := range out.Rcpts {
			out.Rcpts[i].Copy = true
		}
	}
	br, ok := body.(*bufio.Reader)
	if !ok {
		br = bufio.NewReaderSize(body, readerSize)
	}
	rewrite := c.rewriteHeaders(env)
	hops := 0
	return out, header.Filter(br, c.maxHdr, func(field []byte, discarded int64) ([]byte, error) {
		if discarded > 0 && c.log != nil {
			c.log(headerCutLog(id, env, field, c.maxHdr, discarded))
		}
		if bytes.EqualFold(header.Name(field), []byte("received")) {
			hops++
		}
		// Postfix's cleanup refuses at hop_count >= hopcount_limit,
		// counting the Received: field smtpd just added.
		if c.hopLimit > 0 && hops >= c.hopLimit {
			return nil, refusal{smtpd.Refuse(554, "5.4.6", "too many hops (%d Received: headers, hopcount_limit is %d)", hops, c.hopLimit)}
		}
		if !rewrite {
			return field, nil
		}
		nf, err := rw.Header(ctx, field)
		if err != nil {
			// A table that cannot answer: Postfix refuses with "try
			// again later"; so do we, after letting the client finish.
			return nil, refusal{smtpd.Refuse(451, "4.3.0", "header address rewriting failed: %v", err)}
		}
		// Rewriting may make a field longer; Postfix cuts every field
		// it writes (cleanup_out_header).
		nf, _ = header.Cut(nf, c.maxHdr)
		return nf, nil
	}), nil
}

// refusal marks cleanup's refusal of a message's content (an error made
// by smtpd.Refuse), which the content reader returns: sendmail tells it
// from a failure to write the queue.
type refusal struct{ error }

func (r refusal) Unwrap() error { return r.error }

// headerCutLog is the log line for a header field cut at
// header_size_limit, in the shape of Postfix's cleanup_act_log (as a
// header_checks WARN action logs): Postfix cuts such a field without a
// word, mailtee says so.
//
//	ID: warning: header NAME: TEXT from CLIENT; from=<S> to=<R> proto=P helo=<H>: ...
func headerCutLog(id string, env *envelope.Envelope, field []byte, limit int, discarded int64) string {
	if id == "" {
		id = "NOQUEUE"
	}
	origin := "local"
	if env.ClientAddr != "" {
		origin = maillog.NameAddr(env.ClientName, env.ClientAddr)
	}
	var b strings.Builder
	b.WriteString(id + ": warning: header ")
	// The first 200 bytes, as Postfix's %.200s, made printable as its
	// msg_info does (line breaks and 8-bit bytes show as '?').
	for _, c := range field[:min(len(field), 200)] {
		switch {
		case c == '\r':
		case c < ' ' || c >= 0x7f:
			b.WriteByte('?')
		default:
			b.WriteByte(c)
		}
	}
	b.WriteString(" from " + origin + "; from=<" + env.From + ">")
	if n := len(env.Rcpts); n > 0 {
		b.WriteString(" to=<" + env.Rcpts[n-1].Addr + ">")
	}
	if env.Protocol != "" {
		b.WriteString(" proto=" + env.Protocol)
	}
	if env.Helo != "" {
		b.WriteString(" helo=<" + env.Helo + ">")
	}
	fmt.Fprintf(&b, ": header field exceeds header_size_limit (%d bytes); %d bytes discarded", limit, discarded)
	return b.String()
}

// queueWith adapts cleanup in front of an enqueue function as the
// smtpd.Enqueuer the SMTP server hands messages to.
type cleanupQueue struct {
	c       func() *cleanup // the current one: a reload replaces it
	newID   func() string
	enqueue func(ctx context.Context, id string, env *envelope.Envelope, body io.Reader) error
}

func (q cleanupQueue) NewID() string { return q.newID() }

// readerSize is the buffer cleanup reads message content through.
const readerSize = 16 << 10

// readers are the buffers of messages being received: reused, so that a
// busy server does not allocate and clear one per message.
var readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, readerSize) }}

func (q cleanupQueue) Enqueue(ctx context.Context, id string, env *envelope.Envelope, body io.Reader) error {
	br := readers.Get().(*bufio.Reader)
	br.Reset(body)
	defer func() { br.Reset(nil); readers.Put(br) }()
	out, r, err := q.c().process(ctx, id, env, br, true)
	if err != nil {
		return err
	}
	return q.enqueue(ctx, id, out, r)
}

// headerRewriteClients implements local_header_rewrite_clients for its
// two common values: permit_inet_interfaces (Postfix's default: this
// host's own addresses, loopback included) and permit_mynetworks.
func headerRewriteClients(cfg *config.Config, t *tables) func(string) bool {
	ours := map[string]bool{}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok {
				ours[ipn.IP.String()] = true
			}
		}
	}
	var rules []string
	rules = append(rules, cfg.List("local_header_rewrite_clients")...)
	return func(addr string) bool {
		ip, err := netip.ParseAddr(addr)
		if err != nil {
			return false
		}
		ip = ip.Unmap()
		for _, r := range rules {
			switch r {
			case "permit_inet_interfaces":
				if ip.IsLoopback() || ours[ip.String()] {
					return true
				}
			case "permit_mynetworks":
				if ok, _ := t.mynetworks.Match(context.Background(), ip); ok {
					return true
				}
			}
		}
		return false
	}
}
