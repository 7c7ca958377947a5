package report

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mailtee/mailtee/internal/ledger"
	"github.com/mailtee/mailtee/internal/queue"
)

// StatusWindow is how far back `mailtee status` reads the ledger for
// its throughput, copies and reconciliation figure.
const StatusWindow = 24 * time.Hour

// Status is `mailtee status`: one terminal screen.
type Status struct {
	Generated time.Time `json:"generated"`
	Running   bool      `json:"running"`
	// The queue, now.
	Messages   int         `json:"messages"`
	Rcpts      int         `json:"rcpts"` // not yet final
	Held       int         `json:"held"`
	QueueDests []QueueDest `json:"queue_destinations"`
	// Deliveries sent in the last 1, 5 and 15 minutes (the ledger's).
	Sent1, Sent5, Sent15 int `json:"-"`
	// Copies and reconciliation over the last StatusWindow, from this
	// host's ledger only (mailtee report follows the peers).
	Ledger bool    `json:"ledger"` // false: no ledger to read
	Report *Report `json:"-"`
}

// QueueDest is the queue's recipients for one destination by the age
// of their message.
type QueueDest struct {
	Name     string    `json:"name"`
	Rcpts    int       `json:"rcpts"`
	Deferred int       `json:"deferred"`
	Ages     [4]int    `json:"ages"` // <5m, <1h, <1d, older
	Oldest   time.Time `json:"oldest"`
	Reason   string    `json:"reason,omitempty"` // the oldest deferred recipient's
}

// AgeLabels name QueueDest.Ages.
var AgeLabels = [4]string{"<5m", "<1h", "<1d", ">=1d"}

// BuildStatus summarises the queue list and, when l is not nil, the
// ledger's last StatusWindow.
func BuildStatus(ctx context.Context, list []queue.Info, l ledger.Reader, now time.Time) (*Status, error) {
	s := &Status{Generated: now}
	dests := map[string]*QueueDest{}
	for _, m := range list {
		s.Messages++
		if m.Hold {
			s.Held++
		}
		a := now.Sub(m.Arrival)
		bucket := 3
		switch {
		case a < 5*time.Minute:
			bucket = 0
		case a < time.Hour:
			bucket = 1
		case a < 24*time.Hour:
			bucket = 2
		}
		for _, r := range m.Rcpts {
			if r.Status != "pending" && r.Status != "deferred" {
				continue
			}
			s.Rcpts++
			name := domainOf(r.Addr)
			d := dests[name]
			if d == nil {
				d = &QueueDest{Name: name}
				dests[name] = d
			}
			d.Rcpts++
			d.Ages[bucket]++
			if r.Status == "deferred" {
				d.Deferred++
			}
			if d.Oldest.IsZero() || m.Arrival.Before(d.Oldest) {
				d.Oldest = m.Arrival
				if r.Reason != "" {
					d.Reason = r.Reason
				}
			}
		}
	}
	for _, d := range dests {
		s.QueueDests = append(s.QueueDests, *d)
	}
	slices.SortFunc(s.QueueDests, func(a, b QueueDest) int {
		if a.Rcpts != b.Rcpts {
			return b.Rcpts - a.Rcpts
		}
		return strings.Compare(a.Name, b.Name)
	})
	if l == nil {
		return s, nil
	}
	s.Ledger = true
	since := now.Add(-StatusWindow)
	msgs, err := l.Messages(ctx, ledger.Filter{Since: since})
	if err != nil {
		return nil, fmt.Errorf("reading the ledger: %w", err)
	}
	for _, m := range msgs {
		for _, d := range m.Deliveries {
			if d.Status != ledger.Sent || d.At.IsZero() || d.At.After(now) {
				continue
			}
			switch ago := now.Sub(d.At); {
			case ago <= time.Minute:
				s.Sent1++
				fallthrough
			case ago <= 5*time.Minute:
				s.Sent5++
				fallthrough
			case ago <= 15*time.Minute:
				s.Sent15++
			}
		}
	}
	s.Report, err = buildFrom(ctx, Sources{Local: l}, ledger.Filter{Since: since}, now, msgs, true)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// WriteStatus writes s for a terminal.
func WriteStatus(w io.Writer, s *Status) error {
	ew := &errWriter{w: w}
	p := func(format string, a ...any) { fmt.Fprintf(ew, format, a...) }
	state := "stopped (read from the spool)"
	if s.Running {
		state = "running"
	}
	p("mailtee status at %s: server %s\n\n", stamp(s.Generated), state)
	p("queue: %d messages, %d recipients to deliver, %d held\n", s.Messages, s.Rcpts, s.Held)
	if len(s.QueueDests) > 0 {
		tw := tabwriter.NewWriter(ew, 2, 8, 2, ' ', 0)
		fmt.Fprintf(tw, "  destination\trcpts\tdeferred\t%s\t%s\t%s\t%s\toldest\tlast reason\n", AgeLabels[0], AgeLabels[1], AgeLabels[2], AgeLabels[3])
		for i, d := range s.QueueDests {
			if i == 15 {
				fmt.Fprintf(tw, "  (%d more destinations)\n", len(s.QueueDests)-i)
				break
			}
			fmt.Fprintf(tw, "  %s\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\n", d.Name, d.Rcpts, d.Deferred, d.Ages[0], d.Ages[1], d.Ages[2], d.Ages[3],
				Age(s.Generated.Sub(d.Oldest).Seconds()), clip(d.Reason, 60))
		}
		tw.Flush()
	}
	if !s.Ledger {
		p("\nno ledger (ledger_database is empty): no throughput, copies or reconciliation figure\n")
		return ew.err
	}
	p("\nsent in the last minute: %d, 5 minutes: %d (%.1f/min), 15 minutes: %d (%.1f/min)\n",
		s.Sent1, s.Sent5, float64(s.Sent5)/5, s.Sent15, float64(s.Sent15)/15)
	r := s.Report
	window := strings.TrimSuffix(StatusWindow.String(), "0m0s")
	c := r.Summary.Copies
	p("copies, last %s: %d delivered, %d pending, %d failed\n", window, c.Delivered, c.Pending, c.Failed)
	rc := r.Reconciliation
	p("reconciliation, last %s on this host: %s (%d of %d required deliveries)", window, Percent(rc), rc.Delivered, rc.Required)
	if !rc.Complete {
		p(", INCOMPLETE (%d gaps)", len(r.Gaps))
	}
	p("\n")
	if n := len(r.Misses); n > 0 {
		p("\nmisses (mailtee report for all of them, followed through the peers):\n")
		for i := n - 1; i >= 0 && i >= n-5; i-- {
			m := r.Misses[i]
			p("  %s %s to=<%s>%s %s: %s\n", m.QueueID, Age(m.Age), m.Rcpt, kind(m.Required), m.State, clip(orNone(m.Reply), 80))
		}
	}
	return ew.err
}
