package pace

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/deliver"
	"github.com/mailtee/mailtee/internal/provider"
	"github.com/mailtee/mailtee/internal/queue"
	"github.com/mailtee/mailtee/internal/ratelimit"
)

// fakeShared stands in for a fleet's limiters: it admits up to n per
// mailbox (no time), all else, and records what the pacer asked for and
// how each token was settled.
type fakeShared struct {
	mu      sync.Mutex
	n       int
	asked   map[string]string // "kind transport profile" -> windows
	taken   map[string]int    // limiter|key -> admitted and not cancelled
	settled []string
}

func (f *fakeShared) limiter(kind, transport, profile string, ws []ratelimit.Window) ratelimit.Taker {
	f.mu.Lock()
	defer f.mu.Unlock()
	if kind == "tdelay" {
		return nil // the pacer's own
	}
	name := kind + " " + transport + " " + profile
	f.asked[name] = ratelimit.FormatWindows(ws)
	return fakeTaker{f, name}
}

type fakeTaker struct {
	f    *fakeShared
	name string
}

func (t fakeTaker) Take(key string, now time.Time) (*ratelimit.Token, time.Time) {
	f := t.f
	f.mu.Lock()
	defer f.mu.Unlock()
	k := t.name + "|" + key
	if strings.HasPrefix(k, "box ") && f.taken[k] >= f.n {
		return nil, now.Add(time.Minute)
	}
	f.taken[k]++
	return ratelimit.NewToken(func(end time.Time, reached bool) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if reached {
			f.settled = append(f.settled, "done "+k)
		} else {
			f.taken[k]--
			f.settled = append(f.settled, "cancel "+k)
		}
	}), time.Time{}
}

// With Options.Shared, the per-mailbox, per-site and rate-delay
// windows are the shared limiters' (asked for by kind, transport and
// profile, with the profile's windows), their tokens are settled as
// the local ones are, and a nil Taker leaves a kind to the pacer.
func TestSharedLimiters(t *testing.T) {
	f := &fakeShared{n: 2, asked: map[string]string{}, taken: map[string]int{}}
	l := base()
	l.RateDelay = time.Millisecond
	l.TransportDelay = time.Millisecond
	p := New(Options{
		Transport: func(name string) (Transport, bool) {
			return Transport{Profile: "google", SMTP: true, Limits: l, Explicit: RateDelay}, name == "smtp"
		},
		Site: func(ctx context.Context, transport, nexthop string) provider.Site {
			return provider.Site{Provider: "google", Key: "google"}
		},
		Shared: f.limiter,
	})
	g, _ := provider.Lookup("google")
	a := admit(p, msg("busy@students.example"), 0)
	if len(a.Now) != 1 {
		t.Fatalf("first message held back: %+v", a.Later)
	}
	want := map[string]string{
		"box smtp google":   ratelimit.FormatWindows(g.RecipientRate),
		"site smtp google":  ratelimit.FormatWindows(g.DestinationRate),
		"delay smtp google": "1/1ms",
	}
	if len(g.DestinationRate) == 0 {
		delete(want, "site smtp google")
	}
	if fmt.Sprint(f.asked) != fmt.Sprint(want) {
		t.Errorf("limiters asked for: %v\nwant %v", f.asked, want)
	}
	a.Done(sent(1))
	for _, w := range []string{"done box smtp google|smtp:google|busy@students.example", "done delay smtp google|smtp:google"} {
		if !slices.Contains(f.settled, w) {
			t.Errorf("settled: %q, want %q among them", f.settled, w)
		}
	}
	// A delivery that never reached the server gives its tokens back.
	f.settled = nil
	time.Sleep(2 * time.Millisecond) // the pacer's own transport delay
	a = admit(p, msg("busy@students.example"), 0)
	if len(a.Now) != 1 {
		t.Fatalf("second message held back: %+v", a.Later)
	}
	a.Done([]queue.Outcome{{Err: &deliver.Error{Text: "connect: refused", Relay: "none", Unreachable: true}}})
	cancels := 0
	for _, s := range f.settled {
		if s[:7] == "cancel " {
			cancels++
		}
	}
	if cancels == 0 || cancels != len(f.settled)-1 { // the delay's token is Done whatever the outcome
		t.Errorf("after an unreached delivery, settled: %q", f.settled)
	}
	// The shared limiter's refusal holds the mailbox back.
	time.Sleep(2 * time.Millisecond)
	a = admit(p, msg("busy@students.example"), 0)
	a.Done(sent(1))
	time.Sleep(2 * time.Millisecond)
	a = admit(p, msg("busy@students.example", "other@students.example"), 0, 1)
	if len(a.Now) != 1 || a.Now[0] != 1 || len(a.Later) != 1 || a.Later[0].Why != "recipient rate limit" {
		t.Errorf("third message: now %v, later %+v; want busy held back by the shared count, other sent", a.Now, a.Later)
	}
	p.mu.Lock()
	_, own := p.lims["box smtp google"]
	_, tdelay := p.lims["tdelay smtp "]
	p.mu.Unlock()
	if own || !tdelay {
		t.Errorf("the pacer's own limiters: box %v (want none), tdelay %v (want its own, Shared gave nil)", own, tdelay)
	}
}
