package srs

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/mailtee/mailtee/internal/address"
	"github.com/mailtee/mailtee/internal/bounce"
	"github.com/mailtee/mailtee/internal/deliver"
	"github.com/mailtee/mailtee/internal/dsn"
	"github.com/mailtee/mailtee/internal/envelope"
	"github.com/mailtee/mailtee/internal/ledger"
	"github.com/mailtee/mailtee/internal/maillog"
	"github.com/mailtee/mailtee/internal/queue"
)

// Transport is the internal transport that mail to SRS addresses is
// routed to (Route): the Agent, which never delivers it anywhere.
const Transport = "srs"

// Route says where mail to rcpt goes when it is an SRS address at
// c's domain: to the Agent. ok is false for any other address, and
// always when c is nil (SRS off).
func Route(c *Codec, rcpt string) (hop envelope.Hop, ok bool) {
	if c == nil {
		return hop, false
	}
	local, domain := address.Split(rcpt)
	if address.NormalizeDomain(domain) != c.Domain || !IsSRS(strings.Trim(local, `"`)) {
		return hop, false
	}
	return envelope.Hop{Transport: Transport, Nexthop: c.Domain}, true
}

// Answer says whether RCPT TO local@domain (local unquoted, domain
// normalized) is SRS's to answer, and if so whether it is accepted (err
// nil): an SRS address at srs_domain whose hash and age are valid. Every
// other local part at srs_domain is refused too, unless srs_domain is
// also a domain mailtee has (ours: mydestination, relay_domains,
// virtual_alias_domains): then it is mail for that domain. So SRS
// never opens a relay: a forged or expired address is refused at RCPT,
// and a valid one is never sent to the address it decodes to.
func (c *Codec) Answer(local, domain string, ours bool) (mine bool, err error) {
	if c == nil || domain != c.Domain {
		return false, nil
	}
	if !IsSRS(local) {
		if ours {
			return false, nil
		}
		return true, fmt.Errorf("User unknown: only SRS addresses are accepted at %s", c.Domain)
	}
	if _, err := c.reverseLocal(local); err != nil {
		return true, err
	}
	return true, nil
}

// CopySender is the MAIL FROM of a delivery to r of a message from
// from: the SRS address of from for a mailbox's copy
// (envelope.MigrationCopy), from itself for anything else (ordinary
// mail, forward-phase mail, always_bcc and sender_bcc_maps copies, the
// null sender). A sender that cannot be rewritten stays as it is; err
// says why, for the log.
func (c *Codec) CopySender(from string, r envelope.Rcpt) (string, error) {
	if c == nil || from == "" || r.Migration != envelope.MigrationCopy {
		return from, nil
	}
	f, err := c.Forward(from)
	if err != nil {
		return from, err
	}
	return f, nil
}

// Ledger is what the Agent needs of the ledger: to find the copy a
// bounce is about, and to record it as bounced.
type Ledger interface {
	Messages(ctx context.Context, f ledger.Filter) ([]ledger.Message, error)
	Amend(node, id string, d ledger.Delivery)
	// Stats tells whether events are still waiting to be written.
	Stats() ledger.Stats
}

// settleWait bounds how long a bounce waits for the ledger to write what
// it was given before the bounce came.
const settleWait = 10 * time.Second

// settle waits until the ledger holds no event older than now (or
// settleWait has passed), and says whether it waited at all.
func (a *Agent) settle(ctx context.Context, lg Ledger) bool {
	start := a.now()
	waiting := func() bool {
		st := lg.Stats()
		return st.Waiting > 0 && !st.Oldest.IsZero() && !st.Oldest.After(start)
	}
	if !waiting() {
		return false
	}
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	deadline := time.After(settleWait)
	for waiting() {
		select {
		case <-ctx.Done():
			return true
		case <-deadline:
			return true
		case <-t.C:
		}
	}
	return true
}

