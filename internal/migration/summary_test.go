package migration

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
)

// The ledger asks for the summary of a message's settings with every
// message: it must not re-encode and hash the tables' text each time
// (a 100,000-entry mailbox_bcc_maps cost 14 ms and 8 MB a call).
func TestSummaryDoesNotRehashTables(t *testing.T) {
	dir := t.TempDir()
	var b strings.Builder
	for i := 0; i < 20000; i++ {
		fmt.Fprintf(&b, "user%d@students.example user%d@relay.students.example\n", i, i)
	}
	tb := load(t, dir, "mailbox_bcc_maps = hash:DIR/bcc\n", map[string]string{"bcc": b.String()})
	if got, want := tb.Summary(), tb.Settings.Summary(); got != want {
		t.Fatalf("Summary %q, want %q", got, want)
	}
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	for i := 0; i < 10; i++ {
		_ = tb.Summary()
	}
	runtime.ReadMemStats(&m1)
	if per := (m1.TotalAlloc - m0.TotalAlloc) / 10; per > uint64(b.Len())/10 {
		t.Errorf("Summary allocates %d bytes a call for a %d-byte table", per, b.Len())
	}
}
