package main

import (
	"context"
	"io"

	"github.com/mailtee/mailtee/internal/envelope"
	"github.com/mailtee/mailtee/internal/maildrop"
)

// startPickup starts the server's pickup of what `mailtee sendmail`
// drops into maildrop. Each submission goes through cleanup as mail from
// sendmail always did: a local submission (no client address), with the
// rewriting and BCC copies of mail from outside.
func (s *server) startPickup() (*maildrop.Pickup, error) {
	cfg := s.cfg
	limit, _ := cfg.Int("message_size_limit")
	cq := cleanupQueue{c: func() *cleanup { return s.rt.Load().cleanup }, newID: s.q.NewID, enqueue: s.q.Enqueue}
	return maildrop.Start(maildrop.Options{
		QueueDir:   queueDir(cfg),
		Group:      cfg.Get("setgid_group"),
		MaxMessage: limit,
		Hostname:   s.host,
		Origin:     cfg.Get("myorigin"),
		Interval:   mustDuration(cfg, "queue_run_delay"),
		Log:        func(line string) { s.log.Printf("pickup", "%s", line) },
		Submit: func(ctx context.Context, env *envelope.Envelope, body io.Reader) (string, error) {
			id := cq.NewID()
			return id, cq.Enqueue(ctx, id, env, body)
		},
	})
}
