package reliability

// Next-hop faults: real mailtee processes delivering to next hops that
// refuse, stall, drop or garble the conversation. Each fault must end in
// the state Postfix's smtp(8) would leave it in (deferred, sent once,
// bounced), with the mail log line that says so.
//
// The misbehaving next hops are scripted TCP servers (fltHop); the good
// ones are the harness's go-smtp sink.

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/mailtee/mailtee/test/internal/harness"
)

// fltWait bounds every wait in this file (and diskfull_test.go): long
// enough for a busy CI machine, short enough to fail rather than hang.
const fltWait = 60 * time.Second

// fltFarHop is the main.cf line routing far.example to 127.0.0.1:port.
func fltFarHop(port int) string {
	return fmt.Sprintf("transport_maps = inline:{ far.example=smtp:[127.0.0.1]:%d }\n", port)
}

// fltLines returns the mail log lines that contain every part.
func fltLines(in *instance, parts ...string) []string {
	var out []string
	for _, line := range strings.Split(in.Log.String(), "\n") {
		ok := true
		for _, p := range parts {
			if !strings.Contains(line, p) {
				ok = false
				break
			}
		}
		if ok {
			out = append(out, line)
		}
	}
	return out
}

// fltWaitLine waits until a mail log line contains every part and
// returns the first such line.
func fltWaitLine(t testing.TB, in *instance, d time.Duration, parts ...string) string {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		if l := fltLines(in, parts...); len(l) > 0 {
			return l[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for a log line with %q; log:\n%s", d, parts, in.Log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// fltQueueID is the queue ID at the start of a mail log line
// ("... mailtee/smtp[123]: 1A2B3C: to=<...").
func fltQueueID(t testing.TB, line string) string {
	t.Helper()
	i := strings.Index(line, ": to=<")
	if i < 0 {
		t.Fatalf("no queue ID in %q", line)
	}
	f := strings.Fields(line[:i])
	return f[len(f)-1]
}

// fltDeliveredOnce checks that, a backoff period after the delivery
// was seen, rcpt still has exactly one copy at sk, the message is out of
// the queue, and exactly one status=sent line exists for it.
func fltDeliveredOnce(t testing.TB, in *instance, sk *sink, rcpt string) {
	t.Helper()
	waitUntil(t, "delivery of "+rcpt, fltWait, func() bool { return sk.Count(rcpt) >= 1 })
	sent := fltWaitLine(t, in, fltWait, "to=<"+rcpt+">", "status=sent")
	id := fltQueueID(t, sent)
	in.WaitLogFor(id+": removed", fltWait)
	// maximal_backoff_time is 2s and queue_run_delay 1s: a second
	// delivery, if there were one, would come within this.
	time.Sleep(4 * time.Second)
	if n := sk.Count(rcpt); n != 1 {
		t.Errorf("%s delivered %d times, want once", rcpt, n)
	}
	if n := len(fltLines(in, "to=<"+rcpt+">", "status=sent")); n != 1 {
		t.Errorf("%d status=sent lines for %s, want 1:\n%s", n, rcpt, in.Log.String())
	}
	if out, err := in.Run("", "queue", "list"); err != nil || !strings.Contains(out, "Mail queue is empty") {
		t.Errorf("queue list after delivery: %v\n%s", err, out)
	}
}

// fltHop is a scripted next hop: a TCP server on 127.0.0.1 that speaks
// just enough SMTP to misbehave at one chosen point.
type fltHop struct {
	t     testing.TB
	l     net.Listener
	port  int
	sc    fltScript
	mu    sync.Mutex
	conns []net.Conn
	seen  []string // commands received, in order (verb only)
	msgs  []string // contents of messages taken (dot-unstuffed, LF ends)
	drops int      // connections dropped in the middle of DATA
	accs  int      // connections accepted
}

// fltScript says where a fltHop misbehaves.
type fltScript struct {
	// silent: accept the connection, then never send a byte.
	silent bool
	// greeting replaces "220 hop.test.example ESMTP"; a non-2xx greeting
	// is followed by closing the connection once QUIT arrives (or 10s).
	greeting string
	// starttls offers STARTTLS, answers 220 to it, then sends bytes that
	// are not TLS and closes.
	starttls bool
	// dropInData, when > 0: after 354, read that many bytes of the
	// message and close the connection.
	dropInData int
}

func newFltHop(t testing.TB, addr string, sc fltScript) *fltHop {
	t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	l := harness.Listen(t, addr) // a port just released may linger
	h := &fltHop{t: t, l: l, port: l.Addr().(*net.TCPAddr).Port, sc: sc}
	go h.serve()
	t.Cleanup(h.close)
	return h
}

// close stops listening and closes every connection.
func (h *fltHop) close() {
	h.l.Close()
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, c := range h.conns {
		c.Close()
	}
}

func (h *fltHop) serve() {
	for {
		c, err := h.l.Accept()
		if err != nil {
			return
		}
		h.mu.Lock()
		h.conns = append(h.conns, c)
		h.accs++
		h.mu.Unlock()
		go h.session(c)
	}
}

func (h *fltHop) accepted() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.accs
}

func (h *fltHop) dropped() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.drops
}

func (h *fltHop) messages() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.msgs...)
}

