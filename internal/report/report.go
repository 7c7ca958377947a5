// Package report reconciles the delivery ledger: for each message
// mailtee accepted, each required delivery (each local mailbox, each
// copy, each remote recipient, and the targets of the message's
// forwards) and its end state, followed across hosts: a delivery whose
// next hop named a queue ID in its reply ("queued as 4Zx...") is looked
// up in the peers' ledgers (ledger_peers), and its state there is its
// state. One report on the primary thus covers accepted → mailbox →
// relay → the provider's reply.
//
// The figures (Summary, Reconciliation, Destinations, Deferrals,
// Series) are the ones the dashboard and /metrics show, so they are
// computed here once.
package report

import (
	"cmp"
	"context"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/mailtee/mailtee/internal/ledger"
)

// Sources are the ledgers a report reads: this host's and its peers'.
type Sources struct {
	Local ledger.Reader
	// Peers are tried in order (the one whose host matches the
	// delivery's relay first) for a queue ID a next hop named.
	Peers []Peer
}

// Peer is another host's ledger (a ledgerhttp.Client).
type Peer struct {
	URL    string // for messages and hints: http[s]://host:port
	Reader ledger.Reader
}

// MaxDepth bounds how far a delivery is followed through peers and
// forwards: a mail loop between two hosts' ledgers must not loop the
// report.
const MaxDepth = 8

// MaxDeferrals is how many deferral reasons a report keeps.
const MaxDeferrals = 10

// Build reads the messages f selects (by arrival; f.User is matched
// against the sender, the original recipients and every address along
// each delivery's chain, through peers; f.Limit keeps the newest of
// those) and reconciles them at now.
// An error from the local ledger fails the report; a peer's error only
// leaves that delivery at its local state and the report incomplete.
func Build(ctx context.Context, src Sources, f ledger.Filter, now time.Time) (*Report, error) {
	if src.Local == nil {
		return nil, fmt.Errorf("report: no ledger to read")
	}
	lf := ledger.Filter{Since: f.Since, Until: f.Until}
	if f.User == "" {
		// With a user, the limit applies to the messages that match,
		// which only the chains followed below tell.
		lf.Limit = f.Limit
	}
	msgs, err := src.Local.Messages(ctx, lf)
	if err != nil {
		return nil, fmt.Errorf("reading the ledger: %w", err)
	}
	return buildFrom(ctx, src, f, now, msgs, lf.Until.IsZero() && lf.Limit == 0)
}

// buildFrom reconciles msgs, read from src.Local with f. complete says that
// msgs holds every child of its messages too: a forward or a notice
// arrives after its parent, so a list unbounded in the future has them
// all, and they need not be asked for one by one.
func buildFrom(ctx context.Context, src Sources, f ledger.Filter, now time.Time, msgs []ledger.Message, complete bool) (*Report, error) {
	b := &builder{src: src, now: now}
	if complete {
		b.children = map[[2]string][]ledger.Message{}
		for _, m := range msgs {
			if m.Parent != "" {
				k := [2]string{strings.ToLower(m.Node), m.Parent}
				b.children[k] = append(b.children[k], m)
			}
		}
	}
	b.src.Peers = make([]Peer, len(src.Peers))
	b.asked = make([]bool, len(src.Peers))
	for i, p := range src.Peers {
		b.peers = append(b.peers, &PeerStatus{URL: p.URL})
		b.src.Peers[i] = Peer{URL: p.URL, Reader: newCached(p.Reader)}
	}
	r := &Report{Generated: now, Since: f.Since, Until: f.Until, User: f.User,
		Misses: []Miss{}, Gaps: []ledger.Gap{}, Peers: []PeerStatus{}, Dests: []Destination{},
		Deferrals: []Deferral{}, Messages: []Message{}, Series: Series{Points: []Point{}}}
	for _, m := range msgs {
		// Forwards and notices are reported within the message they
		// were made from.
		if m.Parent != "" || m.Notice {
			continue
		}
		rm, err := b.message(ctx, m)
		if err != nil {
			return nil, err
		}
		if f.User != "" && !matches(f, rm) {
			continue
		}
		r.Messages = append(r.Messages, rm)
	}
	if f.Limit > 0 && len(r.Messages) > f.Limit {
		slices.SortStableFunc(r.Messages, func(a, b Message) int { return b.Arrival.Compare(a.Arrival) })
		r.Messages = r.Messages[:f.Limit]
	}
	gaps, err := src.Local.Gaps(ctx, f.Since, f.Until)
	if err != nil {
		return nil, fmt.Errorf("reading the ledger's gaps: %w", err)
	}
	r.Gaps = append(r.Gaps, gaps...)
	for i, p := range src.Peers {
		if !b.asked[i] {
			// A peer never asked contributes no gap to this report; one
			// asked in vain may not have the ID because of its gap.
			continue
		}
		pg, err := p.Reader.Gaps(ctx, f.Since, time.Time{})
		if err != nil {
			b.peerErr(i, err)
			continue
		}
		r.Gaps = append(r.Gaps, pg...)
	}
	for _, p := range b.peers {
		r.Peers = append(r.Peers, *p)
	}
	r.figures()
	return r, nil
}

