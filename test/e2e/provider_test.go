package e2e

import (
	"fmt"
	"net"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mailtee/mailtee/internal/ratelimit"
	"github.com/mailtee/mailtee/internal/standin"
)

// Issue 16's done criteria, through the provider stand-in
// (internal/standin): a mailtee relay sends a provider's domain to the
// stand-in, which enforces the same (scaled-down) receiving limits as
// the provider does and locks a mailbox that is offered mail beyond
// them, so a sender that exceeds bounces mail.

// startStandin starts a stand-in, closed at test cleanup.
func startStandin(t *testing.T, o standin.Options) *standin.Server {
	t.Helper()
	var s *standin.Server
	var err error
	// The address may be one a test reserved and a previous listener
	// just released: try for a while, as harness.Listen does.
	for try := 0; try < 50; try++ {
		if s, err = standin.Start(o); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// provMsg is one message to inject: its one recipient and Message-ID.
type provMsg struct{ rcpt, id string }

// inject submits msgs to addr over `sessions` parallel SMTP sessions,
// many transactions each (mailtee's group commit then shares fsyncs),
// and fails the test on the first refusal.
func inject(t *testing.T, addr, from string, msgs []provMsg, sessions int) {
	t.Helper()
	ch := make(chan provMsg)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	fail := func(err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		mu.Unlock()
	}
	for i := 0; i < sessions; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var c *smtp.Client
			defer func() {
				if c != nil {
					c.Quit()
				}
			}()
			for m := range ch {
				if c == nil {
					var err error
					if c, err = smtp.Dial(addr); err != nil {
						fail(err)
						continue
					}
					if err := c.Hello("client.test.example"); err != nil {
						fail(err)
					}
				}
				if err := sendOn(c, from, m); err != nil {
					fail(fmt.Errorf("%s to %s: %w", m.id, m.rcpt, err))
					c.Close()
					c = nil
				}
			}
		}()
	}
	for _, m := range msgs {
		ch <- m
	}
	close(ch)
	wg.Wait()
	if firstErr != nil {
		t.Fatalf("injecting: %v", firstErr)
	}
}

func sendOn(c *smtp.Client, from string, m provMsg) error {
	if err := c.Mail(from, nil); err != nil {
		return err
	}
	if err := c.Rcpt(m.rcpt, nil); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "Message-ID: <%s>\r\nFrom: %s\r\nTo: %s\r\nSubject: %s\r\n\r\nA copy.\r\n", m.id, from, m.rcpt, m.id)
	return w.Close()
}

// reservePort is a free port on 127.0.0.1 for a next hop that is not up
// yet.
func reservePort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// exactlyOnce checks that each message was accepted once, for its
// recipient, and nothing else was.
func exactlyOnce(t *testing.T, s *standin.Server, msgs []provMsg) {
	t.Helper()
	want := map[string]string{}
	for _, m := range msgs {
		want["<"+m.id+">"] = strings.ToLower(m.rcpt)
	}
	seen := map[string]int{}
	for _, r := range s.Accepted() {
		seen[r.MessageID]++
		if w, ok := want[r.MessageID]; !ok || w != r.Rcpt {
			t.Errorf("accepted %s for %s: not a message sent to it", r.MessageID, r.Rcpt)
		}
	}
	missing, dup := 0, 0
	for id := range want {
		switch n := seen[id]; {
		case n == 0:
			missing++
		case n > 1:
			dup++
		}
	}
	if missing > 0 || dup > 0 {
		t.Errorf("of %d messages, %d never accepted and %d accepted more than once", len(want), missing, dup)
	}
}

// noBounces checks that mailtee bounced nothing and nobody local (the
// sender, postmaster) was told of a failure.
func noBounces(t *testing.T, in *instance) {
	t.Helper()
	if strings.Contains(in.Log.String(), "status=bounced") {
		for _, l := range strings.Split(in.Log.String(), "\n") {
			if strings.Contains(l, "status=bounced") {
				t.Errorf("bounced: %s", l)
				break
			}
		}
	}
	for _, u := range []string{"sender", "admin", "postmaster"} {
		if n := len(in.MaildirMessages(u)); n > 0 {
			t.Errorf("%s got %d notices", u, n)
		}
	}
}

