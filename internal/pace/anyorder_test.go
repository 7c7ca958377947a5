package pace

import (
	"context"
	"fmt"
	"math/rand"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/deliver"
	"github.com/mailtee/mailtee/internal/provider"
	"github.com/mailtee/mailtee/internal/queue"
	"github.com/mailtee/mailtee/internal/ratelimit"
)

// Admit, Go and Done in every order the queue may use them, from many
// goroutines, with throttling replies, unreached servers, deliveries
// cancelled while waiting for their slot and deliveries skipped: no
// site slot, probe or token is left taken, and with a recipient limit
// of 1 the profile's site concurrency holds.
func TestAdmitGoDoneAnyOrder(t *testing.T) {
	for _, rl := range []int{1, 3} {
		l := base()
		l.RecipientLimit = rl
		l.RecipientRate = []ratelimit.Window{{N: 3, Per: 30 * time.Millisecond}}
		p := New(Options{
			Transport: func(string) (Transport, bool) {
				return Transport{Profile: "google", SMTP: true, Limits: l, Explicit: RecipientLimit | RecipientRate}, true
			},
			Site: func(ctx context.Context, transport, nexthop string) provider.Site {
				return provider.Site{Provider: "google", Key: "google"}
			},
			MinSuspend: 5 * time.Millisecond, MaxSuspend: 20 * time.Millisecond,
		})
		conc := p.Plan(context.Background(), smtpHop).Concurrency
		var inflight, maxIn atomic.Int64
		var wg sync.WaitGroup
		for g := 0; g < 16; g++ {
			wg.Add(1)
			go func(g int) {
				defer wg.Done()
				r := rand.New(rand.NewSource(int64(g)))
				for k := 0; k < 300; k++ {
					var rc []string
					var idx []int
					for j := 0; j < rl; j++ {
						rc = append(rc, fmt.Sprintf("u%d@students.example", r.Intn(5)))
						idx = append(idx, j)
					}
					m := msg(rc...)
					a := admit(p, m, idx...)
					if len(a.Now) == 0 {
						if a.Done != nil {
							a.Done(nil)
						}
						continue
					}
					if r.Intn(10) == 0 { // ctx cancelled while waiting for the slot
						a.Done(nil)
						continue
					}
					time.Sleep(time.Duration(r.Intn(200)) * time.Microsecond)
					later := a.Go()
					now := []int{}
					held := map[int]bool{}
					for _, l := range later {
						held[l.Rcpt] = true
					}
					for _, i := range a.Now {
						if !held[i] {
							now = append(now, i)
						}
					}
					if len(now) == 0 {
						a.Done(nil)
						continue
					}
					if rl == 1 {
						n := inflight.Add(1)
						for {
							mx := maxIn.Load()
							if n <= mx || maxIn.CompareAndSwap(mx, n) {
								break
							}
						}
					}
					time.Sleep(time.Duration(r.Intn(300)) * time.Microsecond)
					outs := make([]queue.Outcome, len(now))
					for j := range outs {
						switch r.Intn(8) {
						case 0:
							outs[j].Err = &deliver.Error{Code: 421, Enhanced: "4.7.28", Relay: "mx:25", Text: "421 4.7.28 rate"}
						case 1:
							outs[j].Err = &deliver.Error{Code: 450, Enhanced: "4.2.1", Relay: "mx:25", Text: "450 4.2.1 too quickly"}
						case 2:
							outs[j].Err = &deliver.Error{Relay: "none", Unreachable: true, Text: "refused"}
						}
					}
					if rl == 1 {
						inflight.Add(-1)
					}
					if r.Intn(10) == 0 {
						a.Done(nil) // skipped: suspended next hop
					} else {
						a.Done(outs)
					}
				}
			}(g)
		}
		wg.Wait()
		if rl == 1 && maxIn.Load() > int64(conc) {
			t.Errorf("rl %d: %d at once at the site, concurrency %d", rl, maxIn.Load(), conc)
		}
		p.mu.Lock()
		for k, v := range p.probing {
			if v {
				t.Errorf("rl %d: probe of %s still marked running", rl, k)
			}
		}
		if len(p.busy) != 0 {
			t.Errorf("rl %d: site slots left taken: %v", rl, p.busy)
		}
		lims := p.lims
		p.mu.Unlock()
		time.Sleep(40 * time.Millisecond)
		for name, lim := range lims {
			for u := 0; u < 5; u++ {
				key := "smtp:google|" + fmt.Sprintf("u%d@students.example", u)
				for n := 0; n < 3; n++ {
					if tk, _ := lim.Take(key, time.Now()); tk == nil {
						t.Errorf("rl %d: limiter %s key %s: token %d refused after all done (leaked in flight)", rl, name, key, n)
					}
				}
			}
		}
	}
}
