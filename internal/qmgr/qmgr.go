// Package qmgr is mailtee's queue manager side of delivery: it hands
// each group of recipients the queue schedules to the delivery agent of
// its transport, re-injects what local delivery forwards, and turns the
// queue's events into the mail log.
//
// Every delivery agent (smtp, lmtp, local, error, discard) is an Agent,
// as chasquid's couriers are: the scheduler knows none of them.
package qmgr

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/mailtee/mailtee/internal/deliver"
	"github.com/mailtee/mailtee/internal/envelope"
	"github.com/mailtee/mailtee/internal/local"
	"github.com/mailtee/mailtee/internal/maillog"
	"github.com/mailtee/mailtee/internal/queue"
)

// Agent delivers one message to recipients that share a next hop, and
// returns one Outcome per recipient, in order.
type Agent interface {
	Deliver(ctx context.Context, nexthop string, msg *deliver.Message, rcpts []envelope.Rcpt) []queue.Outcome
}

// Manager dispatches deliveries to agents by transport name.
type Manager struct {
	agents map[string]Agent
	// Sender, when set, is the MAIL FROM of a delivery to r of message
	// id from from (SRS for copies, internal/srs). Recipients of
	// one group that need different senders get one transaction each.
	Sender func(id, from string, r envelope.Rcpt) string
}

// New is a Manager with the given agents and the two that need no
// configuration: error (bounce with the next hop as the reason) and
// discard.
func New(agents map[string]Agent) *Manager {
	m := &Manager{agents: map[string]Agent{"error": ErrorAgent{}, "discard": DiscardAgent{}}}
	for name, a := range agents {
		m.agents[name] = a
	}
	return m
}

