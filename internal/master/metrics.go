package master

import (
	"context"
	"errors"
	"time"

	"github.com/mailtee/mailtee/internal/config"
	"github.com/mailtee/mailtee/internal/ledger"
	"github.com/mailtee/mailtee/internal/metrics"
	"github.com/mailtee/mailtee/internal/queue"
	"github.com/mailtee/mailtee/internal/report"
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
			r, err := report.Build(ctx, report.Sources{Local: s.obs.ledger, Peers: peers}, ledger.Filter{}, time.Now())
			if err != nil {
				return metrics.Reconciliation{}, err
			}
			// Summary.Deliveries counts every required delivery, the
			// copies (Summary.Copies) among them.
			return metrics.Reconciliation{Required: r.Reconciliation.Required, Delivered: r.Reconciliation.Delivered,
				Pending: r.Summary.Deliveries.Pending, Failed: r.Summary.Deliveries.Failed,
				Incomplete: !r.Reconciliation.Complete}, nil
		}
	}
	m := metrics.New(o)
	queue.ObserveFsync(m.ObserveFsync)
	return m
}
