package master

import (
	"github.com/mailtee/mailtee/internal/maildrop"
)

// startPickup starts the pickup of what `mailtee sendmail` drops into
// maildrop: each submission enters through cleanup's door as a local
// submission by its (checked) uid, with the rewriting and BCC copies of
// mail from outside and the header fields a submission lacks.
func (s *Server) startPickup() (*maildrop.Pickup, error) {
	cfg := s.cfg
	return maildrop.Start(maildrop.Options{
		QueueDir:   QueueDir(cfg),
		Group:      cfg.Get("setgid_group"),
		MaxMessage: int64(mustInt(cfg, "message_size_limit")),
		Origin:     cfg.Get("myorigin"),
		Interval:   mustDuration(cfg, "queue_run_delay"),
		Log:        func(line string) { s.log.Printf("pickup", "%s", line) },
		Submit:     s.door.Submit,
	})
}