type builder struct {
	src   Sources
	now   time.Time
	peers []*PeerStatus
	asked []bool // by peer: was it asked for a queue ID
	// children of the local messages by node and parent, when the
	// list read holds them all (buildFrom's complete).
	children map[[2]string][]ledger.Message
}

// childrenOf reads the forwards and notices of message id on node.
func (b *builder) childrenOf(ctx context.Context, src source, node, id string) ([]ledger.Message, error) {
	if src.peer < 0 && b.children != nil {
		return b.children[[2]string{strings.ToLower(node), id}], nil
	}
	return src.r.Children(ctx, node, id)
}

// source is one ledger being read: the local one (peer -1) or a peer's.
type source struct {
	r    ledger.Reader
	peer int
	url  string
}

func (b *builder) local() source { return source{r: b.src.Local, peer: -1} }

func (b *builder) peerErr(i int, err error) {
	b.peers[i].Errors++
	b.peers[i].Error = err.Error()
}

func (b *builder) message(ctx context.Context, m ledger.Message) (Message, error) {
	rm := Message{Node: m.Node, ID: m.ID, MessageID: m.MessageID, From: m.From,
		Rcpts: m.Rcpts, Size: m.Size, Arrival: m.Arrival, Client: m.Client, Phase: m.Phase,
		Required: []Required{}, Notices: []Notice{}}
	if rm.Rcpts == nil {
		rm.Rcpts = []string{}
	}
	req, notices, err := b.required(ctx, b.local(), m, "", 0, map[string]bool{})
	if err != nil {
		return rm, err
	}
	rm.Required = withoutDuplicateMailboxes(req)
	seenN := map[Notice]bool{}
	for _, n := range notices {
		if !seenN[n] {
			seenN[n] = true
			rm.Notices = append(rm.Notices, n)
		}
	}
	rm.State = Delivered
	for _, q := range rm.Required {
		rm.State = worse(rm.State, q.State)
	}
	return rm, nil
}

func worse(a, b State) State {
	rank := func(s State) int {
		switch s {
		case Failed:
			return 2
		case Pending:
			return 1
		}
		return 0
	}
	if rank(b) > rank(a) {
		return b
	}
	return a
}

