package metrics

import (
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mailtee/mailtee/internal/envelope"
	"github.com/mailtee/mailtee/internal/queue"
)

// The stages of Postfix's delays=a/b/c/d, as postfix_exporter labels
// them, in queue.Outcome.Delays order.
var stages = [4]string{"before_queue_manager", "queue_manager", "connection_setup", "transmission"}

// The delivery statuses the queue reports (queue.Events.Delivery).
var statuses = []string{"sent", "deferred", "bounced", "expired"}

// postfix_exporter's time buckets, for every delivery delay histogram.
var timeBuckets = []float64{1e-3, 1e-2, 1e-1, 1.0, 10, 1 * 60, 1 * 60 * 60, 24 * 60 * 60, 2 * 24 * 60 * 60}

// Events wraps next (the mail log's queue.Events, or nil) so that the
// queue's events feed the families too. The wrapper calls next after
// counting, in the queue's goroutine, as next alone would be called.
func (m *Metrics) Events(next queue.Events) queue.Events {
	return &events{e: m.events, next: next}
}

type events struct {
	e    *eventMetrics
	next queue.Events
}

func (w *events) Queued(m *queue.Message) {
	w.e.queued(m)
	if w.next != nil {
		w.next.Queued(m)
	}
}

func (w *events) Delivery(m *queue.Message, rcpt int, hop envelope.Hop, o queue.Outcome, status string, delay time.Duration) {
	w.e.delivery(m, rcpt, hop, o, status)
	if w.next != nil {
		w.next.Delivery(m, rcpt, hop, o, status, delay)
	}
}

func (w *events) Removed(m *queue.Message) {
	w.e.removed(m)
	if w.next != nil {
		w.next.Removed(m)
	}
}

// eventMetrics are the families the queue's events feed.
type eventMetrics struct {
	agent func(string) string

	cleanupProcessed                 prometheus.Counter
	inNrcpt, inNrcptLegacy, inSize   prometheus.Histogram
	qmgrRemoved, qmgrExpired         prometheus.Counter
	smtpDelay, lmtpDelay, pipeDelay  *prometheus.HistogramVec
	smtpProcessed, lmtpProcessed     *prometheus.CounterVec
	smtpDeferred, smtpStatusDeferred prometheus.Counter
	smtpDeferredDSN, smtpBouncedDSN  *prometheus.CounterVec
	smtpTimedOut                     prometheus.Counter
	delay                            *prometheus.HistogramVec // mailtee_delivery_delay_seconds
	deliveries                       *prometheus.CounterVec   // mailtee_deliveries_total
	transports                       sync.Map                 // transport name → *transportMetrics
	copies                           copyTracker
	dsnMu                            sync.RWMutex
	deferredByDSN, bouncedByDSN      map[string]prometheus.Counter
}

// transportMetrics are one transport's children, resolved once: the
// delivery path must not hash label values for every recipient.
type transportMetrics struct {
	agent      string
	stages     [4]prometheus.Observer // the agent's postfix_*_delivery_delay_seconds; nil for none
	own        [4]prometheus.Observer // mailtee_delivery_delay_seconds
	processed  map[string]prometheus.Counter
	deliveries map[string][2]prometheus.Counter // by status; [0] not a copy, [1] a copy
}

