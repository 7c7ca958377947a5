package pace

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/deliver"
	"github.com/mailtee/mailtee/internal/envelope"
	"github.com/mailtee/mailtee/internal/provider"
	"github.com/mailtee/mailtee/internal/queue"
)

// The probe state a throttled site leaves is forgotten with its
// suspension: a site throttled once and never mailed again must not
// keep an entry for good (Microsoft 365 is a site per tenant).
func TestProbeStateForgotten(t *testing.T) {
	p := New(Options{
		Transport: func(string) (Transport, bool) { return Transport{Profile: "auto", SMTP: true, Limits: base()}, true },
		Site: func(ctx context.Context, transport, nexthop string) provider.Site {
			return provider.Site{Key: nexthop}
		},
		MinSuspend: time.Millisecond, MaxSuspend: 2 * time.Millisecond,
	})
	throttle := []queue.Outcome{{Err: &deliver.Error{Code: 421, Enhanced: "4.7.28", Relay: "mx[192.0.2.1]:25", Text: "421 4.7.28 unusual rate"}}}
	throttleAt := func(k int) {
		hop := envelope.Hop{Transport: "smtp", Nexthop: fmt.Sprintf("t%d.example", k)}
		plan := p.Plan(context.Background(), hop)
		a := p.Admit(context.Background(), plan, msg("u@"+hop.Nexthop), []int{0})
		if len(a.Now) != 1 {
			t.Fatalf("site %d: held back: %+v", k, a.Later)
		}
		a.Done(throttle)
	}
	for k := 0; k < 10_000; k++ {
		throttleAt(k)
	}
	time.Sleep(20 * time.Millisecond) // every suspension is long forgotten
	for k := 10_000; k < 12_000; k++ {
		throttleAt(k)
	}
	p.mu.Lock()
	n := len(p.probing)
	p.mu.Unlock()
	if n > 4_000 {
		t.Errorf("%d sites' probe state kept after 12,000 throttled sites, 10,000 of them forgotten by the suspensions", n)
	}
}
