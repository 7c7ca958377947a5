package smtpd

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

// silent checks that the server says nothing for d (a client waiting for
// a place), then restores the connection's deadline.
func (c *client) silent(d time.Duration) {
	c.t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(d))
	line, err := c.r.ReadString('\n')
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		c.t.Fatalf("the server spoke: %q, %v", line, err)
	}
	c.nc.SetReadDeadline(time.Now().Add(20 * time.Second))
}

// smtpd.c: a client over smtpd_client_connection_count_limit gets "421
// 4.7.0 HOST Error: too many connections from ADDR" instead of the
// greeting, and the warning "Connection concurrency limit exceeded: N
// from NAME[ADDR] for service smtp"; a client in
// smtpd_client_event_limit_exceptions is not counted; a closed
// connection frees its place.
func TestConnectionCountLimit(t *testing.T) {
	refused := "421 4.7.0 mx.example.com Error: too many connections from 127.0.0.1"
	ts := start(t, func(o *Options) { o.Client.ConnectionCount = 1; o.Policy = testPolicy(t, "127.0.0.2/32") })
	c1 := dial(t, ts.addr)
	c1.expect("220 ")
	c2 := dial(t, ts.addr)
	if got := c2.reply(); got != refused {
		t.Errorf("second connection: %q", got)
	}
	c2.closed()
	ts.log.waitFor(t, "warning: Connection concurrency limit exceeded: 2 from localhost[127.0.0.1] for service smtp")
	// Another client, and an exempt one beyond the limit.
	dialFrom(t, ts.addr, "127.0.0.3").expect("220 ")
	for i := 0; i < 3; i++ {
		dialFrom(t, ts.addr, "127.0.0.2").expect("220 ")
	}
	c1.must("QUIT", "221 ")
	c1.closed()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c3 := dial(t, ts.addr)
		got := c3.reply()
		if strings.HasPrefix(got, "220 ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still refused: %q", got)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// smtpd_client_connection_rate_limit: connections per anvil_rate_time_unit,
// refused ones included, with the same 421 and the warning "Connection
// rate limit exceeded".
func TestConnectionRateLimit(t *testing.T) {
	ts := start(t, func(o *Options) {
		o.Client = ClientLimits{ConnectionRate: 3, TimeUnit: time.Hour}
		o.Policy = testPolicy(t, "127.0.0.2/32")
	})
	for i := 0; i < 3; i++ {
		c := dial(t, ts.addr)
		c.expect("220 ")
		c.must("QUIT", "221 ")
	}
	c := dial(t, ts.addr)
	if got := c.reply(); got != "421 4.7.0 mx.example.com Error: too many connections from 127.0.0.1" {
		t.Errorf("4th connection in the unit: %q", got)
	}
	c.closed()
	ts.log.waitFor(t, "warning: Connection rate limit exceeded: 4 from localhost[127.0.0.1] for service smtp")
	for i := 0; i < 5; i++ {
		dialFrom(t, ts.addr, "127.0.0.2").expect("220 ")
	}
	dialFrom(t, ts.addr, "127.0.0.3").expect("220 ")
}

// smtpd_client_message_rate_limit and smtpd_client_recipient_rate_limit:
// MAIL and RCPT over the rate are answered "450 4.7.1 Error: too much
// mail from ADDR" and "450 4.7.1 Error: too many recipients from ADDR",
// count as errors, and are counted across sessions; a new time unit
// starts the counts again.
func TestMessageAndRecipientRates(t *testing.T) {
	ts := start(t, func(o *Options) {
		o.Client = ClientLimits{MessageRate: 2, RecipientRate: 3, TimeUnit: 4 * time.Second}
		o.Policy = testPolicy(t, "127.0.0.2/32")
	})
	c := ts.session(t)
	c.must("MAIL FROM:<s@remote.example>", "250 ")
	c.must("RCPT TO:<alice@example.com>", "250 ")
	c.must("RCPT TO:<bob@example.com>", "250 ")
	c.must("RSET", "250 ")
	c.must("MAIL FROM:<s@remote.example>", "250 ")
	c.must("RCPT TO:<carol@example.com>", "250 ")
	if got := c.cmd("RCPT TO:<alice@example.com>"); got != "450 4.7.1 Error: too many recipients from 127.0.0.1" {
		t.Errorf("4th recipient: %q", got)
	}
	c.must("RSET", "250 ")
	c2 := ts.session(t)
	if got := c2.cmd("MAIL FROM:<s@remote.example>"); got != "450 4.7.1 Error: too much mail from 127.0.0.1" {
		t.Errorf("3rd MAIL, in another session: %q", got)
	}
	ts.log.waitFor(t, "warning: Recipient address rate limit exceeded: 4 from localhost[127.0.0.1] for service smtp")
	ts.log.waitFor(t, "warning: Message delivery request rate limit exceeded: 3 from localhost[127.0.0.1] for service smtp")

	// Exempt clients are not counted.
	e := dialFrom(t, ts.addr, "127.0.0.2")
	e.expect("220 ")
	e.must("EHLO exempt.example", "250")
	for i := 0; i < 4; i++ {
		e.must("MAIL FROM:<s@remote.example>", "250 ")
		e.must("RCPT TO:<alice@example.com>", "250 ")
		e.must("RCPT TO:<bob@example.com>", "250 ")
		e.must("RSET", "250 ")
	}

	time.Sleep(4100 * time.Millisecond)
	c2.must("MAIL FROM:<s@remote.example>", "250 ")
	c2.must("RCPT TO:<alice@example.com>", "250 ")
}

// smtpd_junk_command_limit: NOOP, RSET, VRFY, HELO and EHLO past the limit
// each count as an error (smtpd.c: "if (state->junk_cmds++ >
// var_smtpd_junk_cmd_limit) state->error_count++"), so a session of junk
// is answered limit+1+hard_error_limit times, then "421 4.7.0 HOST Error:
// too many errors" and closed. An accepted message forgives them.
func TestJunkCommandLimit(t *testing.T) {
	ts := start(t, func(o *Options) { o.JunkCommandLimit = 3; o.HardErrorLimit = 2 })
	c := ts.session(t) // EHLO: junk 1
	c.must("MAIL FROM:<s@remote.example>", "250 ")
	c.must("RCPT TO:<alice@example.com>", "250 ")
	c.must("DATA", "354 ")
	c.send("Subject: x\r\n\r\nx\r\n.\r\n")
	c.expect("250 ")
	// Forgiven: 4 free, then 2 errors.
	for _, cmd := range []string{"NOOP", "RSET", "VRFY alice", "HELO again.example", "EHLO again.example"} {
		c.must(cmd, "25")
	}
	if got := c.cmd("NOOP"); !strings.HasPrefix(got, "250 ") {
		t.Fatalf("6th junk command: %q", got)
	}
	if got := c.reply(); got != "421 4.7.0 mx.example.com Error: too many errors" {
		t.Errorf("after the 6th junk command: %q", got)
	}
	c.closed()
	ts.log.waitFor(t, "too many errors after NOOP from localhost[127.0.0.1]")

	// 7000 NOOPs in one write, as in the attack: Postfix's defaults
	// (100, 20) cut the session after 121 answers.
	ts = start(t, nil)
	c = dial(t, ts.addr)
	c.expect("220 ")
	go c.nc.Write([]byte(strings.Repeat("NOOP\r\n", 7000)))
	n := 0
	for {
		got := c.reply()
		if !strings.HasPrefix(got, "250 ") {
			if got != "421 4.7.0 mx.example.com Error: too many errors" {
				t.Errorf("after %d NOOPs: %q", n, got)
			}
			break
		}
		n++
	}
	if n != 121 {
		t.Errorf("%d NOOPs answered, want 121 (100 free, 1 more, then 20 errors)", n)
	}
}

// Past smtpd_soft_error_limit, every reply waits smtpd_error_sleep_time,
// the replies go-smtp writes itself (junk, unknown commands) included.
func TestSoftErrorLimitPausesJunk(t *testing.T) {
	ts := start(t, func(o *Options) { o.JunkCommandLimit = 1; o.SoftErrorLimit = 1 }, func(s *Server) { s.errSleep = 300 * time.Millisecond })
	c := ts.session(t) // junk 1
	c.must("NOOP", "250 ")
	c.must("NOOP", "250 ") // the first error, not paused
	start := time.Now()
	c.must("NOOP", "250 ")
	if d := time.Since(start); d < ts.errSleep {
		t.Errorf("junk after the soft limit answered in %v, want %v at least", d, ts.errSleep)
	}
	start = time.Now()
	c.must("XYZZY", "50")
	if d := time.Since(start); d < ts.errSleep {
		t.Errorf("an unknown command after the soft limit answered in %v", d)
	}
}

// default_process_limit: past MaxClients sessions a new client waits,
// without a greeting, until a session ends (Postfix's clients wait in the
// listen queue); at most MaxClients wait, the next one is told "421 4.3.2
// All server ports are busy". A client in
// smtpd_client_event_limit_exceptions is served at once, up to twice the
// limit. Reaching the limit is logged as Postfix's master does.
func TestProcessLimit(t *testing.T) {
	ts := start(t, func(o *Options) { o.MaxClients = 2; o.Policy = testPolicy(t, "127.0.0.2/32") })
	a, b := dial(t, ts.addr), dial(t, ts.addr)
	a.expect("220 ")
	b.expect("220 ")
	w1 := dial(t, ts.addr)
	w1.silent(300 * time.Millisecond)
	w2 := dialFrom(t, ts.addr, "127.0.0.3")
	if got := dial(t, ts.addr).reply(); got != "421 4.3.2 All server ports are busy" {
		t.Errorf("a third waiting client: %q", got)
	}
	line := ts.log.waitFor(t, `warning: service "smtp" (`)
	if !strings.HasSuffix(line, `has reached its process limit "2": new clients may experience noticeable delays`) {
		t.Errorf("log: %q", line)
	}
	// Exempt clients go past the limit, up to twice it; then they
	// wait too, and here no one else may wait.
	e1, e2 := dialFrom(t, ts.addr, "127.0.0.2"), dialFrom(t, ts.addr, "127.0.0.2")
	e1.expect("220 ")
	e2.expect("220 ")
	if got := dialFrom(t, ts.addr, "127.0.0.2").reply(); got != "421 4.3.2 All server ports are busy" {
		t.Errorf("an exempt client past twice the limit: %q", got)
	}

	// Places go to the waiting clients in order, once the sessions are
	// under the limit.
	a.must("QUIT", "221 ")
	e1.must("QUIT", "221 ")
	w1.silent(200 * time.Millisecond)
	e2.must("QUIT", "221 ")
	w1.expect("220 ")
	w1.must("EHLO w1.example", "250")
	w2.silent(200 * time.Millisecond)
	b.must("QUIT", "221 ")
	w2.expect("220 ")
	ts.log.waitFor(t, "NOQUEUE: reject: CONNECT from localhost[127.0.0.2]: all server ports busy")
}

// Stress mode: once every place is taken, the limits take their stress
// values (Postfix: smtpd_timeout 10s, smtpd_hard_error_limit 1,
// smtpd_junk_command_limit 1), for the sessions already open too: an idle
// session is cut after the stress timeout, counted from when it began to
// wait.
func TestStressMode(t *testing.T) {
	ts := start(t, func(o *Options) {
		o.MaxClients = 2
		o.Timeout = 20 * time.Second
		o.Stress = SessionLimits{Timeout: 500 * time.Millisecond, HardErrorLimit: 1, JunkCommandLimit: 1}
	})
	idle := ts.session(t)
	if ts.Stressed() {
		t.Fatal("stress mode before the limit")
	}
	time.Sleep(600 * time.Millisecond)
	busy := ts.session(t) // the limit: stress mode
	if !ts.Stressed() {
		t.Fatal("no stress mode at the limit")
	}
	ts.log.waitFor(t, `warning: service "smtp" in stress mode: smtpd_timeout 500ms, smtpd_hard_error_limit 1, smtpd_junk_command_limit 1`)
	start := time.Now()
	if got := idle.reply(); !strings.HasPrefix(got, "421 4.4.2 ") {
		t.Errorf("idle session: %q", got)
	}
	idle.closed()
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("idle session cut after %v more", d)
	}
	// The hard error limit is 1 now.
	busy.must("MAIL FROM:<s@remote.example>", "250 ")
	busy.must("RCPT TO:<nobody@example.com>", "550 ")
	busy.must("RCPT TO:<alice@example.com>", "421 4.7.0 mx.example.com Error: too many errors")
	// And a waiting client gets its place when the idle one is cut.
	c := ts.session(t)
	c.must("NOOP", "250 ")
	if got := c.cmd("NOOP"); !strings.HasPrefix(got, "250 ") {
		t.Fatalf("second junk command: %q", got)
	}
	if got := c.reply(); got != "421 4.7.0 mx.example.com Error: too many errors" {
		t.Errorf("junk in stress mode: %q", got)
	}
}

