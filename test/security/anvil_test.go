package security

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailtee/mailtee/test/internal/harness"
)

// Client limits (issue 12, item 5): Postfix's anvil(8) limits, its
// process limit with stress mode, and smtpd_junk_command_limit.

// idleFlood opens n connections from the given addresses in turn, each
// greeted and then silent, and returns them.
func idleFlood(t *testing.T, addr string, n int, from ...string) []*rawSMTP {
	t.Helper()
	var mu sync.Mutex
	var out []*rawSMTP
	var wg sync.WaitGroup
	errs := make(chan string, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			c := dialRawNoGreeting(t, addr, from[i%len(from)])
			if g := c.Reply(); !strings.HasPrefix(g, "220 ") {
				errs <- fmt.Sprintf("idle connection %d from %s: %q", i, from[i%len(from)], g)
			}
			mu.Lock()
			out = append(out, c)
			mu.Unlock()
		}(i)
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	return out
}

// message says EHLO, sends one message to rcpt and QUIT.
func (r *rawSMTP) message(helo, rcpt string) {
	r.T.Helper()
	r.must("EHLO "+helo, "250")
	r.must("MAIL FROM:<s@outside.example>", "250 ")
	r.must("RCPT TO:<"+rcpt+">", "250 ")
	r.must("DATA", "354 ")
	r.must("Subject: "+helo+"\r\n\r\nhello\r\n.", "250 ")
	r.cmd("QUIT")
}

// The attack: 100 idle connections from two addresses (50 each, Postfix's
// smtpd_client_connection_count_limit) took every one of the 100 places
// (default_process_limit), and for smtpd_timeout (300 s) every other
// client, those in mynetworks included, was refused. Now a client in
// smtpd_client_event_limit_exceptions ($mynetworks) is served at once;
// the others wait for a place instead of a 421; reaching the limit starts
// stress mode, whose smtpd_timeout (10 s by default) ends the idle
// sessions, and then the waiting client is served. All with Postfix's
// defaults.
func TestIdleFloodDoesNotStarve(t *testing.T) {
	in := newInstance(t, "mynetworks = 127.0.0.1/32\n", nil)
	in.Start()
	start := time.Now()
	idle := idleFlood(t, in.Addr(), 100, "127.0.0.2", "127.0.0.3")
	t.Logf("100 idle sessions open after %v", time.Since(start))

	// mynetworks: served now, not after the flood.
	t0 := time.Now()
	c := dialRawNoGreeting(t, in.Addr(), "127.0.0.1")
	trusted := true
	if g := c.Reply(); !strings.HasPrefix(g, "220 ") {
		t.Errorf("a client in mynetworks, with 100 idle sessions open: %q", g)
		trusted = false
	} else {
		c.message("trusted.example", "trusted@test.example")
		t.Logf("client in mynetworks: message accepted %v after connecting", time.Since(t0))
	}

	// Any other client: it waits, not refused, and is served once
	// stress mode has cut the idle sessions.
	t0 = time.Now()
	o := dialRawNoGreeting(t, in.Addr(), "127.0.0.4")
	o.Conn.SetReadDeadline(time.Now().Add(slow(60 * time.Second)))
	if g := o.Reply(); !strings.HasPrefix(g, "220 ") {
		t.Fatalf("another client: %q after %v", g, time.Since(t0))
	}
	waited := time.Since(t0)
	t.Logf("client outside mynetworks: greeted after %v", waited)
	if waited > slow(40*time.Second) {
		t.Errorf("greeted only after %v; stress mode's smtpd_timeout is 10s", waited)
	}
	o.Conn.SetReadDeadline(time.Now().Add(slow(60 * time.Second)))
	o.message("other.example", "other@test.example")

	// The idle sessions were told so and closed, in stress mode's time.
	cut := 0
	for _, c := range idle {
		if rest, ok := c.closed(slow(20 * time.Second)); ok && strings.Contains(rest, "421 4.4.2 ") {
			cut++
		}
	}
	if cut != 100 {
		t.Errorf("%d of 100 idle sessions cut with a 421 timeout", cut)
	}
	t.Logf("idle sessions cut %v after the flood began", time.Since(start))
	in.WaitLog(fmt.Sprintf(`warning: service "smtp" (%d) has reached its process limit "100": new clients may experience noticeable delays`, in.Port))
	waitUntil(t, "both messages delivered", slow(30*time.Second), func() bool {
		return (!trusted || len(in.MaildirMessages("trusted")) == 1) && len(in.MaildirMessages("other")) == 1
	})
	in.alive("flood")
}

