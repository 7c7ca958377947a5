package deliver

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/mailtee/mailtee/internal/dnsresolve"
	"github.com/mailtee/mailtee/internal/dnsresolve/dnstest"
)

const body = "From: sender@example.org\nTo: rcpt@example.com\nSubject: test\n\nHello.\n.leading dot\n"

func testClient(port string) *Client {
	return &Client{
		HeloName: "mailtee.test",
		Port:     port,
		// Generous: tests share a loaded machine; the timeout tests set
		// their own.
		ConnectTimeout: 10 * time.Second,
		CommandTimeout: 10 * time.Second,
		// No name server: a test that needs one sets Resolver.
		Resolver: &dnsresolve.Resolver{Servers: []string{"127.0.0.1:1"}, Timeout: 100 * time.Millisecond},
	}
}

func literal(s *sink) string { return "[127.0.0.1]:" + s.Port }

// wantErr checks that r failed with the given permanence, status and text
// (text may end in "*" for a prefix match).
func wantErr(t *testing.T, r Result, permanent bool, status, text string) {
	t.Helper()
	var e *Error
	if !errors.As(r.Err, &e) {
		t.Errorf("%s: got %v, want an *Error", r.Rcpt, r.Err)
		return
	}
	match := e.Text == text
	if p, ok := strings.CutSuffix(text, "*"); ok {
		match = strings.HasPrefix(e.Text, p)
	}
	if e.Permanent != permanent || e.IsPermanent() != permanent || e.Enhanced != status || !match {
		t.Errorf("%s: got permanent=%v %s %q\nwant permanent=%v %s %q", r.Rcpt, e.Permanent, e.Enhanced, e.Text, permanent, status, text)
	}
}

func delivered(t *testing.T, r Result) {
	t.Helper()
	if r.Err != nil || !strings.HasPrefix(r.Reply, "250 ") {
		t.Errorf("%s: not delivered: %v (reply %q)", r.Rcpt, r.Err, r.Reply)
	}
}

func TestDeliver(t *testing.T) {
	s := startSink(t, nil)
	c := testClient(s.Port)
	msg := testMessage(body)
	msg.EightBit = true
	res := c.Deliver(context.Background(), literal(s), msg, []string{"a@example.com", "b@example.com"})
	if len(res) != 2 {
		t.Fatalf("%d results", len(res))
	}
	for _, r := range res {
		delivered(t, r)
		if want := "127.0.0.1[127.0.0.1]:" + s.Port; r.Relay != want {
			t.Errorf("relay %q, want %q", r.Relay, want)
		}
	}
	if res[0].Rcpt != "a@example.com" || res[1].Rcpt != "b@example.com" {
		t.Errorf("results out of order: %+v", res)
	}
	msgs := s.messages()
	if len(msgs) != 1 {
		t.Fatalf("sink got %d messages", len(msgs))
	}
	m := msgs[0]
	if m.Helo != "mailtee.test" || m.From != "sender@example.org" || strings.Join(m.Rcpts, ",") != "a@example.com,b@example.com" {
		t.Errorf("envelope %+v", m)
	}
	if m.Opts.Size != msg.Size || m.Opts.Body != smtp.Body8BitMIME {
		t.Errorf("MAIL FROM options %+v: want SIZE=%d BODY=8BITMIME", m.Opts, msg.Size)
	}
	if want := strings.ReplaceAll(body, "\n", "\r\n"); m.Data != want {
		t.Errorf("data %q, want %q", m.Data, want)
	}
	if m.TLS {
		t.Error("TLS without a server certificate?")
	}
}

