package metrics

import (
	"bufio"
	"os"
	"sort"
	"strings"
	"testing"
)

// query is one target of a Grafana panel: the metric names its PromQL
// expression reads and the labels it uses (matchers, by/without
// grouping, label_values, and the legend's {{ label }}).
type query struct {
	where   string // row / panel title
	expr    string
	metrics []string
	labels  []string
}

// targetLabels are the labels Prometheus adds to every series it
// scrapes: not mailtee's to export.
var targetLabels = map[string]bool{"instance": true, "job": true, "__name__": true}

// promqlWords are PromQL's functions, aggregations and keywords: the
// identifiers of an expression that are not metric names.
var promqlWords = map[string]bool{}

func init() {
	for _, w := range strings.Fields(`sum avg min max count stddev stdvar topk bottomk quantile count_values group
		rate irate increase delta idelta deriv predict_linear histogram_quantile label_values label_replace label_join
		abs ceil floor round clamp clamp_max clamp_min exp ln log2 log10 sqrt time timestamp vector scalar sort sort_desc
		avg_over_time min_over_time max_over_time sum_over_time count_over_time last_over_time absent absent_over_time
		changes resets by without on ignoring group_left group_right offset bool and or unless inf nan`) {
		promqlWords[w] = true
	}
}

// parsePromQL finds the metric names and labels of expr and legend, a
// scanner for the queries of dashboards, not a PromQL parser: an
// identifier is a metric name unless it is a PromQL word, a label
// (inside {} or the parentheses after by/without/on/ignoring), or a
// function's name (followed by '(').
func parsePromQL(expr, legend string) (metrics, labels []string) {
	seenM, seenL := map[string]bool{}, map[string]bool{}
	addL := func(l string) {
		for k := 0; k < len(l); k++ {
			if c := l[k]; !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || k > 0 && c >= '0' && c <= '9') {
				return // not a label name: a query this scanner misreads
			}
		}
		if l != "" && !targetLabels[l] && !seenL[l] {
			seenL[l] = true
			labels = append(labels, l)
		}
	}
	isIdent := func(c byte, first bool) bool {
		return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || !first && c >= '0' && c <= '9'
	}
	grouping := false // the last word was by/without/on/ignoring
	for i := 0; i < len(expr); {
		c := expr[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			// A string: skip it, escapes included.
			j := i + 1
			for j < len(expr) && expr[j] != c {
				if expr[j] == '\\' && c != '`' {
					j++
				}
				j++
			}
			i = j + 1
		case c == '[':
			// A range or subquery duration.
			j := strings.IndexByte(expr[i:], ']')
			if j < 0 {
				return metrics, labels
			}
			i += j + 1
		case c == '{':
			// Label matchers: name op "value", ...
			j := i + 1
			for j < len(expr) && expr[j] != '}' {
				switch {
				case expr[j] == '"' || expr[j] == '\'' || expr[j] == '`':
					q := expr[j]
					j++
					for j < len(expr) && expr[j] != q {
						if expr[j] == '\\' && q != '`' {
							j++
						}
						j++
					}
					j++
				case isIdent(expr[j], true):
					k := j
					for k < len(expr) && isIdent(expr[k], false) {
						k++
					}
					addL(expr[j:k])
					j = k
				default:
					j++
				}
			}
			i = j + 1
		case c == '(' && grouping:
			j := strings.IndexByte(expr[i:], ')')
			if j < 0 {
				return metrics, labels
			}
			for _, l := range strings.Split(expr[i+1:i+j], ",") {
				addL(strings.TrimSpace(l))
			}
			grouping = false
			i += j + 1
		case isIdent(c, true) && (i == 0 || !isIdent(expr[i-1], false) && expr[i-1] != '.'):
			j := i
			for j < len(expr) && isIdent(expr[j], false) {
				j++
			}
			word := expr[i:j]
			k := j
			for k < len(expr) && expr[k] == ' ' {
				k++
			}
			call := k < len(expr) && expr[k] == '('
			switch {
			case word == "by" || word == "without" || word == "on" || word == "ignoring":
				grouping = true
			case word == "label_values" && call:
				// label_values(metric, label): a template's query.
				end := strings.IndexByte(expr[k:], ')')
				if end < 0 {
					return metrics, labels
				}
				args := strings.Split(expr[k+1:k+end], ",")
				if len(args) == 2 {
					m, _ := parsePromQL(args[0], "")
					metrics = append(metrics, m...)
					addL(strings.TrimSpace(args[1]))
				}
				j = k + end + 1
			case call || promqlWords[word]:
			default:
				if !seenM[word] {
					seenM[word] = true
					metrics = append(metrics, word)
				}
			}
			i = j
		default:
			i++
		}
	}
	for rest := legend; ; {
		a := strings.Index(rest, "{{")
		if a < 0 {
			break
		}
		b := strings.Index(rest[a:], "}}")
		if b < 0 {
			break
		}
		addL(strings.TrimSpace(rest[a+2 : a+b]))
		rest = rest[a+b+2:]
	}
	return metrics, labels
}