// default_process_limit is honoured (it was fixed at 100), and a
// ${stress?...} value set in main.cf takes effect once it is reached:
// here 5 sessions, then the 6th client waits; smtpd_timeout =
// ${stress?{2}:{300}}s cuts the idle ones after 2 s and the 6th is
// served.
func TestDefaultProcessLimit(t *testing.T) {
	in := newInstance(t, "mynetworks = 127.0.0.1/32\ndefault_process_limit = 5\nsmtpd_timeout = ${stress?{2}:{300}}s\n", nil)
	in.Start()
	if out, err := in.Run("", "check"); err != nil || strings.Contains(out, "default_process_limit") {
		t.Errorf("check: %v\n%s", err, out)
	}
	idle := idleFlood(t, in.Addr(), 5, "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6")
	t0 := time.Now()
	w := dialRawNoGreeting(t, in.Addr(), "127.0.0.7")
	w.Conn.SetReadDeadline(time.Now().Add(slow(30 * time.Second)))
	g := w.Reply()
	waited := time.Since(t0)
	t.Logf("6th client: %q after %v", g, waited)
	if !strings.HasPrefix(g, "220 ") {
		t.Fatalf("6th client: %q", g)
	}
	if waited < 300*time.Millisecond {
		t.Errorf("6th client greeted after %v: default_process_limit = 5 not honoured", waited)
	}
	in.WaitLog(`has reached its process limit "5"`)
	in.WaitLog(`in stress mode: smtpd_timeout 2s, smtpd_hard_error_limit 1, smtpd_junk_command_limit 1`)
	for _, c := range idle {
		if rest, ok := c.closed(slow(10 * time.Second)); !ok || !strings.Contains(rest, "421 4.4.2 ") {
			t.Errorf("idle session not cut: %q", rest)
		}
	}
	w.must("EHLO w.example", "250")
	w.cmd("QUIT")
}

// The anvil rates, as Postfix answers them (smtpd.c), per
// anvil_rate_time_unit, with smtpd_client_event_limit_exceptions exempt:
// they were refused at start-up ("not implemented by mailtee").
func TestClientRateLimits(t *testing.T) {
	in := newInstance(t, `mynetworks = 127.0.0.1/32
smtpd_client_event_limit_exceptions = $mynetworks 127.0.0.5
anvil_rate_time_unit = 4s
smtpd_client_connection_rate_limit = 3
smtpd_client_message_rate_limit = 2
smtpd_client_recipient_rate_limit = 3
`, nil)
	in.Start()

	t.Run("connections", func(t *testing.T) {
		for i := 0; i < 3; i++ {
			dialRaw(t, in.Addr(), "127.0.0.2").cmd("QUIT")
		}
		c := dialRawNoGreeting(t, in.Addr(), "127.0.0.2")
		if g := c.Reply(); g != "421 4.7.0 mx.test.example Error: too many connections from 127.0.0.2" {
			t.Errorf("4th connection in the time unit: %q", g)
		}
		if _, ok := c.closed(slow(10 * time.Second)); !ok {
			t.Errorf("refused connection left open")
		}
		in.WaitLog("warning: Connection rate limit exceeded: 4 from localhost[127.0.0.2] for service smtp")
		for _, ex := range []string{"127.0.0.1", "127.0.0.5"} {
			for i := 0; i < 5; i++ {
				dialRaw(t, in.Addr(), ex).cmd("QUIT")
			}
		}
	})

	t.Run("messages and recipients", func(t *testing.T) {
		c := dialRaw(t, in.Addr(), "127.0.0.3")
		c.must("EHLO rate.example", "250")
		c.must("MAIL FROM:<s@outside.example>", "250 ")
		for _, r := range []string{"r1", "r2", "r3"} {
			c.must("RCPT TO:<"+r+"@test.example>", "250 ")
		}
		if r := c.cmd("RCPT TO:<r4@test.example>"); r != "450 4.7.1 Error: too many recipients from 127.0.0.3" {
			t.Errorf("4th recipient: %q", r)
		}
		c.must("DATA", "354 ")
		c.must("Subject: rate\r\n\r\nx\r\n.", "250 ")
		c.must("MAIL FROM:<s@outside.example>", "250 ")
		c.must("RSET", "250 ")
		if r := c.cmd("MAIL FROM:<s@outside.example>"); r != "450 4.7.1 Error: too much mail from 127.0.0.3" {
			t.Errorf("3rd MAIL: %q", r)
		}
		in.WaitLog("warning: Recipient address rate limit exceeded: 4 from localhost[127.0.0.3] for service smtp")
		in.WaitLog("warning: Message delivery request rate limit exceeded: 3 from localhost[127.0.0.3] for service smtp")

		// Exempt: no limit.
		e := dialRaw(t, in.Addr(), "127.0.0.5")
		e.must("EHLO exempt.example", "250")
		for i := 0; i < 5; i++ {
			e.must("MAIL FROM:<s@outside.example>", "250 ")
			for j := 0; j < 5; j++ {
				e.must(fmt.Sprintf("RCPT TO:<e%d@test.example>", j), "250 ")
			}
			e.must("RSET", "250 ")
		}
		e.cmd("QUIT")

		// A new time unit: welcome again.
		time.Sleep(4100 * time.Millisecond)
		c.must("MAIL FROM:<s@outside.example>", "250 ")
		c.must("RCPT TO:<r5@test.example>", "250 ")
		c.cmd("QUIT")
		waitUntil(t, "delivery", slow(30*time.Second), func() bool { return len(in.MaildirMessages("r3")) == 1 })
		if len(in.MaildirMessages("r4")) != 0 {
			t.Errorf("the recipient over the rate got mail")
		}
	})
	in.alive("rates")
}

