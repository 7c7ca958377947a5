package pace

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/deliver"
	"github.com/mailtee/mailtee/internal/envelope"
	"github.com/mailtee/mailtee/internal/provider"
	"github.com/mailtee/mailtee/internal/queue"
	"github.com/mailtee/mailtee/internal/ratelimit"
)

// pacerWith paces transport smtp with t; every next hop is Google's.
func pacerWith(t Transport) (*Pacer, *int) {
	lookups := 0
	return New(Options{
		Transport: func(name string) (Transport, bool) { return t, name == "smtp" },
		Site: func(ctx context.Context, transport, nexthop string) provider.Site {
			lookups++
			return provider.Site{Provider: "google", Key: "google"}
		},
		MinSuspend: time.Minute,
		MaxSuspend: time.Hour,
	}), &lookups
}

func msg(rcpts ...string) *queue.Message {
	env := &envelope.Envelope{From: "a@example.org"}
	for _, r := range rcpts {
		env.Rcpts = append(env.Rcpts, envelope.Rcpt{Addr: r})
	}
	return queue.NewMemMessage("4AAA", env, []byte("Subject: s\r\n\r\nbody\r\n"))
}

var smtpHop = envelope.Hop{Transport: "smtp", Nexthop: "students.example"}

func base() Limits { return Limits{Concurrency: 20, RecipientLimit: 50} }

// A profile fills in what main.cf left at its default, and only
// tightens; what main.cf set stays; "none" looks nothing up.
func TestPlanProfiles(t *testing.T) {
	p, _ := pacerWith(Transport{Profile: "auto", SMTP: true, Limits: base()})
	plan := p.Plan(context.Background(), smtpHop)
	g, _ := provider.Lookup("google")
	if plan.Key != "smtp:google" || plan.Concurrency != g.Concurrency || plan.RecipientLimit != min(50, g.RecipientLimit) {
		t.Errorf("auto on a Google site: %+v, want key smtp:google, the google profile's concurrency %d", plan, g.Concurrency)
	}
	d := plan.Data.(*dest)
	if d.lim.TLSLevel != "encrypt" || len(d.lim.RecipientRate) == 0 {
		t.Errorf("google profile limits %+v: want TLS required and a per-mailbox rate", d.lim)
	}
	l := base()
	l.Concurrency = 2
	l.RecipientRate = []ratelimit.Window{{N: 5, Per: 5 * time.Second}}
	p, _ = pacerWith(Transport{Profile: "google", SMTP: true, Limits: l, Explicit: Concurrency | RecipientRate})
	d = p.Plan(context.Background(), smtpHop).Data.(*dest)
	if d.lim.Concurrency != 2 || ratelimit.FormatWindows(d.lim.RecipientRate) != "5/5s" {
		t.Errorf("main.cf's own values must win over the profile: %+v", d.lim)
	}
	p, lookups := pacerWith(Transport{Profile: "none", SMTP: true, Limits: base()})
	plan = p.Plan(context.Background(), smtpHop)
	if plan.Key != "smtp:students.example" || plan.Concurrency != 20 || *lookups != 0 {
		t.Errorf("profile none: %+v after %d site lookups; want the next hop as key, main.cf's limits, no lookup", plan, *lookups)
	}
	l = base()
	l.RateDelay = time.Second
	p, _ = pacerWith(Transport{Profile: "none", Limits: l})
	if c := p.Plan(context.Background(), smtpHop).Concurrency; c != 1 {
		t.Errorf("a rate delay makes the concurrency 1 (Postfix's window), got %d", c)
	}
	if plan := p.Plan(context.Background(), envelope.Hop{Transport: "local", Nexthop: "x"}); plan.Data != nil {
		t.Errorf("an unpaced transport got a plan: %+v", plan)
	}
}

// admit runs Admit for the given recipients of m and returns it.
func admit(p *Pacer, m *queue.Message, rcpts ...int) queue.Admission {
	plan := p.Plan(context.Background(), smtpHop)
	return p.Admit(context.Background(), plan, m, rcpts)
}