// smtp(8): MX hosts in preference order; a refused connection moves on to
// the next one.
func TestDeliverMX(t *testing.T) {
	s := startSink(t, nil)
	dns := dnstest.Start(t,
		"example.test. MX 10 mx1.example.test.",
		"example.test. MX 20 mx2.example.test.",
		"mx1.example.test. A 127.0.0.3", // nothing listens there
		"mx2.example.test. A 127.0.0.1",
	)
	c := testClient(s.Port)
	c.Resolver = &dnsresolve.Resolver{Servers: []string{dns.Addr}}
	res := c.Deliver(context.Background(), "example.test", testMessage(body), []string{"a@example.test"})
	delivered(t, res[0])
	if want := "mx2.example.test[127.0.0.1]:" + s.Port; res[0].Relay != want {
		t.Errorf("relay %q, want %q", res[0].Relay, want)
	}

	// With every address refusing: deferred with the last error.
	dns.Add(t, "down.test. MX 10 mx.down.test.")
	dns.Add(t, "mx.down.test. A 127.0.0.3")
	dns.Add(t, "mx.down.test. A 127.0.0.4")
	res = c.Deliver(context.Background(), "down.test", testMessage(body), []string{"a@down.test", "b@down.test"})
	for _, r := range res {
		wantErr(t, r, false, "4.4.1", "connect to mx.down.test[127.0.0.4]:"+s.Port+": Connection refused")
		if r.Relay != "none" {
			t.Errorf("relay %q for a refused connection", r.Relay)
		}
		if e, ok := r.Err.(*Error); !ok || !e.SiteUnavailable() {
			t.Errorf("%v: not marked as the whole next hop unreachable", r.Err)
		}
	}
	// A server that answers, even with a refusal, is no unreachable site.
	res = c.Deliver(context.Background(), "example.test", testMessage(body), []string{"a@example.test"})
	if e, ok := res[0].Err.(*Error); ok && e.SiteUnavailable() {
		t.Errorf("%v: marked unreachable though a server answered", e)
	}
}

func TestDeliverDNSErrors(t *testing.T) {
	dns := dnstest.Start(t, "nullmx.test. MX 0 .")
	dns.ServFail("servfail.test")
	c := testClient("25")
	c.Resolver = &dnsresolve.Resolver{Servers: []string{dns.Addr}, Timeout: 2 * time.Second}
	ctx := context.Background()
	r := c.Deliver(ctx, "nxdomain.test", testMessage(body), []string{"a@nxdomain.test"})[0]
	wantErr(t, r, true, "5.4.4", "Host or domain name not found. Name service error for name=nxdomain.test type=A: Host not found")
	if r.Relay != "none" {
		t.Errorf("relay %q", r.Relay)
	}
	r = c.Deliver(ctx, "nullmx.test", testMessage(body), []string{"a@nullmx.test"})[0]
	wantErr(t, r, true, "5.1.0", "Domain nullmx.test does not accept mail (nullMX)")
	r = c.Deliver(ctx, "servfail.test", testMessage(body), []string{"a@servfail.test"})[0]
	wantErr(t, r, false, "4.4.3", "Host or domain name not found. Name service error for name=servfail.test type=MX: Host not found, try again")
}

// smtp_proto.c: a greeting other than 2xx is "host %s refused to talk to
// me", and the next MX host is tried.
func TestDeliverGreeting421(t *testing.T) {
	s := startSink(t, nil)
	rawServer(t, listen(t, "127.0.0.5:"+s.Port), func(c net.Conn) {
		io.WriteString(c, "421 4.3.2 Service shutting down\r\n")
		c.Close()
	})
	c := testClient(s.Port)
	r := c.Deliver(context.Background(), "[127.0.0.5]", testMessage(body), []string{"a@example.com"})[0]
	wantErr(t, r, false, "4.3.2", "host 127.0.0.5[127.0.0.5] refused to talk to me: 421 4.3.2 Service shutting down")

	dns := dnstest.Start(t,
		"example.test. MX 10 busy.example.test.",
		"example.test. MX 20 ok.example.test.",
		"busy.example.test. A 127.0.0.5",
		"ok.example.test. A 127.0.0.1",
	)
	c.Resolver = &dnsresolve.Resolver{Servers: []string{dns.Addr}}
	r = c.Deliver(context.Background(), "example.test", testMessage(body), []string{"a@example.test"})[0]
	delivered(t, r)
	if !strings.HasPrefix(r.Relay, "ok.example.test[") {
		t.Errorf("relay %q", r.Relay)
	}
}