// commands returns how many times verb was received.
func (h *fltHop) commands(verb string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, v := range h.seen {
		if v == verb {
			n++
		}
	}
	return n
}

func (h *fltHop) session(c net.Conn) {
	defer c.Close()
	if h.sc.silent {
		// Hold the connection open and silent until the client gives up
		// (or the test ends); whatever arrives is read and ignored.
		io.Copy(io.Discard, c)
		return
	}
	c.SetDeadline(time.Now().Add(fltWait))
	r := bufio.NewReader(c)
	say := func(lines ...string) bool {
		_, err := io.WriteString(c, strings.Join(lines, "\r\n")+"\r\n")
		return err == nil
	}
	greeting := h.sc.greeting
	if greeting == "" {
		greeting = "220 hop.test.example ESMTP"
	}
	if !say(greeting) {
		return
	}
	if !strings.HasPrefix(greeting, "2") {
		// RFC 5321 4.2.2: after 421 the server closes; let the client
		// say QUIT first if it wants to.
		c.SetDeadline(time.Now().Add(10 * time.Second))
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			h.record(line)
			if strings.HasPrefix(strings.ToUpper(line), "QUIT") {
				say("221 2.0.0 Bye")
				return
			}
			say("503 5.5.1 Error: go away")
		}
	}
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		switch h.record(line) {
		case "EHLO":
			ext := []string{"250-hop.test.example", "250-8BITMIME"}
			if h.sc.starttls {
				ext = append(ext, "250-STARTTLS")
			}
			say(append(ext, "250 ENHANCEDSTATUSCODES")...)
		case "HELO":
			say("250 hop.test.example")
		case "STARTTLS":
			if !h.sc.starttls {
				say("502 5.5.1 Error: command not implemented")
				continue
			}
			say("220 2.0.0 Ready to start TLS")
			// Not a TLS ServerHello: the client's handshake fails.
			io.WriteString(c, "this is not TLS, just garbage\r\n\x00\x01\x02\x03")
			return
		case "MAIL":
			say("250 2.1.0 Ok")
		case "RCPT":
			say("250 2.1.5 Ok")
		case "DATA":
			say("354 End data with <CR><LF>.<CR><LF>")
			if n := h.sc.dropInData; n > 0 {
				io.ReadFull(r, make([]byte, n))
				h.mu.Lock()
				h.drops++
				h.mu.Unlock()
				return // closes with unread data: the client sees a reset
			}
			var b strings.Builder
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
				l = strings.TrimPrefix(l, ".")
				b.WriteString(strings.TrimSuffix(l, "\r\n") + "\n")
			}
			h.mu.Lock()
			h.msgs = append(h.msgs, b.String())
			h.mu.Unlock()
			say("250 2.0.0 Ok: queued as HOP1")
		case "RSET", "NOOP":
			say("250 2.0.0 Ok")
		case "QUIT":
			say("221 2.0.0 Bye")
			return
		default:
			say("502 5.5.2 Error: command not recognized")
		}
	}
}

// record notes the verb of a command line and returns it.
func (h *fltHop) record(line string) string {
	f := strings.Fields(line)
	verb := ""
	if len(f) > 0 {
		verb = strings.ToUpper(f[0])
	}
	if i := strings.IndexByte(verb, ':'); i >= 0 {
		verb = verb[:i]
	}
	h.mu.Lock()
	h.seen = append(h.seen, verb)
	h.mu.Unlock()
	return verb
}

// fltLF normalises line ends for comparing message contents.
func fltLF(s string) string { return strings.ReplaceAll(s, "\r\n", "\n") }

