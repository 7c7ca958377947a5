package queue

import (
	"context"
	"time"

	"github.com/mailtee/mailtee/internal/envelope"
)

// Pacer paces deliveries beyond a next hop's concurrency: rates per
// receiving site and per mailbox, Postfix's rate delay, throttling
// replies. The queue asks it before each delivery and tells it what
// came back; it knows no SMTP. A recipient it holds back is not an
// attempt: no record, no log line, no backoff, only a later pass (the
// message still expires at maximal_queue_lifetime).
type Pacer interface {
	// Plan says how deliveries to hop are grouped and limited. It may
	// look up DNS (the receiving site of a domain); ctx bounds that.
	Plan(ctx context.Context, hop envelope.Hop) Plan
	// Admit is called before rcpts (indexes into m.Rcpts, at most
	// Plan.RecipientLimit of them) are delivered to the plan's
	// destination, and says which may go now.
	Admit(ctx context.Context, plan Plan, m *Message, rcpts []int) Admission
}

// Plan is how deliveries to one next hop are grouped and limited.
type Plan struct {
	Hop envelope.Hop
	// Key names the destination whose deliveries share Concurrency: a
	// receiving site groups many next hops (every domain whose MX hosts
	// are Google's). Empty: the next hop itself.
	Key string
	// Concurrency is the destination's limit on deliveries at once; 0
	// keeps the queue's (TRANSPORT_destination_concurrency_limit).
	Concurrency int
	// RecipientLimit is TRANSPORT_destination_recipient_limit: at most
	// this many recipients per delivery; 0 for no limit.
	RecipientLimit int
	// Data is the pacer's own, handed back to Admit.
	Data any
}

// Admission is a Pacer's answer for one delivery.
type Admission struct {
	Now   []int       // recipients to deliver now, in order
	Later []Postponed // recipients held back
	// Key, when set, replaces the plan's key for this delivery's
	// concurrency (a per-recipient destination, Postfix's with a
	// recipient limit of 1).
	Key string
	// Ctx, when set, is the context for this delivery (it may carry the
	// destination's delivery policy).
	Ctx context.Context
	// Go, when set, is called once the delivery holds its slot, just
	// before it starts, and returns the recipients of Now it holds back
	// after all: the destination or their mailbox was throttled (a
	// reply to another delivery) while this one waited for its slot.
	// The others are delivered, and Done receives their outcomes, in
	// order; when it holds back all of them the delivery does not take
	// place.
	Go func() []Postponed
	// Done, when set, receives the outcomes of Now, in order, and may
	// change them (a throttling reply made temporary, a later retry);
	// outs is nil when the delivery did not take place (Close, or a
	// next hop suspended as unreachable: the deferrals it then gets
	// reached no server).
	Done func(outs []Outcome)
}

// Postponed is a recipient a Pacer holds back until At.
type Postponed struct {
	Rcpt int
	At   time.Time
	Why  string // for the log, if the wait outlives the message
}

// postponedError is the deferral of a recipient held back by the pacer
// past the message's lifetime: outcome turns it into an expiry.
type postponedError struct{ why string }

func (e postponedError) Error() string { return "delivery postponed: " + e.why }

// postpone holds back recipients of e until their times (q.mu held).
func (e *entry) postpone(later []Postponed) {
	for _, l := range later {
		if e.later == nil {
			e.later = map[int]Postponed{}
		}
		e.later[l.Rcpt] = l
	}
}

// heldBack says whether recipient i waits for the pacer at now, and
// forgets a wait that is over (q.mu held).
func (e *entry) heldBack(i int, now time.Time) bool {
	l, ok := e.later[i]
	if ok && !l.At.After(now) {
		delete(e.later, i)
		return false
	}
	return ok
}

// chunks splits rcpts into deliveries of at most limit recipients.
func chunks(rcpts []int, limit int) [][]int {
	if limit <= 0 || len(rcpts) <= limit {
		return [][]int{rcpts}
	}
	var out [][]int
	for len(rcpts) > limit {
		out = append(out, rcpts[:limit])
		rcpts = rcpts[limit:]
	}
	return append(out, rcpts)
}

// describeHeld tells mailq why a held-back recipient waits, and until
// when, unless a failure of its own says more (q.mu held).
func (e *entry) describeHeld(in *Info) {
	if len(e.later) == 0 {
		return
	}
	// in.Rcpts skips lost recipients: match them by address.
	held := make(map[string]Postponed, len(e.later))
	for i, l := range e.later {
		if i < len(e.m.Rcpts) && e.m.Rcpts[i].Status == Pending {
			held[e.m.Rcpts[i].Addr] = l
		}
	}
	for k := range in.Rcpts {
		l, ok := held[in.Rcpts[k].Addr]
		if !ok {
			continue
		}
		if in.Rcpts[k].Reason == "" {
			in.Rcpts[k].Reason = "delivery postponed: " + l.Why
		}
		if l.At.After(in.Rcpts[k].NextTry) {
			in.Rcpts[k].NextTry = l.At
		}
	}
}
