package e2e

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/standin"
)

// restartStandin starts a stand-in again on addr, which the previous
// one just released (closed at test cleanup).
func restartStandin(tb testing.TB, addr string) *standin.Server {
	tb.Helper()
	var s *standin.Server
	var err error
	for try := 0; try < 50; try++ {
		if s, err = standin.Start(standin.Options{Addr: addr, Flavor: standin.Google}); err == nil {
			tb.Cleanup(func() { s.Close() })
			return s
		}
		time.Sleep(100 * time.Millisecond)
	}
	tb.Fatal(err)
	return nil
}

// BenchmarkFleetThroughput measures, with the fleet test's harness, how
// fast mail goes through the fleet: from the first message sent to the
// last accepted by the provider stand-in, the nodes fed by 8 SMTP
// clients each, messages spread over 500 mailboxes, so that no limit
// binds. It compares one node with two, the ledger in PostgreSQL, and
// with a per-mailbox limit counted in PostgreSQL (fleet_shared_limits =
// yes, every delivery asks it) or by each node alone (no); then the
// same number queued while the provider is down, and drained. On one
// machine the nodes share its CPUs and disk: the figure is what a
// second node costs and gives there, not what a second machine gives.
//
//	go test -run '^$' -bench FleetThroughput -benchtime 1x ./test/e2e/
func BenchmarkFleetThroughput(b *testing.B) {
	const msgs, boxes = 6000, 500
	for _, c := range []struct {
		name  string
		nodes int
		o     fleetOptions
	}{
		{"1 node, SQLite ledger", 1, fleetOptions{sqlite: true}},
		{"1 node", 1, fleetOptions{}},
		{"2 nodes", 2, fleetOptions{}},
		{"1 node, limits each", 1, fleetOptions{rate: "100000/1m", shared: "no"}},
		{"1 node, limits shared", 1, fleetOptions{rate: "100000/1m", shared: "yes"}},
		{"2 nodes, limits shared", 2, fleetOptions{rate: "100000/1m", shared: "yes"}},
	} {
		b.Run(c.name, func(b *testing.B) {
			c.o.nodes = c.nodes
			f := newFleet(b, c.o)
			b.StopTimer()
			var total time.Duration
			var accept time.Duration
			for i := 0; i < b.N; i++ {
				batch := fleetBatch(fmt.Sprintf("bench%d", i), boxes, msgs/boxes, c.nodes)
				t0 := time.Now()
				b.StartTimer()
				if err := f.send(batch, 8); err != nil {
					b.Fatal(err)
				}
				accept += time.Since(t0)
				waitUntil(b, "every message at the provider", 5*time.Minute, func() bool { return f.accepted(batch) == len(batch) })
				b.StopTimer()
				total += time.Since(t0)
				waitUntil(b, "the queues empty", time.Minute, f.queuesEmpty)
			}
			n := float64(b.N * msgs)
			b.ReportMetric(n/total.Seconds(), "msgs/s")
			b.ReportMetric(n/accept.Seconds(), "accepted/s")

			// A backlog: the same mail queued while the provider is
			// down, then drained, each node's queue flushed as the
			// provider returns; the rate is from then to the last
			// acceptance.
			var drained time.Duration
			for i := 0; i < b.N; i++ {
				batch := fleetBatch(fmt.Sprintf("backlog%d", i), boxes, msgs/boxes, c.nodes)
				addr := f.prov.Addr()
				f.prov.Close()
				if err := f.send(batch, 8); err != nil {
					b.Fatal(err)
				}
				f.prov = restartStandin(b, addr)
				back := time.Now()
				var wg sync.WaitGroup
				for _, n := range f.nodes {
					wg.Add(1)
					go func() {
						defer wg.Done()
						if out, err := n.in.Run("", "queue", "flush"); err != nil {
							b.Errorf("%s: mailtee queue flush: %v\n%s", n.name, err, out)
						}
					}()
				}
				wg.Wait()
				waitUntil(b, "the backlog at the provider", 5*time.Minute, func() bool { return f.accepted(batch) == len(batch) })
				recs := f.prov.Accepted()
				drained += recs[len(recs)-1].Time.Sub(back)
				waitUntil(b, "the queues empty", time.Minute, f.queuesEmpty)
			}
			b.ReportMetric(float64(b.N*msgs)/drained.Seconds(), "drained/s")
			b.ReportMetric(0, "ns/op")
		})
	}
}
