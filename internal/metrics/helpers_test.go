package metrics

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// sample is one line of the text exposition format.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

// samples is a scrape, with lookups by name and labels.
type samples []sample

// parseExposition reads Prometheus's text format (version 0.0.4): enough
// of it for tests — comments skipped, label values unescaped.
func parseExposition(r io.Reader) (samples, error) {
	var out samples
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		s, err := parseSample(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w: %q", n, err, line)
		}
		out = append(out, s)
	}
	return out, sc.Err()
}

func parseSample(line string) (sample, error) {
	s := sample{labels: map[string]string{}}
	i := strings.IndexAny(line, "{ ")
	if i <= 0 {
		return s, fmt.Errorf("no metric name")
	}
	s.name = line[:i]
	rest := line[i:]
	if rest[0] == '{' {
		rest = rest[1:]
		for {
			if rest == "" {
				return s, fmt.Errorf("unterminated labels")
			}
			if rest[0] == '}' {
				rest = rest[1:]
				break
			}
			eq := strings.Index(rest, "=\"")
			if eq <= 0 {
				return s, fmt.Errorf("bad label")
			}
			name := rest[:eq]
			rest = rest[eq+2:]
			var v strings.Builder
			closed := false
			for k := 0; k < len(rest); k++ {
				c := rest[k]
				if c == '\\' && k+1 < len(rest) {
					k++
					switch rest[k] {
					case 'n':
						v.WriteByte('\n')
					default:
						v.WriteByte(rest[k])
					}
					continue
				}
				if c == '"' {
					rest = rest[k+1:]
					closed = true
					break
				}
				v.WriteByte(c)
			}
			if !closed {
				return s, fmt.Errorf("unterminated label value")
			}
			s.labels[name] = v.String()
			rest = strings.TrimPrefix(rest, ",")
		}
	}
	f := strings.Fields(rest)
	if len(f) < 1 {
		return s, fmt.Errorf("no value")
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return s, err
	}
	s.value = v
	return s, nil
}

// scrape serves m's handler over httptest and parses the answer.
func scrapeOf(t testing.TB, m *Metrics) samples {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", rec.Code, rec.Body)
	}
	s, err := parseExposition(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// get returns the value of the one sample of name whose labels include
// want ("k=v" pairs); it fails the test when there is none.
func (ss samples) get(t testing.TB, name string, want ...string) float64 {
	t.Helper()
	v, ok := ss.find(name, want...)
	if !ok {
		t.Fatalf("no sample %s%v; have:\n%s", name, want, ss.named(name))
	}
	return v
}

func (ss samples) find(name string, want ...string) (float64, bool) {
next:
	for _, s := range ss {
		if s.name != name {
			continue
		}
		for _, w := range want {
			k, v, _ := strings.Cut(w, "=")
			if s.labels[k] != v {
				continue next
			}
		}
		return s.value, true
	}
	return 0, false
}

// named lists the samples of name, for failure messages.
func (ss samples) named(name string) string {
	var lines []string
	for _, s := range ss {
		if strings.HasPrefix(s.name, name) {
			lines = append(lines, fmt.Sprintf("  %s%v %g", s.name, s.labels, s.value))
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// has reports whether a sample of name exists with every label in labels.
func (ss samples) has(name string, labels ...string) bool {
	for _, s := range ss {
		if s.name != name {
			continue
		}
		ok := true
		for _, l := range labels {
			if _, in := s.labels[l]; !in {
				ok = false
			}
		}
		if ok {
			return true
		}
	}
	return false
}