// readDashboard reads testdata's copy of a dashboard's queries.
func readDashboard(t *testing.T, path string) []query {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []query
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) != 4 {
			t.Fatalf("%s:%d: want 4 tab-separated fields, got %d", path, n, len(f))
		}
		q := query{where: f[0] + " / " + f[1], expr: f[3]}
		q.metrics, q.labels = parsePromQL(f[3], f[2])
		if len(q.metrics) == 0 {
			t.Fatalf("%s:%d: no metric name found in %q", path, n, f[3])
		}
		out = append(out, q)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// notFed are the families the dashboard reads that mailtee registers but
// has nothing to count in: the panel shows no data, as it does on a
// Postfix without that daemon.
var notFed = map[string]string{
	"postfix_pipe_delivery_delay_seconds_count": "mailtee has no pipe(8) transport",
	"postfix_smtp_tls_connections_total":        "mailtee's smtp client does not report its TLS sessions yet",
}

// TestGrafanaDashboard10013 runs real traffic through mailtee's mail
// path and checks that every metric the queries of Grafana's public
// "Postfix" dashboard (10013, built on kumina's postfix_exporter) read is
// exported, with every label the query selects on, groups by or shows in
// its legend.
func TestGrafanaDashboard10013(t *testing.T) {
	qs := readDashboard(t, "testdata/grafana-10013.tsv")
	s := startServer(t)
	runTraffic(t, s)
	ss, _ := s.scrape(t)
	var checked []string
	for _, q := range qs {
		for _, name := range q.metrics {
			if why, ok := notFed[name]; ok {
				// An empty vector is left out of the exposition; the
				// panel shows "no data".
				if ss.has(name) {
					t.Errorf("%s: %s has series, but notFed says %s", q.where, name, why)
				}
				t.Logf("%s: %s: no series: %s", q.where, name, why)
				continue
			}
			if !ss.has(name) {
				t.Errorf("%s: %s is not exported (query %s)", q.where, name, q.expr)
				continue
			}
			if !ss.has(name, q.labels...) {
				t.Errorf("%s: %s has no series with the labels %v (query %s):\n%s", q.where, name, q.labels, q.expr, ss.named(name))
				continue
			}
			checked = append(checked, name)
		}
	}
	sort.Strings(checked)
	t.Logf("exported with their labels: %s", strings.Join(checked, ", "))
	if len(checked) < 15 {
		t.Errorf("only %d of the dashboard's metric uses checked", len(checked))
	}
}

func TestParsePromQL(t *testing.T) {
	for _, c := range []struct {
		expr, legend    string
		metrics, labels string
	}{
		{`rate(postfix_smtpd_connects_total{instance=~"$instance"}[5m])`, "{{ instance }}", "postfix_smtpd_connects_total", ""},
		{`(sum(rate(postfix_lmtp_delivery_delay_seconds_sum{instance=~"$instance"}[5m])) by (stage)) / (sum(rate(postfix_lmtp_delivery_delay_seconds_count{instance=~"$instance"}[5m])) by (stage))`,
			"{{ stage }}", "postfix_lmtp_delivery_delay_seconds_sum postfix_lmtp_delivery_delay_seconds_count", "stage"},
		{`rate(postfix_smtpd_tls_connections_total[5m])`, "{{ protocol }}: {{ cipher }}, {{ trust }}",
			"postfix_smtpd_tls_connections_total", "protocol cipher trust"},
		{`label_values(postfix_up,instance)`, "", "postfix_up", ""},
		{`histogram_quantile(0.9, sum by (le, queue) (rate(postfix_showq_message_age_seconds_bucket{queue="deferred", x!~"a}b"}[15m]))) > 3600`,
			"", "postfix_showq_message_age_seconds_bucket", "le queue x"},
	} {
		m, l := parsePromQL(c.expr, c.legend)
		if got := strings.Join(m, " "); got != c.metrics {
			t.Errorf("%s: metrics %q, want %q", c.expr, got, c.metrics)
		}
		if got := strings.Join(l, " "); got != c.labels {
			t.Errorf("%s: labels %q, want %q", c.expr, got, c.labels)
		}
	}
}

// FuzzParsePromQL: the scanner reads queries from dashboards that come
// from anywhere; it must end, and find only identifiers.
func FuzzParsePromQL(f *testing.F) {
	f.Add(`rate(postfix_smtpd_connects_total{instance=~"$instance"}[5m])`, "{{ instance }}")
	f.Add(`sum by (stage) (rate(x_sum[5m])) / sum without(a,b) (y)`, "{{a}} {{")
	f.Add(`label_values(postfix_up,instance)`, "")
	f.Add(`x{a="\"}"}`, "}}{{")
	f.Fuzz(func(t *testing.T, expr, legend string) {
		m, l := parsePromQL(expr, legend)
		for _, w := range append(m, l...) {
			if w == "" || strings.ContainsAny(w, " \t\n{}()[]\"") && !strings.Contains(legend, w) {
				t.Fatalf("bad identifier %q from %q", w, expr)
			}
		}
	})
}