func sent(n int) []queue.Outcome { return make([]queue.Outcome, n) }

// The per-mailbox windows hold back what would exceed them, mailbox by
// mailbox.
func TestRecipientRate(t *testing.T) {
	l := base()
	l.RecipientRate = []ratelimit.Window{{N: 2, Per: time.Hour}}
	p, _ := pacerWith(Transport{Profile: "none", SMTP: true, Limits: l, Explicit: RecipientRate})
	for k := 0; k < 2; k++ {
		a := admit(p, msg("busy@students.example"), 0)
		if len(a.Now) != 1 {
			t.Fatalf("message %d held back: %+v", k, a.Later)
		}
		a.Done(sent(1))
	}
	a := admit(p, msg("busy@students.example", "other@students.example"), 0, 1)
	if len(a.Now) != 1 || a.Now[0] != 1 || len(a.Later) != 1 || a.Later[0].Rcpt != 0 || !a.Later[0].At.After(time.Now().Add(59*time.Minute)) {
		t.Errorf("third message: now %v, later %+v; want the busy mailbox held an hour, the other sent", a.Now, a.Later)
	}
	if a.Later[0].Why != "recipient rate limit" {
		t.Errorf("why %q", a.Later[0].Why)
	}
}

// A failure that never reached the server (no connection) costs the
// mailbox nothing.
func TestUnreachedFreesTheSlot(t *testing.T) {
	l := base()
	l.RecipientRate = []ratelimit.Window{{N: 1, Per: time.Hour}}
	p, _ := pacerWith(Transport{Profile: "none", SMTP: true, Limits: l})
	a := admit(p, msg("x@students.example"), 0)
	a.Done([]queue.Outcome{{Err: &deliver.Error{Text: "connect to ...: Connection refused", Relay: "none", Unreachable: true}}})
	if a := admit(p, msg("x@students.example"), 0); len(a.Now) != 1 {
		t.Errorf("held back after a failed connection: %+v", a.Later)
	}
}

// A site throttle (421 4.7.28) suspends the whole destination, a
// mailbox throttle (550 5.2.122) that mailbox; neither bounces, and the
// reply's 5.x.x is logged as 4.x.x.
func TestThrottlingReplies(t *testing.T) {
	p, _ := pacerWith(Transport{Profile: "none", SMTP: true, Limits: base()})
	a := admit(p, msg("u1@students.example", "u2@students.example"), 0, 1)
	outs := []queue.Outcome{
		{Err: &deliver.Error{Permanent: true, Code: 550, Enhanced: "5.2.122", Text: "host x said: 550 5.2.122 The recipient has exceeded their limit for the number of messages they can receive per hour"}},
		{},
	}
	a.Done(outs)
	if queue.IsPermanent(outs[0].Err) || queue.DSN(outs[0].Err) != "4.2.122" || !outs[0].RetryAt.After(time.Now()) {
		t.Errorf("550 5.2.122: permanent %v, dsn %s, retry %v; want a deferral with 4.2.122 and a retry time", queue.IsPermanent(outs[0].Err), queue.DSN(outs[0].Err), outs[0].RetryAt)
	}
	if !strings.Contains(outs[0].Err.Error(), "5.2.122") {
		t.Errorf("the reply is lost: %v", outs[0].Err)
	}
	a = admit(p, msg("u1@students.example", "u3@students.example"), 0, 1)
	if len(a.Later) != 1 || a.Later[0].Rcpt != 0 || !strings.HasPrefix(a.Later[0].Why, "mailbox throttled") || len(a.Now) != 1 {
		t.Errorf("after 5.2.122 for u1: now %v later %+v; want u1 held, u3 sent", a.Now, a.Later)
	}
	a.Done([]queue.Outcome{{Err: &deliver.Error{Code: 421, Enhanced: "4.7.28", Text: "host x said: 421 4.7.28 Our system has detected an unusual rate of unsolicited mail"}}})
	a = admit(p, msg("u4@students.example"), 0)
	if len(a.Now) != 0 || len(a.Later) != 1 || !strings.HasPrefix(a.Later[0].Why, "destination throttled") {
		t.Errorf("after 421 4.7.28: now %v later %+v; want the whole destination held", a.Now, a.Later)
	}
	// Another transport's destination is not suspended.
	p2 := p
	p2.o.Transport = func(name string) (Transport, bool) {
		return Transport{Profile: "none", SMTP: true, Limits: base()}, true
	}
	other := p2.Plan(context.Background(), envelope.Hop{Transport: "relay", Nexthop: "elsewhere.example"})
	if a := p2.Admit(context.Background(), other, msg("u5@elsewhere.example"), []int{0}); len(a.Now) != 1 {
		t.Errorf("another destination held back: %+v", a.Later)
	}
}