// minDrain is the least time the windows allow between the first and
// the last of n deliveries to one key: for each window N/Per,
// (ceil(n/N)-1)*Per; the largest binds.
func minDrain(ws []ratelimit.Window, n int) (time.Duration, ratelimit.Window) {
	var best time.Duration
	var bind ratelimit.Window
	for _, w := range ws {
		if d := time.Duration((n+w.N-1)/w.N-1) * w.Per; d >= best {
			best, bind = d, w
		}
	}
	return best, bind
}

// earliest is the least time from the first to the last of n
// deliveries to one key that all the windows together allow: the
// greedy schedule, each delivery as early as every window lets it (the
// i-th no sooner than Per after the (i-N)-th), which no schedule beats.
// With several windows it exceeds minDrain's single-window figure (at
// 50/1s, 250/10s each batch of 250 takes 4 s more).
func earliest(ws []ratelimit.Window, n int) time.Duration {
	if n == 0 {
		return 0
	}
	t := make([]time.Duration, n)
	for i := 1; i < n; i++ {
		t[i] = t[i-1]
		for _, w := range ws {
			if i >= w.N && t[i-w.N]+w.Per > t[i] {
				t[i] = t[i-w.N] + w.Per
			}
		}
	}
	return t[n-1]
}

// The backlog: a relay comes back to a provider with 1,000 copies for
// one busy mailbox and 10,000 spread over 1,000 mailboxes (10 each). It
// must drain with no mailbox and no window ever above its limit (the
// stand-in would refuse and lock the mailbox, and mail would bounce),
// each message once, and the spread mailboxes not held back by the
// busy one. MAILTEE_SOAK=1 makes it bigger.
func TestProviderBacklog(t *testing.T) {
	busyN, boxes, perBox := 1000, 1000, 10
	if os.Getenv("MAILTEE_SOAK") != "" {
		busyN, boxes, perBox = 3000, 5000, 10
	}
	const mailboxRate, siteRate = "50/1s, 250/10s", "2000/1s"
	mws, _ := ratelimit.ParseWindows(mailboxRate)
	sws, _ := ratelimit.ParseWindows(siteRate)

	addr := reservePort(t)
	in := newInstance(t, fmt.Sprintf(`transport_maps = inline:{ prov.example=smtp:[127.0.0.1]:%s }
smtp_recipient_rate_limit = %s
smtp_destination_rate_limit = %s
smtp_destination_profile = none
`, addr[strings.LastIndexByte(addr, ':')+1:], mailboxRate, siteRate), nil)
	in.Start()

	var msgs []provMsg
	for i := 0; i < busyN; i++ {
		msgs = append(msgs, provMsg{"busy@prov.example", fmt.Sprintf("busy-%d@test", i)})
	}
	for j := 0; j < perBox; j++ {
		for b := 0; b < boxes; b++ {
			msgs = append(msgs, provMsg{fmt.Sprintf("u%04d@prov.example", b), fmt.Sprintf("u%04d-%d@test", b, j)})
		}
	}
	t0 := time.Now()
	inject(t, in.Addr(), "sender@test.example", msgs, 16)
	t.Logf("injected %d messages in %v (the provider down)", len(msgs), time.Since(t0).Round(time.Millisecond))

	// The provider comes back.
	s := startStandin(t, standin.Options{Addr: addr, Flavor: standin.Google, MailboxRate: mws, Lockout: time.Hour})
	back := time.Now()
	minBusy, bind := minDrain(mws, busyN)
	exact := earliest(mws, busyN)
	timeout := 3*minBusy + 2*time.Minute
	waitUntil(t, "the backlog to drain", timeout, func() bool {
		return len(s.Accepted()) >= len(msgs) || len(s.Refused()) > 0 && s.Locked("busy@prov.example")
	})

	exactlyOnce(t, s, msgs)
	for _, r := range s.Refused() {
		t.Errorf("the stand-in refused %s: %s (%s)", r.Rcpt, r.Reply, r.Why)
		break
	}
	if n := len(s.Refused()); n > 0 {
		t.Errorf("%d refusals in all", n)
	}
	byRcpt := map[string][]time.Time{}
	var all []time.Time
	for _, r := range s.Accepted() {
		byRcpt[r.Rcpt] = append(byRcpt[r.Rcpt], r.Time)
		all = append(all, r.Time)
	}
	for rcpt, ts := range byRcpt {
		if s.Locked(rcpt) {
			t.Errorf("%s locked", rcpt)
		}
		for _, w := range mws {
			if n := standin.MaxInSpan(ts, w.Per); n > w.N {
				t.Errorf("%s received %d in %v, limit %v", rcpt, n, w.Per, w)
			}
		}
	}
	for _, w := range sws {
		if n := standin.MaxInSpan(all, w.Per); n > w.N {
			t.Errorf("the site received %d in %v, limit %v", n, w.Per, w)
		}
	}

	// Drain times: the busy mailbox from its first acceptance to its
	// last, against the least the windows allow; the spread mailboxes
	// from the provider's return to their last acceptance.
	busy := byRcpt["busy@prov.example"]
	sort.Slice(busy, func(i, j int) bool { return busy[i].Before(busy[j]) })
	var spreadLast time.Time
	for rcpt, ts := range byRcpt {
		if rcpt == "busy@prov.example" {
			continue
		}
		for _, x := range ts {
			if x.After(spreadLast) {
				spreadLast = x
			}
		}
	}
	if len(busy) == 0 || spreadLast.IsZero() {
		t.Fatalf("nothing delivered; log tail:\n%s", tail(in.Log.String(), 40))
	}
	busyDrain := busy[len(busy)-1].Sub(busy[0])
	spreadDrain := spreadLast.Sub(back)
	t.Logf("busy mailbox: %d messages drained in %v (first to last); the windows %s allow %v at best (%v for the binding window %v alone), ratio %.2f",
		len(busy), busyDrain.Round(time.Millisecond), mailboxRate, exact, minBusy, bind, busyDrain.Seconds()/exact.Seconds())
	t.Logf("spread: %d messages to %d mailboxes drained %v after the provider returned (site limit %s: at best %v for them alone, %v for all %d); busy mailbox done %v after",
		boxes*perBox, boxes, spreadDrain.Round(time.Millisecond), siteRate, earliest(sws, boxes*perBox), earliest(sws, len(msgs)), len(msgs), busy[len(busy)-1].Sub(back).Round(time.Millisecond))
	if busyDrain < exact {
		t.Errorf("busy mailbox drained in %v, less than the windows allow (%v): a window was exceeded", busyDrain, exact)
	}
	// Close to what the limits allow, with generous slack for a busy
	// machine.
	if busyDrain > 2*exact+20*time.Second {
		t.Errorf("busy mailbox drained in %v, far more than the %v the windows allow", busyDrain, exact)
	}
	// Not held back: the spread mailboxes finish while the busy one is
	// still draining, well before its end.
	if !spreadLast.Before(busy[len(busy)-1].Add(-minBusy / 4)) {
		t.Errorf("the spread mailboxes finished %v after the provider returned, the busy one %v: held back behind it",
			spreadDrain, busy[len(busy)-1].Sub(back))
	}
	noBounces(t, in)
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	l := strings.Split(s, "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// A storm of throttling replies (Google's 421 4.7.28 for the sending
// address, Microsoft's 550 5.2.122 for the mailbox) ends in deliveries,
// never bounces, and another destination keeps flowing meanwhile.
func TestProviderStorm(t *testing.T) {
	for _, c := range []struct{ flavor, reply string }{
		{standin.Google, "421 4.7.28"},
		{standin.Microsoft365, "550 5.2.122"},
	} {
		t.Run(c.flavor, func(t *testing.T) {
			const stormFor = 6 * time.Second
			s := startStandin(t, standin.Options{Flavor: c.flavor, Storm: c.reply, StormFor: stormFor})
			stormEnd := time.Now().Add(stormFor)
			other := newSink(t, "", nil)
			in := newInstance(t, fmt.Sprintf(`transport_maps = inline:{ prov.example=smtp:[127.0.0.1]:%s, other.example=smtp:[127.0.0.1]:%d }
smtp_destination_profile = none
`, s.Addr()[strings.LastIndexByte(s.Addr(), ':')+1:], other.Port()), nil)
			in.Start()
			var prov, oth []provMsg
			for i := 0; i < 20; i++ {
				prov = append(prov, provMsg{fmt.Sprintf("u%d@prov.example", i%10), fmt.Sprintf("prov-%d@test", i)})
				oth = append(oth, provMsg{fmt.Sprintf("u%d@other.example", i%10), fmt.Sprintf("other-%d@test", i)})
			}
			var both []provMsg
			for i := range prov {
				both = append(both, prov[i], oth[i])
			}
			inject(t, in.Addr(), "sender@test.example", both, 4)
			waitUntil(t, "the other destination's deliveries", 30*time.Second, func() bool { return other.Total() >= len(oth) })
			if time.Now().After(stormEnd) {
				t.Errorf("the other destination was only done after the storm (%v late): held back by it", time.Since(stormEnd))
			}
			if len(s.Refused()) == 0 {
				t.Error("the storm refused nothing: the test tests nothing")
			}
			waitUntil(t, "deliveries after the storm", 60*time.Second, func() bool {
				return len(s.Accepted()) >= len(prov) || strings.Contains(in.Log.String(), "status=bounced")
			})
			exactlyOnce(t, s, prov)
			for _, r := range s.Refused() {
				if r.Why != "storm" {
					t.Errorf("refused for %s: %s", r.Why, r.Reply)
				}
			}
			time.Sleep(time.Second) // a notice would be on its way by now
			noBounces(t, in)
			// When the refusals came, relative to the storm's start: how
			// mailtee backed off.
			var when []string
			for _, r := range s.Refused() {
				when = append(when, r.Time.Sub(stormEnd.Add(-stormFor)).Round(100*time.Millisecond).String())
			}
			t.Logf("%s storm: %d refusals (at %s), last delivery %v after the storm ended", c.reply, len(s.Refused()),
				strings.Join(when, " "), lastAccepted(s).Sub(stormEnd).Round(time.Millisecond))
		})
	}
}

func lastAccepted(s *standin.Server) time.Time {
	var last time.Time
	for _, r := range s.Accepted() {
		if r.Time.After(last) {
			last = r.Time
		}
	}
	return last
}

// smtp_destination_profile = google: deliveries use TLS when the site
// offers it, and a site that offers none gets nothing in clear: the
// mail is deferred.
func TestProviderProfileTLS(t *testing.T) {
	s := startStandin(t, standin.Options{Flavor: standin.Google})
	clear := newSink(t, "", nil)
	in := newInstance(t, fmt.Sprintf(`transport_maps = inline:{ prov.example=smtp:[127.0.0.1]:%s, clear.example=smtp:[127.0.0.1]:%d }
smtp_destination_profile = google
`, s.Addr()[strings.LastIndexByte(s.Addr(), ':')+1:], clear.Port()), nil)
	in.Start()
	inject(t, in.Addr(), "sender@test.example", []provMsg{
		{"a@prov.example", "tls-1@test"}, {"b@prov.example", "tls-2@test"}, {"c@clear.example", "clear-1@test"},
	}, 1)
	waitUntil(t, "deliveries to the TLS site", 30*time.Second, func() bool { return len(s.Accepted()) >= 2 })
	for _, r := range s.Accepted() {
		if !r.TLS {
			t.Errorf("%s delivered without TLS", r.MessageID)
		}
	}
	deferred := func() string {
		for _, l := range strings.Split(in.Log.String(), "\n") {
			if strings.Contains(l, "to=<c@clear.example>") && strings.Contains(l, "status=deferred") {
				return l
			}
		}
		return ""
	}
	waitUntil(t, "the site without TLS to be deferred (or sent to)", 20*time.Second, func() bool { return deferred() != "" || clear.Total() > 0 })
	time.Sleep(2 * time.Second) // a retry (backoff 1-2 s) would send in clear now
	if n := clear.Total(); n != 0 {
		t.Errorf("the site without STARTTLS received %d messages in clear", n)
	}
	if l := deferred(); l == "" {
		t.Errorf("no deferral logged for the site without TLS; log tail:\n%s", tail(in.Log.String(), 30))
	} else {
		t.Logf("without TLS: %s", l)
	}
	noBounces(t, in)
}