// Agent handles the mail routed to Transport: bounces to the SRS
// addresses of copies. Each is reported to postmaster
// (bounce_notice_recipient) as that copy's failure, with the bounce
// attached, and recorded in the ledger when the copy is found there; it
// is never sent on to the address the SRS address decodes to.
type Agent struct {
	Codec  func() *Codec        // the configuration in force (nil: SRS off)
	Policy func() bounce.Policy // who gets notices, bounce_size_limit
	Queue  bounce.Injector      // cleanup's door
	Ledger func() Ledger        // nil, or returning nil, without a ledger
	Log    *maillog.Logger
	Now    func() time.Time
}

func (a *Agent) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

// Deliver implements qmgr.Agent.
func (a *Agent) Deliver(ctx context.Context, nexthop string, msg *deliver.Message, rcpts []envelope.Rcpt) []queue.Outcome {
	out := make([]queue.Outcome, len(rcpts))
	if len(rcpts) == 0 {
		return out
	}
	// A bounce has one envelope recipient. Many SRS addresses decode
	// alike ('=', '-' or '+' after SRS0, the hash's case, what follows
	// its first four characters): a message to several is reported
	// once, or one valid address would make a notice to postmaster for
	// each of a thousand RCPTs.
	reply, err := a.one(ctx, msg, rcpts[0].Addr)
	first := queue.Outcome{Relay: "none", Reply: reply}
	if err != nil {
		first = queue.Outcome{Relay: "none", Err: &deliver.Error{Enhanced: "4.3.0", Relay: "none", Text: err.Error()}}
	}
	for i := range out {
		out[i] = first
		if i > 0 && err == nil {
			out[i].Reply = "the same message as to <" + rcpts[0].Addr + ">: reported once"
		}
	}
	if len(rcpts) > 1 {
		a.Log.Printf(Transport, "%s: %d more SRS recipients of the same message: reported once, with <%s>", msg.ID, len(rcpts)-1, rcpts[0].Addr)
	}
	return out
}

// one handles the bounce msg to the SRS address rcpt.
func (a *Agent) one(ctx context.Context, msg *deliver.Message, rcpt string) (string, error) {
	body, err := readAll(msg)
	if err != nil {
		return "", err
	}
	codec := a.Codec()
	sender, derr := "", fmt.Errorf("SRS is off (srs_domain is empty)")
	if codec != nil {
		sender, derr = codec.Reverse(rcpt)
	}
	rep := ParseReport(bytes.NewReader(body))
	failed := rep.Failed()
	if rep.DSN && len(rep.Recipients) > 0 && len(failed) == 0 {
		// A delay warning, a success notice: nothing failed. (A report
		// whose recipients cannot be read goes to postmaster.)
		a.Log.Printf(Transport, "%s: to=<%s>: a report without a failed recipient, not a copy's failure: dropped", msg.ID, rcpt)
		return "report without failure: dropped", nil
	}
	who := "<" + sender + ">"
	if derr != nil {
		// Accepted valid, it no longer decodes (a secret removed, or
		// it aged in the queue): the notice still goes to postmaster.
		sender, who = "", "an unknown sender ("+rcpt+": "+derr.Error()+")"
	}
	p := a.Policy()
	now := a.now()
	notice := &dsn.Report{
		ReportingMTA: p.Hostname,
		MailName:     p.MailName,
		QueueID:      msg.ID,
		From:         "MAILER-DAEMON@" + p.Hostname,
		To:           noticeTo(p),
		Sender:       sender,
		Postmaster:   true,
		Original:     bytes.NewReader(body),
		MaxOriginal:  p.MaxOriginal,
	}
	if len(failed) == 0 {
		// Not a DSN (an old server's plain-text bounce): the bounce is
		// attached, the copy cannot be named.
		failed = []ReportRcpt{{Action: "failed", Status: "5.0.0"}}
	}
	var notes []string
	for _, f := range failed {
		to := cmp.Or(f.Final, f.Original)
		match := "not recorded in the ledger: the SRS address does not verify, so the bounce cannot say whose copy it is about"
		if derr == nil {
			match = a.record(ctx, sender, rcpt, to, f, rep.MessageID, now)
		}
		reason := fmt.Sprintf("copy of %s's message to <%s> failed: %s; %s", who, cmp.Or(to, "unknown"),
			cmp.Or(f.Diagnostic, "bounced (the report gives no reason)"), match)
		notes = append(notes, match)
		status := f.Status
		if !statusRE(status) || status[0] != '5' {
			status = "5.0.0"
		}
		notice.Recipients = append(notice.Recipients, dsn.Recipient{
			Final: cmp.Or(printableText(to), rcpt), Original: printableText(f.Original), Action: "failed", Status: status,
			RemoteMTA: printableText(f.RemoteMTA), Diagnostic: diagnostic(f.Diagnostic),
			Reason: printableText(reason), LastAttempt: now,
		})
	}
	id := a.Queue.NewID()
	data, err := dsn.Build(notice, now, id+"@"+p.Hostname)
	if err != nil {
		return "", fmt.Errorf("notice for the bounce to <%s>: %w", rcpt, err)
	}
	env := &envelope.Envelope{From: "", Rcpts: []envelope.Rcpt{{Addr: notice.To}}, ClientName: "localhost", Protocol: "local",
		Arrival: now, Notification: true, Parent: msg.ID}
	if err := a.Queue.Inject(ctx, id, env, bytes.NewReader(data)); err != nil {
		return "", err
	}
	a.Log.PostmasterBounce(msg.ID, id)
	a.Log.Printf(Transport, "%s: to=<%s>, orig_sender=<%s>: bounce of a copy reported to <%s> as %s; %s",
		msg.ID, rcpt, sender, notice.To, id, strings.Join(notes, "; "))
	return "bounce of a copy reported to postmaster as " + id, nil
}