// Postfix's rate delay: one delivery at a time, and the delay from the
// end of one to the start of the next; per recipient with a recipient
// limit of 1.
func TestRateDelay(t *testing.T) {
	l := base()
	l.RateDelay = time.Hour
	p, _ := pacerWith(Transport{Profile: "none", SMTP: true, Limits: l})
	a := admit(p, msg("u1@students.example"), 0)
	if len(a.Now) != 1 {
		t.Fatal("first delivery held back")
	}
	if b := admit(p, msg("u2@students.example"), 0); len(b.Now) != 0 || b.Later[0].Why != "rate delay" {
		t.Errorf("second delivery while the first runs: %+v", b)
	}
	a.Done(sent(1))
	if b := admit(p, msg("u2@students.example"), 0); len(b.Now) != 0 || !b.Later[0].At.After(time.Now().Add(59*time.Minute)) {
		t.Errorf("second delivery within the delay: %+v", b)
	}
	l.RecipientLimit = 1
	p, _ = pacerWith(Transport{Profile: "none", SMTP: true, Limits: l})
	admit(p, msg("u1@students.example"), 0)
	if b := admit(p, msg("u2@students.example"), 0); len(b.Now) != 1 {
		t.Errorf("with a recipient limit of 1 the delay is per recipient: %+v", b)
	}
}

// When a site's suspension ends, one delivery probes it; the others
// wait until one gets through, so a site still throttling refuses one
// delivery, not one per connection.
func TestProbeAfterSuspension(t *testing.T) {
	p := New(Options{
		Transport:  func(string) (Transport, bool) { return Transport{Profile: "none", SMTP: true, Limits: base()}, true },
		MinSuspend: 100 * time.Millisecond, MaxSuspend: time.Second,
	})
	throttle := []queue.Outcome{{Err: &deliver.Error{Code: 421, Enhanced: "4.7.28", Text: "421 4.7.28 unusual rate"}}}
	admit(p, msg("u1@students.example"), 0).Done(throttle)
	time.Sleep(150 * time.Millisecond) // the suspension is over
	probe := admit(p, msg("u2@students.example"), 0)
	if len(probe.Now) != 1 {
		t.Fatalf("no probe after the suspension: %+v", probe.Later)
	}
	if b := admit(p, msg("u3@students.example"), 0); len(b.Now) != 0 || !strings.Contains(b.Later[0].Why, "first delivery") {
		t.Errorf("a second delivery while the probe runs: %+v", b)
	}
	probe.Done(throttle) // still throttling: suspended again (200ms now)
	if b := admit(p, msg("u3@students.example"), 0); len(b.Now) != 0 || !strings.HasPrefix(b.Later[0].Why, "destination throttled") {
		t.Errorf("after a refused probe: %+v", b)
	}
	time.Sleep(300 * time.Millisecond)
	probe = admit(p, msg("u3@students.example"), 0)
	if len(probe.Now) != 1 {
		t.Fatalf("no second probe: %+v", probe.Later)
	}
	probe.Done(sent(1))
	a, b := admit(p, msg("u4@students.example"), 0), admit(p, msg("u5@students.example"), 0)
	if len(a.Now) != 1 || len(b.Now) != 1 {
		t.Errorf("after a probe got through, deliveries still one at a time: %+v %+v", a.Later, b.Later)
	}
}