// required resolves message m's required deliveries as read from src:
// its own deliveries (only those for rcpt when rcpt is set and some
// match, as a peer's message may carry other hosts' recipients too),
// with the targets of its forwards in place of the alias that made
// them, each followed into the peers. Its notices are listed apart.
func (b *builder) required(ctx context.Context, src source, m ledger.Message, rcpt string, depth int, seen map[string]bool) ([]Required, []Notice, error) {
	key := fmt.Sprintf("%d %s %s", src.peer, m.Node, m.ID)
	if seen[key] || depth > MaxDepth {
		return nil, nil, nil
	}
	seen[key] = true
	defer delete(seen, key)

	children, err := b.childrenOf(ctx, src, m.Node, m.ID)
	if err != nil {
		if src.peer < 0 {
			return nil, nil, fmt.Errorf("reading the forwards of %s: %w", m.ID, err)
		}
		// The peer's message itself is known: its deliveries still count.
		b.peerErr(src.peer, err)
		children = nil
	}
	var forwards []ledger.Message
	notices := []Notice{}
	for _, c := range children {
		if c.Notice {
			for _, d := range c.Deliveries {
				notices = append(notices, Notice{QueueID: c.ID, Rcpt: d.Rcpt, Status: d.Status, Reply: d.Reply})
			}
			continue
		}
		forwards = append(forwards, c)
	}

	dels := m.Deliveries
	narrowed := false
	if rcpt != "" {
		var mine []ledger.Delivery
		for _, d := range dels {
			if strings.EqualFold(d.Rcpt, rcpt) || strings.EqualFold(d.Orig, rcpt) {
				mine = append(mine, d)
			}
		}
		if len(mine) > 0 {
			dels, narrowed = mine, len(mine) < len(m.Deliveries)
		}
	}

	// The targets of each forward, by the alias they came from.
	type fwd struct {
		child ledger.Message
		d     ledger.Delivery
		used  bool
	}
	var targets []*fwd
	for _, c := range forwards {
		for _, d := range c.Deliveries {
			targets = append(targets, &fwd{child: c, d: d})
		}
	}
	out := []Required{}
	for _, d := range dels {
		hop := b.hop(src, m, d, depth)
		var mine []*fwd
		for _, t := range targets {
			if !t.used && t.d.Orig != "" && strings.EqualFold(t.d.Orig, d.Rcpt) {
				mine = append(mine, t)
			}
		}
		// A delivered alias is replaced by its targets: the mail is
		// only delivered when they are. An alias that failed stays,
		// as its failure is the one that counts; so does one that also
		// delivered to a mailbox here (local(8)'s reply "delivered to
		// maildir of a@x; forwarded to b@y"), for that mailbox.
		if d.Status == ledger.Sent && len(mine) > 0 {
			if deliveredHere(d.Reply) {
				q, ns := b.follow(ctx, src, m, d, hop, depth, seen)
				notices = append(notices, ns...)
				out = append(out, perMailbox(q, d)...)
			}
			for _, t := range mine {
				t.used = true
				sub, ns, err := b.required(ctx, src, withOnly(t.child, t.d), "", depth+1, seen)
				if err != nil {
					return nil, nil, err
				}
				notices = append(notices, ns...)
				for _, q := range sub {
					q.Chain = append([]Hop{hop}, q.Chain...)
					if q.Via == "" {
						q.Via, q.Forward = d.Rcpt, t.child.ID
					}
					q.Copy = q.Copy || d.Copy
					out = append(out, q)
				}
			}
			continue
		}
		q, ns := b.follow(ctx, src, m, d, hop, depth, seen)
		notices = append(notices, ns...)
		out = append(out, perMailbox(q, d)...)
	}
	// Forwards not traced to one of the deliveries (no Orig recorded,
	// or an alias not among them) are still the message's required
	// deliveries; not when only some of the message's deliveries are
	// asked for, as they may belong to the others.
	ownOrig := func(t *fwd) bool {
		for _, d := range m.Deliveries {
			if t.d.Orig != "" && strings.EqualFold(t.d.Orig, d.Rcpt) {
				return true
			}
		}
		return false
	}
	for _, c := range forwards {
		if narrowed {
			break
		}
		var left []ledger.Delivery
		for _, t := range targets {
			if t.child.ID == c.ID && !t.used && !ownOrig(t) {
				t.used = true
				left = append(left, t.d)
			}
		}
		if len(left) == 0 {
			continue
		}
		c.Deliveries = left
		sub, ns, err := b.required(ctx, src, c, "", depth+1, seen)
		if err != nil {
			return nil, nil, err
		}
		notices = append(notices, ns...)
		for _, q := range sub {
			if q.Forward == "" {
				q.Forward = c.ID
			}
			out = append(out, q)
		}
	}
	return out, notices, nil
}

// deliveredHere reports whether a local delivery's reply says that
// part of it stayed on this host: local(8) joins what it did with "; ".
func deliveredHere(reply string) bool {
	for _, part := range strings.Split(reply, "; ") {
		if strings.HasPrefix(strings.TrimSpace(part), "delivered") {
			return true
		}
	}
	return false
}

