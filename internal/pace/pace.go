// Package pace paces mailtee's deliveries the way receiving providers
// accept mail: it is the queue's Pacer (internal/queue/pacer.go).
//
// Per transport it applies Postfix's TRANSPORT_destination_rate_delay
// (one delivery at a time, and the delay between the end of one and the
// start of the next, as src/qmgr/qmgr_entry.c does with
// qmgr_queue_suspend; per recipient when the recipient limit is 1),
// TRANSPORT_destination_concurrency_limit and
// TRANSPORT_destination_recipient_limit, and mailtee's own
// TRANSPORT_recipient_rate_limit (per mailbox at the destination),
// TRANSPORT_destination_rate_limit (per receiving site),
// TRANSPORT_destination_bandwidth_limit and
// TRANSPORT_destination_profile.
//
// Destinations are grouped by the site that receives them
// (provider.Rollup): every domain whose MX hosts are Google's is one
// destination. Throttling replies (provider.Classify) suspend the site
// or the mailbox they limit, with backoff, and never bounce: a 5xx that
// only says "too many" (Microsoft's 550 5.2.122) is made temporary.
package pace

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mailtee/mailtee/internal/address"
	"github.com/mailtee/mailtee/internal/deliver"
	"github.com/mailtee/mailtee/internal/envelope"
	"github.com/mailtee/mailtee/internal/provider"
	"github.com/mailtee/mailtee/internal/queue"
	"github.com/mailtee/mailtee/internal/ratelimit"
)

// Limits are one transport's pacing parameters, or a profile's.
type Limits struct {
	Concurrency    int           // TRANSPORT_destination_concurrency_limit
	RecipientLimit int           // TRANSPORT_destination_recipient_limit
	RateDelay      time.Duration // TRANSPORT_destination_rate_delay
	// TransportDelay is TRANSPORT_transport_rate_delay (Postfix 3.1):
	// one delivery at a time over the whole transport, and the delay
	// between them, whatever the destination (qmgr_transport.c).
	TransportDelay time.Duration
	// MessagesPerConnection caps a connection's messages (a profile's;
	// main.cf's smtp_connection_reuse_count_limit is the client's own,
	// deliver.Client.MaxReuse); 0: no cap.
	MessagesPerConnection int
	RecipientRate         []ratelimit.Window
	DestinationRate       []ratelimit.Window
	Bandwidth             int64  // bytes per second; 0: none
	TLSLevel              string // "encrypt" to require TLS; "": the client's level
}

// Field names a Limits field, for Transport.Explicit.
type Field uint

const (
	Concurrency Field = 1 << iota
	RecipientLimit
	RateDelay
	ReuseCount
	RecipientRate
	DestinationRate
	Bandwidth
	TLSLevel
)

// Transport is how one transport is paced.
type Transport struct {
	// Profile is TRANSPORT_destination_profile: "google",
	// "microsoft365", "none", or "auto" (the profile of the site the
	// destination's MX hosts belong to, if any).
	Profile string
	// SMTP says the transport delivers over SMTP: only then are
	// destinations grouped by receiving site and profiles applied.
	SMTP bool
	// Limits are main.cf's values, Postfix's defaults included.
	Limits Limits
	// Explicit are the fields main.cf or master.cf set: a profile
	// changes only the others.
	Explicit Field
}

// with returns t's limits under profile p: p's values where main.cf
// left the parameter at its default. A profile only tightens: a
// default that is already stricter stays.
func (t Transport) with(p provider.Profile) Limits {
	l := t.Limits
	free := func(f Field) bool { return t.Explicit&f == 0 } // left at its default
	if free(Concurrency) && p.Concurrency > 0 && (l.Concurrency <= 0 || p.Concurrency < l.Concurrency) {
		l.Concurrency = p.Concurrency
	}
	if free(RecipientLimit) && p.RecipientLimit > 0 && (l.RecipientLimit <= 0 || p.RecipientLimit < l.RecipientLimit) {
		l.RecipientLimit = p.RecipientLimit
	}
	if free(ReuseCount) && p.MessagesPerConnection > 0 {
		l.MessagesPerConnection = p.MessagesPerConnection
	}
	if free(RecipientRate) && l.RecipientRate == nil {
		l.RecipientRate = p.RecipientRate
	}
	if free(DestinationRate) && l.DestinationRate == nil {
		l.DestinationRate = p.DestinationRate
	}
	if free(TLSLevel) && p.TLSLevel != "" {
		l.TLSLevel = p.TLSLevel
	}
	return l
}