// (a) Connection refused: deferred with Postfix's reason, then delivered
// exactly once when the next hop comes up on the same port.
func TestFaultConnectionRefused(t *testing.T) {
	port := freePort(t) // nothing listens there
	in := newInstance(t, fltFarHop(port), nil)
	in.Start()
	t0 := time.Now()
	if err := send(in.Addr(), "sender@test.example", []string{"rcpt@far.example"}, testMessage("refused")); err != nil {
		t.Fatal(err)
	}
	line := fltWaitLine(t, in, fltWait, "to=<rcpt@far.example>", "status=deferred")
	t.Logf("deferred after %v: %s", time.Since(t0).Round(time.Millisecond), line)
	want := "relay=none, delay="
	reason := fmt.Sprintf("dsn=4.4.1, status=deferred (connect to 127.0.0.1[127.0.0.1]:%d: Connection refused)", port)
	if !strings.Contains(line, want) || !strings.Contains(line, reason) {
		t.Errorf("deferral line %q, want %q and %q", line, want, reason)
	}
	out, _ := in.Run("", "queue", "list")
	if !strings.Contains(out, "rcpt@far.example") || !strings.Contains(out, "Connection refused") {
		t.Errorf("queue list must show the deferred recipient and why:\n%s", out)
	}
	// Let it be retried at least once more while the hop is down: still
	// deferred, never bounced.
	waitUntil(t, "a second deferral", fltWait, func() bool {
		return len(fltLines(in, "to=<rcpt@far.example>", "status=deferred")) >= 2
	})
	t1 := time.Now()
	sk := newSink(t, fmt.Sprintf("127.0.0.1:%d", port), nil)
	fltDeliveredOnce(t, in, sk, "rcpt@far.example")
	t.Logf("next hop up -> delivered within %v (incl. the 4s duplicate watch)", time.Since(t1).Round(time.Millisecond))
	if fltLines(in, "status=bounced") != nil {
		t.Errorf("nothing may bounce:\n%s", in.Log.String())
	}
}

// (b) A next hop that answers 421 at greeting: deferred ("refused to talk
// to me"), retried, never bounced, nothing sent past the greeting.
func TestFault421Greeting(t *testing.T) {
	hop := newFltHop(t, "", fltScript{greeting: "421 4.3.2 hop.test.example Service not available, closing transmission channel"})
	in := newInstance(t, fltFarHop(hop.port), nil)
	in.Start()
	t0 := time.Now()
	if err := send(in.Addr(), "sender@test.example", []string{"rcpt@far.example"}, testMessage("421")); err != nil {
		t.Fatal(err)
	}
	line := fltWaitLine(t, in, fltWait, "to=<rcpt@far.example>", "status=deferred")
	t.Logf("deferred after %v: %s", time.Since(t0).Round(time.Millisecond), line)
	for _, want := range []string{
		fmt.Sprintf("relay=127.0.0.1[127.0.0.1]:%d", hop.port),
		"dsn=4.3.2, status=deferred (host 127.0.0.1[127.0.0.1] refused to talk to me: 421 4.3.2 hop.test.example Service not available, closing transmission channel)",
	} {
		if !strings.Contains(line, want) {
			t.Errorf("deferral line %q lacks %q", line, want)
		}
	}
	waitUntil(t, "a retry", fltWait, func() bool {
		return hop.accepted() >= 2 && len(fltLines(in, "to=<rcpt@far.example>", "status=deferred")) >= 2
	})
	for _, verb := range []string{"EHLO", "HELO", "MAIL", "RCPT", "DATA"} {
		if n := hop.commands(verb); n != 0 {
			t.Errorf("mailtee sent %s %d times after a 421 greeting", verb, n)
		}
	}
	if fltLines(in, "status=bounced") != nil || fltLines(in, "status=sent") != nil {
		t.Errorf("a 421 greeting must only defer:\n%s", in.Log.String())
	}
	out, _ := in.Run("", "queue", "list")
	if !strings.Contains(out, "rcpt@far.example") || !strings.Contains(out, "refused to talk to me") {
		t.Errorf("queue list must show the deferred recipient and why:\n%s", out)
	}
	t.Logf("%d connections, %d deferrals in %v", hop.accepted(), len(fltLines(in, "status=deferred")), time.Since(t0).Round(time.Millisecond))
}