// perMailbox splits a local delivery that reached several mailboxes
// (an alias or a list: local(8)'s reply "delivered to maildir of a@x;
// delivered to maildir of b@x", or "delivered over LMTP for a@x, b@x")
// into one required delivery per mailbox, each with its part of the
// reply: every mailbox that must get the message counts. A delivery to
// its own mailbox, or not delivered (the mailboxes are not known then),
// is left whole.
func perMailbox(q Required, d ledger.Delivery) []Required {
	if !isLocal(d) || d.Status != ledger.Sent {
		return []Required{q}
	}
	type part struct{ rcpt, reply string }
	var parts []part
	for _, p := range strings.Split(d.Reply, "; ") {
		p = strings.TrimSpace(p)
		switch {
		case strings.HasPrefix(p, "delivered over LMTP for "):
			for _, a := range strings.Split(strings.TrimPrefix(p, "delivered over LMTP for "), ", ") {
				parts = append(parts, part{a, "delivered over LMTP"})
			}
		case strings.HasPrefix(p, "delivered to "):
			if i := strings.LastIndex(p, " of "); i >= 0 && strings.Contains(p[i:], "@") {
				parts = append(parts, part{p[i+len(" of "):], p[:i]})
			} else {
				parts = append(parts, part{d.Rcpt, p})
			}
		}
	}
	// One part that names another mailbox is an alias of one
	// ("root: admin"): that mailbox is the delivery's, as a list's
	// members are theirs, so a search for it finds the message and a
	// "duplicate of" it is not counted twice.
	// A mailbox in the forward phase (mailbox_bcc_maps) is not written:
	// local(8)'s reply says only where its mail was sent on, and that
	// delivery, a recipient of the same message, is the one required,
	// as with recipient_bcc_maps, where it replaces the mailbox at once.
	if len(parts) == 0 && forwardPhaseOnly(d.Reply) {
		return nil
	}
	if len(parts) == 0 || len(parts) == 1 && strings.EqualFold(parts[0].rcpt, d.Rcpt) {
		return []Required{q}
	}
	out := make([]Required, 0, len(parts))
	for _, p := range parts {
		r := q
		r.Reply = p.reply
		if !strings.EqualFold(p.rcpt, d.Rcpt) {
			r.Rcpt = p.rcpt
			if dom := domainOf(p.rcpt); dom != "" {
				r.Destination = dom
			}
			if r.Via == "" {
				r.Via = d.Rcpt
			}
		}
		r.Chain = append([]Hop(nil), q.Chain...)
		out = append(out, r)
	}
	return out
}

// forwardPhaseOnly says whether a local delivery's reply names only
// forward-phase deliveries (internal/local: "forward phase: sent on to
// a@relay, b@relay").
func forwardPhaseOnly(reply string) bool {
	parts := strings.Split(reply, "; ")
	for _, p := range parts {
		if !strings.HasPrefix(strings.TrimSpace(p), "forward phase: sent on to ") {
			return false
		}
	}
	return len(parts) > 0
}

// withOnly is m with only delivery d.
func withOnly(m ledger.Message, d ledger.Delivery) ledger.Message {
	m.Deliveries = []ledger.Delivery{d}
	return m
}

func (b *builder) hop(src source, m ledger.Message, d ledger.Delivery, depth int) Hop {
	return Hop{Depth: depth, Node: m.Node, QueueID: m.ID, Rcpt: d.Rcpt, Status: d.Status, At: d.At,
		Transport: d.Transport, Relay: d.Relay, DSN: d.DSN, Reply: d.Reply, RemoteID: remoteID(d), Peer: src.url}
}

func remoteID(d ledger.Delivery) string {
	if d.RemoteID != "" {
		return d.RemoteID
	}
	return ledger.RemoteID(d.Reply)
}

