package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/dashboard/browsertest"
	"github.com/mailtee/mailtee/internal/report"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// The dashboard's side of the ledger scenario: its JSON and the page in
// a real browser, served by the primary's listener (metrics_listen),
// must show the report's figures.

// httpGet fetches url from a listener on loopback (which needs no
// credentials) and returns the body; anything but 200 fails the test.
func httpGet(t *testing.T, url string) []byte {
	t.Helper()
	c := &http.Client{Timeout: 30 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s\n%s", url, resp.Status, b)
	}
	return b
}

// listenerUp says whether url answers with anything but 404.
func listenerUp(url string) bool {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode != http.StatusNotFound
}

// stableReport strips what legitimately differs between two reports built
// at different moments from the same ledger: when each was made and the
// ages measured from then.
func stableReport(r report.Report) report.Report {
	r.Generated = time.Time{}
	r.Summary.OldestPendingAge = 0
	r.Misses = append([]report.Miss(nil), r.Misses...)
	for i := range r.Misses {
		r.Misses[i].Age = 0
	}
	r.Dests = append([]report.Destination(nil), r.Dests...)
	for i := range r.Dests {
		r.Dests[i].OldestPendingAge = 0
	}
	return r
}

func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.MarshalIndent(v, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// checkDashboardAPI: /api/report on the primary's listener is the
// report's JSON for the same window (the dashboard covers the last 24
// hours by default, so `mailtee report --since` that time), and
// /api/overview carries its figures.
func checkDashboardAPI(t *testing.T, n *ledgerNet, base string, want *report.Report) {
	t.Helper()
	var got report.Report
	if err := json.Unmarshal(httpGet(t, base+"/api/report"), &got); err != nil {
		t.Fatalf("/api/report: %v", err)
	}
	same := want
	if !got.Since.IsZero() {
		same = reportJSON(t, n.primary, "--since", got.Since.Format(time.RFC3339Nano))
	}
	if g, w := jsonOf(t, stableReport(got)), jsonOf(t, stableReport(*same)); g != w {
		t.Errorf("/api/report differs from mailtee report --format json --since %s: %s", got.Since.Format(time.RFC3339Nano), firstDiff(g, w))
	}
	var ov struct {
		Report report.Report `json:"report"`
	}
	if err := json.Unmarshal(httpGet(t, base+"/api/overview"), &ov); err != nil {
		t.Fatalf("/api/overview: %v", err)
	}
	if ov.Report.Summary.Accepted != want.Summary.Accepted || ov.Report.Reconciliation.Delivered != want.Reconciliation.Delivered ||
		ov.Report.Reconciliation.Required != want.Reconciliation.Required || len(ov.Report.Misses) != len(want.Misses) {
		t.Errorf("/api/overview: summary %+v, reconciliation %+v, %d misses; the report's: %+v, %+v, %d",
			ov.Report.Summary, ov.Report.Reconciliation, len(ov.Report.Misses), want.Summary, want.Reconciliation, len(want.Misses))
	}
	// The per-user view: user3's messages, the copy Google refused
	// among them with its reply.
	var uv struct {
		Report report.Report `json:"report"`
	}
	if err := json.Unmarshal(httpGet(t, base+"/api/user?q="+url.QueryEscape("user3@"+seedDomain)), &uv); err != nil {
		t.Fatalf("/api/user: %v", err)
	}
	refusal := false
	for _, m := range uv.Report.Messages {
		for _, q := range m.Required {
			if q.Copy && q.State == report.Failed && strings.Contains(q.Reply, gsmtpRefusal) {
				refusal = true
			}
		}
	}
	if len(uv.Report.Messages) == 0 || !refusal {
		t.Errorf("/api/user?q=user3@%s: %d messages, the refused copy shown: %v", seedDomain, len(uv.Report.Messages), refusal)
	}
}

// checkDashboardPage opens the primary's dashboard in Chromium: no
// console error, the report's figures; then one more message arrives
// and the page shows it by itself.
func checkDashboardPage(t *testing.T, n *ledgerNet, base string, want *report.Report) {
	t.Helper()
	b := browsertest.Start(t)
	if err := b.Open(base+"/?refresh=1", time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := b.CheckFigures(want); err != nil {
		t.Error(err)
	}
	// The page refreshes by itself: a new message to user1 (a mailbox
	// and a copy) shows in the accepted figure without a reload.
	m := ledgerMsg{n: 100, to: []string{"user1@" + seedDomain}, mailboxes: []string{"user1"}, copies: []string{"user1@" + seedDomain}}
	n.send(m)
	wantAccepted := strconv.Itoa(want.Summary.Accepted + 1)
	deadline := time.Now().Add(60 * time.Second)
	for {
		figs, err := b.Figures()
		if err == nil && figs["accepted"] == wantAccepted {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the page did not update after a new message: accepted %q, want %s (%v)", figs["accepted"], wantAccepted, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if errs := b.Errors(); len(errs) != 0 {
		t.Errorf("errors in the page:\n%s", strings.Join(errs, "\n"))
	}
}

// metricFamilies scrapes url (a /metrics) and parses it as Prometheus
// does.
func metricFamilies(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(httpGet(t, url)))
	if err != nil {
		t.Fatalf("%s: %v", url, err)
	}
	return fams
}

// metricSum adds up the series of family name whose labels include
// labels; ok is false when the family is not exported at all.
func metricSum(fams map[string]*dto.MetricFamily, name string, labels map[string]string) (sum float64, ok bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
	for _, m := range f.GetMetric() {
		match := true
		for k, v := range labels {
			found := false
			for _, lp := range m.GetLabel() {
				if lp.GetName() == k && lp.GetValue() == v {
					found = true
				}
			}
			match = match && found
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			sum += m.GetCounter().GetValue()
		case m.Gauge != nil:
			sum += m.GetGauge().GetValue()
		case m.Untyped != nil:
			sum += m.GetUntyped().GetValue()
		}
	}
	return sum, true
}

// checkMetrics: /metrics on the primary and on the relay say what the
// report and the sinks say. The primary's reconciliation figures are the
// report's; its delivery counters count each local delivery and each
// copy handed to the relay once (deferrals while the relay was down
// apart); the relay's count each copy it gave Google, and the refusal.
func checkMetrics(t *testing.T, n *ledgerNet, msgs []ledgerMsg, pbase, rbase string, r *report.Report) {
	t.Helper()
	p := metricFamilies(t, pbase+"/metrics")
	rc := r.Reconciliation
	// The counters count the queue's recipients: local(8) delivers an
	// alias's mailboxes in one delivery, and a duplicate recipient is
	// one more ("delivered once"). Every recipient of the scenario is
	// local to the primary.
	local := 0
	for _, m := range msgs {
		local += len(m.to)
	}
	copies := r.Summary.Copies.Delivered + r.Summary.Copies.Failed
	want := []struct {
		name   string
		labels map[string]string
		value  float64
	}{
		{"mailtee_reconciliation_required", nil, float64(rc.Required)},
		{"mailtee_reconciliation_delivered", nil, float64(rc.Delivered)},
		{"mailtee_reconciliation_pending", nil, float64(r.Summary.Deliveries.Pending)},
		{"mailtee_reconciliation_failed", nil, float64(r.Summary.Deliveries.Failed)},
		{"mailtee_reconciliation_missing", nil, float64(rc.Required - rc.Delivered)},
		{"mailtee_reconciliation_ratio", nil, rc.Ratio},
		{"mailtee_deliveries_total", map[string]string{"transport": "local", "status": "sent"}, float64(local)},
		{"mailtee_deliveries_total", map[string]string{"status": "sent", "copy": "yes"}, float64(copies)},
		{"mailtee_deliveries_total", map[string]string{"status": "bounced"}, 0},
		{"mailtee_copies_pending", nil, 0},
	}
	for _, w := range want {
		got, ok := metricSum(p, w.name, w.labels)
		if !ok && w.value != 0 {
			t.Errorf("primary /metrics: no %s", w.name)
			continue
		}
		if got != w.value {
			t.Errorf("primary /metrics: %s%s = %v, the report's %v", w.name, labelText(w.labels), got, w.value)
		}
	}
	// The relay was down at first: the copies were deferred, which the
	// counters keep.
	if got, _ := metricSum(p, "mailtee_deliveries_total", map[string]string{"status": "deferred", "copy": "yes"}); got == 0 && copies > 0 {
		t.Errorf("primary /metrics: no deferred copy counted, yet the relay was down when they were first tried")
	}

	rl := metricFamilies(t, rbase+"/metrics")
	gmsgs := n.google.Messages()
	notices := 0
	for _, m := range gmsgs {
		if m.From == "" {
			notices++ // the relay's postmaster notice for the refused copy
		}
	}
	if len(gmsgs)-notices != r.Summary.Copies.Delivered {
		t.Errorf("Google has %d copies, the report says %d delivered", len(gmsgs)-notices, r.Summary.Copies.Delivered)
	}
	for _, w := range []struct {
		name   string
		labels map[string]string
		value  float64
	}{
		// Each transaction at Google is one smtp delivery of the relay.
		{"mailtee_deliveries_total", map[string]string{"transport": "smtp", "status": "sent"}, float64(len(gmsgs))},
		{"mailtee_deliveries_total", map[string]string{"transport": "smtp", "status": "bounced"}, float64(r.Summary.Copies.Failed)},
		// The relay's own reconciliation: every copy it accepted is a
		// required delivery there, to Google.
		{"mailtee_reconciliation_required", nil, float64(copies)},
		{"mailtee_reconciliation_delivered", nil, float64(r.Summary.Copies.Delivered)},
		{"mailtee_reconciliation_failed", nil, float64(r.Summary.Copies.Failed)},
	} {
		got, ok := metricSum(rl, w.name, w.labels)
		if !ok && w.value != 0 {
			t.Errorf("relay /metrics: no %s", w.name)
			continue
		}
		if got != w.value {
			t.Errorf("relay /metrics: %s%s = %v, want %v (the report's and Google's)", w.name, labelText(w.labels), got, w.value)
		}
	}
}

// labelText writes labels as a selector, {a="x",b="y"}, for messages.
func labelText(labels map[string]string) string {
	if len(labels) == 0 {
		return ""
	}
	var parts []string
	for k, v := range labels {
		parts = append(parts, fmt.Sprintf("%s=%q", k, v))
	}
	slices.Sort(parts)
	return "{" + strings.Join(parts, ",") + "}"
}

// firstDiff shows where two texts first differ, with a few lines of
// context from each.
func firstDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	i := 0
	for i < len(al) && i < len(bl) && al[i] == bl[i] {
		i++
	}
	from := max(0, i-3)
	return fmt.Sprintf("at line %d\n/api/report:\n%s\nmailtee report:\n%s", i+1,
		strings.Join(al[from:min(len(al), i+4)], "\n"), strings.Join(bl[from:min(len(bl), i+4)], "\n"))
}
