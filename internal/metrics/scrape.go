package metrics

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mailtee/mailtee/internal/queue"
)

// showq's queues, as postfix_exporter's fork always lists them (a
// queue with nothing in it is exported at 0).
var showqQueues = []string{"active", "deferred", "hold", "incoming", "maildrop"}

var (
	sizeBuckets = []float64{1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9}
	ageBuckets  = []float64{1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8}
)

var (
	descUp = prometheus.NewDesc("postfix_up", "Whether scraping Postfix's metrics was successful.", []string{"path"}, nil)

	descDepth = prometheus.NewDesc("postfix_showq_queue_depth", "Number of messages in Postfix's message queue", []string{"queue"}, nil)
	descSize  = prometheus.NewDesc("postfix_showq_message_size_bytes", "Size of messages in Postfix's message queue, in bytes", []string{"queue"}, nil)
	descAge   = prometheus.NewDesc("postfix_showq_message_age_seconds", "Age of messages in Postfix's message queue, in seconds", []string{"queue"}, nil)

	descCopies = prometheus.NewDesc("mailtee_copies_pending",
		"Automatic copies not delivered yet (never tried or deferred), per recipient domain.", []string{"destination"}, nil)
	descCopyAge = prometheus.NewDesc("mailtee_copy_oldest_pending_seconds",
		"Age of the oldest message with a copy not delivered yet, per recipient domain.", []string{"destination"}, nil)

	descLedgerWaiting = prometheus.NewDesc("mailtee_ledger_waiting", "Ledger events not written yet.", nil, nil)
	descLedgerLag     = prometheus.NewDesc("mailtee_ledger_lag_seconds",
		"Age of the oldest ledger event not written yet (0 when none waits).", nil, nil)
	descLedgerCommit = prometheus.NewDesc("mailtee_ledger_last_commit_timestamp_seconds",
		"When the ledger last wrote a batch (Unix time; 0: never).", nil, nil)
	descLedgerFailures = prometheus.NewDesc("mailtee_ledger_failures_total", "Ledger batches that could not be written.", nil, nil)
	descLedgerLost     = prometheus.NewDesc("mailtee_ledger_lost_total",
		"Messages whose final state the ledger could not write (reported as gaps).", nil, nil)
	descLedgerHeld = prometheus.NewDesc("mailtee_ledger_held_messages",
		"Messages whose records wait in the queue directory for a ledger database that does not answer (written when it does).", nil, nil)

	descRequired  = prometheus.NewDesc("mailtee_reconciliation_required", "Required deliveries in the report (every mailbox and copy).", nil, nil)
	descDelivered = prometheus.NewDesc("mailtee_reconciliation_delivered", "Required deliveries delivered.", nil, nil)
	descPending   = prometheus.NewDesc("mailtee_reconciliation_pending", "Required deliveries still in a queue.", nil, nil)
	descFailed    = prometheus.NewDesc("mailtee_reconciliation_failed", "Required deliveries bounced, expired or deleted.", nil, nil)
	descMissing   = prometheus.NewDesc("mailtee_reconciliation_missing",
		"The reconciliation gap: required deliveries not delivered (pending or failed).", nil, nil)
	descRatio = prometheus.NewDesc("mailtee_reconciliation_ratio",
		"Delivered required deliveries over all required deliveries (1 when there are none).", nil, nil)
	descComplete = prometheus.NewDesc("mailtee_reconciliation_complete",
		"0 when a ledger gap or an unreachable peer means the reconciliation may miss deliveries.", nil, nil)

	descSourceUp = prometheus.NewDesc("mailtee_metrics_source_up",
		"Whether the last scrape could read the source (reconciliation).", []string{"source"}, nil)
)

// scrape is the collector of what is read at scrape time.
type scrape struct {
	m   *Metrics
	mu  sync.Mutex // scrapes at once share buf in turn
	buf []queue.Shape
}

func (s *scrape) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descUp, descDepth, descSize, descAge, descCopies, descCopyAge,
		descLedgerWaiting, descLedgerLag, descLedgerCommit, descLedgerFailures, descLedgerLost, descLedgerHeld,
		descRequired, descDelivered, descPending, descFailed, descMissing, descRatio, descComplete, descSourceUp} {
		ch <- d
	}
}