// A 5xx reply to RCPT bounces that recipient, 4xx defers it, the others
// are delivered.
func TestDeliverRcptErrors(t *testing.T) {
	s := startSink(t, nil)
	s.rcptErr["bad@example.com"] = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "<bad@example.com>: Recipient address rejected: User unknown"}
	s.rcptErr["busy@example.com"] = &smtp.SMTPError{Code: 450, EnhancedCode: smtp.EnhancedCode{4, 2, 1}, Message: "Mailbox busy"}
	s.rcptErr["plain@example.com"] = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.NoEnhancedCode, Message: "No"}
	c := testClient(s.Port)
	res := c.Deliver(context.Background(), literal(s), testMessage(body),
		[]string{"bad@example.com", "good@example.com", "busy@example.com", "plain@example.com"})
	wantErr(t, res[0], true, "5.1.1", "host 127.0.0.1[127.0.0.1] said: 550 5.1.1 <bad@example.com>: Recipient address rejected: User unknown (in reply to RCPT TO command)")
	delivered(t, res[1])
	wantErr(t, res[2], false, "4.2.1", "host 127.0.0.1[127.0.0.1] said: 450 4.2.1 Mailbox busy (in reply to RCPT TO command)")
	wantErr(t, res[3], true, "5.0.0", "host 127.0.0.1[127.0.0.1] said: 550 No (in reply to RCPT TO command)")
	var e *Error
	if errors.As(res[0].Err, &e); e.Code != 550 || e.Relay != "127.0.0.1[127.0.0.1]:"+s.Port || res[0].Relay != e.Relay {
		t.Errorf("code %d relay %q/%q", e.Code, e.Relay, res[0].Relay)
	}
	if msgs := s.messages(); len(msgs) != 1 || strings.Join(msgs[0].Rcpts, ",") != "good@example.com" {
		t.Errorf("sink got %+v", msgs)
	}

	// No recipient accepted: no DATA.
	res = c.Deliver(context.Background(), literal(s), testMessage(body), []string{"bad@example.com"})
	wantErr(t, res[0], true, "5.1.1", "*")
	if n := len(s.messages()); n != 1 {
		t.Errorf("sink got %d messages, want still 1", n)
	}
}

func TestDeliverDataRejected(t *testing.T) {
	s := startSink(t, nil)
	s.dataErr = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Spam"}
	c := testClient(s.Port)
	res := c.Deliver(context.Background(), literal(s), testMessage(body), []string{"a@example.com", "b@example.com"})
	for _, r := range res {
		wantErr(t, r, true, "5.7.1", "host 127.0.0.1[127.0.0.1] said: 554 5.7.1 Spam (in reply to end of DATA command)")
	}
	s.dataErr = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Try later"}
	r := c.Deliver(context.Background(), literal(s), testMessage(body), []string{"a@example.com"})[0]
	wantErr(t, r, false, "4.3.0", "host 127.0.0.1[127.0.0.1] said: 451 4.3.0 Try later (in reply to end of DATA command)")
}

// A connection lost during DATA defers every recipient not yet confirmed.
func TestDeliverDropMidData(t *testing.T) {
	s := startSink(t, nil)
	s.dropInData = true
	c := testClient(s.Port)
	big := body + strings.Repeat("x", 1<<20) + "\n"
	res := c.Deliver(context.Background(), literal(s), testMessage(big), []string{"a@example.com", "b@example.com"})
	for _, r := range res {
		wantErr(t, r, false, "4.4.2", "lost connection with 127.0.0.1[127.0.0.1] while sending *")
	}
}

