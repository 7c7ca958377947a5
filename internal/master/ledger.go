package master

import (
	"strings"

	"github.com/mailtee/mailtee/internal/config"
	"github.com/mailtee/mailtee/internal/ledger"
)

// newLedger starts the delivery ledger ledger_database names, or returns
// nil when it names none. A ledger that cannot be opened now is retried
// at each batch: it never stops the server (its records become a gap).
func (s *Server) newLedger(cfg *config.Config) *ledger.Recorder {
	path := ledger.DBPath(cfg.DataDirectory(), cfg.Get("ledger_database"))
	if path == "" {
		return nil
	}
	retention, _ := config.ParseDuration(cfg.Get("ledger_retention"), 'd') // check validated it
	return ledger.NewRecorder(ledger.RecorderOptions{
		Path:      path,
		Node:      s.host,
		Phase:     func() string { return copySettings(s.rt.Load().cfg) },
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

// copyParams are the settings that decide which copies a message gets.
var copyParams = []string{"recipient_bcc_maps", "sender_bcc_maps", "always_bcc", "mailbox_bcc_maps", "dual_delivery_relay"}

// copySettings is what the ledger records with each message: the copy
// settings in force when it was accepted, as "name=value; ...", those
// set only.
func copySettings(cfg *config.Config) string {
	var parts []string
	for _, p := range copyParams {
		v := cfg.Get(p)
		if v == "" || p == "dual_delivery_relay" && v == "no" {
			continue
		}
		parts = append(parts, p+"="+v)
	}
	return strings.Join(parts, "; ")
}