// (c) A next hop that drops the connection in the middle of DATA:
// deferred ("lost connection"), then delivered once, intact, by a good
// next hop on the same port.
func TestFaultDropInData(t *testing.T) {
	hop := newFltHop(t, "", fltScript{dropInData: 32 << 10})
	in := newInstance(t, fltFarHop(hop.port), nil)
	in.Start()
	// 2 MB: more than the hop reads, so it closes with mailtee still
	// writing the body.
	var b strings.Builder
	b.WriteString("From: sender@test.example\r\nTo: rcpt@far.example\r\nSubject: dropped\r\n\r\n")
	for i := 0; b.Len() < 2<<20; i++ {
		fmt.Fprintf(&b, "line %07d of a message that a next hop drops in the middle of DATA\r\n", i)
	}
	body := b.String()
	t0 := time.Now()
	if err := send(in.Addr(), "sender@test.example", []string{"rcpt@far.example"}, body); err != nil {
		t.Fatal(err)
	}
	line := fltWaitLine(t, in, fltWait, "to=<rcpt@far.example>", "status=deferred")
	t.Logf("deferred after %v: %s", time.Since(t0).Round(time.Millisecond), line)
	for _, want := range []string{
		fmt.Sprintf("relay=127.0.0.1[127.0.0.1]:%d", hop.port),
		"dsn=4.4.2, status=deferred (lost connection with 127.0.0.1[127.0.0.1] while sending",
	} {
		if !strings.Contains(line, want) {
			t.Errorf("deferral line %q lacks %q", line, want)
		}
	}
	if hop.dropped() < 1 || len(hop.messages()) != 0 {
		t.Fatalf("the hop dropped %d connections and took %d messages; want >=1 and 0", hop.dropped(), len(hop.messages()))
	}
	if fltLines(in, "status=sent") != nil || fltLines(in, "status=bounced") != nil {
		t.Fatalf("a dropped DATA must only defer:\n%s", in.Log.String())
	}
	// The good next hop takes over the port.
	hop.close()
	t1 := time.Now()
	sk := newSink(t, fmt.Sprintf("127.0.0.1:%d", hop.port), nil)
	fltDeliveredOnce(t, in, sk, "rcpt@far.example")
	t.Logf("good hop up -> delivered within %v (incl. the 4s duplicate watch)", time.Since(t1).Round(time.Millisecond))
	m := sk.Messages()[0]
	if got, want := fltLF(m.Data), fltLF(body[strings.Index(body, "From:"):]); !strings.HasSuffix(got, want) {
		t.Errorf("message not intact after the dropped attempt: got %d bytes, want a suffix of %d bytes", len(got), len(want))
	}
	if m.From != "sender@test.example" {
		t.Errorf("envelope sender %q", m.From)
	}
}

// (d) A next hop that accepts the TCP connection and never says a word.
// smtp_connect_timeout (2s, from the harness) does not apply: the
// connection is made. The greeting is bounded by Postfix's
// smtp_helo_timeout, set here to 5s: the message must be deferred within
// a bounded time ("timed out while receiving the initial server
// greeting"), not after mailtee's fixed 5-minute command timeout.
func TestFaultSilentNextHop(t *testing.T) {
	hop := newFltHop(t, "", fltScript{silent: true})
	in := newInstance(t, fltFarHop(hop.port)+"smtp_connect_timeout = 2s\nsmtp_helo_timeout = 5s\n", nil)
	in.Start()
	t0 := time.Now()
	if err := send(in.Addr(), "sender@test.example", []string{"rcpt@far.example"}, testMessage("silent")); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "mailtee to connect", fltWait, func() bool { return hop.accepted() >= 1 })
	// Bounded: 5s of greeting timeout plus a generous margin for a
	// loaded machine; Postfix's default would be 300s.
	var line string
	for deadline := time.Now().Add(45 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if l := fltLines(in, "to=<rcpt@far.example>", "status=deferred"); l != nil {
			line = l[0]
			break
		}
		if time.Now().Before(deadline) {
			continue
		}
		hint := ""
		if fltLines(in, "smtp_helo_timeout: not implemented") != nil {
			hint = " mailtee ignores smtp_helo_timeout (its log says so): the greeting waits for the fixed 5-minute command timeout set in internal/master."
		}
		t.Fatalf("no deferral %v after a silent next hop accepted the connection (smtp_helo_timeout = 5s).%s Log:\n%s",
			time.Since(t0).Round(time.Second), hint, in.Log.String())
	}
	took := time.Since(t0)
	t.Logf("deferred after %v: %s", took.Round(time.Millisecond), line)
	for _, want := range []string{
		fmt.Sprintf("relay=127.0.0.1[127.0.0.1]:%d", hop.port),
		"dsn=4.4.2, status=deferred (conversation with 127.0.0.1[127.0.0.1] timed out while receiving the initial server greeting)",
	} {
		if !strings.Contains(line, want) {
			t.Errorf("deferral line %q lacks %q", line, want)
		}
	}
	if took < 4*time.Second {
		t.Errorf("deferred after %v, before smtp_helo_timeout (5s) could expire", took)
	}
	if fltLines(in, "status=sent") != nil || fltLines(in, "status=bounced") != nil {
		t.Errorf("a silent next hop must only defer:\n%s", in.Log.String())
	}
}

