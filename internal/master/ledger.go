package master

import (
	"strings"

	"github.com/mailtee/mailtee/internal/config"
	"github.com/mailtee/mailtee/internal/ledger"
	"github.com/mailtee/mailtee/internal/queue"
)

// newLedger starts the delivery ledger ledger_database names, or returns
// nil when it names none. A ledger that cannot be opened now is retried
// at each batch: it never stops the server (its records become a gap).
func (s *Server) newLedger(cfg *config.Config) *ledger.Recorder {
	path := ledger.Location(cfg.DataDirectory(), cfg.Get("ledger_database"))
	if path == "" {
		return nil
	}
	retention, _ := config.ParseDuration(cfg.Get("ledger_retention"), 'd') // check validated it
	return ledger.NewRecorder(ledger.RecorderOptions{
		Path:      path,
		Node:      s.host,
		Identity:  func(m *queue.Message) (string, string) { return m.Env.LedgerNode, m.Env.LedgerID },
		Phase:     s.settingsSummary,
		Marker:    ledger.DefaultMarker(QueueDir(cfg)),
		Retention: retention,
		Log:       func(format string, args ...any) { s.log.Printf("ledger", format, args...) },
	})
}

func (s *Server) closeLedger() {
	if s.ledger != nil {
		s.ledger.Close()
	}
}

// otherCopyParams are the settings besides the migration's that make
// copies.
var otherCopyParams = []string{"sender_bcc_maps", "always_bcc", "dual_delivery_relay"}

// settingsSummary is what the ledger records with each message: the
// migration settings it was accepted with (phase, copy maps, the
// settings' ID), then the other copy settings in force, those set only,
// as "name=value; ...".
func (s *Server) settingsSummary(id string) string {
	var parts []string
	if t := s.mig.For(id); t != nil {
		parts = append(parts, t.Summary())
	}
	cfg := s.rt.Load().cfg
	for _, p := range otherCopyParams {
		v := cfg.Get(p)
		if v == "" || p == "dual_delivery_relay" && v == "no" {
			continue
		}
		parts = append(parts, p+"="+v)
	}
	return strings.Join(parts, "; ")
}
