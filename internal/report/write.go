package report

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteJSON writes r as indented JSON.
func WriteJSON(w io.Writer, r *Report) error {
	e := json.NewEncoder(w)
	e.SetIndent("", "  ")
	return e.Encode(r)
}

// CSVHeader is the header row of WriteCSV.
var CSVHeader = []string{"node", "queue_id", "message_id", "arrival", "from", "rcpt", "via", "forward", "copy",
	"destination", "state", "status", "at", "relay", "dsn", "reply", "attempts", "chain", "note"}

// WriteCSV writes one row per required delivery.
func WriteCSV(w io.Writer, r *Report) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(CSVHeader); err != nil {
		return err
	}
	for _, m := range r.Messages {
		for _, q := range m.Required {
			if err := cw.Write([]string{m.Node, m.ID, m.MessageID, stamp(m.Arrival), m.From, q.Rcpt, q.Via, q.Forward,
				strconv.FormatBool(q.Copy), q.Destination, string(q.State), string(q.Status), stamp(q.At), q.Relay, q.DSN,
				q.Reply, strconv.Itoa(q.Attempts), chainText(q.Chain), q.Note}); err != nil {
				return err
			}
		}
	}
	cw.Flush()
	return cw.Error()
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// chainText is "node QUEUEID rcpt > node QUEUEID rcpt ...".
func chainText(hs []Hop) string {
	var b strings.Builder
	for i, h := range hs {
		if i > 0 {
			b.WriteString(" > ")
		}
		fmt.Fprintf(&b, "%s %s %s", h.Node, h.QueueID, h.Rcpt)
	}
	return b.String()
}

// Age formats a duration in seconds as Postfix's qshape does not, but
// as an administrator reads it: 45s, 12m, 3h5m, 2d4h.
func Age(sec float64) string {
	d := time.Duration(sec * float64(time.Second))
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh%dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd%dh", int(d.Hours())/24, int(d.Hours())%24)
}

// Percent is the reconciliation figure as text: "99.75%", never "100%"
// while anything is missing.
func Percent(rc Reconciliation) string {
	if rc.Required > 0 && rc.Delivered < rc.Required {
		p := 100 * rc.Ratio
		if p > 99.99 {
			p = 99.99
		}
		return fmt.Sprintf("%.2f%%", p)
	}
	return "100%"
}

