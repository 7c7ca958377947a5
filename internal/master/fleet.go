package master

import (
	"path/filepath"

	"github.com/mailtee/mailtee/internal/config"
	"github.com/mailtee/mailtee/internal/fleet"
)

// openFleet joins the fleet of nodes sharing ledger_database when it is
// a PostgreSQL URL (nil otherwise). The database need not be up: the
// node starts alone and joins when it is (fleet.Open connects lazily).
func (s *Server) openFleet(cfg *config.Config) (*fleet.Fleet, error) {
	url := cfg.Get("ledger_database")
	if !fleet.IsURL(url) {
		return nil, nil
	}
	return fleet.Open(fleet.Options{
		URL:       url,
		Node:      s.host,
		Heartbeat: mustDuration(cfg, "fleet_heartbeat_interval"),
		Timeout:   mustDuration(cfg, "fleet_node_timeout"),
		StateFile: filepath.Join(QueueDir(cfg), "fleet.state"),
		Log:       func(format string, args ...any) { s.log.Printf("fleet", format, args...) },
	})
}

func (s *Server) closeFleet() {
	if s.fleet != nil {
		s.fleet.Close()
	}
}
