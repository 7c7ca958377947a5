package queue

import (
	"fmt"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/envelope"
)

// The next hops suspended as unreachable are forgotten once their
// suspension is over, whether or not mail goes there again: a relay
// sees thousands of dead domains (backscatter, typos) and must not
// keep one entry per domain for good.
func TestDeadHopsForgotten(t *testing.T) {
	f := newFakeNet()
	o := f.options(t.TempDir())
	o.MinBackoff = time.Millisecond
	q := startQueue(t, o)
	down := []Outcome{{Err: siteDown{}, Relay: "none"}}
	for k := 0; k < 10_000; k++ {
		q.noteSite(envelope.Hop{Transport: "smtp", Nexthop: fmt.Sprintf("d%d.example", k)}, down)
	}
	time.Sleep(10 * time.Millisecond) // every suspension is over
	for k := 10_000; k < 12_000; k++ {
		q.noteSite(envelope.Hop{Transport: "smtp", Nexthop: fmt.Sprintf("d%d.example", k)}, down)
	}
	q.mu.Lock()
	n := len(q.dead)
	q.mu.Unlock()
	if n > 4_000 {
		t.Errorf("%d suspended next hops kept after 12,000, 10,000 of them over", n)
	}
}