// smtp_stream_except(): "conversation with %s timed out while %s".
func TestDeliverTimeout(t *testing.T) {
	l := listen(t, "127.0.0.1:0")
	rawServer(t, l, func(net.Conn) {}) // accepts, never speaks
	_, port, _ := net.SplitHostPort(l.Addr().String())
	c := testClient(port)
	c.CommandTimeout = time.Second
	start := time.Now()
	r := c.Deliver(context.Background(), "[127.0.0.1]", testMessage(body), []string{"a@example.com"})[0]
	wantErr(t, r, false, "4.4.2", "conversation with 127.0.0.1[127.0.0.1] timed out while receiving the initial server greeting")
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}

	// A server that stops answering after EHLO.
	l = listen(t, "127.0.0.1:0")
	rawServer(t, l, func(c net.Conn) {
		io.WriteString(c, "220 hi\r\n")
		br := bufio.NewReader(c)
		br.ReadString('\n')
		io.WriteString(c, "250 ok\r\n")
	})
	_, port, _ = net.SplitHostPort(l.Addr().String())
	c.Port = port
	r = c.Deliver(context.Background(), "[127.0.0.1]", testMessage(body), []string{"a@example.com"})[0]
	wantErr(t, r, false, "4.4.2", "conversation with 127.0.0.1[127.0.0.1] timed out while sending MAIL FROM")
}

func TestDeliverSTARTTLS(t *testing.T) {
	s := startSink(t, nil, withTLS(0))
	for _, level := range []string{"", "may", "encrypt"} {
		c := testClient(s.Port)
		c.TLSLevel = level
		delivered(t, c.Deliver(context.Background(), literal(s), testMessage(body), []string{"a@example.com"})[0])
	}
	c := testClient(s.Port)
	c.TLSLevel = "none"
	delivered(t, c.Deliver(context.Background(), literal(s), testMessage(body), []string{"a@example.com"})[0])
	msgs := s.messages()
	if len(msgs) != 4 || !msgs[0].TLS || !msgs[1].TLS || !msgs[2].TLS || msgs[3].TLS {
		t.Errorf("TLS per delivery: %+v", msgs)
	}
	if msgs[0].Helo != "mailtee.test" {
		t.Errorf("EHLO after STARTTLS said %q", msgs[0].Helo)
	}
}

// With "may", a failed handshake is retried in plaintext on the same
// server; with "encrypt" it defers.
func TestDeliverTLSHandshakeFailure(t *testing.T) {
	s := startSink(t, nil, withTLS(tls.VersionTLS13))
	c := testClient(s.Port)
	c.TLSConfig = &tls.Config{MaxVersion: tls.VersionTLS12}
	delivered(t, c.Deliver(context.Background(), literal(s), testMessage(body), []string{"a@example.com"})[0])
	if msgs := s.messages(); len(msgs) != 1 || msgs[0].TLS {
		t.Errorf("got %+v, want one plaintext delivery", msgs)
	}
	if n := len(s.connections()); n != 2 {
		t.Errorf("%d connections, want 2 (TLS, then plaintext)", n)
	}

	c.TLSLevel = "encrypt"
	r := c.Deliver(context.Background(), literal(s), testMessage(body), []string{"a@example.com"})[0]
	wantErr(t, r, false, "4.7.5", "Cannot start TLS: handshake failure")
	if n := len(s.connections()); n != 3 {
		t.Errorf("%d connections, want 3 (no plaintext retry with encrypt)", n)
	}
}

func TestDeliverEncryptNotOffered(t *testing.T) {
	s := startSink(t, nil)
	c := testClient(s.Port)
	c.TLSLevel = "encrypt"
	r := c.Deliver(context.Background(), literal(s), testMessage(body), []string{"a@example.com"})[0]
	wantErr(t, r, false, "4.7.4", "TLS is required, but was not offered by host 127.0.0.1[127.0.0.1]")
	if len(s.messages()) != 0 {
		t.Error("delivered in plaintext with TLS required")
	}
}

