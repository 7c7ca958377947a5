package master

import (
	"context"
	"errors"
	"time"

	"github.com/mailtee/mailtee/internal/config"
	"github.com/mailtee/mailtee/internal/dashboard"
	"github.com/mailtee/mailtee/internal/ledger"
	"github.com/mailtee/mailtee/internal/metrics"
	"github.com/mailtee/mailtee/internal/queue"
	"github.com/mailtee/mailtee/internal/report"
	"github.com/prometheus/client_golang/prometheus"
)

// newMetrics makes /metrics' families (internal/metrics) before the
// queue opens: its Events, smtpd's Observer and the journal's fsyncs
// feed them; the queue, the ledger's Stats and the report are read at
// each scrape.
func (s *Server) newMetrics(cfg *config.Config) *metrics.Metrics {
	o := metrics.Options{
		QueuePath: QueueDir(cfg),
		Agent:     metrics.AgentOf(s.agents()),
		// Scrapes begin once the listener starts, after the queue opened.
		Queue: func(buf []queue.Shape) []queue.Shape { return s.q.Shapes(buf) },
	}
	if s.ledger != nil {
		o.Ledger = s.ledger.Stats
		peers, _ := report.PeersOf(cfg) // newObserver logs the error
		// The dashboard's figure: the whole ledger, its peers followed.
		o.Reconcile = func(ctx context.Context) (metrics.Reconciliation, error) {
			if s.obs == nil || s.obs.ledger == nil {
				return metrics.Reconciliation{}, errors.New("no ledger to read")
			}
			now := time.Now()
			r, err := report.Build(ctx, report.Sources{Local: s.obs.ledger, Peers: peers}, ledger.Filter{Since: now.Add(-dashboard.Window)}, now)
			if err != nil {
				return metrics.Reconciliation{}, err
			}
			return metrics.Reconciliation{Required: r.Reconciliation.Required, Delivered: r.Reconciliation.Delivered,
				Pending: r.Summary.Deliveries.Pending, Failed: r.Summary.Deliveries.Failed, // copies are among the deliveries
				Incomplete: !r.Reconciliation.Complete}, nil
		}
	}
	m := metrics.New(o)
	if s.limits != nil {
		m.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "mailtee_fleet_shared_limits_fallback",
			Help: "1 while this node counts the provider limits alone, within its share of each, for want of the fleet's database; 0 while they are counted across the fleet.",
		}, func() float64 {
			if s.limits.Fallback() {
				return 1
			}
			return 0
		}))
	}
	queue.ObserveFsync(m.ObserveFsync)
	return m
}
