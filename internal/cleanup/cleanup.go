// Package cleanup is mailtee's cleanup(8): the only way into the queue.
// Mail from SMTP clients, local submissions (pickup), alias forwards and
// delivery status notices all pass through a Door, which rewrites the
// envelope and header addresses, adds the BCC copies of mail from
// outside, enforces hopcount_limit and header_size_limit, marks a
// relay's recipients as copies, and hands the result to the queue.
//
// A refusal of the content (too many hops, a table that cannot answer)
// is a *Refusal, whose SMTP reply smtpd sends as it is.
package cleanup

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mailtee/mailtee/internal/envelope"
	"github.com/mailtee/mailtee/internal/header"
	"github.com/mailtee/mailtee/internal/maillog"
	"github.com/mailtee/mailtee/internal/rewrite"
)

// Options configure cleanup, from main.cf.
type Options struct {
	// Rewrite is the address rewriting of every message. Its BCC fields
	// (recipient_bcc_maps, sender_bcc_maps, always_bcc) apply to mail
	// from outside only, as in Postfix: forwards and notices get none.
	Rewrite rewrite.Options
	// RelayCopies is dual_delivery_relay: every recipient of mail from
	// outside is an automatic copy, whose failures go to postmaster.
	RelayCopies bool
	// Settings is the ID of the migration settings in force
	// (internal/migration), recorded with each message so that it is
	// finished under them; a message that has one keeps it.
	Settings        string
	HopcountLimit   int // hopcount_limit; 0 for none
	HeaderSizeLimit int // header_size_limit
	// HeaderClients is local_header_rewrite_clients: whose mail gets its
	// header addresses rewritten. Local submissions always do; mail from
	// other clients keeps its header as sent, as in Postfix
	// (remote_header_rewrite_domain empty).
	HeaderClients func(clientAddr string) bool
	// Hostname (myhostname) and Myorigin name this system in the
	// header fields cleanup adds to local submissions.
	Hostname, Myorigin string
	// MailName is mail_name, in the Received: field of a local
	// submission; "" means mailtee's default, "mailtee".
	MailName string
	// AutoUTF8 is smtputf8_autodetect_classes (smtputf8.go); the zero
	// value detects nothing, as smtputf8_enable = no.
	AutoUTF8 AutoUTF8
	// Log takes cleanup's mail log lines; nil drops them.
	Log func(line string)
	// Now is time.Now, but for tests.
	Now func() time.Time
}

// Source is where a message comes from, which decides what cleanup
// does to it.
type Source struct {
	// Internal is a message mailtee made from another (a forward, a
	// notice): rewritten, but no BCC copies and no relay copies.
	Internal bool
	// Pickup is a local submission (sendmail), by the user UID: it gets
	// a Received: field naming the user, and the From:, Date: and
	// Message-Id: it lacks, as Postfix's pickup and cleanup add them.
	Pickup bool
	UID    int
}

// Problem is a setting cleanup would not honour, for `mailtee check`.
type Problem = rewrite.Problem

// Check reports the settings in o that New would not honour, each
// naming its parameter: the same validation for check and serve.
func Check(o Options) []Problem { return o.Rewrite.Check() }

// Cleanup is one configuration's cleanup stage; a reload builds another.
type Cleanup struct {
	o        Options
	external *rewrite.Rewriter // mail from SMTP clients and sendmail
	internal *rewrite.Rewriter // forwards and notifications: no BCC
}

// New builds cleanup from o, or says which settings are wrong.
func New(o Options) (*Cleanup, error) {
	if p := Check(o); len(p) > 0 {
		return nil, p[0]
	}
	in := o.Rewrite
	in.RecipientBCC, in.SenderBCC, in.AlwaysBCC = nil, nil, ""
	return &Cleanup{o: o, external: rewrite.New(o.Rewrite), internal: rewrite.New(in)}, nil
}

// RewriteCopies rewrites the addresses of copies mailtee adds to a
// queued message (mailbox_bcc_maps) as those of mail mailtee makes
// itself: no BCC of their own.
func (c *Cleanup) RewriteCopies(ctx context.Context, from string, rcpts []envelope.Rcpt) ([]envelope.Rcpt, error) {
	out, err := c.internal.Envelope(ctx, &envelope.Envelope{From: from, Rcpts: rcpts})
	if err != nil {
		return nil, err
	}
	return out.Rcpts, nil
}

// rewriteHeaders says whether env's header is rewritten: for local
// submissions, and for clients local_header_rewrite_clients allows.
func (c *Cleanup) rewriteHeaders(env *envelope.Envelope) bool {
	return env.ClientAddr == "" || c.o.HeaderClients != nil && c.o.HeaderClients(env.ClientAddr)
}