// WriteText writes the summary, each miss with its reply, the
// destinations, and per message each required delivery in the shape of
// a Postfix log line.
func WriteText(w io.Writer, r *Report) error {
	ew := &errWriter{w: w}
	p := func(format string, a ...any) { fmt.Fprintf(ew, format, a...) }
	p("mailtee report at %s", stamp(r.Generated))
	if !r.Since.IsZero() {
		p(", arrivals since %s", stamp(r.Since))
	}
	if !r.Until.IsZero() {
		p(", until %s", stamp(r.Until))
	}
	if r.User != "" {
		p(", user %s", r.User)
	}
	p("\n\n")
	s := r.Summary
	p("messages accepted:    %d (%d fully delivered, %d pending, %d failed)\n", s.Accepted, s.Messages.Delivered, s.Messages.Pending, s.Messages.Failed)
	p("required deliveries:  %d (%d delivered, %d pending, %d failed)\n", s.Deliveries.Total(), s.Deliveries.Delivered, s.Deliveries.Pending, s.Deliveries.Failed)
	p("  of which copies:    %d (%d delivered, %d pending, %d failed)\n", s.Copies.Total(), s.Copies.Delivered, s.Copies.Pending, s.Copies.Failed)
	if s.Notices > 0 {
		p("notices sent:         %d (bounces and delay warnings; not required deliveries)\n", s.Notices)
	}
	if !s.OldestPending.IsZero() {
		p("oldest pending:       %s (arrived %s)\n", Age(s.OldestPendingAge), stamp(s.OldestPending))
	}
	rc := r.Reconciliation
	p("reconciliation:       %s (%d of %d required deliveries delivered)\n", Percent(rc), rc.Delivered, rc.Required)
	if !rc.Complete {
		p("  INCOMPLETE: the figure may miss deliveries:\n")
		for _, why := range rc.Incomplete {
			p("    %s\n", why)
		}
	}
	if len(r.Misses) > 0 {
		p("\nmisses (%d):\n", len(r.Misses))
		for _, m := range r.Misses {
			what := string(m.State)
			if m.State == Pending {
				what = "pending " + Age(m.Age)
			} else if m.Status != "" {
				what = string(m.Status)
			}
			p("  %s %s: to=<%s>%s, %s (%s)\n", m.Node, m.QueueID, m.Rcpt, kind(m.Required), what, orNone(m.Reply))
			if len(m.Chain) > 1 {
				p("    path: %s\n", chainText(m.Chain))
			}
			if m.Note != "" {
				p("    %s\n", m.Note)
			}
		}
	}
	if len(r.Dests) > 0 {
		p("\nby destination (the recipient's domain; a copy's is its copy address's):\n")
		tw := tabwriter.NewWriter(ew, 2, 8, 2, ' ', 0)
		fmt.Fprintf(tw, "  destination\tdelivered\tpending\tfailed\tcopies d/p/f\toldest pending\n")
		for _, d := range r.Dests {
			old := "-"
			if !d.OldestPending.IsZero() {
				old = Age(d.OldestPendingAge)
			}
			fmt.Fprintf(tw, "  %s\t%d\t%d\t%d\t%d/%d/%d\t%s\n", d.Name, d.All.Delivered, d.All.Pending, d.All.Failed,
				d.Copies.Delivered, d.Copies.Pending, d.Copies.Failed, old)
		}
		tw.Flush()
	}
	if len(r.Deferrals) > 0 {
		p("\ntop deferral reasons:\n")
		for _, d := range r.Deferrals {
			p("  %5d  %s: %s\n", d.Count, d.Destination, d.Reply)
		}
	}
	for _, ps := range r.Peers {
		if ps.Errors > 0 {
			p("\npeer %s: %d deliveries followed, %d errors; the last: %s\n", ps.URL, ps.Followed, ps.Errors, ps.Error)
		}
	}
	if len(r.Messages) > 0 {
		p("\nmessages:\n")
	}
	for _, m := range r.Messages {
		p("%s %s: from=<%s>, message-id=%s, size=%d, client=%s, state=%s\n", logStamp(m.Arrival), m.ID, m.From, orNone(m.MessageID), m.Size, m.Client, m.State)
		for _, q := range m.Required {
			p("%s %s: to=<%s>%s, relay=%s", logStamp(q.At), m.ID, q.Rcpt, viaText(q), orNone(q.Relay))
			if q.DSN != "" {
				p(", dsn=%s", q.DSN)
			}
			p(", status=%s (%s)", orNone(string(q.Status)), orNone(q.Reply))
			if k := kind(q); k != "" {
				p("%s", k)
			}
			p("\n")
			if len(q.Chain) > 1 {
				p("    path: %s\n", chainText(q.Chain))
			}
			if q.Note != "" {
				p("    %s\n", q.Note)
			}
		}
		for _, n := range m.Notices {
			p("    notice %s: to=<%s>, status=%s (not a required delivery)\n", n.QueueID, n.Rcpt, n.Status)
		}
	}
	return ew.err
}

func kind(q Required) string {
	if q.Copy {
		return " [copy]"
	}
	return ""
}

func viaText(q Required) string {
	if q.Via != "" {
		return fmt.Sprintf(", orig_to=<%s>, forward=%s", q.Via, q.Forward)
	}
	return ""
}

// logStamp is a syslog timestamp with the year, which a report may span.
func logStamp(t time.Time) string {
	if t.IsZero() {
		return "                    "
	}
	return t.UTC().Format("2006 Jan _2 15:04:05")
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(p)
	e.err = err
	return n, err
}
