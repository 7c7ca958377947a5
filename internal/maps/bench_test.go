package maps

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// bigTable writes an n-entry source shaped like a site's BCC map:
// "userN@students.example.org userN@relay.students.example.org".
func bigTable(b *testing.B, n int) string {
	b.Helper()
	p := filepath.Join(b.TempDir(), "big")
	f, err := os.Create(p)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriter(f)
	for i := 0; i < n; i++ {
		fmt.Fprintf(w, "user%d@students.example.org\tuser%d@relay.students.example.org\n", i, i)
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	return p
}

// BenchmarkLoad1M loads a 1,000,000-entry hash table and reports the heap
// it keeps (MB-heap) after a GC, the memory figure that matters for a
// relay holding its tables all day.
func BenchmarkLoad1M(b *testing.B) {
	p := bigTable(b, 1_000_000)
	b.ResetTimer()
	var keep Table
	for i := 0; i < b.N; i++ {
		t, _, err := Open("hash:" + p)
		if err != nil {
			b.Fatal(err)
		}
		keep = t
	}
	b.StopTimer()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "MB-heap")
	runtime.KeepAlive(keep)
}

// BenchmarkLookupAddress1M does Postfix-order address lookups on a
// 1,000,000-entry table, half of them hits on the full address and half
// misses that walk every key form.
func BenchmarkLookupAddress1M(b *testing.B) {
	p := bigTable(b, 1_000_000)
	t, _, err := Open("hash:" + p)
	if err != nil {
		b.Fatal(err)
	}
	keys := make([]string, 4096)
	for i := range keys {
		if i%2 == 0 {
			keys[i] = fmt.Sprintf("user%d@students.example.org", i*197)
		} else {
			keys[i] = fmt.Sprintf("nobody%d+ext@students.example.org", i)
		}
	}
	opts := AddressOptions{Delimiters: "+", IsLocal: func(d string) bool { return d == "students.example.org" }}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		LookupAddress(ctx, t, keys[i&4095], opts)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lookups/s")
}

// BenchmarkLookupKey1M is a plain key lookup (postmap -q), all hits.
func BenchmarkLookupKey1M(b *testing.B) {
	p := bigTable(b, 1_000_000)
	t, _, err := Open("hash:" + p)
	if err != nil {
		b.Fatal(err)
	}
	keys := make([]string, 4096)
	for i := range keys {
		keys[i] = fmt.Sprintf("user%d@students.example.org", i*241)
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t.Lookup(ctx, keys[i&4095])
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lookups/s")
}