// Process rewrites env and returns the content to store: the header
// field by field, each within header_size_limit and with its addresses
// rewritten, then the body as it is, read as the queue reads the
// returned reader. That reader fails with a *Refusal when the message is
// refused (too many hops), after reading body to its end. id is the
// queue ID for the log ("" when not known yet); src says where the
// message comes from: mail from outside (SMTP clients, local
// submission) gets the BCC copies.
func (c *Cleanup) Process(ctx context.Context, id string, env *envelope.Envelope, body io.Reader, src Source) (*envelope.Envelope, io.Reader, error) {
	external := !src.Internal
	rw := c.internal
	if external {
		rw = c.external
	}
	out, err := rw.Envelope(ctx, env)
	if err != nil {
		return nil, nil, fmt.Errorf("address rewriting: %w", err)
	}
	if out.Settings == "" {
		out.Settings = c.o.Settings
	}
	if c.o.RelayCopies && external {
		for i := range out.Rcpts {
			out.Rcpts[i].Copy = true
		}
	}
	// The queue stores the envelope after it has read the content
	// (journal.go msgRecord, store.go), so a header field can still set
	// the flag.
	autoUTF8 := !out.SMTPUTF8 && c.autoUTF8(src)
	if autoUTF8 && envelopeNeedsUTF8(out) {
		out.SMTPUTF8, autoUTF8 = true, false
	}
	var missing *missingFields
	if src.Pickup {
		now := env.Arrival // when sendmail wrote it
		if now.IsZero() {
			now = c.now()
		}
		body = io.MultiReader(strings.NewReader(c.received(id, src.UID, now)), body)
		missing = &missingFields{c: c, id: id, env: env, out: out, now: now}
	}
	br, ok := body.(*bufio.Reader)
	if !ok {
		br = bufio.NewReaderSize(body, readerSize)
	}
	rewrite := c.rewriteHeaders(env)
	hops := 0
	maxHdr, hopLimit := c.o.HeaderSizeLimit, c.o.HopcountLimit
	var end func() []byte
	if missing != nil {
		end = missing.fields
	}
	return out, header.FilterEnd(br, maxHdr, func(field []byte, discarded int64) ([]byte, error) {
		if missing != nil {
			missing.saw(field)
		}
		if autoUTF8 && !isASCII(field) {
			out.SMTPUTF8, autoUTF8 = true, false
		}
		if discarded > 0 && c.o.Log != nil {
			c.o.Log(headerCutLog(id, env, field, maxHdr, discarded))
		}
		switch name := header.Name(field); {
		case bytes.EqualFold(name, []byte("received")):
			hops++
		case out.MessageID == "" && bytes.EqualFold(name, []byte("message-id")):
			out.MessageID = messageID(field)
			c.logMessageID(id, out.MessageID)
		}
		// Postfix's cleanup refuses at hop_count >= hopcount_limit,
		// counting the Received: field smtpd just added.
		if hopLimit > 0 && hops >= hopLimit {
			return nil, Refuse(554, "5.4.6", "too many hops (%d Received: headers, hopcount_limit is %d)", hops, hopLimit)
		}
		if !rewrite {
			return field, nil
		}
		nf, err := rw.Header(ctx, field)
		if err != nil {
			// A table that cannot answer: Postfix refuses with "try
			// again later"; so do we, after letting the client finish.
			return nil, Refuse(451, "4.3.0", "header address rewriting failed: %v", err)
		}
		// Rewriting may make a field longer; Postfix cuts every field
		// it writes (cleanup_out_header).
		nf, _ = header.Cut(nf, maxHdr)
		return nf, nil
	}, end), nil
}

func (c *Cleanup) now() time.Time {
	if c.o.Now != nil {
		return c.o.Now()
	}
	return time.Now()
}

// received is the Received: field of a local submission, as Postfix's
// pickup writes it.
func (c *Cleanup) received(id string, uid int, now time.Time) string {
	if id != "" {
		id = "id " + id + "; "
	}
	name := c.o.MailName
	if name == "" {
		name = "mailtee"
	}
	// pickup.c: "by %s (%s, from userid %ld)", myhostname, mail_name.
	return fmt.Sprintf("Received: by %s (%s, from userid %d)\r\n\t%s%s\r\n", c.o.Hostname, name, uid, id, now.Format(time.RFC1123Z))
}

// messageID is a Message-ID field's value for the ledger: unfolded,
// trimmed, printable, at most 250 bytes (a client chooses it).
func messageID(field []byte) string {
	_, v, _ := bytes.Cut(field, []byte(":"))
	b := make([]byte, 0, min(len(v), 250))
	for _, c := range bytes.TrimSpace(v) {
		if len(b) == 250 {
			break
		}
		if c > ' ' && c < 0x7f {
			b = append(b, c)
		}
	}
	return string(b)
}

// logMessageID logs "ID: message-id=<...>" as Postfix's cleanup does,
// when it reads the field: log tools and the ledger's --postfix-log
// reader join a message's lines by it.
func (c *Cleanup) logMessageID(id, mid string) {
	if c.o.Log != nil && id != "" {
		c.o.Log(id + ": message-id=" + mid)
	}
}

// missingFields notes which of From:, Date: and Message-Id: a local
// submission has, and makes the ones it lacks (Postfix's
// cleanup_header_done_callback).
type missingFields struct {
	c                   *Cleanup
	id                  string
	env                 *envelope.Envelope
	out                 *envelope.Envelope // where the made Message-Id is noted
	now                 time.Time
	from, date, message bool
}

