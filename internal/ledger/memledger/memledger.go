// Package memledger is a ledger.Reader over messages held in memory:
// the fake that tests of the report, the metrics and the dashboard read,
// with the same selection rules as the store (ledger.Filter).
package memledger

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mailtee/mailtee/internal/ledger"
)

// Ledger holds messages and gaps; safe for concurrent use. Err, when
// set, is returned by every call (a ledger that cannot be read).
type Ledger struct {
	mu   sync.Mutex
	msgs []ledger.Message
	gaps []ledger.Gap
	Err  error
}

// New returns a Ledger holding msgs.
func New(msgs ...ledger.Message) *Ledger {
	l := &Ledger{}
	l.Add(msgs...)
	return l
}

// Add stores msgs, replacing any with the same node and queue ID.
func (l *Ledger) Add(msgs ...ledger.Message) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, m := range msgs {
		i := slices.IndexFunc(l.msgs, func(o ledger.Message) bool { return o.Node == m.Node && o.ID == m.ID })
		if i >= 0 {
			l.msgs[i] = m
		} else {
			l.msgs = append(l.msgs, m)
		}
	}
}

// AddGap stores g.
func (l *Ledger) AddGap(g ledger.Gap) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.gaps = append(l.gaps, g)
}

// Messages implements ledger.Reader.
func (l *Ledger) Messages(ctx context.Context, f ledger.Filter) ([]ledger.Message, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.Err != nil {
		return nil, l.Err
	}
	var out []ledger.Message
	for _, m := range l.msgs {
		if !f.Since.IsZero() && m.Arrival.Before(f.Since) || !f.Until.IsZero() && !m.Arrival.Before(f.Until) {
			continue
		}
		if f.User != "" && !userMatches(f, m) {
			continue
		}
		out = append(out, m)
	}
	slices.SortStableFunc(out, func(a, b ledger.Message) int { return a.Arrival.Compare(b.Arrival) })
	if f.Limit > 0 {
		slices.Reverse(out)
		if len(out) > f.Limit {
			out = out[:f.Limit]
		}
	}
	return out, nil
}

func userMatches(f ledger.Filter, m ledger.Message) bool {
	if f.Matches(m.From) {
		return true
	}
	for _, r := range m.Rcpts {
		if f.Matches(r) {
			return true
		}
	}
	for _, d := range m.Deliveries {
		if f.Matches(d.Rcpt) {
			return true
		}
	}
	return false
}

// Message implements ledger.Reader.
func (l *Ledger) Message(ctx context.Context, node, id string) (ledger.Message, bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.Err != nil {
		return ledger.Message{}, false, l.Err
	}
	for _, m := range l.msgs {
		if m.ID == id && (node == "" || strings.EqualFold(node, m.Node)) {
			return m, true, nil
		}
	}
	return ledger.Message{}, false, nil
}

// Children implements ledger.Reader.
func (l *Ledger) Children(ctx context.Context, node, id string) ([]ledger.Message, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.Err != nil {
		return nil, l.Err
	}
	var out []ledger.Message
	for _, m := range l.msgs {
		if m.Parent == id && strings.EqualFold(node, m.Node) {
			out = append(out, m)
		}
	}
	return out, nil
}

// Gaps implements ledger.Reader.
func (l *Ledger) Gaps(ctx context.Context, since, until time.Time) ([]ledger.Gap, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.Err != nil {
		return nil, l.Err
	}
	var out []ledger.Gap
	for _, g := range l.gaps {
		if !until.IsZero() && !g.Since.Before(until) || !since.IsZero() && g.Until.Before(since) {
			continue
		}
		out = append(out, g)
	}
	return out, nil
}

var _ ledger.Reader = (*Ledger)(nil)