func newEventMetrics(reg *prometheus.Registry, agent func(string) string) *eventMetrics {
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: "postfix", Name: name, Help: help})
	}
	e := &eventMetrics{
		agent: agent,
		cleanupProcessed: counter("cleanup_messages_processed_total",
			"Total number of messages processed by cleanup."),
		inNrcpt: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "postfix", Name: "qmgr_messages_inserted_recipients",
			Help: "Number of recipients per message inserted into the mail queues.", Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128}}),
		// kumina's misspelt name, which the fork keeps beside the right one.
		inNrcptLegacy: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "postfix", Name: "qmgr_messages_inserted_receipients",
			Help: "Legacy metric, please switch to postfix_qmgr_messages_inserted_recipients.", Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128}}),
		inSize: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "postfix", Name: "qmgr_messages_inserted_size_bytes",
			Help: "Size of messages inserted into the mail queues in bytes.", Buckets: []float64{1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9}}),
		qmgrRemoved: counter("qmgr_messages_removed_total", "Total number of messages removed from mail queues."),
		qmgrExpired: counter("qmgr_messages_expired_total", "Total number of messages expired from mail queues."),
		smtpDelay: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "postfix", Name: "smtp_delivery_delay_seconds",
			Help: "SMTP message processing time in seconds.", Buckets: timeBuckets}, []string{"stage"}),
		lmtpDelay: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "postfix", Name: "lmtp_delivery_delay_seconds",
			Help: "LMTP message processing time in seconds.", Buckets: timeBuckets}, []string{"stage"}),
		pipeDelay: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "postfix", Name: "pipe_delivery_delay_seconds",
			Help: "Pipe message processing time in seconds.", Buckets: timeBuckets}, []string{"relay", "stage"}),
		smtpProcessed: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "postfix", Name: "smtp_messages_processed_total",
			Help: "Total number of messages that have been processed by the smtp process."}, []string{"status"}),
		// Not in postfix_exporter (the Grafana dashboard 10013 asks for
		// it all the same): lmtp's outcomes, as smtp's.
		lmtpProcessed: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "postfix", Name: "lmtp_messages_processed_total",
			Help: "Total number of messages that have been processed by the lmtp process (mailtee's; not in postfix_exporter)."}, []string{"status"}),
		// The fork never increments this one ("this doesn't work!");
		// mailtee does what its help says.
		smtpDeferred: counter("smtp_deferred_messages_total", "Total number of messages that have been deferred on SMTP."),
		smtpStatusDeferred: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "postfix", Name: "smtp_status_deferred",
			Help: "Total number of messages deferred."}),
		smtpDeferredDSN: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "postfix", Name: "smtp_deferred_messages_by_dsn_total",
			Help: "Total number of messages that have been deferred on SMTP by DSN."}, []string{"dsn"}),
		smtpBouncedDSN: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "postfix", Name: "smtp_bounced_messages_by_dsn_total",
			Help: "Total number of messages that have been bounced on SMTP by DSN."}, []string{"dsn"}),
		smtpTimedOut: counter("smtp_connection_timed_out_total", "Total number of messages that have been deferred on SMTP."),
		delay: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "mailtee_delivery_delay_seconds",
			Help:    "Time of each final delivery (sent, bounced, expired) per transport, by Postfix's delays=a/b/c/d stages.",
			Buckets: timeBuckets}, []string{"transport", "stage"}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailtee_deliveries_total",
			Help: "Delivery outcomes per transport: sent, deferred, bounced, expired; copy=yes for automatic copies."},
			[]string{"transport", "status", "copy"}),
		deferredByDSN: map[string]prometheus.Counter{},
		bouncedByDSN:  map[string]prometheus.Counter{},
	}
	cleanupRejected := counter("cleanup_messages_rejected_total", "Total number of messages rejected by cleanup.")
	cleanupNotAccepted := counter("cleanup_messages_not_accepted_total", "Total number of messages not accepted by cleanup.")
	// Outgoing TLS is not reported by mailtee's smtp client yet: the
	// family is declared, with no series.
	smtpTLS := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "postfix", Name: "smtp_tls_connections_total",
		Help: "Total number of outgoing TLS connections."}, []string{"trust", "protocol", "cipher", "secret_bits", "algorithm_bits"})
	reg.MustRegister(e.cleanupProcessed, cleanupRejected, cleanupNotAccepted, e.inNrcpt, e.inNrcptLegacy, e.inSize,
		e.qmgrRemoved, e.qmgrExpired, e.smtpDelay, e.lmtpDelay, e.pipeDelay, e.smtpProcessed, e.lmtpProcessed,
		e.smtpDeferred, e.smtpStatusDeferred, e.smtpDeferredDSN, e.smtpBouncedDSN, e.smtpTimedOut, smtpTLS,
		e.delay, e.deliveries)
	e.copies.msgs = map[string]*pendingCopies{}
	return e
}

