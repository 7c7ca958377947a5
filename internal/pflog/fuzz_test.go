package pflog

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// FuzzLine feeds arbitrary lines to the line parser, the field reader
// and the message builder: none may panic, and what ParseLine accepts
// must be consistent with its input.
func FuzzLine(f *testing.F) {
	for _, name := range []string{"classic.log", "rfc3339.log"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		for _, l := range strings.Split(string(b), "\n") {
			f.Add(l)
		}
	}
	// The copy rules too: the log's addresses go through the primary's
	// BCC table and mailtee's rewriting.
	rules, err := loadCopyRules(filepath.Join("testdata", "primary"))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l, ok := ParseLine(s, time.UTC)
		if ok {
			if l.Host == "" || l.Daemon == "" || strings.ContainsAny(l.Program, " \t") {
				t.Fatalf("ParseLine(%q) = %+v", s, l)
			}
			if l.QueueID != "" && !IsQueueID(l.QueueID) {
				t.Fatalf("queue ID %q", l.QueueID)
			}
			Fields(l.Text)
		}
		Fields(s)
		b := newBuilder(Options{Location: time.UTC}, 2026)
		// The line twice: a second start under one ID, a delivery
		// after removal.
		b.line(s)
		b.line(s)
		// An address rewriting refuses is an error, never a panic.
		b.finish(context.Background(), rules)
	})
}
