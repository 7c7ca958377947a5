package smtpd

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// tlsUp runs the client side of the handshake on c and goes on over TLS.
func (c *client) tlsUp(pool *x509.CertPool) {
	c.t.Helper()
	tc := tls.Client(c.nc, &tls.Config{RootCAs: pool, ServerName: testHost})
	if err := tc.Handshake(); err != nil {
		c.t.Fatal(err)
	}
	c.nc, c.r = tc, bufio.NewReader(tc)
}

func withCert(t *testing.T) (func(*Options), *x509.CertPool) {
	cert, pool := selfSigned(t)
	return func(o *Options) { o.TLS = &tls.Config{Certificates: []tls.Certificate{cert}} }, pool
}

// After STARTTLS, go-smtp's replies are still Postfix's: conn does TLS
// below go-smtp and sees the plaintext.
func TestStartTLSPostfixReplies(t *testing.T) {
	tlsOn, pool := withCert(t)
	ts := start(t, tlsOn)
	c := dial(t, ts.addr)
	c.expect("220 mx.example.com ESMTP mailtee")
	ehlo := c.cmd("EHLO client.example")
	if !strings.Contains(ehlo, "\n250-STARTTLS\n") || !strings.HasPrefix(ehlo, "250-mx.example.com\n") {
		t.Fatalf("EHLO: %q", ehlo)
	}
	c.must("STARTTLS x", "501 5.5.4 Syntax: STARTTLS")
	c.must("starttls", "220 2.0.0 Ready to start TLS")
	c.tlsUp(pool)
	for _, s := range []struct{ cmd, want string }{
		{"EHLO client.example", "250-mx.example.com\n250-PIPELINING\n250-8BITMIME\n250-ENHANCEDSTATUSCODES\n250-CHUNKING\n250-SMTPUTF8\n250 SIZE 10000"},
		{"STARTTLS", "554 5.5.1 Error: TLS already active"},
		{"HELO", "501 Syntax: HELO hostname"},
		{"NOOP", "250 2.0.0 Ok"},
		{"RSET", "250 2.0.0 Ok"},
		{"RCPT TO:<alice@example.com>", "503 5.5.1 Error: need MAIL command"},
		{"MAIL FROM:<s@remote.example>", "250 2.1.0 Ok"},
		{"RCPT TO:<alice@example.com>", "250 2.1.5 Ok"},
		{"DATA", "354 End data with <CR><LF>.<CR><LF>"},
		{"x\r\n.", "250 2.0.0 Ok: queued as 4Q00001"},
		{"XFOO", "500 5.5.2 Error: command not recognized"},
		{"QUIT", "221 2.0.0 Bye"},
	} {
		if got := c.cmd(s.cmd); got != s.want {
			t.Errorf("%q over TLS: %q, want %q", s.cmd, got, s.want)
		}
	}
	ts.log.waitFor(t, "disconnect from localhost[127.0.0.1] ehlo=2 starttls=1/3 mail=1 rcpt=1 data=1 commands=6/8")

	// No certificate: no STARTTLS, and Postfix's refusal.
	ts = start(t, nil)
	c = dial(t, ts.addr)
	c.expect("220 ")
	if got := c.cmd("EHLO client.example"); strings.Contains(got, "STARTTLS") {
		t.Errorf("STARTTLS offered without a certificate: %q", got)
	}
	c.must("STARTTLS", "502 5.5.1 Error: command not implemented")
	c.must("NOOP", "250 2.0.0 Ok")
}