// Options configure a Pacer.
type Options struct {
	// Transport returns a transport's pacing (the configuration in
	// force: a reload changes it); ok false leaves it unpaced.
	Transport func(name string) (t Transport, ok bool)
	// Site finds the receiving site of an SMTP next hop (MX rollup);
	// nil groups nothing.
	Site func(ctx context.Context, transport, nexthop string) provider.Site
	// MinSuspend and MaxSuspend bound the suspension a throttling reply
	// starts, doubling while the throttling goes on (1m and
	// maximal_backoff_time by default).
	MinSuspend, MaxSuspend time.Duration
	// RecipientDelimiter is recipient_delimiter: a per-recipient
	// destination (recipient limit 1) is the address without its
	// extension, as in Postfix.
	RecipientDelimiter string
	// Warn logs a suspension, as the queue manager's warning lines.
	Warn func(format string, args ...any)
	// Shared, when set, gives the limiter of a kind ("box", "site",
	// "delay", "tdelay") for transport's destinations under profile,
	// with windows ws, counted elsewhere: a fleet's (internal/fleet)
	// counts across the nodes sharing one database. nil, or a nil
	// Taker returned, keeps the Pacer's own limiter.
	Shared func(kind, transport, profile string, ws []ratelimit.Window) ratelimit.Taker
}

// Pacer is the queue's Pacer.
type Pacer struct {
	mu   sync.Mutex
	o    Options
	lims map[string]*ratelimit.Limiter // by kind, transport and profile (limiter)
	bw   map[string]*ratelimit.Bucket  // by destination key
	bwGC int                           // sweep bw when it grows to this
	site *ratelimit.Suspender          // throttled destinations
	// probing are the destinations whose suspension ended without a
	// delivery getting through since: one delivery at a time goes
	// there (true while it runs), as Postfix restarts a throttled
	// destination at a concurrency of one, so that a site still
	// throttling costs one refused delivery, not one per connection.
	probing map[string]bool
	probeGC int                  // sweep probing when it grows to this
	box     *ratelimit.Suspender // throttled mailboxes
	// busy counts the deliveries under way to a provider's site whose
	// concurrency the queue does not bound: with a recipient limit of 1
	// its slots are per recipient (siteSlot).
	busy map[string]int
}

var _ queue.Pacer = (*Pacer)(nil)

// New returns a Pacer for o.
func New(o Options) *Pacer {
	if o.MinSuspend <= 0 {
		o.MinSuspend = time.Minute
	}
	if o.MaxSuspend < o.MinSuspend {
		o.MaxSuspend = max(4000*time.Second, o.MinSuspend)
	}
	return &Pacer{o: o, lims: map[string]*ratelimit.Limiter{}, bw: map[string]*ratelimit.Bucket{},
		site: ratelimit.NewSuspender(o.MinSuspend, o.MaxSuspend), box: ratelimit.NewSuspender(o.MinSuspend, o.MaxSuspend),
		probing: map[string]bool{}, busy: map[string]int{}, bwGC: minBuckets, probeGC: minBuckets}
}

// dest is the Plan's Data: one destination under its limits.
type dest struct {
	transport string
	key       string // transport and receiving site (or next hop)
	lim       Limits
	profile   string // the profile applied, "" for none
}

// Plan groups hop with the other next hops of its receiving site and
// says its concurrency and recipient limit.
func (p *Pacer) Plan(ctx context.Context, hop envelope.Hop) queue.Plan {
	t, ok := p.o.Transport(hop.Transport)
	if !ok {
		return queue.Plan{}
	}
	d := &dest{transport: hop.Transport, key: hop.Transport + ":" + hop.Nexthop, lim: t.Limits}
	if t.SMTP && t.Profile != "none" && p.o.Site != nil {
		s := p.o.Site(ctx, hop.Transport, hop.Nexthop)
		if s.Key != "" {
			d.key = hop.Transport + ":" + s.Key
		}
		name := t.Profile
		if name == "auto" {
			name = s.Provider
		}
		if prof, ok := provider.Lookup(name); ok {
			d.lim, d.profile = t.with(prof), prof.Name
		}
	}
	plan := queue.Plan{Key: d.key, Concurrency: d.lim.Concurrency, RecipientLimit: d.lim.RecipientLimit, Data: d}
	if d.lim.RateDelay > 0 {
		plan.Concurrency = 1 // as Postfix: a rate-limited queue has a window of 1
	}
	return plan
}