func (m *missingFields) saw(field []byte) {
	switch name := header.Name(field); {
	case bytes.EqualFold(name, []byte("from")):
		m.from = true
	case bytes.EqualFold(name, []byte("date")):
		m.date = true
	case bytes.EqualFold(name, []byte("message-id")):
		m.message = true
	}
}

func (m *missingFields) fields() []byte {
	var b bytes.Buffer
	if !m.date {
		fmt.Fprintf(&b, "Date: %s\r\n", m.now.Format(time.RFC1123Z))
	}
	if !m.from {
		from := m.env.From
		if from == "" {
			from = "MAILER-DAEMON@" + m.c.o.Myorigin
		}
		fmt.Fprintf(&b, "From: %s\r\n", from)
	}
	if !m.message {
		// Postfix's form: <YYYYMMDDhhmmss.QUEUEID@myhostname>.
		fmt.Fprintf(&b, "Message-Id: <%s.%s@%s>\r\n", m.now.UTC().Format("20060102150405"), m.id, m.c.o.Hostname)
		if m.out.MessageID == "" {
			m.out.MessageID = fmt.Sprintf("<%s.%s@%s>", m.now.UTC().Format("20060102150405"), m.id, m.c.o.Hostname)
			m.c.logMessageID(m.id, m.out.MessageID)
		}
	}
	return b.Bytes()
}

// Refusal is cleanup's refusal of a message: the SMTP reply that tells
// its client why, sent as it is.
type Refusal struct {
	Code     int    // 554, 451
	Enhanced string // "5.4.6"
	Text     string
}

// Refuse makes a Refusal.
func Refuse(code int, enhanced, format string, args ...any) *Refusal {
	return &Refusal{Code: code, Enhanced: enhanced, Text: fmt.Sprintf(format, args...)}
}

func (r *Refusal) Error() string { return fmt.Sprintf("%d %s %s", r.Code, r.Enhanced, r.Text) }

// Temporary says whether the refusal is for now (4XX: a table that
// cannot answer) rather than for good (5XX: too many hops): pickup keeps
// a submission refused for now and sets aside one refused for good.
func (r *Refusal) Temporary() bool { return r.Code/100 == 4 }

// SMTPReply is the reply smtpd sends for r.
func (r *Refusal) SMTPReply() (code int, enhanced, text string) { return r.Code, r.Enhanced, r.Text }

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

// readerSize is the buffer cleanup reads message content through.
const readerSize = 16 << 10

// readers are the buffers of messages being received: reused, so that a
// busy server does not allocate and clear one per message.
var readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, readerSize) }}

// Queue is where cleanup puts what it accepts.
type Queue interface {
	NewID() string
	// Enqueue stores the message durably, reading body to its end.
	Enqueue(ctx context.Context, id string, env *envelope.Envelope, body io.Reader) error
}

// Door is the front door of the queue: every message enters through it,
// through the Cleanup of the configuration in force.
type Door struct {
	q   Queue
	cur atomic.Pointer[Cleanup]
}

// NewDoor opens a door to q through c.
func NewDoor(q Queue, c *Cleanup) *Door {
	d := &Door{q: q}
	d.cur.Store(c)
	return d
}

// Set replaces the cleanup stage, for a reload; messages being received
// finish with the one they started with.
func (d *Door) Set(c *Cleanup) { d.cur.Store(c) }

// Cleanup is the cleanup stage in force.
func (d *Door) Cleanup() *Cleanup { return d.cur.Load() }

// NewID is a queue ID, for smtpd to name a message before it is stored.
func (d *Door) NewID() string { return d.q.NewID() }

// Enqueue takes mail from an SMTP client, under the ID NewID gave.
func (d *Door) Enqueue(ctx context.Context, id string, env *envelope.Envelope, body io.Reader) error {
	return d.enqueue(ctx, id, env, body, Source{})
}

// Submit takes a local submission by the user uid (sendmail, through
// pickup), which gets the same rewriting and copies as mail from
// outside, and returns its queue ID.
func (d *Door) Submit(ctx context.Context, uid int, env *envelope.Envelope, body io.Reader) (string, error) {
	id := d.q.NewID()
	return id, d.enqueue(ctx, id, env, body, Source{Pickup: true, UID: uid})
}

// Inject queues a message mailtee makes from another (a forward, a
// notice) under the ID NewID gave: rewritten, but no BCC copies.
// env.Parent names the original.
func (d *Door) Inject(ctx context.Context, id string, env *envelope.Envelope, body io.Reader) error {
	return d.enqueue(ctx, id, env, body, Source{Internal: true})
}

func (d *Door) enqueue(ctx context.Context, id string, env *envelope.Envelope, body io.Reader, src Source) error {
	br := readers.Get().(*bufio.Reader)
	br.Reset(body)
	defer func() { br.Reset(nil); readers.Put(br) }()
	out, r, err := d.cur.Load().Process(ctx, id, env, br, src)
	if err != nil {
		return err
	}
	return d.q.Enqueue(ctx, id, out, r)
}