func TestDeliverSMTPUTF8(t *testing.T) {
	s := startSink(t, nil)
	c := testClient(s.Port)
	msg := testMessage(body)
	msg.SMTPUTF8 = true
	r := c.Deliver(context.Background(), literal(s), msg, []string{"jöran@example.com"})[0]
	wantErr(t, r, true, "5.6.7", "SMTPUTF8 is required, but was not offered by host 127.0.0.1[127.0.0.1]")

	s2 := startSink(t, nil, func(s *sink) { s.srv.EnableSMTPUTF8 = true })
	c.Port = s2.Port
	delivered(t, c.Deliver(context.Background(), literal(s2), msg, []string{"jöran@example.com"})[0])
	if m := s2.messages(); len(m) != 1 || !m[0].Opts.UTF8 {
		t.Errorf("got %+v, want SMTPUTF8 in MAIL FROM", m)
	}
}

// Postfix's smtp_proto.c: a message that asked for SMTPUTF8 needs it only
// when its sender, a recipient of this delivery or a header field is not
// ASCII; otherwise it goes without SMTPUTF8 to a server that lacks it. A
// message that did not ask never sends SMTPUTF8.
func TestDeliverSMTPUTF8AsPostfix(t *testing.T) {
	plain := startSink(t, nil)
	utf8 := startSink(t, nil, func(s *sink) { s.srv.EnableSMTPUTF8 = true })
	c := testClient(plain.Port)
	utf8Header := "From: sender@example.org\nSubject: caf\u00e9\n\nbody\n"
	utf8Body := "From: sender@example.org\nSubject: x\n\ncaf\u00e9\n"
	for _, tc := range []struct {
		name     string
		asked    bool
		from     string
		content  string
		rcpt     string
		needs    bool
		utf8Sent bool // MAIL FROM ... SMTPUTF8 to a server that offers it
	}{
		{"asked, all ASCII", true, "sender@example.org", body, "a@example.com", false, true},
		{"asked, 8-bit body only", true, "sender@example.org", utf8Body, "a@example.com", false, true},
		{"asked, UTF-8 header", true, "sender@example.org", utf8Header, "a@example.com", true, true},
		{"asked, UTF-8 sender", true, "j\u00f6ran@example.org", body, "a@example.com", true, true},
		{"asked, UTF-8 recipient", true, "sender@example.org", body, "j\u00f6ran@example.com", true, true},
		{"not asked, UTF-8 header", false, "sender@example.org", utf8Header, "a@example.com", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg := testMessage(tc.content)
			msg.SMTPUTF8, msg.From = tc.asked, tc.from
			c.Port = plain.Port
			before := len(plain.messages())
			r := c.Deliver(context.Background(), literal(plain), msg, []string{tc.rcpt})[0]
			if tc.needs {
				wantErr(t, r, true, "5.6.7", "SMTPUTF8 is required, but was not offered by host 127.0.0.1[127.0.0.1]")
			} else {
				delivered(t, r)
				if m := plain.messages(); len(m) != before+1 || m[len(m)-1].Opts.UTF8 {
					t.Errorf("to a server without SMTPUTF8: %+v", m)
				}
			}
			c.Port = utf8.Port
			before = len(utf8.messages())
			delivered(t, c.Deliver(context.Background(), literal(utf8), msg, []string{tc.rcpt})[0])
			if m := utf8.messages(); len(m) != before+1 || m[len(m)-1].Opts.UTF8 != tc.utf8Sent {
				t.Errorf("to a server with SMTPUTF8: %+v, want SMTPUTF8 %v", m, tc.utf8Sent)
			}
		})
	}
}

func TestDeliverSizeLimit(t *testing.T) {
	s := startSink(t, nil, func(s *sink) { s.srv.MaxMessageBytes = 50 })
	c := testClient(s.Port)
	msg := testMessage(body)
	r := c.Deliver(context.Background(), literal(s), msg, []string{"a@example.com"})[0]
	wantErr(t, r, true, "5.3.4", fmt.Sprintf("message size %d exceeds size limit 50 of server 127.0.0.1[127.0.0.1]", msg.Size))
}

