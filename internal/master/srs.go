package master

import (
	"context"
	"io"
	"sync"

	"github.com/mailtee/mailtee/internal/config"
	"github.com/mailtee/mailtee/internal/diag"
	"github.com/mailtee/mailtee/internal/envelope"
	"github.com/mailtee/mailtee/internal/ledger"
	"github.com/mailtee/mailtee/internal/srs"
)

// The wiring of SRS for copies (internal/srs holds the policy): the
// codec of the configuration in force, the RCPT check of srs_domain,
// the route and agent of bounces to SRS addresses, the copies' MAIL
// FROM.

// srsFindings are check's findings about srs_domain and srs_secret_file.
func srsFindings(cfg *config.Config, t *tables) diag.List {
	return srs.Check(cfg, func(domain string) (string, error) {
		ctx := context.Background()
		for _, l := range t.destinations() {
			if l.list == nil {
				continue
			}
			if ok, err := l.list.Match(ctx, domain); err != nil || ok {
				return l.param, err
			}
		}
		return "", nil
	})
}

// srsAnswer is smtpd's RCPT check for srs_domain (nil: SRS off).
func srsAnswer(cfg *config.Config, t *tables) func(ctx context.Context, local, domain string) (bool, error) {
	c, err := srs.Load(cfg)
	if c == nil || err != nil {
		return nil // check reported err
	}
	return func(ctx context.Context, local, domain string) (bool, error) {
		ours := false
		for _, d := range t.destinations() {
			// ours matters only for a non-SRS address at srs_domain.
			if l := d.list; l != nil && !ours && domain == c.Domain && !srs.IsSRS(local) {
				var err error
				if ours, err = l.Match(ctx, domain); err != nil {
					// Not knowing whether srs_domain is also ours, a
					// non-SRS address there must not be refused for
					// good: smtpd answers 451.
					return true, lookupFailure{err}
				}
			}
		}
		return c.Answer(local, domain, ours)
	}
}

// lookupFailure is a table that did not answer: smtpd's temporary
// failure, not a refusal.
type lookupFailure struct{ error }

func (lookupFailure) Temporary() bool { return true }

// srsAgent handles bounces to SRS addresses.
func (s *Server) srsAgent() *srs.Agent {
	var once sync.Once
	var lg srs.Ledger
	return &srs.Agent{
		Codec:  func() *srs.Codec { return s.rt.Load().srs },
		Policy: s.bouncePolicy,
		Queue:  lateDoor{s},
		Log:    s.log,
		// The ledger starts after the agents are made.
		Ledger: func() srs.Ledger {
			once.Do(func() {
				if s.ledger != nil {
					lg = srsLedger{Recorder: s.ledger, Lazy: &ledger.Lazy{Path: ledger.Location(s.cfg.DataDirectory(), s.cfg.Get("ledger_database"))}}
				}
			})
			return lg
		},
	}
}

// lateDoor is cleanup's door, made after the agents.
type lateDoor struct{ s *Server }

func (d lateDoor) NewID() string { return d.s.door.NewID() }
func (d lateDoor) Inject(ctx context.Context, id string, env *envelope.Envelope, body io.Reader) error {
	return d.s.door.Inject(ctx, id, env, body)
}

type srsLedger struct {
	*ledger.Recorder
	*ledger.Lazy
}

// srsSender is the MAIL FROM of a delivery (qmgr.Manager.Sender),
// logged when SRS rewrote it, as postsrsd logs its rewrites.
func (s *Server) srsSender(id, from string, r envelope.Rcpt) string {
	f, err := s.rt.Load().srs.CopySender(from, r)
	switch {
	case err != nil:
		s.log.Warnf("srs", "%s: sender <%s> of the copy to <%s> not rewritten: %v", id, from, r.Addr, err)
	case f != from:
		s.log.Printf("srs", "%s: from=<%s> rewritten as <%s> for the copy to <%s>", id, from, f, r.Addr)
	}
	return f
}
