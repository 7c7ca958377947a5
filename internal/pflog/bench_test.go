package pflog

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// writeBigLog writes n messages' lines (smtpd, cleanup, qmgr, a mailbox
// delivery, a copy, removed): 6 lines each, the shape of a primary's
// day.
func writeBigLog(tb testing.TB, n int) string {
	p := filepath.Join(tb.TempDir(), "mail.log")
	f, err := os.Create(p)
	if err != nil {
		tb.Fatal(err)
	}
	w := func(format string, a ...any) { fmt.Fprintf(f, format, a...) }
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("%010X", i+0x100000)
		s := i % 60
		m := (i / 60) % 60
		w("Dec  7 01:%02d:%02d mx1 postfix/smtpd[1]: %s: client=c.example[192.0.2.1]\n", m, s, id)
		w("Dec  7 01:%02d:%02d mx1 postfix/cleanup[2]: %s: message-id=<%d@c.example>\n", m, s, id, i)
		w("Dec  7 01:%02d:%02d mx1 postfix/qmgr[3]: %s: from=<a@c.example>, size=1000, nrcpt=2 (queue active)\n", m, s, id)
		w("Dec  7 01:%02d:%02d mx1 postfix/virtual[4]: %s: to=<user%d@students.example>, relay=virtual, delay=0.1, delays=0/0/0/0.1, dsn=2.0.0, status=sent (delivered to maildir)\n", m, s, id, i%1000)
		w("Dec  7 01:%02d:%02d mx1 postfix/smtp[5]: %s: to=<user%d@relay.students.example>, relay=r[127.0.0.11]:25, delay=0.1, delays=0/0/0/0.1, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as Q%d)\n", m, s, id, i%1000, i)
		w("Dec  7 01:%02d:%02d mx1 postfix/qmgr[3]: %s: removed\n", m, s, id)
	}
	f.Close()
	return p
}

// BenchmarkLoad100k reads 100,000 messages (600,000 lines) with the
// primary's BCC table; it reports the heap the Log holds.
func BenchmarkLoad100k(b *testing.B) {
	p := writeBigLog(b, 100000)
	cfg := filepath.Join("testdata", "primary")
	for b.Loop() {
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		r, err := Load(p, cfg, Options{Now: time.Date(2026, 12, 8, 0, 0, 0, 0, time.UTC), Location: time.UTC})
		if err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/1e6, "MB-held")
		runtime.KeepAlive(r)
	}
}
