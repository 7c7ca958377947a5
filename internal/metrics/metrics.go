// Package metrics serves mailtee's figures to Prometheus (/metrics) under
// the names, labels, label values and histogram buckets of the Prometheus
// postfix_exporter (kumina/postfix_exporter and its maintained fork,
// Hsn723/postfix_exporter), so that the dashboards and alerts written
// for a Postfix server work unchanged, and mailtee's own, mailtee_*.
//
// postfix_exporter reads Postfix's log lines and showq; mailtee has the
// events themselves. Each family is fed where mailtee logs the line the
// exporter would have counted:
//
//   - smtpd's connect, disconnect, "lost connection after X", "NOQUEUE:
//     reject: RCPT ... CODE", "QUEUEID: client=" and "TLS connection
//     established from" come from smtpd's Observer (SMTPD);
//   - qmgr's "from=<>, size=, nrcpt=" (queue active), "removed" and
//     "status=expired", and the delivery agents' "delays=a/b/c/d ...
//     status=X" lines, come from the queue's Events (Events);
//   - showq's queue depth, message size and age per queue are read from
//     the queue at each scrape (Options.Queue), as the exporter asks
//     showq at each scrape.
//
// Where the exporter's two versions differ, mailtee follows the fork
// (the one maintained) and says so beside the family; where both have a
// bug (the smtp delay histogram's stage label is always empty in both),
// mailtee does what the family's help and the other agents' histograms
// mean.
package metrics

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/mailtee/mailtee/internal/ledger"
	"github.com/mailtee/mailtee/internal/qmgr"
	"github.com/mailtee/mailtee/internal/queue"
)

// Options say where the figures read at scrape time come from. Every
// field may be nil: its families are then left out.
type Options struct {
	// Queue lists the queue's messages (queue.(*Queue).Shapes): showq's
	// families and postfix_up. It is called once per scrape.
	Queue func(buf []queue.Shape) []queue.Shape
	// QueuePath is postfix_up's path label (the exporter's showq path):
	// queue_directory.
	QueuePath string
	// Agent names the Postfix delivery agent a transport runs
	// (master.cf's command): "smtp", "lmtp", "local", "pipe", or "" for
	// none (error, discard, a recipient routing failed for). Nil: lmtp
	// and local by name, error, discard and none to none, the rest smtp.
	Agent func(transport string) string
	// Ledger returns the ledger Recorder's figures.
	Ledger func() ledger.Stats
	// Reconcile returns the report's reconciliation figures. The result
	// is kept for ReconcileEvery, so that a scraper polling every few
	// seconds does not run a report each time.
	Reconcile      func(ctx context.Context) (Reconciliation, error)
	ReconcileEvery time.Duration // 0: 10s
	// Now is the clock for ages (tests); nil is time.Now.
	Now func() time.Time
}

// Reconciliation is the report's summary of required deliveries (every
// local mailbox and every copy a message was accepted with).
type Reconciliation struct {
	Required  int // required deliveries
	Delivered int // of them, delivered
	Pending   int // of them, still in a queue
	Failed    int // of them, bounced, expired or deleted
	// Incomplete: a ledger gap or an unreachable peer means the figures
	// may miss deliveries (report.Reconciliation.Complete false).
	Incomplete bool
}

// Metrics holds the families and feeds them.
type Metrics struct {
	o   Options
	reg *prometheus.Registry

	events *eventMetrics
	smtpd  *SMTPD
	fsync  prometheus.Histogram

	recMu   sync.Mutex
	recAt   time.Time
	recLast Reconciliation
	recErr  error
}

// New makes the families in a registry of their own (not the global
// one: two servers in one test process must not share counters).
func New(o Options) *Metrics {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Agent == nil {
		o.Agent = DefaultAgent
	}
	if o.ReconcileEvery <= 0 {
		o.ReconcileEvery = 10 * time.Second
	}
	m := &Metrics{o: o, reg: prometheus.NewRegistry()}
	m.smtpd = newSMTPD(m.reg)
	m.events = newEventMetrics(m.reg, o.Agent)
	m.fsync = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "mailtee_journal_fsync_seconds",
		Help: "Time of each fdatasync of the queue's intake journal (every 250 after DATA waits for one; group commit shares it).",
		// 50 µs (a battery-backed cache) to 5 s (a disk in trouble).
		Buckets: []float64{5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1, 2.5, 5},
	})
	m.reg.MustRegister(m.fsync, &scrape{m: m},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Register adds a family another part of mailtee keeps (the fleet's
// shared limits' fallback gauge).
func (m *Metrics) Register(c prometheus.Collector) error { return m.reg.Register(c) }

// Handler serves the registry in Prometheus's text (or protobuf) format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// Gatherer is the registry, for tests and for a caller that merges it.
func (m *Metrics) Gatherer() prometheus.Gatherer { return m.reg }

// SMTPD is the observer for smtpd.Options.Observer.
func (m *Metrics) SMTPD() *SMTPD { return m.smtpd }

// ObserveFsync records one journal fdatasync (queue.ObserveFsync).
func (m *Metrics) ObserveFsync(d time.Duration) { m.fsync.Observe(d.Seconds()) }

// DefaultAgent is Options.Agent when none is given: what the stock
// master.cf runs for each transport name.
func DefaultAgent(transport string) string {
	switch transport {
	case "lmtp":
		return "lmtp"
	case "local":
		return "local"
	case "error", "discard", "none", "retry", "":
		return ""
	}
	return "smtp"
}

// reconcile returns the reconciliation, from the cache when it is fresh.
func (m *Metrics) reconcile(ctx context.Context) (Reconciliation, error) {
	m.recMu.Lock()
	defer m.recMu.Unlock()
	now := m.o.Now()
	if !m.recAt.IsZero() && now.Sub(m.recAt) < m.o.ReconcileEvery {
		return m.recLast, m.recErr
	}
	m.recLast, m.recErr = m.o.Reconcile(ctx)
	m.recAt = now
	return m.recLast, m.recErr
}

// AgentOf is Options.Agent for the delivery agents qmgr runs (the master's
// agents, master.cf's services included): an SMTPAgent is smtp(8), or
// lmtp(8) when its client speaks LMTP; a LocalAgent is local(8); the rest
// (error, discard) none. A transport not in agents is named by
// DefaultAgent.
func AgentOf(agents map[string]qmgr.Agent) func(transport string) string {
	kinds := make(map[string]string, len(agents))
	for name, a := range agents {
		switch a := a.(type) {
		case qmgr.SMTPAgent:
			kinds[name] = "smtp"
			if a.Client != nil && a.Client.LMTP {
				kinds[name] = "lmtp"
			}
		case qmgr.LocalAgent:
			kinds[name] = "local"
		default:
			kinds[name] = ""
		}
	}
	return func(transport string) string {
		if k, ok := kinds[transport]; ok {
			return k
		}
		return DefaultAgent(transport)
	}
}
