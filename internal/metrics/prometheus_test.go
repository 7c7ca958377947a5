package metrics

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// promResult is the answer of Prometheus's /api/v1/query.
type promResult struct {
	Status string `json:"status"`
	Error  string `json:"error"`
	Data   struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		} `json:"result"`
	} `json:"data"`
}

func promQuery(t *testing.T, base, expr string) promResult {
	t.Helper()
	resp, err := http.Get(base + "/api/v1/query?query=" + url.QueryEscape(expr))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r promResult
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatalf("query %s: %v", expr, err)
	}
	if r.Status != "success" {
		t.Fatalf("query %s: %s", expr, r.Error)
	}
	return r
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// TestGrafanaDashboard10013InPrometheus has a real Prometheus (Debian's
// prometheus package) scrape mailtee's /metrics while mail flows, and
// runs every query of the dashboard as Grafana would, $instance matching
// any instance: each must return data, grouped by the labels it groups
// by, except the two families mailtee has nothing to count in (notFed).
func TestGrafanaDashboard10013InPrometheus(t *testing.T) {
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Skip("prometheus is not installed (apt-get install prometheus)")
	}
	qs := readDashboard(t, "testdata/grafana-10013.tsv")
	s := startServer(t)
	dir := t.TempDir()
	target := strings.TrimSuffix(strings.TrimPrefix(s.metricsURL, "http://"), "/metrics")
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: mailtee
    static_configs:
      - targets: ['%s']
`, target)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	listen := freePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+listen, "--log.level=warn")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		cmd.Wait()
	})
	base := "http://" + listen

	// Scrapes before and after the traffic, so that rates see it.
	waitScrapes := func(n int) {
		t.Helper()
		deadline := time.Now().Add(90 * time.Second)
		for {
			if r, err := http.Get(base + "/api/v1/query?query=" + url.QueryEscape(fmt.Sprintf("count_over_time(up[5m]) >= %d", n))); err == nil {
				var pr promResult
				json.NewDecoder(r.Body).Decode(&pr)
				r.Body.Close()
				if len(pr.Data.Result) > 0 {
					return
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("Prometheus did not scrape %d times in 90s; its log:\n%s", n, stderr.String())
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	scraped := func() int {
		var n int
		fmt.Sscan(promQuery(t, base, "count_over_time(up[5m])").Data.Result[0].Value[1].(string), &n)
		return n
	}
	waitScrapes(2)
	runTraffic(t, s)
	waitScrapes(scraped() + 2)
	// A series is born with its first count, which no rate sees: more
	// of the same, now that every series exists.
	send(t, s.smtpAddr, true, "c@client.test", "ok4@sink.example", "x@elsewhere.example")
	send(t, s.smtpAddr, false, "d@client.test", "v@lmtp.example")
	s.waitFor(t, "the second round counted", func(ss samples) bool {
		v := func(name string, l ...string) float64 { x, _ := ss.find(name, l...); return x }
		return v("postfix_smtp_messages_processed_total", "status=sent") >= 3 &&
			v("postfix_lmtp_messages_processed_total", "status=sent") >= 2
	})
	waitScrapes(scraped() + 2)

	if r := promQuery(t, base, `up{job="mailtee"}`); len(r.Data.Result) != 1 || r.Data.Result[0].Value[1] != "1" {
		t.Fatalf("target not up: %+v", r.Data.Result)
	}
	for _, q := range qs {
		expr := strings.ReplaceAll(q.expr, "$instance", ".+")
		if strings.HasPrefix(expr, "label_values(") {
			// A template variable: the label's values on the metric.
			metric, label, _ := strings.Cut(strings.TrimSuffix(strings.TrimPrefix(expr, "label_values("), ")"), ",")
			r := promQuery(t, base, metric)
			if len(r.Data.Result) == 0 || r.Data.Result[0].Metric[strings.TrimSpace(label)] == "" {
				t.Errorf("%s: %s gives no value of %s", q.where, metric, label)
			}
			continue
		}
		r := promQuery(t, base, expr)
		var idle string
		for _, m := range q.metrics {
			if why, ok := notFed[m]; ok {
				idle = why
			}
		}
		if idle != "" {
			if len(r.Data.Result) != 0 {
				t.Errorf("%s: data where none was expected (%s): %v", q.where, idle, r.Data.Result)
			}
			continue
		}
		if len(r.Data.Result) == 0 {
			t.Errorf("%s: no data for %s", q.where, expr)
			continue
		}
		_, labels := parsePromQL(q.expr, "")
		for _, l := range labels {
			for _, series := range r.Data.Result {
				if series.Metric[l] == "" {
					t.Errorf("%s: a series without %s: %v (%s)", q.where, l, series.Metric, expr)
				}
			}
		}
	}
	// The traffic shows in the rates: the panels do not draw zero.
	for _, expr := range []string{
		`rate(postfix_smtpd_connects_total[5m])`,
		`rate(postfix_smtp_delivery_delay_seconds_count{stage="transmission"}[5m])`,
		`rate(postfix_lmtp_messages_processed_total{status="sent"}[5m])`,
		`rate(postfix_smtpd_messages_rejected_total{code="554"}[5m])`,
	} {
		r := promQuery(t, base, expr)
		if len(r.Data.Result) == 0 || r.Data.Result[0].Value[1] == "0" {
			t.Errorf("%s: %v, want a rate above 0", expr, r.Data.Result)
		}
	}
}