// noticeTo is bounce_notice_recipient, completed with @myorigin.
func noticeTo(p bounce.Policy) string {
	to := cmp.Or(p.NoticeRecipient, "postmaster")
	if !strings.Contains(to, "@") {
		to += "@" + p.Myorigin
	}
	return to
}

// record finds the copy a failed recipient f is about and records it as
// bounced; it returns what it found, for the notice and the log.
func (a *Agent) record(ctx context.Context, sender, srsAddr, to string, f ReportRcpt, msgID string, now time.Time) string {
	var lg Ledger
	if a.Ledger != nil {
		lg = a.Ledger()
	}
	if lg == nil {
		return "no ledger to record it in"
	}
	if to == "" {
		return "not recorded in the ledger: the bounce names no recipient (not a DSN)"
	}
	filter := ledger.Filter{User: to, Since: now.Add(-time.Duration(DefaultMaxAge+1) * day)}
	if msgID != "" {
		// Any domain: Match may take the copy to the same local part.
		filter.User, _ = address.Split(to)
	}
	local := srsAddr
	if ad, err := address.Parse("<" + srsAddr + ">"); err == nil {
		local = ad.Local
	}
	day, stamped := stampDay(local)
	// An SRS0 address names its sender and the day the copy was sent,
	// not the copy: only a copy sent that day can be the one its bounce
	// is about (any other of the sender's copies could be named by
	// whoever holds the address, the copy's recipient included).
	sentThatDay := func(msgs []ledger.Message) []ledger.Message {
		if !stamped {
			return msgs
		}
		out := make([]ledger.Message, 0, len(msgs))
		for _, m := range msgs {
			var ds []ledger.Delivery
			for _, d := range m.Deliveries {
				if !d.Copy || sameStampDay(d.At, day) {
					ds = append(ds, d)
				}
			}
			m.Deliveries = ds
			out = append(out, m)
		}
		return out
	}
	msgs, err := lg.Messages(ctx, filter)
	if err != nil {
		return "not recorded in the ledger: " + err.Error()
	}
	m, idx, ok := Match(sentThatDay(msgs), sender, to, f.Original, msgID)
	if !ok && a.settle(ctx, lg) {
		// The copy's own record may have been waiting to be written
		// (a provider that bounces within the second).
		if msgs, err = lg.Messages(ctx, filter); err != nil {
			return "not recorded in the ledger: " + err.Error()
		}
		m, idx, ok = Match(sentThatDay(msgs), sender, to, f.Original, msgID)
	}
	if !ok {
		what := "no copy to <" + to + ">"
		if sender != "" {
			what += " of a message from <" + sender + ">"
		}
		if msgID != "" {
			what += " with Message-ID " + msgID
		}
		return "could not be matched in the ledger: " + what + " found"
	}
	reply := cmp.Or(f.Diagnostic, "bounced after it was accepted (the report gives no reason)")
	if f.RemoteMTA != "" && f.Diagnostic != "" {
		reply = "host " + f.RemoteMTA + " said: " + f.Diagnostic + " (in a bounce to the SRS sender)"
	}
	d := m.Deliveries[idx]
	lg.Amend(m.Node, m.ID, ledger.Delivery{Index: d.Index, Rcpt: d.Rcpt, Orig: d.Orig, Copy: d.Copy,
		Status: ledger.Bounced, At: now, DSN: dsnOf(f.Status), Reply: reply, Attempts: d.Attempts})
	return "recorded in the ledger as " + m.Node + "/" + m.ID + " (" + cmp.Or(m.MessageID, "no Message-ID") + ") bounced"
}

