package master

import (
	"context"
	"net/http"

	"github.com/mailtee/mailtee/internal/config"
	"github.com/mailtee/mailtee/internal/dashboard"
	"github.com/mailtee/mailtee/internal/ledger"
	"github.com/mailtee/mailtee/internal/ledgerhttp"
	"github.com/mailtee/mailtee/internal/report"
	"github.com/mailtee/mailtee/internal/web"
)

// observer is serve's HTTP listener (metrics_listen): /metrics, the
// dashboard, and the ledger for peers, each from its own package; this
// is only their wiring.
type observer struct {
	web    *web.Server
	ledger *ledger.Lazy // nil without a ledger
}

// newObserver prepares the listener metrics_listen names; nil when it
// names none. Check has reported the configuration's findings.
func (s *Server) newObserver(cfg *config.Config, metrics http.Handler) (*observer, error) {
	wo, _ := web.FromConfig(cfg)
	if wo.Listen == "" {
		return nil, nil
	}
	ob := &observer{}
	if path := ledger.Location(cfg.DataDirectory(), cfg.Get("ledger_database")); path != "" {
		ob.ledger = &ledger.Lazy{Path: path}
		peers, err := report.PeersOf(cfg)
		if err != nil {
			// The dashboard then shows this host's part of each chain.
			s.log.Printf("web", "warning: ledger_peers: %v; the dashboard follows no copy to its peers", err)
		}
		wo.Dashboard = dashboard.Handler(dashboard.NewSource(report.Sources{Local: ob.ledger, Peers: peers}, s.q.List))
		wo.Ledger = ledgerhttp.Handler(ob.ledger)
	}
	wo.Metrics = metrics
	wo.Log = s.log
	ws, err := web.New(wo)
	if err != nil {
		return nil, err
	}
	ob.web = ws
	return ob, nil
}

// reload takes the new configuration's access rules.
func (ob *observer) reload(cfg *config.Config) {
	if ob == nil {
		return
	}
	if wo, d := web.FromConfig(cfg); !d.HasErrors() && wo.Listen != "" {
		ob.web.Reload(wo)
	}
}

func (ob *observer) close(ctx context.Context) {
	if ob == nil {
		return
	}
	ob.web.Shutdown(ctx)
	if ob.ledger != nil {
		ob.ledger.Close()
	}
}