func (s *scrape) Collect(ch chan<- prometheus.Metric) {
	m := s.m
	now := m.o.Now()
	if m.o.Queue != nil {
		s.mu.Lock()
		s.buf = m.o.Queue(s.buf[:0])
		collectShowq(ch, s.buf, now)
		if cap(s.buf) > 4*len(s.buf)+1024 {
			s.buf = nil // the queue shrank: give the memory back
		}
		s.mu.Unlock()
		// The queue answered: mailtee's postfix_up, as the exporter's
		// is 1 when showq answers.
		ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, 1, m.o.QueuePath)
	}
	for dest, st := range m.events.copies.byDestination() {
		ch <- prometheus.MustNewConstMetric(descCopies, prometheus.GaugeValue, float64(st.n), dest)
		ch <- prometheus.MustNewConstMetric(descCopyAge, prometheus.GaugeValue, max(now.Sub(st.oldest).Seconds(), 0), dest)
	}
	if m.o.Ledger != nil {
		st := m.o.Ledger()
		lag, commit := 0.0, 0.0
		if !st.Oldest.IsZero() {
			lag = max(now.Sub(st.Oldest).Seconds(), 0)
		}
		if !st.LastCommit.IsZero() {
			commit = float64(st.LastCommit.UnixNano()) / 1e9
		}
		ch <- prometheus.MustNewConstMetric(descLedgerWaiting, prometheus.GaugeValue, float64(st.Waiting))
		ch <- prometheus.MustNewConstMetric(descLedgerLag, prometheus.GaugeValue, lag)
		ch <- prometheus.MustNewConstMetric(descLedgerCommit, prometheus.GaugeValue, commit)
		ch <- prometheus.MustNewConstMetric(descLedgerFailures, prometheus.CounterValue, float64(st.Failures))
		ch <- prometheus.MustNewConstMetric(descLedgerLost, prometheus.CounterValue, float64(st.Lost))
		ch <- prometheus.MustNewConstMetric(descLedgerHeld, prometheus.GaugeValue, float64(st.Held))
	}
	if m.o.Reconcile != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		r, err := m.reconcile(ctx)
		cancel()
		up := 1.0
		if err != nil {
			up = 0
		} else {
			ratio, complete := 1.0, 1.0
			if r.Required > 0 {
				ratio = float64(r.Delivered) / float64(r.Required)
			}
			if r.Incomplete {
				complete = 0
			}
			for _, v := range []struct {
				d *prometheus.Desc
				n float64
			}{{descRequired, float64(r.Required)}, {descDelivered, float64(r.Delivered)}, {descPending, float64(r.Pending)},
				{descFailed, float64(r.Failed)}, {descMissing, float64(r.Required - r.Delivered)}, {descRatio, ratio},
				{descComplete, complete}} {
				ch <- prometheus.MustNewConstMetric(v.d, prometheus.GaugeValue, v.n)
			}
		}
		ch <- prometheus.MustNewConstMetric(descSourceUp, prometheus.GaugeValue, up, "reconciliation")
	}
}

// showqName is the Postfix queue a message would be in: hold; active
// while a delivery pass has it; deferred once a recipient was tried and
// deferred; incoming until then (waiting for the queue manager).
func showqName(in *queue.Shape) int {
	switch {
	case in.Hold:
		return 2
	case in.Active:
		return 0
	case in.Deferred:
		return 1
	}
	return 3
}

// hist accumulates one histogram's observations for a const metric.
type hist struct {
	n      uint64
	sum    float64
	counts []uint64 // per bucket, not cumulative
}

func (h *hist) observe(bounds []float64, v float64) {
	if h.counts == nil {
		h.counts = make([]uint64, len(bounds))
	}
	h.n++
	h.sum += v
	if i := sort.SearchFloat64s(bounds, v); i < len(bounds) {
		h.counts[i]++
	}
}

func (h *hist) metric(d *prometheus.Desc, bounds []float64, label string) prometheus.Metric {
	b := make(map[float64]uint64, len(bounds))
	var c uint64
	for i, ub := range bounds {
		if h.counts != nil {
			c += h.counts[i]
		}
		b[ub] = c
	}
	return prometheus.MustNewConstHistogram(d, h.n, h.sum, b, label)
}

// collectShowq walks the queue as postfix_exporter reads showq: the
// depth of each queue and histograms of its messages' sizes and ages,
// made afresh at each scrape.
func collectShowq(ch chan<- prometheus.Metric, msgs []queue.Shape, now time.Time) {
	var depth [5]float64
	var size, age [5]hist
	for k := range msgs {
		in := &msgs[k]
		q := showqName(in)
		depth[q]++
		size[q].observe(sizeBuckets, float64(in.Size))
		age[q].observe(ageBuckets, max(now.Sub(in.Arrival).Seconds(), 0))
	}
	for i, name := range showqQueues {
		ch <- prometheus.MustNewConstMetric(descDepth, prometheus.GaugeValue, depth[i], name)
		ch <- size[i].metric(descSize, sizeBuckets, name)
		ch <- age[i].metric(descAge, ageBuckets, name)
	}
}