// TRANSPORT_transport_rate_delay spaces deliveries over the whole
// transport, whatever the destination.
func TestTransportRateDelay(t *testing.T) {
	l := base()
	l.TransportDelay = time.Hour
	p, _ := pacerWith(Transport{Profile: "none", SMTP: true, Limits: l})
	a := admit(p, msg("u1@students.example"), 0)
	a.Done(sent(1))
	other := p.Plan(context.Background(), envelope.Hop{Transport: "smtp", Nexthop: "elsewhere.example"})
	if b := p.Admit(context.Background(), other, msg("u2@elsewhere.example"), []int{0}); len(b.Now) != 0 || b.Later[0].Why != "rate delay" {
		t.Errorf("another destination within the transport's delay: %+v", b)
	}
}

// A mailbox is counted without its address extension: user+tag@ is
// user@'s mailbox at the provider.
func TestMailboxIgnoresExtension(t *testing.T) {
	l := base()
	l.RecipientRate = []ratelimit.Window{{N: 1, Per: time.Hour}}
	p, _ := pacerWith(Transport{Profile: "none", SMTP: true, Limits: l})
	admit(p, msg("User+a@students.example"), 0).Done(sent(1))
	if b := admit(p, msg("user+b@Students.example"), 0); len(b.Now) != 0 {
		t.Errorf("user+b after user+a, one per hour: %+v", b)
	}
	if b := admit(p, msg("+user@students.example"), 0); len(b.Now) != 1 {
		t.Errorf("+user is a mailbox of its own: %+v", b)
	}
}

// A probe that the rate delay holds back is no probe: it must not leave
// the destination waiting for a delivery that never comes (the rate
// delay outlasting a short suspension is enough).
func TestProbeHeldByRateDelay(t *testing.T) {
	l := base()
	l.RateDelay = 500 * time.Millisecond
	p := New(Options{
		Transport:  func(string) (Transport, bool) { return Transport{Profile: "none", SMTP: true, Limits: l}, true },
		MinSuspend: 100 * time.Millisecond, MaxSuspend: time.Second,
	})
	throttle := []queue.Outcome{{Err: &deliver.Error{Code: 421, Enhanced: "4.7.28", Text: "421 4.7.28 unusual rate"}}}
	admit(p, msg("u1@students.example"), 0).Done(throttle)
	time.Sleep(150 * time.Millisecond) // the suspension is over, the rate delay not
	if a := admit(p, msg("u2@students.example"), 0); len(a.Now) != 0 || a.Later[0].Why != "rate delay" {
		t.Fatalf("within the rate delay: %+v", a)
	}
	time.Sleep(750 * time.Millisecond) // the rate delay is over too
	if a := admit(p, msg("u2@students.example"), 0); len(a.Now) != 1 {
		t.Errorf("the destination is held back for good after its probe waited for the rate delay: %+v", a.Later)
	}
}

// The per-mailbox windows and suspensions are the mailbox's: user+tag
// lands in user's mailbox at the destination, as Postfix names a
// per-recipient queue without the extension (recipient_delimiter), so
// addresses with extensions must not each get the mailbox's whole rate.
func TestRecipientRateIgnoresExtension(t *testing.T) {
	l := base()
	l.RecipientRate = []ratelimit.Window{{N: 1, Per: time.Hour}}
	p, _ := pacerWith(Transport{Profile: "none", SMTP: true, Limits: l, Explicit: RecipientRate})
	p.o.RecipientDelimiter = "+"
	admit(p, msg("busy+a@students.example"), 0).Done(sent(1))
	if a := admit(p, msg("Busy+b@students.example"), 0); len(a.Now) != 0 {
		t.Errorf("busy+b@ got busy@'s mailbox past its rate after busy+a@: %+v", a)
	}
	if a := admit(p, msg("busy@other.example"), 0); len(a.Now) != 1 {
		t.Errorf("the same local part at another domain is another mailbox: %+v", a.Later)
	}
	// A mailbox throttle holds the mailbox, whatever the extension.
	p, _ = pacerWith(Transport{Profile: "none", SMTP: true, Limits: base()})
	p.o.RecipientDelimiter = "+"
	admit(p, msg("u1+x@students.example"), 0).Done([]queue.Outcome{{Err: &deliver.Error{Code: 450, Enhanced: "4.2.1", Text: "host x said: 450 4.2.1 The user you are trying to contact is receiving mail too quickly"}}})
	if a := admit(p, msg("u1+y@students.example"), 0); len(a.Now) != 0 {
		t.Errorf("u1+y@ sent while u1's mailbox is throttled: %+v", a)
	}
}