func (e *eventMetrics) forTransport(name string) *transportMetrics {
	if t, ok := e.transports.Load(name); ok {
		return t.(*transportMetrics)
	}
	t := &transportMetrics{agent: e.agent(name), processed: map[string]prometheus.Counter{},
		deliveries: map[string][2]prometheus.Counter{}}
	for k, st := range stages {
		t.own[k] = e.delay.WithLabelValues(name, st)
		switch t.agent {
		case "smtp":
			t.stages[k] = e.smtpDelay.WithLabelValues(st)
		case "lmtp":
			t.stages[k] = e.lmtpDelay.WithLabelValues(st)
		case "pipe":
			// pipe(8)'s relay= is its transport's name.
			t.stages[k] = e.pipeDelay.WithLabelValues(name, st)
		}
	}
	for _, st := range statuses {
		switch t.agent {
		case "smtp":
			t.processed[st] = e.smtpProcessed.WithLabelValues(st)
		case "lmtp":
			t.processed[st] = e.lmtpProcessed.WithLabelValues(st)
		}
		t.deliveries[st] = [2]prometheus.Counter{e.deliveries.WithLabelValues(name, st, "no"), e.deliveries.WithLabelValues(name, st, "yes")}
	}
	got, _ := e.transports.LoadOrStore(name, t)
	return got.(*transportMetrics)
}

// queued is qmgr's "from=<...>, size=N, nrcpt=N (queue active)", which
// the queue reports, as Postfix logs it, each time a message becomes
// active (at arrival, at each retry, after a restart); and cleanup's
// "message-id=" the first time, when no recipient was tried yet.
func (e *eventMetrics) queued(m *queue.Message) {
	fresh := true
	for i := range m.Rcpts {
		if r := &m.Rcpts[i]; r.Attempts > 0 || r.Status != queue.Pending {
			fresh = false
			break
		}
	}
	if fresh {
		e.cleanupProcessed.Inc()
	}
	e.inSize.Observe(float64(m.Size))
	n := float64(len(m.Rcpts))
	e.inNrcpt.Observe(n)
	e.inNrcptLegacy.Observe(n)
	for i := range m.Rcpts {
		r := &m.Rcpts[i]
		if r.Copy && r.Status == queue.Pending {
			e.copies.add(m.ID, m.Env.Arrival, r.Addr)
		}
	}
}

// delivery is a delivery agent's "to=<...>, relay=..., delays=a/b/c/d,
// dsn=X, status=Y (...)" line.
func (e *eventMetrics) delivery(m *queue.Message, i int, hop envelope.Hop, o queue.Outcome, status string) {
	name := hop.Transport
	if name == "" {
		name = "none"
	}
	t := e.forTransport(name)
	r := &m.Rcpts[i]
	if d, ok := t.deliveries[status]; ok {
		if r.Copy {
			d[1].Inc()
		} else {
			d[0].Inc()
		}
	} else {
		e.deliveries.WithLabelValues(name, status, yesNo(r.Copy)).Inc()
	}
	if p, ok := t.processed[status]; ok {
		p.Inc()
	}
	if status != "deferred" {
		// The fork leaves deferred attempts out of the delay
		// histograms: they measure deliveries, not retries.
		for k, d := range o.Delays {
			s := d.Seconds()
			t.own[k].Observe(s)
			if t.stages[k] != nil {
				t.stages[k].Observe(s)
			}
		}
	}
	if t.agent == "smtp" {
		e.smtpOutcome(o, status)
	}
	if r.Copy {
		if status == "deferred" {
			e.copies.add(m.ID, m.Env.Arrival, r.Addr)
		} else {
			e.copies.done(m.ID, r.Addr)
		}
	}
	if status == "sent" {
		for _, a := range o.Add {
			if a.Copy {
				e.copies.add(m.ID, m.Env.Arrival, a.Addr)
			}
		}
	}
}