// A client waiting for a place leaves when the server shuts down.
func TestShutdownWithWaitingClients(t *testing.T) {
	ts := start(t, func(o *Options) { o.MaxClients = 1 })
	ts.session(t)
	w := dial(t, ts.addr)
	w.silent(100 * time.Millisecond)
	done := make(chan struct{})
	go func() {
		ts.Shutdown(t.Context())
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown waits for a waiting client")
	}
	w.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := w.r.ReadString('\n'); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("waiting client not closed: %v", err)
	}
}

// startTLS says EHLO and STARTTLS and returns the client over TLS.
func startTLS(t *testing.T, ts *testServer, pool *x509.CertPool) *client {
	t.Helper()
	c := ts.session(t)
	c.must("STARTTLS", "220 ")
	tc := tls.Client(c.nc, &tls.Config{RootCAs: pool, ServerName: testHost})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	c.nc, c.r = tc, bufio.NewReader(tc)
	return c
}

// In a TLS session junk is counted as in plaintext, and the session ends
// with Postfix's 421 at the limit (conn does TLS below go-smtp:
// starttls.go); a mail transaction, DATA's 354 and BDAT's chunks
// included, is not junk even at stress mode's limits.
func TestJunkCommandLimitTLS(t *testing.T) {
	cert, pool := selfSigned(t)
	withTLS := func(o *Options) { o.TLS = &tls.Config{Certificates: []tls.Certificate{cert}} }
	ts := start(t, func(o *Options) { withTLS(o); o.JunkCommandLimit = 3; o.HardErrorLimit = 2 })
	c := startTLS(t, ts, pool) // EHLO: junk 1
	c.must("EHLO client.example", "250")
	// Junk 3 and 4 are free, 5 and 6 errors: the limit, answered, then
	// 421, as in plaintext.
	if n, last := c.noopsAnswered(); n != 4 || last != "421 4.7.0 mx.example.com Error: too many errors" {
		t.Errorf("%d NOOPs answered over TLS, then %q; want 4, then the 421", n, last)
	}
	ts.log.waitFor(t, "too many errors after NOOP from localhost[127.0.0.1]")

	ts = start(t, func(o *Options) { withTLS(o); o.JunkCommandLimit = 1; o.HardErrorLimit = 1 })
	c = startTLS(t, ts, pool)
	c.must("EHLO client.example", "250")
	for i := 0; i < 3; i++ {
		if got := c.mail("s@remote.example", []string{"alice@example.com", "bob@example.com"}, "x\r\n"); !strings.HasPrefix(got, "250 ") {
			t.Fatalf("message %d over TLS at junk and error limits of 1: %q", i, got)
		}
	}
	c.must("MAIL FROM:<s@remote.example>", "250 ")
	c.must("RCPT TO:<alice@example.com>", "250 ")
	for i := 0; i < 5; i++ {
		c.send("BDAT 3\r\nabc")
		c.expect("250 ")
	}
	c.send("BDAT 2 LAST\r\n\r\n")
	c.expect("250 ")
	if n := len(ts.q.all()); n != 4 {
		t.Errorf("%d messages queued, want 4", n)
	}
	// The message forgave the junk: 2 free, 1 error: the limit.
	if n, last := c.noopsAnswered(); n != 3 || !strings.HasPrefix(last, "421 4.7.0 ") {
		t.Errorf("%d NOOPs answered over TLS, then %q; want 3, then 421", n, last)
	}
}

// noopsAnswered sends NOOPs one at a time until a reply is not 250 (at
// most 100) and returns how many were answered 250, and the reply that
// was not ("EOF" when the server hung up).
func (c *client) noopsAnswered() (int, string) {
	c.t.Helper()
	n := 0
	for ; n < 100; n++ {
		c.send("NOOP\r\n")
		line, err := c.r.ReadString('\n')
		if err != nil {
			return n, "EOF"
		}
		if !strings.HasPrefix(line, "250 ") {
			return n, strings.TrimRight(line, "\r\n")
		}
	}
	return n, ""
}

// An idle TLS session (cut sooner in stress mode) is told 421 over TLS,
// not in plaintext into the TLS stream.
func TestIdleTimeoutTLS(t *testing.T) {
	cert, pool := selfSigned(t)
	ts := start(t, func(o *Options) {
		o.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
		o.Timeout = 300 * time.Millisecond
	})
	c := startTLS(t, ts, pool)
	if got := c.reply(); !strings.HasPrefix(got, "421 4.4.2 ") {
		t.Errorf("idle TLS session: %q", got)
	}
	c.closed()
}