// CVE-2011-0411: what the client pipelines after STARTTLS, in plaintext,
// is never read as commands, neither before the handshake nor after it.
// The state before STARTTLS is gone too (RFC 3207): the transaction, and
// the HELO name.
func TestStartTLSDiscardsPipelinedPlaintext(t *testing.T) {
	tlsOn, pool := withCert(t)
	for _, injected := range []string{
		"RSET\r\n",
		"MAIL FROM:<mallory@remote.example>\r\n",
		"MAIL FROM:<mallory@remote.example>\r\nRCPT TO:<alice@example.com>\r\nDATA\r\n",
		"NOOP\r\nNOOP\r\nNOOP\r\n",
	} {
		ts := start(t, tlsOn)
		c := dial(t, ts.addr)
		c.expect("220 ")
		c.cmd("EHLO client.example")
		// One write, one TCP segment on loopback.
		c.send("STARTTLS\r\n" + injected)
		c.expect("220 2.0.0 Ready to start TLS")
		c.silent(300 * time.Millisecond) // no reply to anything injected, in plaintext
		c.tlsUp(pool)
		// The first reply over TLS answers this command, not one of the
		// injected ones.
		if got := c.cmd("RCPT TO:<alice@example.com>"); got != "503 5.5.1 Error: need MAIL command" {
			t.Fatalf("after %q: RCPT over TLS: %q, want no transaction", injected, got)
		}
		c.silent(300 * time.Millisecond)
		c.must("MAIL FROM:<s@remote.example>", "250 2.1.0 Ok")
		c.must("RCPT TO:<bob@example.com>", "250 2.1.5 Ok")
		c.must("DATA", "354 ")
		c.send("x\r\n.\r\n")
		c.expect("250 2.0.0 Ok: queued as ")
		msgs := ts.q.all()
		if len(msgs) != 1 || msgs[0].env.From != "s@remote.example" || len(msgs[0].env.Rcpts) != 1 {
			t.Fatalf("after %q: queued %+v", injected, msgs)
		}
		// MAIL without a new EHLO, as Postfix takes it: no HELO name.
		if !strings.HasPrefix(msgs[0].body, "Received: from localhost (localhost [127.0.0.1])\r\n\tby mx.example.com (mailtee) with ESMTPS id 4Q00001\r\n") {
			t.Errorf("Received: %q", msgs[0].body)
		}
	}

	// A transaction open before STARTTLS is gone after it; the EHLO
	// after it gives the HELO name.
	ts := start(t, tlsOn)
	c := ts.session(t)
	c.must("MAIL FROM:<mallory@remote.example>", "250 ")
	c.must("RCPT TO:<alice@example.com>", "250 ")
	c.must("STARTTLS", "220 ")
	c.tlsUp(pool)
	c.must("DATA", "503 5.5.1 Error: need RCPT command")
	c.must("EHLO again.example", "250-")
	if got := c.mail("s@remote.example", []string{"bob@example.com"}, "x\r\n"); !strings.HasPrefix(got, "250 ") {
		t.Fatal(got)
	}
	if b := ts.q.all()[0].body; !strings.HasPrefix(b, "Received: from again.example (localhost [127.0.0.1])") {
		t.Errorf("Received: %q", b)
	}

	// Plaintext sent after the 220, before the handshake, goes to the
	// TLS layer, which refuses it: the session ends, nothing is run.
	ts = start(t, tlsOn)
	c = ts.session(t)
	c.must("STARTTLS", "220 ")
	c.send("MAIL FROM:<mallory@remote.example>\r\n")
	c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if b, _ := io.ReadAll(c.r); bytes.Contains(b, []byte("250")) {
		t.Errorf("plaintext after the 220 answered: %q", b)
	}
	ts.log.waitFor(t, "lost connection after STARTTLS from localhost[127.0.0.1]")
}

// The handshake has smtpd_starttls_timeout: a client that says STARTTLS
// and never finishes the handshake does not hold its session.
func TestStartTLSHandshakeTimeout(t *testing.T) {
	tlsOn, _ := withCert(t)
	ts := start(t, func(o *Options) { tlsOn(o); o.StartTLSTimeout = 300 * time.Millisecond; o.Timeout = time.Minute })
	c := ts.session(t)
	c.must("STARTTLS", "220 ")
	begin := time.Now()
	c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	if b, err := io.ReadAll(c.r); err != nil || len(b) > 0 {
		t.Errorf("after the timeout: %q, %v; want the connection closed, no reply", b, err)
	}
	if d := time.Since(begin); d > 5*time.Second {
		t.Errorf("closed after %v", d)
	}
	ts.log.waitFor(t, "SSL_accept error from localhost[127.0.0.1]: Connection timed out")
	ts.log.waitFor(t, "disconnect from localhost[127.0.0.1] ehlo=1 starttls=0/1 commands=1/2")

	// Postfix's default, and its stress value.
	s := New(Options{Queue: &fakeQueue{}})
	if s.normal.StartTLSTimeout != 300*time.Second || s.stressed.StartTLSTimeout != 10*time.Second {
		t.Errorf("smtpd_starttls_timeout %v, in stress mode %v", s.normal.StartTLSTimeout, s.stressed.StartTLSTimeout)
	}
}