// smtp_bind_address: the server sees the configured source address.
func TestDeliverBindAddress(t *testing.T) {
	s := startSink(t, nil)
	c := testClient(s.Port)
	c.BindAddr = "127.0.0.2"
	delivered(t, c.Deliver(context.Background(), literal(s), testMessage(body), []string{"a@example.com"})[0])
	conns := s.connections()
	if len(conns) != 1 || !strings.HasPrefix(conns[0], "127.0.0.2:") {
		t.Errorf("connections from %v, want 127.0.0.2", conns)
	}

	// An address this host does not have: Postfix warns and connects
	// anyway, unless smtp_bind_address_enforce.
	c.BindAddr = "192.0.2.1"
	delivered(t, c.Deliver(context.Background(), literal(s), testMessage(body), []string{"a@example.com"})[0])
	c.BindEnforce = true
	r := c.Deliver(context.Background(), literal(s), testMessage(body), []string{"a@example.com"})[0]
	wantErr(t, r, false, "4.4.0", "server configuration error: bind 192.0.2.1: Cannot assign requested address")
}

// smtp_connection_cache: a second delivery to the same next hop reuses
// the connection; a cached connection the server has closed is replaced.
func TestDeliverReuse(t *testing.T) {
	s := startSink(t, nil)
	c := testClient(s.Port)
	c.MaxIdle = 5 * time.Second
	defer c.Close()
	for i := range 3 {
		delivered(t, c.Deliver(context.Background(), literal(s), testMessage(body), []string{fmt.Sprintf("r%d@example.com", i)})[0])
	}
	if n, m := len(s.connections()), len(s.messages()); n != 1 || m != 3 {
		t.Errorf("%d connections for %d messages, want 1 for 3", n, m)
	}
	// Another next hop, another connection.
	delivered(t, c.Deliver(context.Background(), "[127.0.0.1]:"+s.Port+",", testMessage(body), []string{"x@example.com"})[0])
	if n := len(s.connections()); n != 2 {
		t.Errorf("%d connections, want 2", n)
	}
	c.Close()
	delivered(t, c.Deliver(context.Background(), literal(s), testMessage(body), []string{"a@example.com"})[0])
	if n := len(s.connections()); n != 3 {
		t.Errorf("%d connections after Close, want 3", n)
	}

	// The server drops idle connections after a second.
	s2 := startSink(t, nil, func(s *sink) { s.srv.ReadTimeout = time.Second })
	c2 := testClient(s2.Port)
	c2.MaxIdle = 5 * time.Second
	defer c2.Close()
	delivered(t, c2.Deliver(context.Background(), literal(s2), testMessage(body), []string{"a@example.com"})[0])
	time.Sleep(2 * time.Second)
	delivered(t, c2.Deliver(context.Background(), literal(s2), testMessage(body), []string{"b@example.com"})[0])
	if n, m := len(s2.connections()), len(s2.messages()); n != 2 || m != 2 {
		t.Errorf("%d connections for %d messages, want 2 for 2", n, m)
	}

	// MaxIdle passes: the cached connection is closed.
	s3 := startSink(t, nil)
	c3 := testClient(s3.Port)
	c3.MaxIdle = 100 * time.Millisecond
	delivered(t, c3.Deliver(context.Background(), literal(s3), testMessage(body), []string{"a@example.com"})[0])
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		c3.mu.Lock()
		idle := len(c3.idle)
		c3.mu.Unlock()
		if idle == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d cached long after MaxIdle", idle)
		}
	}
	// The next delivery needs a new connection.
	delivered(t, c3.Deliver(context.Background(), literal(s3), testMessage(body), []string{"b@example.com"})[0])
	if n := len(s3.connections()); n != 2 {
		t.Errorf("%d connections, want 2 (the idle one was closed)", n)
	}
}

