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
	// The sweep is amortised (when the map has doubled since the last),
	// so 20,000 more must run one after the first 10,000 are over: they
	// are gone then, whatever the timing of the earlier sweeps.
	for k := 10_000; k < 30_000; k++ {
		q.noteSite(envelope.Hop{Transport: "smtp", Nexthop: fmt.Sprintf("d%d.example", k)}, down)
	}
	q.mu.Lock()
	n := len(q.dead)
	_, first := q.dead[envelope.Hop{Transport: "smtp", Nexthop: "d0.example"}]
	q.mu.Unlock()
	if n > 20_000 || first {
		t.Errorf("%d suspended next hops kept after 30,000, 10,000 of them over long ago (the first kept: %v)", n, first)
	}
}