// limiter returns the shared limiter of a kind ("box", "site", "delay",
// "tdelay")
// for the destinations of transport under profile, which all have the
// same windows ws; keyed by destination inside. A reload that changes
// ws changes the limiter's windows, and keeps what it counted: under a
// limiter per windows, a tightened limit (60/1m to 30/1m after a
// lockout) started from nothing, on top of what had just gone out.
func (p *Pacer) limiter(kind, transport, profile string, ws []ratelimit.Window) *ratelimit.Limiter {
	// This runs before every delivery: the key is built without fmt
	// and looked up without copying it.
	var buf [64]byte
	b := append(buf[:0], kind...)
	b = append(b, ' ')
	b = append(b, transport...)
	b = append(b, ' ')
	b = append(b, profile...)
	p.mu.Lock()
	l, ok := p.lims[string(b)]
	if !ok {
		l = ratelimit.New(ws)
		p.lims[string(b)] = l
	}
	p.mu.Unlock()
	if ok {
		l.SetWindows(ws)
	}
	return l
}

// taker is the limiter of a kind: Options.Shared's when it gives one,
// else the Pacer's own.
func (p *Pacer) taker(kind, transport, profile string, ws []ratelimit.Window) ratelimit.Taker {
	if p.o.Shared != nil {
		if t := p.o.Shared(kind, transport, profile, ws); t != nil {
			return t
		}
	}
	return p.limiter(kind, transport, profile, ws)
}

// minBuckets keeps the sweeps of a small bucket map from running on
// every new destination.
const minBuckets = 1024

func (p *Pacer) bucket(key string, rate int64) *ratelimit.Bucket {
	p.mu.Lock()
	defer p.mu.Unlock()
	k := fmt.Sprintf("%s %d", key, rate)
	b, ok := p.bw[k]
	if !ok {
		if len(p.bw) >= p.bwGC {
			// A full bucket is as good as a new one: forget those,
			// or every destination ever mailed keeps one. (A
			// delivery still writing through one forgotten within
			// its idle second may share the next with a new one:
			// one second's burst more, once.)
			now := time.Now()
			for k, b := range p.bw {
				if b.Full(now) {
					delete(p.bw, k)
				}
			}
			p.bwGC = max(minBuckets, 2*len(p.bw))
		}
		b = ratelimit.NewBucket(rate)
		p.bw[k] = b
	}
	return b
}