// follow makes delivery d a Required, following it into the peer that
// has the queue ID its next hop named.
func (b *builder) follow(ctx context.Context, src source, m ledger.Message, d ledger.Delivery, hop Hop, depth int, seen map[string]bool) (Required, []Notice) {
	q := Required{Rcpt: d.Rcpt, Copy: d.Copy, Destination: domainOf(d.Rcpt), State: stateOf(d.Status),
		Status: d.Status, At: d.At, Relay: d.Relay, DSN: d.DSN, Reply: d.Reply, Attempts: d.Attempts,
		Chain: []Hop{hop}}
	rid := hop.RemoteID
	if d.Status != ledger.Sent || rid == "" || len(b.src.Peers) == 0 || isLocal(d) || depth >= MaxDepth {
		return q, nil
	}
	var errs []string
	for _, i := range b.order(d.Relay) {
		p := b.src.Peers[i]
		b.asked[i] = true
		pm, ok, err := p.Reader.Message(ctx, "", rid)
		if err != nil {
			b.peerErr(i, err)
			errs = append(errs, err.Error())
			continue
		}
		// The next hop wrote the reply that names rid: a server that is
		// no peer ("queued as" a relay's queue ID, which Received
		// headers show) must not graft a relay's message, and its
		// outcome, onto a delivery the relay never had.
		if !ok || !sameTime(d.At, pm.Arrival) || !names(pm, d.Rcpt) {
			continue
		}
		sub, ns, err := b.required(ctx, source{r: p.Reader, peer: i, url: p.URL}, pm, d.Rcpt, depth+1, seen)
		if err != nil || len(sub) == 0 {
			if err != nil {
				b.peerErr(i, err)
			}
			continue
		}
		b.peers[i].Followed++
		// The end state is the worst of what the peer made of it; the
		// reply shown is that end's.
		end := sub[0]
		st := sub[0].State
		for _, s := range sub {
			if worse(st, s.State) != st {
				st, end = s.State, s
			}
			q.Chain = append(q.Chain, s.Chain...)
		}
		q.State, q.Status, q.At, q.Relay, q.DSN, q.Reply = st, end.Status, end.At, end.Relay, end.DSN, end.Reply
		if end.Note != "" {
			q.Note = end.Note
		}
		return q, ns
	}
	switch {
	case len(errs) > 0:
		q.Note = fmt.Sprintf("not followed: queue ID %s: %s", rid, strings.Join(errs, "; "))
	case depth == 0:
		// Past the first hop, a queue ID no peer has is the end of
		// the path (the provider's), not a miss of the report.
		q.Note = fmt.Sprintf("not followed: no peer has queue ID %s", rid)
	}
	return q, nil
}

// names reports whether m was sent to addr: one of its recipients, or
// of its deliveries' (before or after a rewrite).
func names(m ledger.Message, addr string) bool {
	for _, r := range m.Rcpts {
		if strings.EqualFold(r, addr) {
			return true
		}
	}
	for _, d := range m.Deliveries {
		if strings.EqualFold(d.Rcpt, addr) || strings.EqualFold(d.Orig, addr) {
			return true
		}
	}
	return false
}

// MaxSkew is how far a peer's arrival time may be from the time the
// delivery to it ended for the two to be one message: queue IDs of the
// short kind (Postfix's without enable_long_queue_ids) come round again.
const MaxSkew = 24 * time.Hour

func sameTime(sent, arrived time.Time) bool {
	if sent.IsZero() || arrived.IsZero() {
		return true
	}
	d := sent.Sub(arrived)
	return d < MaxSkew && d > -MaxSkew
}

// isLocal reports whether d ended on this host (a mailbox, a file, a
// command), where a "queued as" in the reply names no next hop.
func isLocal(d ledger.Delivery) bool {
	switch d.Transport {
	case "local", "virtual", "discard", "error":
		return true
	}
	return d.Relay == "local" || d.Relay == "none"
}

// order lists the peers to try for a delivery through relay
// ("host[ip]:port"): those whose URL names that host or address first.
func (b *builder) order(relay string) []int {
	host, ip := relay, ""
	if i := strings.IndexByte(relay, '['); i >= 0 {
		host = relay[:i]
		ip = relay[i+1:]
		if j := strings.IndexByte(ip, ']'); j >= 0 {
			ip = ip[:j]
		}
	}
	var first, rest []int
	for i, p := range b.src.Peers {
		h := p.URL
		if u, err := url.Parse(p.URL); err == nil && u.Host != "" {
			h = u.Hostname()
		} else if hh, _, err := net.SplitHostPort(p.URL); err == nil {
			h = hh
		}
		if h != "" && (strings.EqualFold(h, host) || h == ip) {
			first = append(first, i)
		} else {
			rest = append(rest, i)
		}
	}
	return append(first, rest...)
}

func domainOf(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return strings.ToLower(addr[i+1:])
	}
	return "(local)"
}