// After STARTTLS the bare LF and bare CR checks and the error counting
// go on as in plaintext.
func TestStartTLSChecks(t *testing.T) {
	tlsOn, pool := withCert(t)
	ts := start(t, func(o *Options) { tlsOn(o); o.BareNewline = BareNewlineReject })
	c := ts.session(t)
	c.must("STARTTLS", "220 ")
	c.tlsUp(pool)
	c.must("EHLO client.example", "250-")
	if got := c.mail("s@remote.example", []string{"alice@example.com"}, "a\rb\r\n"); got != "550 5.5.2 mx.example.com Error: bare <CR> received" {
		t.Errorf("bare CR over TLS: %q", got)
	}
	// CR CR LF . CR LF ends the data over TLS too (crfilter.go), at
	// once, not at smtpd_timeout.
	begin := time.Now()
	if got := c.mail("s@remote.example", []string{"alice@example.com"}, "Subject: x\r\n\r\na\r\r\n"); got != "550 5.5.2 mx.example.com Error: bare <CR> received" || time.Since(begin) > 2*time.Second {
		t.Errorf("CR CR LF . CR LF over TLS: %q after %v", got, time.Since(begin))
	}
	if got := c.mail("s@remote.example", []string{"alice@example.com"}, "a\nb\r\n"); got != "550 5.5.2 mx.example.com Error: bare <LF> received" {
		t.Errorf("bare LF in content over TLS: %q", got)
	}
	c.send("NOOP\n")
	if got := c.reply(); got != "550 5.5.2 mx.example.com Error: bare <LF> received" {
		t.Errorf("bare LF in a command over TLS: %q", got)
	}
	c.closed()

	// A STARTTLS line that ends in a bare LF is refused as any command.
	ts = start(t, func(o *Options) { tlsOn(o); o.BareNewline = BareNewlineReject })
	c = ts.session(t)
	c.send("STARTTLS\n")
	if got := c.reply(); got != "550 5.5.2 mx.example.com Error: bare <LF> received" {
		t.Errorf("STARTTLS with a bare LF: %q", got)
	}
	c.closed()

	// The hard error limit, with Postfix's 421 over TLS.
	ts = start(t, func(o *Options) { tlsOn(o); o.HardErrorLimit = 3 })
	c = ts.session(t)
	c.must("STARTTLS", "220 ")
	c.tlsUp(pool)
	c.must("XFOO", "500 5.5.2 Error: command not recognized")
	c.must("XFOO", "500 5.5.2 Error: command not recognized")
	c.must("XFOO", "421 4.7.0 mx.example.com Error: too many errors")
	c.closed()

	// STARTTLS refusals count as errors, as Postfix's.
	ts = start(t, func(o *Options) { tlsOn(o); o.HardErrorLimit = 2 })
	c = ts.session(t)
	c.must("STARTTLS now", "501 5.5.4 Syntax: STARTTLS")
	c.must("STARTTLS now", "421 4.7.0 mx.example.com Error: too many errors")
	c.closed()
}

// A failed handshake ends the session without a reply, as Postfix's
// (smtpd.c: "When the TLS handshake fails, the conversation is in an
// unknown state").
func TestStartTLSHandshakeFailure(t *testing.T) {
	tlsOn, _ := withCert(t)
	ts := start(t, tlsOn)
	c := ts.session(t)
	c.must("STARTTLS", "220 ")
	tc := tls.Client(c.nc, &tls.Config{ServerName: testHost}) // does not trust the certificate
	if err := tc.Handshake(); err == nil {
		t.Fatal("handshake with an unknown certificate succeeded")
	}
	c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if b, _ := io.ReadAll(c.nc); bytes.Contains(b, []byte("\r\n")) {
		t.Errorf("after a failed handshake: %q", b)
	}
	ts.log.waitFor(t, "SSL_accept error from localhost[127.0.0.1]: -1")
	ts.log.waitFor(t, "lost connection after STARTTLS from localhost[127.0.0.1]")
}

