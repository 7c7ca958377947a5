package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/report"
	"github.com/mailtee/mailtee/internal/testdb"
)

// The ledger in PostgreSQL (ledger_database = postgres://..., with a
// password file), end to end: a real serve writes it, the database is
// stopped mid-run and mail keeps flowing (the queue empties: nothing
// waits for the database), and once it is back `mailtee report` shows
// every message delivered, with no gap.
func TestPGLedgerServe(t *testing.T) {
	pg := testdb.Postgres(t)
	pg.CreateDB("ledger")
	_, url := pg.PassFile(t.TempDir(), "ledger")
	sk := newSink(t, "127.0.0.1:0", nil)
	in := newInstance(t, fmt.Sprintf("transport_maps = inline:{ far.example=smtp:[127.0.0.1]:%d }\nrelay_domains = far.example\nledger_database = %s\n",
		sk.Port(), url), nil)
	in.Start()
	n := 0
	sendN := func(k int) {
		t.Helper()
		for range k {
			n++
			if err := send(in.Addr(), "sender@test.example", []string{fmt.Sprintf("r%d@far.example", n)}, testMessage(fmt.Sprintf("pg %d", n))); err != nil {
				t.Fatalf("send %d: %v", n, err)
			}
		}
		want := n
		waitUntil(t, "the sink's messages", 30*time.Second, func() bool { return sk.Total() == want })
	}
	empty := func() bool {
		out, err := in.Run("", "queue", "list")
		return err == nil && strings.Contains(out, "Mail queue is empty")
	}
	sendN(3)
	waitUntil(t, "an empty queue", 30*time.Second, empty)

	pg.Stop()
	sendN(3)
	// Delivered and gone from the queue, the database down: the ledger
	// holds their records in the queue directory.
	waitUntil(t, "an empty queue with the database down", 60*time.Second, empty)
	in.WaitLog("holding its records in")

	pg.Start()
	sendN(1)
	in.WaitLogFor("answers again", 60*time.Second)
	var r report.Report
	waitUntil(t, "every message in the report", 30*time.Second, func() bool {
		out, err := in.Run("", "report", "--format", "json")
		r = report.Report{}
		return err == nil && json.Unmarshal([]byte(out), &r) == nil && r.Reconciliation.Delivered == n
	})
	if r.Reconciliation.Required != n || len(r.Gaps) != 0 || len(r.Misses) != 0 {
		t.Errorf("report: %+v, gaps %+v, misses %+v; want %d delivered, no gap", r.Reconciliation, r.Gaps, r.Misses, n)
	}
}