// smtpOutcome feeds the smtp agent's families by status and DSN.
func (e *eventMetrics) smtpOutcome(o queue.Outcome, status string) {
	switch status {
	case "deferred":
		e.smtpDeferred.Inc()
		e.smtpStatusDeferred.Inc()
		e.byDSN(e.deferredByDSN, e.smtpDeferredDSN, dsnOf(o)).Inc()
		// Postfix's "connect to host[ip]:25: Connection timed out".
		if o.Err != nil {
			if s := o.Err.Error(); strings.Contains(s, "connect to ") && strings.Contains(s, "timed out") {
				e.smtpTimedOut.Inc()
			}
		}
	case "bounced":
		e.byDSN(e.bouncedByDSN, e.smtpBouncedDSN, dsnOf(o)).Inc()
	}
}

func (e *eventMetrics) byDSN(m map[string]prometheus.Counter, vec *prometheus.CounterVec, dsn string) prometheus.Counter {
	e.dsnMu.RLock()
	c, ok := m[dsn]
	e.dsnMu.RUnlock()
	if ok {
		return c
	}
	c = vec.WithLabelValues(dsn)
	e.dsnMu.Lock()
	m[dsn] = c
	e.dsnMu.Unlock()
	return c
}

// dsnOf is the dsn= of the log line.
func dsnOf(o queue.Outcome) string {
	if o.DSN != "" {
		return o.DSN
	}
	return queue.DSN(o.Err)
}

// removed is qmgr's "removed", and "status=expired, returned to sender"
// once for a message any recipient of which expired.
func (e *eventMetrics) removed(m *queue.Message) {
	e.qmgrRemoved.Inc()
	for i := range m.Rcpts {
		if m.Rcpts[i].Expired {
			e.qmgrExpired.Inc()
			break
		}
	}
	e.copies.forget(m.ID)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// copyTracker knows the copies not yet delivered (in the queue, never
// tried or deferred), per message, from the queue's events: the queue's
// listing does not say which recipients are copies, and walking it at
// each scrape would cost as much as showq again.
type copyTracker struct {
	mu   sync.Mutex
	msgs map[string]*pendingCopies
}

type pendingCopies struct {
	arrival time.Time
	addrs   map[string]struct{} // lower case: the queue folds duplicates by case
}

func (c *copyTracker) add(id string, arrival time.Time, addr string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.msgs[id]
	if p == nil {
		p = &pendingCopies{arrival: arrival, addrs: map[string]struct{}{}}
		c.msgs[id] = p
	}
	p.addrs[strings.ToLower(addr)] = struct{}{}
}

func (c *copyTracker) done(id, addr string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p := c.msgs[id]; p != nil {
		delete(p.addrs, strings.ToLower(addr))
		if len(p.addrs) == 0 {
			delete(c.msgs, id)
		}
	}
}

// forget drops a message that left the queue: whatever it still had
// pending was deleted with it.
func (c *copyTracker) forget(id string) {
	c.mu.Lock()
	delete(c.msgs, id)
	c.mu.Unlock()
}

// destStat is the pending copies of one destination domain.
type destStat struct {
	n      int
	oldest time.Time
}

// byDestination counts the pending copies per recipient domain (what
// qshape groups a queue by) with the arrival of the oldest.
func (c *copyTracker) byDestination() map[string]destStat {
	out := map[string]destStat{}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.msgs {
		for a := range p.addrs {
			d := domainOf(a)
			s := out[d]
			s.n++
			if s.oldest.IsZero() || p.arrival.Before(s.oldest) {
				s.oldest = p.arrival
			}
			out[d] = s
		}
	}
	return out
}

func domainOf(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 && i+1 < len(addr) {
		return addr[i+1:]
	}
	return addr
}