// matches reports whether f.User is the sender, an original recipient,
// or an address anywhere along a required delivery's chain.
func matches(f ledger.Filter, m Message) bool {
	if f.Matches(m.From) {
		return true
	}
	for _, r := range m.Rcpts {
		if f.Matches(r) {
			return true
		}
	}
	for _, q := range m.Required {
		if f.Matches(q.Rcpt) {
			return true
		}
		for _, h := range q.Chain {
			if f.Matches(h.Rcpt) {
				return true
			}
		}
	}
	return false
}

// figures computes the summary, the misses, and the per-destination
// figures from r.Messages.
func (r *Report) figures() {
	now := r.Generated
	dests := map[string]*Destination{}
	type dkey struct{ dest, reply string }
	defer_ := map[dkey]int{}
	var first, last time.Time
	for _, m := range r.Messages {
		if first.IsZero() || m.Arrival.Before(first) {
			first = m.Arrival
		}
		if m.Arrival.After(last) {
			last = m.Arrival
		}
	}
	bucket := bucketFor(first, last, r.Since, r.Until, now)
	r.Series.Bucket = bucket.Seconds()
	type pkey struct {
		start time.Time
		dest  string
	}
	points := map[pkey]*Point{}
	for _, m := range r.Messages {
		r.Summary.Accepted++
		r.Summary.Messages.add(m.State)
		r.Summary.Notices += len(m.Notices)
		if m.State == Pending || hasPending(m) {
			if r.Summary.OldestPending.IsZero() || m.Arrival.Before(r.Summary.OldestPending) {
				r.Summary.OldestPending = m.Arrival
			}
		}
		for _, q := range m.Required {
			r.Summary.Deliveries.add(q.State)
			if q.Copy {
				r.Summary.Copies.add(q.State)
			}
			d := dests[q.Destination]
			if d == nil {
				d = &Destination{Name: q.Destination}
				dests[q.Destination] = d
			}
			d.All.add(q.State)
			if q.Copy {
				d.Copies.add(q.State)
			}
			if q.State == Pending {
				if d.OldestPending.IsZero() || m.Arrival.Before(d.OldestPending) {
					d.OldestPending = m.Arrival
				}
				if q.Reply != "" {
					defer_[dkey{q.Destination, clip(q.Reply, 200)}]++
				}
			}
			if q.State != Delivered {
				r.Misses = append(r.Misses, Miss{Node: m.Node, QueueID: m.ID, MessageID: m.MessageID,
					From: m.From, Arrival: m.Arrival, Age: age(now, m.Arrival), Required: q})
			}
			k := pkey{m.Arrival.UTC().Truncate(bucket), q.Destination}
			p := points[k]
			if p == nil {
				p = &Point{Start: k.start, Destination: k.dest}
				points[k] = p
			}
			p.add(q.State)
		}
	}
	r.Summary.OldestPendingAge = age(now, r.Summary.OldestPending)
	rc := &r.Reconciliation
	rc.Required = r.Summary.Deliveries.Total()
	rc.Delivered = r.Summary.Deliveries.Delivered
	rc.Ratio = 1
	if rc.Required > 0 {
		rc.Ratio = float64(rc.Delivered) / float64(rc.Required)
	}
	for _, g := range r.Gaps {
		rc.Incomplete = append(rc.Incomplete, fmt.Sprintf("gap on %s from %s to %s: %s",
			g.Node, g.Since.UTC().Format(time.RFC3339), g.Until.UTC().Format(time.RFC3339), g.Reason))
	}
	for _, p := range r.Peers {
		if p.Errors > 0 {
			rc.Incomplete = append(rc.Incomplete, fmt.Sprintf("peer %s: %d errors, the last: %s", p.URL, p.Errors, p.Error))
		}
	}
	rc.Complete = len(rc.Incomplete) == 0

	slices.SortStableFunc(r.Misses, func(a, b Miss) int { return a.Arrival.Compare(b.Arrival) })
	for _, d := range dests {
		d.OldestPendingAge = age(now, d.OldestPending)
		r.Dests = append(r.Dests, *d)
	}
	slices.SortFunc(r.Dests, func(a, b Destination) int { return strings.Compare(a.Name, b.Name) })
	for k, n := range defer_ {
		r.Deferrals = append(r.Deferrals, Deferral{Destination: k.dest, Reply: k.reply, Count: n})
	}
	slices.SortFunc(r.Deferrals, func(a, b Deferral) int {
		return cmp.Or(b.Count-a.Count, strings.Compare(a.Destination, b.Destination), strings.Compare(a.Reply, b.Reply))
	})
	if len(r.Deferrals) > MaxDeferrals {
		r.Deferrals = r.Deferrals[:MaxDeferrals]
	}
	for _, p := range points {
		r.Series.Points = append(r.Series.Points, *p)
	}
	slices.SortFunc(r.Series.Points, func(a, b Point) int {
		return cmp.Or(a.Start.Compare(b.Start), strings.Compare(a.Destination, b.Destination))
	})
}

