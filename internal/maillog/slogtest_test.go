package maillog

import (
	"bytes"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"testing/slogtest"
)

// The standard conformance tests for slog handlers, reading our lines back
// into the map slogtest wants: "time", "level", "msg", and the attributes
// with dotted keys as nested groups.
func TestSlogConformance(t *testing.T) {
	var buf *bytes.Buffer
	newHandler := func(t *testing.T) slog.Handler {
		buf = new(bytes.Buffer)
		return NewHandler(buf, &Options{Host: "mail", PID: 1})
	}
	result := func(t *testing.T) map[string]any {
		if strings.Contains(t.Name(), "zero-time") {
			// A syslog line always has a time stamp; Handle uses the
			// current time for a record without one.
			t.Skip("syslog lines always carry a time")
		}
		line := strings.TrimSuffix(buf.String(), "\n")
		if strings.Contains(line, "\n") {
			t.Fatalf("more than one line: %q", line)
		}
		p := parse(t, line)
		m := map[string]any{slog.TimeKey: line[:15], slog.LevelKey: "INFO"}
		text := p.text
		for prefix, level := range map[string]string{"warning: ": "WARN", "error: ": "ERROR", "debug: ": "DEBUG"} {
			if rest, ok := strings.CutPrefix(text, prefix); ok {
				text, m[slog.LevelKey] = rest, level
			}
		}
		msg, rest, _ := strings.Cut(text, " ")
		m[slog.MessageKey] = msg
		for rest != "" {
			var kv string
			if i := strings.Index(rest, `="`); i >= 0 && !strings.Contains(rest[:i], " ") {
				// key="quoted value"
				q, err := strconv.QuotedPrefix(rest[i+1:])
				if err != nil {
					t.Fatal(err)
				}
				kv, rest = rest[:i+1+len(q)], strings.TrimPrefix(rest[i+1+len(q):], " ")
			} else {
				kv, rest, _ = strings.Cut(rest, " ")
			}
			k, v, _ := strings.Cut(kv, "=")
			if uq, err := strconv.Unquote(v); err == nil {
				v = uq
			}
			keys := strings.Split(k, ".")
			g := m
			for _, key := range keys[:len(keys)-1] {
				sub, ok := g[key].(map[string]any)
				if !ok {
					sub = map[string]any{}
					g[key] = sub
				}
				g = sub
			}
			g[keys[len(keys)-1]] = v
		}
		return m
	}
	slogtest.Run(t, newHandler, result)
}