func TestDeliverConcurrent(t *testing.T) {
	s := startSink(t, nil)
	c := testClient(s.Port)
	c.MaxIdle = 5 * time.Second
	defer c.Close()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 5 {
				r := c.Deliver(context.Background(), literal(s), testMessage(body), []string{fmt.Sprintf("r%d-%d@example.com", i, j)})[0]
				delivered(t, r)
			}
		}()
	}
	wg.Wait()
	if n, m := len(s.connections()), len(s.messages()); m != 40 || n > 8 {
		t.Errorf("%d connections for %d messages, want at most 8 for 40", n, m)
	}
}

// lmtp(8) over a UNIX-domain socket: one reply per recipient after DATA.
func TestDeliverLMTP(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lmtp")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	s := startSink(t, l, func(s *sink) { s.srv.LMTP = true })
	s.lmtpErr["full@example.com"] = &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 2, 2}, Message: "Mailbox full"}
	s.lmtpErr["later@example.com"] = &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 2, 2}, Message: "Over quota, try later"}
	c := testClient("")
	c.LMTP = true
	c.HeloName = "mail.example.com"
	res := c.Deliver(context.Background(), "unix:"+path, testMessage(body),
		[]string{"a@example.com", "full@example.com", "later@example.com", "b@example.com"})
	delivered(t, res[0])
	relay := "mail.example.com[" + path + "]"
	if res[0].Relay != relay {
		t.Errorf("relay %q, want %q", res[0].Relay, relay)
	}
	wantErr(t, res[1], true, "5.2.2", "host "+relay+" said: 552 5.2.2 <full@example.com> Mailbox full (in reply to end of DATA command)")
	wantErr(t, res[2], false, "4.2.2", "host "+relay+" said: 452 4.2.2 <later@example.com> Over quota, try later (in reply to end of DATA command)")
	delivered(t, res[3])
	if m := s.messages(); len(m) != 1 || strings.Join(m[0].Rcpts, ",") != "a@example.com,b@example.com" {
		t.Errorf("LMTP server got %+v", m)
	}

	// inet: over TCP, default port 24 unless given.
	s2 := startSink(t, nil, func(s *sink) { s.srv.LMTP = true })
	delivered(t, c.Deliver(context.Background(), "inet:127.0.0.1:"+s2.Port, testMessage(body), []string{"a@example.com"})[0])
	if len(s2.messages()) != 1 {
		t.Error("no LMTP delivery over TCP")
	}
	r := c.Deliver(context.Background(), "unix:"+path+".missing", testMessage(body), []string{"a@example.com"})[0]
	wantErr(t, r, false, "4.4.1", "connect to mail.example.com["+path+".missing]: No such file or directory")
}

func TestDeliverNexthopList(t *testing.T) {
	s := startSink(t, nil)
	c := testClient(s.Port)
	// Postfix 3.5: a list of next hops, tried in order.
	r := c.Deliver(context.Background(), "[127.0.0.3], [127.0.0.1]", testMessage(body), []string{"a@example.com"})[0]
	delivered(t, r)
	if r.Relay != "127.0.0.1[127.0.0.1]:"+s.Port {
		t.Errorf("relay %q", r.Relay)
	}
	r = c.Deliver(context.Background(), "[127.0.0.1]:nosuchservice", testMessage(body), []string{"a@example.com"})[0]
	wantErr(t, r, false, "4.3.5", "unknown service: nosuchservice/tcp for destination: [127.0.0.1]:nosuchservice")
}