func hasPending(m Message) bool {
	for _, q := range m.Required {
		if q.State == Pending {
			return true
		}
	}
	return false
}

func age(now, t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return now.Sub(t).Seconds()
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// bucketFor picks the chart's bucket: the smallest of a few round sizes
// that splits the report's span into at most 48 buckets.
func bucketFor(first, last, since, until, now time.Time) time.Duration {
	from, to := first, last
	if !since.IsZero() {
		from = since
	}
	if !until.IsZero() && until.Before(now) {
		to = until
	} else if !now.IsZero() {
		to = now
	}
	span := to.Sub(from)
	for _, b := range []time.Duration{time.Minute, 5 * time.Minute, 15 * time.Minute, time.Hour,
		3 * time.Hour, 6 * time.Hour, 24 * time.Hour} {
		if span <= 48*b {
			return b
		}
	}
	return 7 * 24 * time.Hour
}

// withoutDuplicateMailboxes keeps one required delivery per local
// mailbox: when two recipients of a message reach the same mailbox (a
// list and one of its members named as well), local(8) delivers once
// and says so for the second ("duplicate of u1@h, delivered once"),
// which is no delivery of its own: counted, it would make one mailbox
// two required deliveries.
//
// Postfix delivers such a mailbox twice: cleanup(8) eliminates
// duplicates on (original recipient, rewritten recipient) pairs when
// enable_original_recipient = yes, its default (cleanup_out_recipient.c),
// so a virtual alias list@ → u1@ and u1@ itself stay two recipients and
// the delivery agent writes each (its log: two "to=<u1@h>" lines, one
// with orig_to=<list@h>). The mailbox is still one required delivery,
// the best of its deliveries' states: it has the message once one of
// them put it there.
func withoutDuplicateMailboxes(req []Required) []Required {
	const dup = "duplicate of "
	out := make([]Required, 0, len(req))
	box := map[string]int{} // a local mailbox's index in out
	for _, q := range req {
		if !q.Copy && q.State == Delivered && strings.HasPrefix(q.Reply, dup) {
			target, _, _ := strings.Cut(strings.TrimPrefix(q.Reply, dup), ",")
			if slices.ContainsFunc(req, func(o Required) bool {
				return !o.Copy && strings.EqualFold(o.Rcpt, target) && !strings.HasPrefix(o.Reply, dup)
			}) {
				continue
			}
		}
		if k, ok := mailboxKey(q); ok {
			if i, seen := box[k]; seen {
				if better(q.State, out[i].State) {
					out[i] = q
				}
				continue
			}
			box[k] = len(out)
		}
		out = append(out, q)
	}
	return out
}

// mailboxKey names the local mailbox a required delivery ended in: its
// address, when it is no copy and its last hop was a delivery by
// local(8) or virtual(8) (not error(8) or discard(8), which fill no
// mailbox).
func mailboxKey(q Required) (string, bool) {
	if q.Copy || len(q.Chain) == 0 || strings.HasPrefix(q.Reply, "duplicate of ") {
		return "", false
	}
	switch h := q.Chain[len(q.Chain)-1]; {
	case h.Transport == "local", h.Transport == "virtual", h.Transport == "" && h.Relay == "local":
		return strings.ToLower(q.Rcpt), true
	}
	return "", false
}

// better reports whether state a is better than b: delivered, then
// pending, then failed.
func better(a, b State) bool { return a != b && worse(a, b) == b }
