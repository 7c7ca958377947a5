package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"

	"github.com/mailtee/mailtee/internal/config"
	"github.com/mailtee/mailtee/internal/envelope"
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

// newCleanup builds cleanup from main.cf and its opened tables.
func newCleanup(cfg *config.Config, t *tables) *cleanup {
	bare := bareKeyDomains(cfg, t)
	relayCopies, _ := cfg.Bool("dual_delivery_relay")
	return &cleanup{
		external:      rewriterFor(cfg, t, bare, true),
		internal:      rewriterFor(cfg, t, bare, false),
		copies:        relayCopies,
		hopLimit:      mustInt(cfg, "hopcount_limit"),
		maxHdr:        mustInt(cfg, "header_size_limit"),
		headerClients: headerRewriteClients(cfg, t),
	}
}

// process rewrites env and returns the body to store: the rewritten
// header followed by the rest of the content, unread. An error made by
// smtpd.Refuse refuses the message (too many hops).
func (c *cleanup) process(ctx context.Context, env *envelope.Envelope, body io.Reader, external bool) (*envelope.Envelope, io.Reader, error) {
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
	hdr, err := readHeader(br)
	if err != nil {
		return nil, nil, err
	}
	// Postfix's cleanup refuses at hop_count >= hopcount_limit, counting
	// the Received: header smtpd just added.
	if hops := countReceived(hdr); c.hopLimit > 0 && hops >= c.hopLimit {
		io.Copy(io.Discard, br) // the client must be allowed to finish DATA
		return nil, nil, smtpd.Refuse(554, "5.4.6", "too many hops (%d Received: headers, hopcount_limit is %d)", hops, c.hopLimit)
	}
	newHdr := hdr
	// A header larger than header_size_limit passes as it came: Postfix
	// would cut it there, mailtee keeps every byte and every hop.
	if c.rewriteHeaders(env) && (c.maxHdr <= 0 || len(hdr) <= c.maxHdr) {
		if newHdr, err = rw.Header(ctx, hdr); err != nil {
			// A table that cannot answer: Postfix refuses with "try
			// again later"; so do we, after letting the client finish.
			io.Copy(io.Discard, br)
			return nil, nil, smtpd.Refuse(451, "4.3.0", "header address rewriting failed: %v", err)
		}
	}
	return out, io.MultiReader(bytes.NewReader(newHdr), br), nil
}

// readHeader reads the whole header section, up to and including the
// empty line. Its size is bounded by message_size_limit, which smtpd
// enforces; header_size_limit only decides whether it is rewritten.
func readHeader(br *bufio.Reader) ([]byte, error) {
	var hdr []byte
	for {
		line, err := br.ReadSlice('\n')
		hdr = append(hdr, line...)
		if err == bufio.ErrBufferFull {
			continue
		}
		if err == io.EOF {
			return hdr, nil
		}
		if err != nil {
			return nil, err
		}
		if bytes.Equal(line, []byte("\r\n")) || bytes.Equal(line, []byte("\n")) {
			return hdr, nil
		}
	}
}

// countReceived counts Received: header fields, Postfix's hop count. The
// name is matched as Postfix's is_header() does: without regard to case,
// and with blanks allowed before the colon (RFC 5322's obsolete syntax),
// so that "Received :" cannot hide a hop.
func countReceived(hdr []byte) int {
	n := 0
	for line := range bytes.SplitSeq(hdr, []byte("\n")) {
		if len(line) < 8 || !bytes.EqualFold(line[:8], []byte("received")) {
			continue
		}
		if rest := bytes.TrimLeft(line[8:], " \t"); len(rest) > 0 && rest[0] == ':' {
			n++
		}
	}
	return n
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
	out, r, err := q.c().process(ctx, env, br, true)
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