// With a recipient limit of 1 the concurrency is per recipient, as in
// Postfix; a profile's concurrency is the site's all the same (Google's
// bounds every domain it hosts together), so per-recipient deliveries
// there must not open more than it at once.
func TestPerRecipientKeepsSiteConcurrency(t *testing.T) {
	l := base()
	l.RecipientLimit = 1
	p, _ := pacerWith(Transport{Profile: "google", SMTP: true, Limits: l, Explicit: RecipientLimit})
	g, _ := provider.Lookup("google")
	var running []queue.Admission
	for k := 0; k < g.Concurrency; k++ {
		a := admit(p, msg(fmt.Sprintf("u%d@students.example", k)), 0)
		if len(a.Now) != 1 || a.Key == "" {
			t.Fatalf("delivery %d: %+v; want it sent, under a per-recipient key", k, a)
		}
		running = append(running, a)
	}
	a := admit(p, msg("last@students.example"), 0)
	if len(a.Now) != 0 {
		t.Fatalf("delivery %d to the site while %d run: the profile's concurrency %d is exceeded", g.Concurrency+1, g.Concurrency, g.Concurrency)
	}
	running[0].Done(sent(1))
	if a := admit(p, msg("last@students.example"), 0); len(a.Now) != 1 {
		t.Errorf("held back after a delivery ended: %+v", a.Later)
	}
	running[1].Done(nil) // never delivered: its place is free too
	if a := admit(p, msg("again@students.example"), 0); len(a.Now) != 1 {
		t.Errorf("held back after a delivery was cancelled: %+v", a.Later)
	}
}

// The bandwidth buckets are per destination: those that sit idle are
// forgotten, or every next hop ever mailed would keep one.
func TestBandwidthBucketsForgotten(t *testing.T) {
	p, _ := pacerWith(Transport{Profile: "none", SMTP: true, Limits: base()})
	for i := 0; i < 100000; i++ {
		p.bucket(fmt.Sprintf("smtp:d%d.example", i), 1000)
	}
	p.mu.Lock()
	n := len(p.bw)
	p.mu.Unlock()
	if n > 10000 {
		t.Errorf("%d idle buckets kept for 100,000 destinations", n)
	}
}

// The extension is split as Postfix's split_addr does (the one that
// names its per-recipient queue, qmgr_message.c): with '-' as a
// delimiter, owner-x and x-request are whole local parts, so
// owner-a@ and owner-b@ are two mailboxes, not one "owner".
func TestMailboxSplitsAsPostfix(t *testing.T) {
	l := base()
	l.RecipientRate = []ratelimit.Window{{N: 1, Per: time.Hour}}
	p, _ := pacerWith(Transport{Profile: "none", SMTP: true, Limits: l, Explicit: RecipientRate})
	p.o.RecipientDelimiter = "+-"
	admit(p, msg("owner-a@students.example"), 0).Done(sent(1))
	if a := admit(p, msg("owner-b@students.example"), 0); len(a.Now) != 1 {
		t.Errorf("owner-b@ held back after owner-a@: %+v", a.Later)
	}
	admit(p, msg("a-request@students.example"), 0).Done(sent(1))
	if a := admit(p, msg("a-b@students.example"), 0); len(a.Now) != 1 {
		t.Errorf("a-b@ held back after a-request@: %+v", a.Later)
	}
}

