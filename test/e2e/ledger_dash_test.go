package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/dashboard/browsertest"
	"github.com/mailtee/mailtee/internal/report"
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

// listenerUp says whether in's HTTP listener answers at all; while the
// web listener is not wired in serve, nothing listens.
func listenerUp(url string) bool {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode != http.StatusNotFound
}

// comparable strips what legitimately differs between two reports built
// at different moments from the same ledger: when each was made and the
// ages measured from then.
func comparable(r report.Report) report.Report {
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
// report's JSON, and /api/overview carries its figures.
func checkDashboardAPI(t *testing.T, base string, want *report.Report) {
	t.Helper()
	var got report.Report
	if err := json.Unmarshal(httpGet(t, base+"/api/report"), &got); err != nil {
		t.Fatalf("/api/report: %v", err)
	}
	if g, w := jsonOf(t, comparable(got)), jsonOf(t, comparable(*want)); g != w {
		t.Errorf("/api/report differs from mailtee report --format json:\n/api/report: %s\nreport: %s", g, w)
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

// pageFigures are the figures the page shows (data-figure), as the report
// has them; ratio as the page writes it (one decimal, never 100.0% while
// a delivery is missing).
func pageFigures(r *report.Report) map[string]string {
	rc, s := r.Reconciliation, r.Summary
	p := float64(int(rc.Ratio*1000)) / 10
	if rc.Delivered == rc.Required {
		p = 100
	}
	itoa := strconv.Itoa
	return map[string]string{
		"ratio":              fmt.Sprintf("%.1f%%", p),
		"delivered":          itoa(rc.Delivered),
		"required":           itoa(rc.Required),
		"misses":             itoa(rc.Required - rc.Delivered),
		"accepted":           itoa(s.Accepted),
		"deliveries-pending": itoa(s.Deliveries.Pending),
		"deliveries-failed":  itoa(s.Deliveries.Failed),
		"messages-delivered": itoa(s.Messages.Delivered),
		"messages-pending":   itoa(s.Messages.Pending),
		"messages-failed":    itoa(s.Messages.Failed),
		"copies-delivered":   itoa(s.Copies.Delivered),
		"copies-pending":     itoa(s.Copies.Pending),
		"copies-failed":      itoa(s.Copies.Failed),
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
	figs, err := b.Figures()
	if err != nil {
		t.Fatal(err)
	}
	for name, w := range pageFigures(want) {
		if figs[name] != w {
			t.Errorf("the page shows %s = %q, the report %q", name, figs[name], w)
		}
	}
	// The page refreshes by itself: a new message to user1 (a mailbox
	// and a copy) shows in the accepted figure without a reload.
	m := ledgerMsg{n: 100, to: []string{"user1@" + seedDomain}, mailboxes: []string{"user1"}, copies: []string{"user1@" + seedDomain}}
	n.send(m)
	wantAccepted := strconv.Itoa(want.Summary.Accepted + 1)
	deadline := time.Now().Add(60 * time.Second)
	for {
		figs, err = b.Figures()
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

// checkMetrics: /metrics on the primary and the relay carry the report's
// reconciliation figures and delivery counters. It returns what is
// missing for the check ("" when it ran).
func checkMetrics(t *testing.T, pbase, rbase string, r *report.Report) string {
	t.Helper()
	return "the mailtee_* reconciliation metrics (helper D's branch metrics) are not in this tree"
}