func TestDeliverLocalProblems(t *testing.T) {
	s := startSink(t, nil)
	c := testClient(s.Port)
	msg := testMessage(body)
	msg.Open = func() (io.ReadCloser, error) { return nil, errors.New("spool file gone") }
	r := c.Deliver(context.Background(), literal(s), msg, []string{"a@example.com"})[0]
	wantErr(t, r, false, "4.3.0", "cannot read message TESTID: spool file gone")

	res := c.Deliver(context.Background(), literal(s), testMessage(body), []string{"a\r\nRSET@example.com", "ok@example.com"})
	wantErr(t, res[0], true, "5.1.3", "*")
	delivered(t, res[1])

	c.TLSLevel = "dane"
	r = c.Deliver(context.Background(), literal(s), testMessage(body), []string{"a@example.com"})[0]
	wantErr(t, r, false, "4.7.0", "*")

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	c.TLSLevel = ""
	r = c.Deliver(ctx, literal(s), testMessage(body), []string{"a@example.com"})[0]
	if r.Err == nil || r.Err.(*Error).Permanent {
		t.Errorf("canceled delivery: %v", r.Err)
	}
}

// scripted runs a line-at-a-time SMTP server: replies maps a command verb
// to its reply (multi-line replies with \r\n inside); anything else gets
// "250 ok", DATA gets 354 and then "250 Ok: queued as RAW1". It returns
// the port and the commands received.
func scripted(t *testing.T, replies map[string]string) (string, func() []string) {
	l := listen(t, "127.0.0.1:0")
	var mu sync.Mutex
	var cmds []string
	rawServer(t, l, func(c net.Conn) {
		defer c.Close()
		io.WriteString(c, "220 raw.test SMTP\r\n")
		br := bufio.NewReader(c)
		inData := false
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			if inData {
				if line == ".\r\n" {
					inData = false
					io.WriteString(c, "250 Ok: queued as RAW1\r\n")
				}
				continue
			}
			mu.Lock()
			cmds = append(cmds, strings.TrimSpace(line))
			mu.Unlock()
			verb := strings.ToUpper(strings.Fields(line + " x")[0])
			reply, ok := replies[verb]
			switch {
			case ok:
			case verb == "DATA":
				inData = true
				reply = "354 go ahead"
			case verb == "QUIT":
				io.WriteString(c, "221 bye\r\n")
				return
			default:
				reply = "250 ok"
			}
			io.WriteString(c, reply+"\r\n")
		}
	})
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), cmds...)
	}
}

// smtp_proto.c: after an EHLO reply other than 2xx and 421, HELO.
func TestDeliverHELOFallback(t *testing.T) {
	port, cmds := scripted(t, map[string]string{"EHLO": "554 5.5.1 Unknown command"})
	c := testClient(port)
	r := c.Deliver(context.Background(), "[127.0.0.1]", testMessage(body), []string{"a@example.com"})[0]
	delivered(t, r)
	if r.Reply != "250 Ok: queued as RAW1" {
		t.Errorf("reply %q", r.Reply)
	}
	got := strings.Join(cmds(), "|")
	if !strings.Contains(got, "EHLO mailtee.test|HELO mailtee.test|MAIL FROM:<sender@example.org>") {
		t.Errorf("commands: %s", got)
	}
}

// A server that offers STARTTLS and then refuses it: "may" goes on in
// plaintext, "encrypt" defers (smtp_proto.c).
func TestDeliverSTARTTLSRefused(t *testing.T) {
	port, cmds := scripted(t, map[string]string{
		"EHLO":     "250-raw.test\r\n250 STARTTLS",
		"STARTTLS": "454 4.7.0 TLS not available due to local problem",
	})
	c := testClient(port)
	delivered(t, c.Deliver(context.Background(), "[127.0.0.1]", testMessage(body), []string{"a@example.com"})[0])
	if got := strings.Join(cmds(), "|"); !strings.Contains(got, "STARTTLS|MAIL FROM") {
		t.Errorf("commands: %s", got)
	}
	c.TLSLevel = "encrypt"
	r := c.Deliver(context.Background(), "[127.0.0.1]", testMessage(body), []string{"a@example.com"})[0]
	wantErr(t, r, false, "4.7.0", "TLS is required, but host 127.0.0.1[127.0.0.1] refused to start TLS: 454 4.7.0 TLS not available due to local problem")
}