// Admit takes the rate tokens of the recipients that may go now and
// holds back the others until their mailbox, their site or the rate
// delay allows them.
func (p *Pacer) Admit(ctx context.Context, plan queue.Plan, m *queue.Message, rcpts []int) queue.Admission {
	d, _ := plan.Data.(*dest)
	if d == nil {
		return queue.Admission{Now: rcpts}
	}
	now := time.Now()
	var adm queue.Admission
	hold := func(i int, at time.Time, why string) {
		adm.Later = append(adm.Later, queue.Postponed{Rcpt: i, At: at, Why: why})
	}
	at, why, probe := p.gate(d.key, now, false)
	if why != "" {
		adm.Later = postponeAll(rcpts, at, why)
		return adm
	}
	// With a recipient limit of 1, Postfix's destination is the
	// recipient (its local part without extension, at the next hop:
	// qmgr_message.c): the rate delay and the concurrency are per
	// recipient. Else the destination's.
	key := d.key
	if d.lim.RecipientLimit == 1 && len(rcpts) == 1 {
		key = plan.Hop.Transport + ":" + plan.Hop.Nexthop + "|" + p.localPart(m.Rcpts[rcpts[0]].Addr)
		adm.Key = key
	}
	site := adm.Key != "" && d.profile != "" && d.lim.Concurrency > 0
	var delays []*ratelimit.Token
	// giveBack returns what this delivery took when it does not take
	// place: the delay tokens, the probe (the next delivery probes,
	// else the destination would wait for this one for good), the site
	// slot.
	giveBack := func() {
		for _, t := range delays {
			t.Cancel()
		}
		if probe {
			p.endProbe(d.key, false)
		}
		if site {
			p.leaveSite(d.key)
		}
		delays, probe, site = nil, false, false
	}
	if site && !p.siteSlot(d.key, d.lim.Concurrency) {
		site = false
		giveBack()
		adm.Later = postponeAll(rcpts, now.Add(probeWait), "destination concurrency")
		return adm
	}
	for _, rd := range []struct {
		kind, profile, key string
		delay              time.Duration
	}{{"delay", d.profile, key, d.lim.RateDelay}, {"tdelay", "", d.transport, d.lim.TransportDelay}} {
		if rd.delay <= 0 {
			continue
		}
		tok, at := p.taker(rd.kind, d.transport, rd.profile, []ratelimit.Window{{N: 1, Per: rd.delay}}).Take(rd.key, now)
		if tok == nil {
			giveBack()
			adm.Later = postponeAll(rcpts, at, "rate delay")
			return adm
		}
		delays = append(delays, tok)
	}
	// Without windows, a nil Limiter admits all: no shared map to look
	// up under p.mu before every delivery.
	var boxes, sites ratelimit.Taker = (*ratelimit.Limiter)(nil), (*ratelimit.Limiter)(nil)
	if len(d.lim.RecipientRate) > 0 {
		boxes = p.taker("box", d.transport, d.profile, d.lim.RecipientRate)
	}
	if len(d.lim.DestinationRate) > 0 {
		sites = p.taker("site", d.transport, d.profile, d.lim.DestinationRate)
	}
	var toks [][2]*ratelimit.Token
	var mboxes []string // of adm.Now, for Go and done
	for _, i := range rcpts {
		mbox := d.key + "|" + p.mailbox(m.Rcpts[i].Addr)
		if until, reason, ok := p.box.Until(mbox, now); ok {
			hold(i, until, "mailbox throttled: "+reason)
			continue
		}
		bt, at := boxes.Take(mbox, now)
		if bt == nil {
			hold(i, at, "recipient rate limit")
			continue
		}
		st, at := sites.Take(d.key, now)
		if st == nil {
			bt.Cancel()
			hold(i, at, "destination rate limit")
			continue
		}
		adm.Now = append(adm.Now, i)
		mboxes = append(mboxes, mbox)
		toks = append(toks, [2]*ratelimit.Token{bt, st})
	}
	if len(adm.Now) == 0 {
		giveBack()
	}
	pol := deliver.Policy{TLSLevel: d.lim.TLSLevel, MaxReuse: d.lim.MessagesPerConnection}
	if d.lim.Bandwidth > 0 {
		pol.Shape = p.bucket(d.key, d.lim.Bandwidth).Writer
	}
	if pol.TLSLevel != "" || pol.MaxReuse > 0 || pol.Shape != nil {
		adm.Ctx = deliver.WithPolicy(ctx, pol) // else the client's own settings
	}
	now2 := adm.Now
	// The delivery may wait for a slot behind others to the site, and
	// one of those may meanwhile draw a throttling reply: it must not go
	// out then, nor as a second delivery beside the probe once the
	// suspension ends.
	adm.Go = func() []queue.Postponed {
		now := time.Now()
		at, why, took := p.gate(d.key, now, probe)
		probe = probe || took
		if why != "" {
			return postponeAll(now2, at, why) // Done(nil) gives their tokens back
		}
		// A mailbox throttled meanwhile: its recipient stays out, the
		// others go.
		var later []queue.Postponed
		var keep []int
		var kept [][2]*ratelimit.Token
		var keptBoxes []string
		for k, i := range now2 {
			if until, reason, ok := p.box.Until(mboxes[k], now); ok {
				later = append(later, queue.Postponed{Rcpt: i, At: until, Why: "mailbox throttled: " + reason})
				continue
			}
			keep = append(keep, i)
			kept = append(kept, toks[k])
			keptBoxes = append(keptBoxes, mboxes[k])
		}
		if len(later) == 0 || len(keep) == 0 {
			return later
		}
		for k := range now2 {
			if !slices.Contains(keep, now2[k]) {
				toks[k][0].Cancel()
				toks[k][1].Cancel()
			}
		}
		now2, toks, mboxes = keep, kept, keptBoxes // what Done will hear of
		return later
	}
	adm.Done = func(outs []queue.Outcome) {
		ok := p.done(d, m, now2, mboxes, toks, delays, outs)
		if probe {
			p.endProbe(d.key, ok)
		}
		if site {
			p.leaveSite(d.key)
		}
	}
	return adm
}