// Wrapper mode (smtps): TLS from the first byte, the handshake within
// smtpd_starttls_timeout, Postfix's replies, ESMTPS.
func TestWrapperMode(t *testing.T) {
	cert, pool := selfSigned(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tl := tls.NewListener(l, &tls.Config{Certificates: []tls.Certificate{cert}})
	ts := startOn(t, tl, func(o *Options) { o.StartTLSTimeout = 300 * time.Millisecond })
	c := dial(t, ts.addr)
	c.tlsUp(pool)
	c.expect("220 mx.example.com ESMTP mailtee")
	if got := c.cmd("EHLO client.example"); strings.Contains(got, "STARTTLS") {
		t.Errorf("STARTTLS offered in wrapper mode: %q", got)
	}
	c.must("STARTTLS", "554 5.5.1 Error: TLS already active")
	c.must("MAIL FROM:<s@remote.example>", "250 2.1.0 Ok")
	c.must("RCPT TO:<alice@example.com>", "250 2.1.5 Ok")
	c.must("DATA", "354 End data with <CR><LF>.<CR><LF>")
	c.send("x\r\n.\r\n")
	c.expect("250 2.0.0 Ok: queued as ")
	if m := ts.q.all()[0]; m.env.Protocol != "ESMTPS" || !strings.Contains(m.body, " with ESMTPS id ") {
		t.Errorf("wrapper mode: protocol %q, %q", m.env.Protocol, m.body)
	}

	// A client that never starts the handshake.
	c = dial(t, ts.addr)
	begin := time.Now()
	if b, _ := io.ReadAll(c.r); len(b) > 0 {
		t.Errorf("to a silent client: %q", b)
	}
	if d := time.Since(begin); d > 5*time.Second {
		t.Errorf("closed after %v", d)
	}
	ts.log.waitFor(t, "SSL_accept error from localhost[127.0.0.1]: Connection timed out")
	ts.log.waitFor(t, "lost connection after CONNECT from localhost[127.0.0.1]")
}

// FuzzStartTLSStream: whatever the client sends and however it is cut
// into reads, conn passes go-smtp exactly the (CR-filtered) stream with
// its STARTTLS command lines taken out, and answers each of those.
func FuzzStartTLSStream(f *testing.F) {
	for _, s := range []string{
		"EHLO x\r\nSTARTTLS\r\nRSET\r\n",
		"STARTTLS x\r\nstarttls\nMAIL FROM:<a@b>\r\n",
		"DATA\r\nSTARTTLS\r\n.\r\nSTARTTLS\r\n",
		"BDAT 10\r\nSTARTTLS\r\nSTARTTLS\r\nSTART",
		"STARTTLSX\r\nSTARTTL\r\n\r\r\nSTARTTLS\r",
	} {
		f.Add([]byte(s), uint8(3), uint8(7))
	}
	f.Fuzz(func(t *testing.T, in []byte, chunk, bufSize uint8) {
		s := New(Options{Hostname: testHost, Queue: &fakeQueue{}, HardErrorLimit: 1 << 30, JunkCommandLimit: 1 << 30})
		mc := &memConn{in: bytes.NewReader(in), chunk: int(chunk%32) + 1, closed: make(chan struct{})}
		c := &conn{Conn: mc, srv: s, name: "localhost", greeted: true, limit: connLimits{gone: make(chan struct{})}}
		var got []byte
		buf := make([]byte, int(bufSize%64)+1)
		for {
			n, err := c.readPlain(buf)
			got = append(got, buf[:n]...)
			if err != nil {
				break
			}
		}
		c.flush(nil)

		// What conn should do, on the whole stream at once.
		whole := append([]byte(nil), in...)
		var crs crFilter
		whole = whole[:crs.filter(whole, len(whole), true)]
		var w cmdWatcher
		var want []byte
		answers := 0
		for i := 0; i < len(whole); {
			if w.lineStart() {
				if l := scanStartTLS(whole[i:]); l > 0 {
					w.feed(whole[i : i+l])
					i += l
					answers++
					continue
				}
			}
			want = append(want, whole[i])
			w.feed(whole[i : i+1])
			i++
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("go-smtp read %q, want %q", got, want)
		}
		if n := strings.Count(mc.out.String(), "\r\n"); n != answers {
			t.Fatalf("%d replies for %d STARTTLS lines: %q", n, answers, mc.out.String())
		}
	})
}

// A command line over go-smtp's limit ends the session with a 500; its
// head never runs as a command, however the line comes in pieces
// (readPlain fills go-smtp's buffer within a command line).
func TestOverlongCommandLineInPieces(t *testing.T) {
	for _, piece := range []int{700, 1000, 3000, 5000} {
		input := "EHLO client.example\r\nNOOP " + strings.Repeat("x", maxLineLength+10000) + "\r\n"
		s := New(Options{Hostname: testHost, Queue: &fakeQueue{}})
		mc := &memConn{in: bytes.NewReader([]byte(input)), chunk: piece, closed: make(chan struct{})}
		l := &oneConnListener{c: make(chan net.Conn, 1), done: make(chan struct{})}
		l.c <- mc
		served := make(chan error, 1)
		go func() { served <- s.Serve(l) }()
		select {
		case <-mc.closed:
		case <-time.After(10 * time.Second):
			t.Fatal("session did not end")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		s.Shutdown(ctx)
		cancel()
		<-served
		mc.mu.Lock()
		out := mc.out.String()
		mc.mu.Unlock()
		i := strings.Index(out, "250 SIZE\r\n")
		if i < 0 {
			t.Fatalf("no EHLO reply: %q", out)
		}
		if rest := out[i+len("250 SIZE\r\n"):]; !strings.HasPrefix(rest, "500 ") {
			t.Errorf("pieces of %d: after EHLO %q, want only a 500", piece, rest)
		}
	}
}

// Shutdown reaches TLS sessions as plaintext ones: an idle one is told
// 421 over TLS, one in a transaction may finish it; a client stuck in
// the handshake is let go.
func TestShutdownTLS(t *testing.T) {
	tlsOn, pool := withCert(t)
	ts := start(t, tlsOn)
	busy := ts.session(t)
	busy.must("STARTTLS", "220 ")
	busy.tlsUp(pool)
	busy.must("EHLO client.example", "250-")
	busy.must("MAIL FROM:<s@remote.example>", "250 ")
	busy.must("RCPT TO:<alice@example.com>", "250 ")
	idle := ts.session(t)
	idle.must("STARTTLS", "220 ")
	idle.tlsUp(pool)
	// The server's end of the handshake is over once it answers.
	idle.must("NOOP", "250 ")
	stuck := ts.session(t)
	stuck.must("STARTTLS", "220 ")

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- ts.Shutdown(ctx)
	}()
	idle.expect("421 ")
	idle.closed()
	stuck.closed()
	busy.must("DATA", "354 End data with <CR><LF>.<CR><LF>")
	busy.send("last words\r\n.\r\n")
	busy.expect("250 2.0.0 Ok: queued as 4Q00001")
	busy.expect("421 ")
	busy.closed()
	if err := <-done; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

// conn reads a STARTTLS line only where go-smtp reads a command: not in
// the content of a DATA that go-smtp takes ("DATA" with trailing white
// space), and again after a BDAT whose chunk go-smtp does not read.
func TestStartTLSOnlyAsCommand(t *testing.T) {
	tlsOn, _ := withCert(t)
	ts := start(t, tlsOn)
	c := ts.session(t)
	c.must("MAIL FROM:<s@remote.example>", "250 ")
	c.must("RCPT TO:<alice@example.com>", "250 ")
	c.must("DATA  ", "354 ")
	c.send("Subject: x\r\n\r\nSTARTTLS\r\n.\r\n")
	c.expect("250 2.0.0 Ok: queued as ")
	if m := ts.q.all(); len(m) != 1 || !strings.HasSuffix(m[0].body, "\r\nSTARTTLS\r\n") {
		t.Errorf("queued %+v", m)
	}
	c.must("MAIL FROM:<s@remote.example>", "250 ")
	c.must("RCPT TO:<alice@example.com>", "250 ")
	c.must("BDAT +20", "501 ")
	c.must("STARTTLSX", "500 5.5.2 Error: command not recognized")
	c.must("BDAT 30 MORE", "501 ")
	// A DATA that go-smtp refuses: commands follow, not content.
	c.must("RSET", "250 ")
	c.send("DATA\r\nSTARTTLSX\r\n")
	c.expect("503 5.5.1 Error: need RCPT command")
	c.expect("500 5.5.2 Error: command not recognized")
	c.must("STARTTLS", "220 2.0.0 Ready to start TLS")

	// And a bare LF after it is a command's, refused with reject.
	ts = start(t, func(o *Options) { o.BareNewline = BareNewlineReject })
	c = ts.session(t)
	c.must("DATA", "503 ")
	c.send("NOOP\n")
	if got := c.reply(); got != "550 5.5.2 mx.example.com Error: bare <LF> received" {
		t.Errorf("bare LF after a refused DATA: %q", got)
	}
}