// (e) STARTTLS offered, the handshake fails. With
// smtp_tls_security_level = may, mailtee retries the same server in
// plaintext and delivers once, as Postfix; with encrypt it defers and
// never sends the message in plaintext.
func TestFaultTLSHandshakeMay(t *testing.T) {
	hop := newFltHop(t, "", fltScript{starttls: true})
	in := newInstance(t, fltFarHop(hop.port)+"smtp_tls_security_level = may\n", nil)
	in.Start()
	t0 := time.Now()
	if err := send(in.Addr(), "sender@test.example", []string{"rcpt@far.example"}, testMessage("tls may")); err != nil {
		t.Fatal(err)
	}
	line := fltWaitLine(t, in, fltWait, "to=<rcpt@far.example>", "status=sent")
	t.Logf("sent after %v: %s", time.Since(t0).Round(time.Millisecond), line)
	if want := fmt.Sprintf("relay=127.0.0.1[127.0.0.1]:%d", hop.port); !strings.Contains(line, want) {
		t.Errorf("sent line %q lacks %q", line, want)
	}
	id := fltQueueID(t, line)
	in.WaitLogFor(id+": removed", fltWait)
	time.Sleep(4 * time.Second) // a duplicate would come within the backoff
	msgs := hop.messages()
	if len(msgs) != 1 || !strings.Contains(msgs[0], "Subject: tls may") {
		t.Fatalf("the hop took %d messages, want 1: %q", len(msgs), msgs)
	}
	if n := hop.commands("STARTTLS"); n < 1 {
		t.Errorf("STARTTLS was never tried")
	}
	if n := hop.accepted(); n != 2 {
		t.Errorf("%d connections, want 2 (the failed handshake, then plaintext)", n)
	}
	if fltLines(in, "status=deferred") != nil || fltLines(in, "status=bounced") != nil {
		t.Errorf("with level may a failed handshake falls back in the same attempt:\n%s", in.Log.String())
	}
	// Postfix logs the failed handshake before it falls back
	// (smtp_connect.c); so must mailtee, or the fallback is invisible.
	if fltLines(in, "TLS handshake failed") == nil {
		t.Errorf("no log line says that the TLS handshake failed and mailtee fell back to plaintext:\n%s", in.Log.String())
	}
}

func TestFaultTLSHandshakeEncrypt(t *testing.T) {
	hop := newFltHop(t, "", fltScript{starttls: true})
	in := newInstance(t, fltFarHop(hop.port)+"smtp_tls_security_level = encrypt\n", nil)
	in.Start()
	t0 := time.Now()
	if err := send(in.Addr(), "sender@test.example", []string{"rcpt@far.example"}, testMessage("tls encrypt")); err != nil {
		t.Fatal(err)
	}
	line := fltWaitLine(t, in, fltWait, "to=<rcpt@far.example>", "status=deferred")
	t.Logf("deferred after %v: %s", time.Since(t0).Round(time.Millisecond), line)
	for _, want := range []string{
		fmt.Sprintf("relay=127.0.0.1[127.0.0.1]:%d", hop.port),
		"dsn=4.7.5, status=deferred (Cannot start TLS: handshake failure)",
	} {
		if !strings.Contains(line, want) {
			t.Errorf("deferral line %q lacks %q", line, want)
		}
	}
	// Retries keep failing the same way; nothing goes out in plaintext.
	waitUntil(t, "a retry", fltWait, func() bool {
		return len(fltLines(in, "to=<rcpt@far.example>", "status=deferred")) >= 2
	})
	for _, verb := range []string{"MAIL", "RCPT", "DATA"} {
		if n := hop.commands(verb); n != 0 {
			t.Errorf("mailtee sent %s in plaintext %d times with smtp_tls_security_level = encrypt", verb, n)
		}
	}
	if len(hop.messages()) != 0 || fltLines(in, "status=sent") != nil || fltLines(in, "status=bounced") != nil {
		t.Errorf("with level encrypt a failed handshake must only defer:\n%s", in.Log.String())
	}
	out, _ := in.Run("", "queue", "list")
	if !strings.Contains(out, "rcpt@far.example") || !strings.Contains(out, "Cannot start TLS") {
		t.Errorf("queue list must show the deferred recipient and why:\n%s", out)
	}
	t.Logf("%d connections, %d STARTTLS, %d deferrals in %v", hop.accepted(), hop.commands("STARTTLS"),
		len(fltLines(in, "status=deferred")), time.Since(t0).Round(time.Millisecond))
}

