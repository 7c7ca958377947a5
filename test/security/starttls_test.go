package security

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mailtee/mailtee/test/internal/harness"
)

// tlsMainCf writes a certificate for mx.test.example and returns the
// main.cf lines that make mailtee offer STARTTLS with it.
func tlsMainCf(t *testing.T) string {
	t.Helper()
	certFile, keyFile, _ := harness.TestCert(t, t.TempDir(), "mx.test.example")
	return fmt.Sprintf("smtpd_tls_cert_file = %s\nsmtpd_tls_key_file = %s\n", certFile, keyFile)
}

// startTLS says EHLO and STARTTLS and goes on over TLS; the client is to
// say EHLO again, as RFC 3207 asks.
func (r *rawSMTP) startTLS() {
	r.T.Helper()
	r.must("EHLO client.outside.example", "250 ")
	r.must("STARTTLS", "220 2.0.0 Ready to start TLS")
	tc := tls.Client(r.Conn, &tls.Config{ServerName: "mx.test.example", InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		r.T.Fatalf("TLS handshake: %v", err)
	}
	r.Conn, r.R = tc, bufio.NewReader(tc)
}

// dialSession is dialRaw, and over TLS when useTLS is set.
func dialSession(t *testing.T, addr, local string, useTLS bool) *rawSMTP {
	t.Helper()
	c := dialRaw(t, addr, local)
	if useTLS {
		c.startTLS()
	}
	return c
}

// sessionKinds are the two ways into a session that the limits and
// smuggling tests run over.
var sessionKinds = []struct {
	name string
	tls  bool
}{{"plain", false}, {"starttls", true}}

// CVE-2011-0411: commands that the client (or a man in the middle)
// pipelines after STARTTLS in plaintext must not run in the TLS session,
// where they would pass for the client's own: mailtee, as Postfix,
// discards them. Here they are a whole transaction to a local user.
func TestStartTLSCommandInjection(t *testing.T) {
	in := newInstance(t, "mynetworks = 127.0.0.2/32\n"+tlsMainCf(t), nil)
	in.Start()
	for i, injected := range []string{
		"RSET\r\n",
		"MAIL FROM:<mallory@outside.example>\r\n",
		"MAIL FROM:<mallory@outside.example>\r\nRCPT TO:<injected@test.example>\r\nDATA\r\nSubject: INJECTED\r\n\r\ninjected\r\n.\r\n",
		"mail from:<mallory@outside.example>\nrcpt to:<injected@test.example>\n",
	} {
		c := dialRaw(t, in.Addr(), "127.0.0.1")
		c.must("EHLO client.outside.example", "250 ")
		c.send("STARTTLS\r\n" + injected) // one write: one segment on loopback
		if r := c.Reply(); r != "220 2.0.0 Ready to start TLS" {
			t.Fatalf("%d: STARTTLS: %q", i, r)
		}
		tc := tls.Client(c.Conn, &tls.Config{ServerName: "mx.test.example", InsecureSkipVerify: true})
		if err := tc.Handshake(); err != nil {
			t.Fatalf("%d: handshake: %v", i, err)
		}
		c.Conn, c.R = tc, bufio.NewReader(tc)
		// The first reply over TLS is to this command: nothing injected
		// ran, and no transaction is open.
		if r := c.cmd("RCPT TO:<alice@test.example>"); r != "503 5.5.1 Error: need MAIL command" {
			t.Errorf("%d: %q injected after STARTTLS: RCPT over TLS got %q", i, injected, r)
		}
		c.must("NOOP", "250 2.0.0 Ok")
		c.cmd("QUIT")
	}
	// A clean message after them: once it is delivered, an injected one
	// would have been too.
	if err := sendFrom("127.0.0.1", in.Addr(), "friend@outside.example", []string{"canary@test.example"}, testMessage("canary")); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the canary's delivery", slow(30*time.Second), func() bool { return len(in.MaildirMessages("canary")) == 1 })
	if msgs := in.MaildirMessages("injected"); len(msgs) != 0 {
		t.Errorf("the injected message was delivered: %q", msgs)
	}
	if strings.Contains(in.Log.String(), "from=<mallory@outside.example>") {
		t.Errorf("the injected sender reached the queue:\n%s", in.Log.String())
	}
	in.alive("starttls-injection")
}

// smtpd_starttls_timeout: a client that says STARTTLS and never
// finishes the handshake is dropped, without a reply (Postfix: "lost
// connection after STARTTLS", with "SSL_accept error ...: Connection
// timed out" before it).
func TestStartTLSHandshakeTimeout(t *testing.T) {
	in := newInstance(t, "smtpd_starttls_timeout = 2s\nsmtpd_timeout = 60s\n"+tlsMainCf(t), nil)
	in.Start()
	for _, half := range []string{"", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"} { // nothing; half a ClientHello
		c := dialRaw(t, in.Addr(), "127.0.0.1")
		c.must("EHLO client.outside.example", "250 ")
		c.must("STARTTLS", "220 ")
		c.send(half)
		start := time.Now()
		rest, ok := c.closed(slow(20 * time.Second))
		took := time.Since(start)
		if !ok {
			t.Fatalf("handshake stalled (%q sent): not disconnected after %v (smtpd_starttls_timeout = 2s)", half, took)
		}
		if took < 1500*time.Millisecond {
			t.Errorf("disconnected after %v, before smtpd_starttls_timeout", took)
		}
		if strings.Contains(rest, "\r\n") {
			t.Errorf("a reply after a failed handshake: %q", rest)
		}
	}
	in.WaitLog("SSL_accept error from localhost[127.0.0.1]: Connection timed out")
	in.WaitLog("lost connection after STARTTLS from localhost[127.0.0.1]")
	in.alive("starttls-timeout")
}
