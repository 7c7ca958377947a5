package master

import (
	"context"
	"io"

	"github.com/mailtee/mailtee/internal/cleanup"
	"github.com/mailtee/mailtee/internal/config"
	"github.com/mailtee/mailtee/internal/envelope"
	"github.com/mailtee/mailtee/internal/queue"
)

// Submit queues a local submission in cfg's queue directory without a
// running server, through the same cleanup stage (sendmail's path).
func Submit(cfg *config.Config, uid int, env *envelope.Envelope, body io.Reader, log func(string)) (string, error) {
	t, err := openTables(cfg, nil)
	if err != nil {
		return "", err
	}
	cl, err := cleanup.New(cleanupOptions(cfg, t, log))
	if err != nil {
		return "", err
	}
	out, r, err := cl.Process(context.Background(), "", env, body, cleanup.Source{Pickup: true, UID: uid})
	if err != nil {
		return "", err
	}
	return queue.Put(QueueDir(cfg), out, r)
}
