package report

import (
	"context"
	"sync"
	"time"

	"github.com/mailtee/mailtee/internal/ledger"
)

// cached remembers a peer's answers for one report: the copies of one
// message to several recipients of a relay share one queue ID there, and
// each would otherwise cost the same two requests again.
type cached struct {
	ledger.Reader
	mu       sync.Mutex
	msgs     map[[2]string]msgAnswer
	children map[[2]string][]ledger.Message
}

type msgAnswer struct {
	m  ledger.Message
	ok bool
}

func newCached(r ledger.Reader) *cached {
	return &cached{Reader: r, msgs: map[[2]string]msgAnswer{}, children: map[[2]string][]ledger.Message{}}
}

func (c *cached) Message(ctx context.Context, node, id string) (ledger.Message, bool, error) {
	k := [2]string{node, id}
	c.mu.Lock()
	a, hit := c.msgs[k]
	c.mu.Unlock()
	if hit {
		return a.m, a.ok, nil
	}
	m, ok, err := c.Reader.Message(ctx, node, id)
	if err != nil {
		return m, ok, err // not remembered: the next delivery tries again
	}
	c.mu.Lock()
	c.msgs[k] = msgAnswer{m, ok}
	c.mu.Unlock()
	return m, ok, nil
}

func (c *cached) Children(ctx context.Context, node, id string) ([]ledger.Message, error) {
	k := [2]string{node, id}
	c.mu.Lock()
	ms, hit := c.children[k]
	c.mu.Unlock()
	if hit {
		return ms, nil
	}
	ms, err := c.Reader.Children(ctx, node, id)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.children[k] = ms
	c.mu.Unlock()
	return ms, nil
}

func (c *cached) Gaps(ctx context.Context, since, until time.Time) ([]ledger.Gap, error) {
	return c.Reader.Gaps(ctx, since, until)
}