// (f) 5xx at RCPT: that recipient bounces, the sender (a local mailbox)
// gets one RFC 3464 report; the other recipient is delivered once.
func TestFault5xxAtRcptBounces(t *testing.T) {
	sk := newSink(t, "", nil)
	sk.SetRcptErr("bad@far.example", &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "<bad@far.example>: Recipient address rejected: User unknown"})
	in := newInstance(t, fltFarHop(sk.Port()), nil)
	in.Start()
	t0 := time.Now()
	if err := send(in.Addr(), "alice@test.example", []string{"bad@far.example", "good@far.example"}, testMessage("will bounce")); err != nil {
		t.Fatal(err)
	}
	line := fltWaitLine(t, in, fltWait, "to=<bad@far.example>", "status=bounced")
	t.Logf("bounced after %v: %s", time.Since(t0).Round(time.Millisecond), line)
	for _, want := range []string{
		fmt.Sprintf("relay=127.0.0.1[127.0.0.1]:%d", sk.Port()),
		"dsn=5.1.1, status=bounced (host 127.0.0.1[127.0.0.1] said: 550 5.1.1 <bad@far.example>: Recipient address rejected: User unknown (in reply to RCPT TO command))",
	} {
		if !strings.Contains(line, want) {
			t.Errorf("bounce line %q lacks %q", line, want)
		}
	}
	fltWaitLine(t, in, fltWait, "to=<good@far.example>", "status=sent")
	id := fltQueueID(t, line)
	in.WaitLogFor(id+": sender non-delivery notification", fltWait)
	waitUntil(t, "the bounce in alice's Maildir", fltWait, func() bool { return len(in.MaildirMessages("alice")) >= 1 })
	fltWaitLine(t, in, fltWait, "to=<alice@test.example>", "relay=local", "status=sent")
	time.Sleep(4 * time.Second) // no second bounce, no second copy
	if n := len(in.MaildirMessages("alice")); n != 1 {
		t.Errorf("alice has %d bounces, want 1", n)
	}
	b := in.MaildirMessages("alice")[0]
	for _, want := range []string{
		"From: Mail Delivery System <MAILER-DAEMON@mx.test.example>", "Return-Path: <>", "multipart/report", "report-type=delivery-status",
		"Final-Recipient: rfc822; bad@far.example", "Action: failed", "Status: 5.1.1",
		"Recipient address rejected: User unknown", "Subject: will bounce",
	} {
		if !strings.Contains(b, want) {
			t.Errorf("bounce lacks %q:\n%s", want, b)
		}
	}
	if strings.Contains(b, "Final-Recipient: rfc822; good@far.example") {
		t.Error("the delivered recipient must not be in the bounce")
	}
	if n, m := sk.Count("good@far.example"), sk.Count("bad@far.example"); n != 1 || m != 0 {
		t.Errorf("sink has good@ %d times and bad@ %d times, want 1 and 0", n, m)
	}
	if n := len(fltLines(in, "to=<bad@far.example>", "status=bounced")); n != 1 {
		t.Errorf("%d bounce lines for bad@far.example, want 1", n)
	}
	if fltLines(in, "status=deferred") != nil {
		t.Errorf("nothing may be deferred:\n%s", in.Log.String())
	}
	in.WaitLogFor(id+": removed", fltWait)
}