// Match finds, among the ledger's messages, the copy a bounce is about:
// a copy delivery to rcpt (or orig), of a message from sender ("" when
// the SRS address could not be decoded: any), with Message-ID msgID
// ("" when the bounce did not return it: any). The newest wins. When no
// copy went to that very address, and the bounce names the message
// (msgID), a copy to the same local part at another domain is taken:
// the seed's relay turns user1@relay.example into user1@example, the
// address the provider's bounce names.
func Match(msgs []ledger.Message, sender, rcpt, orig, msgID string) (m ledger.Message, delivery int, ok bool) {
	same := func(d ledger.Delivery) bool {
		return strings.EqualFold(d.Rcpt, rcpt) || orig != "" && strings.EqualFold(d.Rcpt, orig)
	}
	if m, i, ok := match(msgs, sender, msgID, same); ok || msgID == "" {
		return m, i, ok
	}
	local, _ := address.Split(rcpt)
	return match(msgs, sender, msgID, func(d ledger.Delivery) bool {
		l, _ := address.Split(d.Rcpt)
		return strings.EqualFold(l, local)
	})
}

func match(msgs []ledger.Message, sender, msgID string, is func(ledger.Delivery) bool) (m ledger.Message, delivery int, ok bool) {
	var best *ledger.Message
	bestIdx := -1
	for i := range msgs {
		c := &msgs[i]
		if msgID != "" && !strings.EqualFold(strings.Trim(c.MessageID, "<> "), strings.Trim(msgID, "<> ")) {
			continue
		}
		if sender != "" && !strings.EqualFold(c.From, sender) {
			continue
		}
		for j, d := range c.Deliveries {
			if !d.Copy || !is(d) {
				continue
			}
			if best == nil || c.Arrival.After(best.Arrival) {
				best, bestIdx = c, j
			}
			break
		}
	}
	if best == nil {
		return m, 0, false
	}
	return *best, bestIdx, true
}

func dsnOf(s string) string {
	if statusRE(s) {
		return s
	}
	return "5.0.0"
}

// statusRE reports whether s is an RFC 3463 code, X.Y.Z.
func statusRE(s string) bool {
	p := strings.Split(s, ".")
	if len(p) != 3 || len(p[0]) != 1 || !strings.Contains("245", p[0]) {
		return false
	}
	for _, x := range p[1:] {
		if len(x) < 1 || len(x) > 3 || strings.Trim(x, "0123456789") != "" {
			return false
		}
	}
	return true
}

// diagnostic is the remote's Diagnostic-Code for the notice, typed
// "smtp" (what providers send), in printable ASCII.
func diagnostic(s string) string {
	if s = printableText(s); s == "" {
		return ""
	}
	return "smtp; " + s
}

// printableText keeps printable ASCII, a line at most 900 bytes: it goes
// into header fields of the notice.
func printableText(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r >= 0x20 && r < 0x7f {
			b.WriteRune(r)
		} else {
			b.WriteByte(' ')
		}
	}
	out := strings.Join(strings.Fields(b.String()), " ")
	if len(out) > 900 {
		out = out[:900]
	}
	return out
}

func readAll(msg *deliver.Message) ([]byte, error) {
	rc, err := msg.Open()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}