// Transports lists the transport names mailtee delivers with, sorted.
func (m *Manager) Transports() []string {
	var out []string
	for name := range m.agents {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

// Has says whether transport is one mailtee delivers with.
func (m *Manager) Has(transport string) bool {
	_, ok := m.agents[transport]
	return ok
}

// Deliver delivers the recipients of qm with the given indexes, all
// bound for hop (the queue's Options.Deliver).
func (m *Manager) Deliver(ctx context.Context, qm *queue.Message, hop envelope.Hop, idx []int) []queue.Outcome {
	if m.Sender == nil {
		return m.deliver(ctx, qm, hop, idx, qm.Env.From)
	}
	// One MAIL FROM per transaction: a copy's SRS sender must not be
	// the sender of the ordinary recipients grouped with it.
	var froms []string
	by := map[string][]int{} // indexes into idx, by sender
	for k, i := range idx {
		f := m.Sender(qm.ID, qm.Env.From, qm.Rcpts[i].Rcpt)
		if _, ok := by[f]; !ok {
			froms = append(froms, f)
		}
		by[f] = append(by[f], k)
	}
	if len(froms) == 1 {
		return m.deliver(ctx, qm, hop, idx, froms[0])
	}
	out := make([]queue.Outcome, len(idx))
	for _, f := range froms {
		sub := make([]int, len(by[f]))
		for j, k := range by[f] {
			sub[j] = idx[k]
		}
		for j, o := range m.deliver(ctx, qm, hop, sub, f) {
			out[by[f][j]] = o
		}
	}
	return out
}

// deliver is Deliver with the envelope sender from.
func (m *Manager) deliver(ctx context.Context, qm *queue.Message, hop envelope.Hop, idx []int, from string) []queue.Outcome {
	msg := &deliver.Message{ID: qm.ID, From: from, Size: qm.Size, Open: qm.Open,
		SMTPUTF8: qm.Env.SMTPUTF8, EightBit: qm.Env.BodyType == "8BITMIME",
		ClientName: qm.Env.ClientName, ClientAddr: qm.Env.ClientAddr, ClientHelo: qm.Env.Helo, ClientProtocol: qm.Env.Protocol,
		Ret: qm.Env.Ret, EnvID: qm.Env.EnvID, Settings: qm.Env.Settings}
	rcpts := make([]envelope.Rcpt, len(idx))
	for k, i := range idx {
		rcpts[k] = qm.Rcpts[i].Rcpt
	}
	a, ok := m.agents[hop.Transport]
	if !ok {
		// check refuses an unknown transport it can see; this is one
		// it could not (a pattern's result, a table it cannot list).
		// Postfix defers such mail too.
		err := &deliver.Error{Enhanced: "4.3.5", Relay: "none",
			Text: fmt.Sprintf("unknown mail transport %q (mailtee supports %s)", hop.Transport, strings.Join(m.Transports(), ", "))}
		return each(len(rcpts), queue.Outcome{Relay: "none", Err: err})
	}
	return a.Deliver(ctx, hop.Nexthop, msg, rcpts)
}

func each(n int, o queue.Outcome) []queue.Outcome {
	out := make([]queue.Outcome, n)
	for i := range out {
		out[i] = o
	}
	return out
}

// SMTPAgent delivers over SMTP or LMTP (smtp, relay, lmtp).
type SMTPAgent struct{ Client *deliver.Client }

func (a SMTPAgent) Deliver(ctx context.Context, nexthop string, msg *deliver.Message, rcpts []envelope.Rcpt) []queue.Outcome {
	addrs := make([]string, len(rcpts))
	var dsn []deliver.RcptDSN
	for i, r := range rcpts {
		addrs[i] = r.Addr
		if r.Notify != "" || r.ORcpt != "" {
			dsn = append(dsn, make([]deliver.RcptDSN, i+1-len(dsn))...)
			dsn[i] = deliver.RcptDSN{Notify: r.Notify, ORcpt: r.ORcpt}
		}
	}
	if dsn != nil {
		m := *msg
		m.RcptDSN, msg = dsn, &m
	}
	out := make([]queue.Outcome, len(rcpts))
	for i, r := range a.Client.Deliver(ctx, nexthop, msg, addrs) {
		out[i] = queue.Outcome{Err: r.Err, Relay: r.Relay, Reply: r.Reply, Setup: r.Setup, ConnUse: r.ConnUse}
	}
	return out
}

// LocalAgent is local(8): aliases, mailboxes, forwards. Local returns
// the one of the configuration in force.
type LocalAgent struct{ Local func() *local.Local }

func (a LocalAgent) Deliver(ctx context.Context, nexthop string, msg *deliver.Message, rcpts []envelope.Rcpt) []queue.Outcome {
	lr := make([]local.Rcpt, len(rcpts))
	for i, r := range rcpts {
		lr[i] = local.Rcpt{Addr: r.Addr, Orig: cmp.Or(r.Orig, r.Addr), Copy: r.Copy}
	}
	out := make([]queue.Outcome, len(rcpts))
	for i, r := range a.Local().Deliver(ctx, msg, lr) {
		out[i] = queue.Outcome{Err: r.Err, Relay: "local", Reply: r.Done, Add: r.Add}
	}
	return out
}

// ErrorAgent is Postfix's error(8): every recipient bounces, with the
// next hop as the reason.
type ErrorAgent struct{}

func (ErrorAgent) Deliver(ctx context.Context, nexthop string, msg *deliver.Message, rcpts []envelope.Rcpt) []queue.Outcome {
	return each(len(rcpts), queue.Outcome{Relay: "none", Err: &deliver.Error{Permanent: true, Enhanced: "5.0.0",
		Text: cmp.Or(nexthop, "mail for this destination is refused"), Relay: "none"}})
}

// DiscardAgent is Postfix's discard(8): delivered to nowhere, logged.
type DiscardAgent struct{}

func (DiscardAgent) Deliver(ctx context.Context, nexthop string, msg *deliver.Message, rcpts []envelope.Rcpt) []queue.Outcome {
	return each(len(rcpts), queue.Outcome{Relay: "none", Reply: "discarded: " + cmp.Or(nexthop, "by transport")})
}

// Injector queues a message mailtee made from another (cleanup's Door).
type Injector interface {
	NewID() string
	Inject(ctx context.Context, id string, env *envelope.Envelope, body io.Reader) error
}

// Forwarder re-injects a message for the remote targets of a local
// alias, as local(8) does through cleanup (local.Options.Forward).
type Forwarder struct {
	Queue Injector
	Log   *maillog.Logger
}

// Forward queues msg again from from to rcpts, with a Delivered-To:
// header when deliveredTo is set.
func (f *Forwarder) Forward(ctx context.Context, from string, rcpts []envelope.Rcpt, msg *deliver.Message, deliveredTo string) error {
	body, err := msg.Open()
	if err != nil {
		return err
	}
	defer body.Close()
	env := &envelope.Envelope{From: from, ClientName: "localhost", Protocol: "local", Arrival: time.Now(), Rcpts: rcpts,
		Notification: msg.From == "" && from == "", Parent: msg.ID}
	var r io.Reader = body
	if deliveredTo != "" {
		r = io.MultiReader(strings.NewReader("Delivered-To: "+deliveredTo+"\r\n"), body)
	}
	id := f.Queue.NewID()
	if err := f.Queue.Inject(ctx, id, env, r); err != nil {
		return err
	}
	f.Log.Printf("local", "%s: forwarded as %s", msg.ID, id)
	return nil
}

// Events turns the queue's events into mail log lines.
type Events struct{ Log *maillog.Logger }

func (e Events) Queued(m *queue.Message) {
	e.Log.Queued(m.ID, m.Env.From, m.Size, len(m.Rcpts))
}

func (e Events) Delivery(m *queue.Message, i int, hop envelope.Hop, o queue.Outcome, status string, delay time.Duration) {
	r := m.Rcpts[i]
	d := maillog.Delivery{ID: m.ID, To: r.Addr, OrigTo: r.Orig, Relay: o.Relay, Transport: hop.Transport, ConnUse: o.ConnUse,
		Delay: delay, Delays: o.Delays, DSN: cmp.Or(o.DSN, queue.DSN(o.Err)), Status: status, Copy: r.Copy}
	if d.Transport == "none" || d.Transport == "" {
		d.Transport = "qmgr"
	}
	if o.Err != nil {
		d.Reason = o.Err.Error()
	} else {
		d.Reason = o.Reply
	}
	e.Log.Delivery(d)
}

func (e Events) Removed(m *queue.Message) { e.Log.Removed(m.ID) }