// A connection lost in the middle of a transaction has no reply, but the
// remote may have taken the message ("message may be sent more than
// once"): it counts in the mailbox's window. Only a failure before any
// server was talked to (relay=none) costs nothing.
func TestLostConnectionCounts(t *testing.T) {
	l := base()
	l.RecipientRate = []ratelimit.Window{{N: 1, Per: time.Hour}}
	p, _ := pacerWith(Transport{Profile: "none", SMTP: true, Limits: l, Explicit: RecipientRate})
	a := admit(p, msg("x@students.example"), 0)
	a.Done([]queue.Outcome{{Err: &deliver.Error{Text: "lost connection with mx.students.example[192.0.2.1] while sending end of data -- message may be sent more than once", Relay: "mx.students.example[192.0.2.1]:25"}}})
	if a := admit(p, msg("x@students.example"), 0); len(a.Now) != 0 {
		t.Errorf("a second message within the window after one that may have arrived: %+v", a)
	}
}

// Go: a delivery admitted before a throttling reply is held back while
// the suspension lasts, and after it becomes the one probe.
func TestGoAfterThrottle(t *testing.T) {
	p := New(Options{
		Transport:  func(string) (Transport, bool) { return Transport{Profile: "none", SMTP: true, Limits: base()}, true },
		MinSuspend: 150 * time.Millisecond, MaxSuspend: time.Second,
	})
	waiting := admit(p, msg("u1@students.example"), 0)
	admit(p, msg("u2@students.example"), 0).Done([]queue.Outcome{{Err: &deliver.Error{Code: 421, Enhanced: "4.7.28", Relay: "mx[192.0.2.1]:25", Text: "421 4.7.28 unusual rate"}}})
	if later := waiting.Go(); len(later) != 1 || !strings.HasPrefix(later[0].Why, "destination throttled") {
		t.Fatalf("during the suspension: %+v; want it held back", later)
	}
	time.Sleep(200 * time.Millisecond)
	if later := waiting.Go(); len(later) != 0 {
		t.Fatalf("after the suspension: %+v; want it to go, as the probe", later)
	}
	if b := admit(p, msg("u3@students.example"), 0); len(b.Now) != 0 {
		t.Errorf("a second delivery beside the probe: %+v", b)
	}
	waiting.Done(sent(1))
	if b := admit(p, msg("u3@students.example"), 0); len(b.Now) != 1 {
		t.Errorf("held back after the probe got through: %+v", b.Later)
	}
}

// Go leaving out a recipient whose mailbox was throttled meanwhile gives
// back its place in the mailbox's window, and Done then hears of the
// others only.
func TestGoLeavesOutThrottledMailbox(t *testing.T) {
	l := base()
	l.RecipientRate = []ratelimit.Window{{N: 2, Per: time.Hour}}
	p := New(Options{
		Transport:  func(string) (Transport, bool) { return Transport{Profile: "none", SMTP: true, Limits: l}, true },
		MinSuspend: 100 * time.Millisecond, MaxSuspend: time.Second,
	})
	waiting := admit(p, msg("u1@students.example", "u2@students.example"), 0, 1)
	admit(p, msg("u1@students.example"), 0).Done([]queue.Outcome{{Err: &deliver.Error{Code: 450, Enhanced: "4.2.1", Relay: "mx[192.0.2.1]:25", Text: "450 4.2.1 receiving mail too quickly"}}})
	later := waiting.Go()
	if len(later) != 1 || later[0].Rcpt != 0 || !strings.HasPrefix(later[0].Why, "mailbox throttled") {
		t.Fatalf("Go: %+v; want u1 held back, u2 sent", later)
	}
	waiting.Done(sent(1)) // u2's outcome alone
	time.Sleep(150 * time.Millisecond)
	if a := admit(p, msg("u1@students.example"), 0); len(a.Now) != 1 {
		t.Errorf("u1's window still counts the delivery Go left out: %+v", a.Later)
	}
}