// The attack: 7,000 NOOP, VRFY and RSET on one connection were all
// answered. Postfix counts each junk command past smtpd_junk_command_limit
// (100) as an error and hangs up at smtpd_hard_error_limit (20): EHLO and
// 120 more are answered, then "421 4.7.0 ... Error: too many errors".
func TestJunkCommandFlood(t *testing.T) {
	// No pauses (smtpd_soft_error_limit = hard): the test is about the
	// count.
	in := newInstance(t, "mynetworks = 127.0.0.1/32\nsmtpd_soft_error_limit = 20\n", nil)
	in.Start()
	c := dialRaw(t, in.Addr(), "127.0.0.2")
	// One command at a time: the server reads everything it is sent,
	// so its close cannot lose the last replies to a reset.
	answered, last := 0, ""
	for i := 0; i <= 7000; i++ {
		cmd := "EHLO junk.example"
		if i > 0 {
			cmd = []string{"NOOP", "VRFY root", "RSET"}[i%3]
		}
		last = c.try(cmd)
		if !strings.HasPrefix(last, "2") {
			break
		}
		answered++
	}
	t.Logf("%d of 7001 commands answered; then %q", answered, last)
	if answered != 121 {
		t.Errorf("%d commands answered, want 121 (EHLO, 100 more, then 20 errors)", answered)
	}
	if last != "421 4.7.0 mx.test.example Error: too many errors" {
		t.Errorf("after them: %q", last)
	}
	if _, ok := c.closed(slow(10 * time.Second)); !ok {
		t.Errorf("connection left open")
	}
	in.WaitLog("too many errors after ")
	in.alive("junk")
}

// The same flood after STARTTLS, counted and cut as in plaintext, with
// Postfix's 421 (mailtee does TLS below go-smtp and reads its replies):
// EHLO, STARTTLS (not junk), EHLO, 119 more, the last 20 of them errors.
func TestJunkCommandFloodTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, _ := harness.TestCert(t, dir, "mx.test.example")
	in := newInstance(t, fmt.Sprintf("mynetworks = 127.0.0.1/32\nsmtpd_soft_error_limit = 20\nsmtpd_tls_cert_file = %s\nsmtpd_tls_key_file = %s\n", certFile, keyFile), nil)
	in.Start()
	c := dialRaw(t, in.Addr(), "127.0.0.2")
	c.must("EHLO junk.example", "250")
	c.must("STARTTLS", "220 ")
	tc := tls.Client(c.Conn, &tls.Config{ServerName: "mx.test.example", InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	c.Conn, c.R = tc, bufio.NewReader(tc)
	c.must("EHLO junk.example", "250")
	answered, last := 0, ""
	for i := 0; i < 7000; i++ {
		if last = c.try([]string{"NOOP", "VRFY root", "RSET"}[i%3]); !strings.HasPrefix(last, "2") {
			break
		}
		answered++
	}
	t.Logf("%d junk commands answered after STARTTLS; then %q", answered, last)
	if answered != 119 {
		t.Errorf("%d junk commands answered after STARTTLS, want 119", answered)
	}
	if last != "421 4.7.0 mx.test.example Error: too many errors" {
		t.Errorf("after them: %q", last)
	}
	if _, ok := c.closed(slow(10 * time.Second)); !ok {
		t.Errorf("connection left open")
	}
	in.WaitLog("too many errors after ")
	in.alive("junk-tls")
}

// smtpd_client_connection_count_limit still works with the waiting
// clients: a client over it is refused at once, while waiting does not
// count against others. (TestConnectionLimits in limits_test.go covers
// the rest.)
func TestCountLimitWhileFull(t *testing.T) {
	in := newInstance(t, "mynetworks = 127.0.0.1/32\ndefault_process_limit = 3\nsmtpd_client_connection_count_limit = 2\n", nil)
	in.Start()
	idleFlood(t, in.Addr(), 3, "127.0.0.2", "127.0.0.3", "127.0.0.4")
	w := dialRawNoGreeting(t, in.Addr(), "127.0.0.2") // waits: 2nd from .2
	over := dialRawNoGreeting(t, in.Addr(), "127.0.0.2")
	if g := over.Reply(); g != "421 4.7.0 mx.test.example Error: too many connections from 127.0.0.2" {
		t.Errorf("3rd connection from 127.0.0.2: %q", g)
	}
	w.Conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	if _, err := w.R.ReadByte(); err == nil {
		t.Errorf("the 4th client was greeted past default_process_limit = 3")
	} else if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
		t.Errorf("the 4th client: %v", err)
	}
}