// gate says whether deliveries to the destination key wait: while it is
// suspended, or while the probe after a suspension runs; probing says
// this delivery is that probe already. When the destination is to be
// probed, this delivery becomes the probe (probe true).
func (p *Pacer) gate(key string, now time.Time, probing bool) (at time.Time, why string, probe bool) {
	if until, reason, ok := p.site.Until(key, now); ok {
		return until, "destination throttled: " + reason, false
	}
	if probing {
		return time.Time{}, "", false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	running, ok := p.probing[key]
	switch {
	case ok && running:
		return now.Add(probeWait), "destination throttled: waiting for a first delivery to get through", false
	case ok:
		p.probing[key] = true
		return time.Time{}, "", true
	}
	return time.Time{}, "", false
}

// postponeAll holds rcpts back until at, for why.
func postponeAll(rcpts []int, at time.Time, why string) []queue.Postponed {
	out := make([]queue.Postponed, len(rcpts))
	for k, i := range rcpts {
		out[k] = queue.Postponed{Rcpt: i, At: at, Why: why}
	}
	return out
}

// localPart is addr's local part without its extension, split as
// Postfix's split_addr does (recipient_delimiter; postmaster, owner-x
// and x-request stay whole), lower-cased, as Postfix names a
// per-recipient queue (qmgr_message.c).
func (p *Pacer) localPart(addr string) string {
	local, _ := address.Split(addr)
	user, _ := address.SplitExt(local, p.o.RecipientDelimiter)
	return strings.ToLower(user)
}

// mailbox names addr's mailbox at the destination: its local part
// without extension, and its domain, lower-cased. user+tag@ lands in
// user@'s mailbox, whose limits it shares: '+' counts as a delimiter
// whatever recipient_delimiter says, as the providers' own.
func (p *Pacer) mailbox(addr string) string {
	local, domain := address.Split(addr)
	user, _ := address.SplitExt(local, p.o.RecipientDelimiter+"+")
	if domain != "" {
		domain = "@" + domain
	}
	return strings.ToLower(user + domain)
}

// siteSlot takes one of a provider site's n slots for a per-recipient
// delivery, whose queue slot bounds only its recipient: a profile's
// concurrency bounds every connection to the site (Google's, every
// domain it hosts), whatever the recipient limit. Give it back with
// leaveSite.
func (p *Pacer) siteSlot(key string, n int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.busy[key] >= n {
		return false
	}
	p.busy[key]++
	return true
}

func (p *Pacer) leaveSite(key string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.busy[key]--; p.busy[key] <= 0 {
		delete(p.busy, key)
	}
}

// probeWait is how long deliveries to a destination wait while its
// probe runs, or while its site's slots are all taken: about one
// delivery's time.
const probeWait = time.Second

// endProbe ends a probe of key: through, the destination is back to its
// full concurrency; not, the next delivery probes again.
func (p *Pacer) endProbe(key string, through bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if through {
		delete(p.probing, key)
	} else if _, ok := p.probing[key]; ok {
		p.probing[key] = false
	}
}

// sweepProbes forgets, once probing has grown, the probes waiting for
// sites whose suspension the Suspender no longer remembers (max after
// it ended with no delivery since): such a site starts afresh, its next
// suspension at min, and it need not keep an entry for good (p.mu
// held).
func (p *Pacer) sweepProbes(now time.Time) {
	if len(p.probing) < p.probeGC {
		return
	}
	for k, running := range p.probing {
		if !running && !p.site.Remembers(k, now) {
			delete(p.probing, k)
		}
	}
	p.probeGC = max(minBuckets, 2*len(p.probing))
}

// done settles the tokens of a delivery and learns from its replies; it
// reports whether a recipient got through with the site not suspended
// (what ends a probe).
func (p *Pacer) done(d *dest, m *queue.Message, rcpts []int, mboxes []string, toks [][2]*ratelimit.Token, delays []*ratelimit.Token, outs []queue.Outcome) bool {
	end := time.Now()
	if outs == nil {
		for _, t := range toks {
			t[0].Cancel()
			t[1].Cancel()
		}
		for _, t := range delays {
			t.Cancel()
		}
		return false
	}
	for _, t := range delays {
		t.Done(end) // Postfix waits after every delivery, whatever its outcome
	}
	siteThrottled := false
	for k, i := range rcpts {
		o := &outs[k]
		mbox := mboxes[k]
		if reached(o.Err) {
			toks[k][0].Done(end)
			toks[k][1].Done(end)
		} else {
			toks[k][0].Cancel()
			toks[k][1].Cancel()
		}
		if o.Err == nil {
			p.box.Clear(mbox)
			continue
		}
		var de *deliver.Error
		if !errors.As(o.Err, &de) {
			continue
		}
		switch provider.Classify(de.Code, de.Enhanced, de.Text) {
		case provider.Destination:
			if !siteThrottled {
				until := p.site.Suspend(d.key, de.Text, end)
				p.mu.Lock()
				if !p.probing[d.key] {
					// Once it ends, one delivery probes; a probe
					// under way (this reply is an older delivery's)
					// stays the one, and ends it.
					p.probing[d.key] = false
				}
				p.sweepProbes(end)
				p.mu.Unlock()
				p.warn("%s: deliveries suspended until %s: %s", d.key, until.Format(time.TimeOnly), de.Text)
				siteThrottled = true
			}
			until, _, _ := p.site.Until(d.key, end)
			*o = throttledOutcome(*o, de, until)
		case provider.Mailbox:
			until := p.box.Suspend(mbox, de.Text, end)
			p.warn("%s: deliveries to <%s> suspended until %s: %s", d.key, m.Rcpts[i].Addr, until.Format(time.TimeOnly), de.Text)
			*o = throttledOutcome(*o, de, until)
		}
	}
	through := false
	for _, o := range outs {
		through = through || o.Err == nil
	}
	if !through || siteThrottled {
		return false
	}
	// A success heard while another delivery's reply has suspended the
	// site again started before that suspension: as for Clear, it says
	// nothing of whether the new limit is lifted, and a probe that ends
	// so must not leave the site at its full concurrency once the
	// suspension ends.
	if _, _, suspended := p.site.Until(d.key, end); suspended {
		return false
	}
	p.site.Clear(d.key)
	return true
}

func (p *Pacer) warn(format string, args ...any) {
	if p.o.Warn != nil {
		p.o.Warn(format, args...)
	}
}

// reached says whether a delivery may have got as far as the remote
// server. Only a failure before any server was talked to (relay=none:
// DNS, connect) costs the remote nothing; a connection lost without a
// reply may have been lost after the remote took the message ("message
// may be sent more than once"), and must count.
func reached(err error) bool {
	var de *deliver.Error
	return err == nil || !errors.As(err, &de) || de.Code != 0 || de.Relay != "none"
}

// throttledOutcome is o deferred until until: a throttling reply never
// bounces.
func throttledOutcome(o queue.Outcome, de *deliver.Error, until time.Time) queue.Outcome {
	o.Err = &Throttled{Err: de}
	o.RetryAt = until
	return o
}

// Throttled is a throttling reply, temporary whatever its code.
type Throttled struct{ Err *deliver.Error }

func (t *Throttled) Error() string         { return t.Err.Error() }
func (t *Throttled) Unwrap() error         { return t.Err }
func (t *Throttled) IsPermanent() bool     { return false }
func (t *Throttled) SiteUnavailable() bool { return false }

// EnhancedCode is the reply's, made temporary as Postfix's soft_bounce
// does (5.2.122 is logged as 4.2.122).
func (t *Throttled) EnhancedCode() string {
	c := t.Err.Enhanced
	if strings.HasPrefix(c, "5.") {
		c = "4." + c[2:]
	}
	return c
}
