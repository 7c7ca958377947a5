package preflight

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/dnsresolve"
	"github.com/mailtee/mailtee/internal/dnsresolve/dnstest"
)

// fakeMX is a scripted SMTP server on loopback: real TCP, replies the
// test chooses, every command recorded.
type fakeMX struct {
	greet string                          // "220 ..." unless set
	rcpt  func(addr string, n int) string // reply to the n-th RCPT (from 1) of a transaction
	data  string                          // reply after DATA's end; "250 2.0.0 OK" unless set
	mail  string                          // reply to MAIL; "250 2.1.0 OK" unless set
	// tls, when set, is offered with STARTTLS; badTLS offers STARTTLS
	// and then answers the handshake with garbage.
	tls    *tls.Config
	badTLS bool

	mu    sync.Mutex
	cmds  []string
	conns int
	port  int
}

func startFake(t *testing.T, f *fakeMX) *fakeMX {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	f.port = l.Addr().(*net.TCPAddr).Port
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			f.mu.Lock()
			f.conns++
			f.mu.Unlock()
			go f.serve(c)
		}
	}()
	return f
}

func (f *fakeMX) serve(c net.Conn) {
	defer func() { c.Close() }()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	r := bufio.NewReader(c)
	say := func(s string) { fmt.Fprintf(c, "%s\r\n", s) }
	greet := f.greet
	if greet == "" {
		greet = "220 fake.example ESMTP"
	}
	say(greet)
	n := 0
	tlsOn := false
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		f.mu.Lock()
		f.cmds = append(f.cmds, line)
		f.mu.Unlock()
		verb := strings.ToUpper(strings.SplitN(line, " ", 2)[0])
		switch {
		case verb == "EHLO" && (f.tls != nil || f.badTLS) && !tlsOn:
			say("250-fake.example\r\n250-STARTTLS\r\n250 PIPELINING")
		case verb == "EHLO":
			say("250-fake.example\r\n250 PIPELINING")
		case verb == "STARTTLS" && f.badTLS:
			say("220 2.0.0 Ready to start TLS")
			say("this is not TLS")
			return
		case verb == "STARTTLS" && f.tls != nil:
			say("220 2.0.0 Ready to start TLS")
			tc := tls.Server(c, f.tls)
			if tc.Handshake() != nil {
				return
			}
			c, r, tlsOn = tc, bufio.NewReader(tc), true
		case verb == "MAIL" && f.mail != "":
			say(f.mail)
		case verb == "MAIL", verb == "RSET":
			n = 0
			say("250 2.1.0 OK")
		case verb == "RCPT":
			n++
			addr := strings.TrimSuffix(strings.TrimPrefix(line[len("RCPT TO:"):], "<"), ">")
			rep := "250 2.1.5 OK"
			if f.rcpt != nil {
				rep = f.rcpt(addr, n)
			}
			say(rep)
			if strings.HasPrefix(rep, "421") {
				return
			}
		case verb == "DATA":
			say("354 go ahead")
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
			}
			if f.data != "" {
				say(f.data)
			} else {
				say("250 2.0.0 OK queued")
			}
		case verb == "QUIT":
			say("221 bye")
			return
		default:
			say("502 5.5.2 what?")
		}
	}
}

func (f *fakeMX) commands() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.cmds...)
}

// options are Run's options for one destination, the fake at
// [127.0.0.1]:port, and a DNS server that gives 127.0.0.1 a PTR.
func options(t *testing.T, f *fakeMX, users ...string) Options {
	dns := dnstest.Start(t, "1.0.0.127.in-addr.arpa. PTR localhost.test.", "localhost.test. A 127.0.0.1")
	d := &Destination{Transport: "smtp", Nexthop: fmt.Sprintf("[127.0.0.1]:%d", f.port), Host: "127.0.0.1", Port: f.port,
		Helo: "client.test", TLSLevel: "may", Bind: "127.0.0.1", BindParam: "smtp_bind_address"}
	for _, u := range users {
		d.Users = append(d.Users, User{Key: strings.Split(u, "@")[0], Addr: u, From: "mailbox_bcc_maps hash:copies"})
	}
	return Options{
		Resolver:     &dnsresolve.Resolver{Servers: []string{dns.Addr}, Timeout: 2 * time.Second},
		Hostname:     "client.test",
		Sender:       "postmaster@client.test",
		Destinations: []*Destination{d},
		Interval:     time.Millisecond,
	}
}

func rowOf(t *testing.T, rep *Report, check, target string) Row {
	t.Helper()
	for _, r := range rep.Rows {
		if r.Check == check && r.Target == target {
			return r
		}
	}
	t.Fatalf("no %s row for %s in %+v", check, target, rep.Rows)
	return Row{}
}

// Several RCPTs per transaction, RSET between transactions, a "too many
// recipients" answered by a new transaction, and a 421 in the middle
// answered by a new connection: every user still gets its answer.
func TestAccountsBatchesAndReconnects(t *testing.T) {
	closed := false
	var mu sync.Mutex
	f := startFake(t, &fakeMX{rcpt: func(addr string, n int) string {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case strings.HasPrefix(addr, "mailtee-preflight-"):
			return "550 5.1.1 no such user"
		case addr == "u3@ex.test" && !closed:
			closed = true
			return "421 4.3.2 Service shutting down, closing transmission channel"
		case addr == "u5@ex.test" && n > 1:
			return "452 4.5.3 Too many recipients"
		}
		return "250 2.1.5 OK"
	}})
	o := options(t, f, "u1@ex.test", "u2@ex.test", "u3@ex.test", "u4@ex.test", "u5@ex.test", "u6@ex.test")
	o.PerTransaction = 3
	rep := Run(context.Background(), o)
	for i := 1; i <= 6; i++ {
		if r := rowOf(t, rep, "account", fmt.Sprintf("u%d@ex.test", i)); r.Status != OK {
			t.Errorf("u%d: %+v", i, r)
		}
	}
	if r := rowOf(t, rep, "source-dns", "127.0.0.1"); r.Status != OK {
		t.Errorf("source-dns: %+v", r)
	}
	if rep.Failed() {
		t.Errorf("failed: %+v", rep.Rows)
	}
	cmds := strings.Join(f.commands(), "\n")
	if f.conns != 2 || !strings.Contains(cmds, "RSET") || strings.Count(cmds, "RCPT TO:<u5@ex.test>") != 2 || !strings.HasSuffix(cmds, "QUIT") {
		t.Errorf("%d connection(s), commands:\n%s", f.conns, cmds)
	}
	// No transaction carried more than 3 RCPTs.
	n := 0
	for _, c := range f.commands() {
		switch {
		case strings.HasPrefix(c, "RCPT"):
			if n++; n > 3 {
				t.Errorf("more than 3 RCPTs in a transaction:\n%s", cmds)
			}
		case strings.HasPrefix(c, "MAIL"), c == "RSET":
			n = 0
		}
	}
}

// Microsoft 365 refuses a banned address at the greeting.
func TestGreetingRefusesSource(t *testing.T) {
	f := startFake(t, &fakeMX{greet: "550 5.7.606 Access denied, banned sending IP [127.0.0.1]. To request removal from this list please visit https://sender.office.com/"})
	rep := Run(context.Background(), options(t, f, "u1@ex.test"))
	r := rowOf(t, rep, "allow-list", "127.0.0.1")
	if r.Status != Fail || !strings.Contains(r.Seen, "at greeting") || !strings.Contains(r.Do, "Microsoft 365") {
		t.Errorf("allow-list: %+v", r)
	}
	if r := rowOf(t, rep, "account", "u1@ex.test"); r.Status != Unknown {
		t.Errorf("account: %+v", r)
	}
	if !rep.Failed() {
		t.Error("not failed")
	}
}

// The reply after DATA is where DMARC refusals of forwarded mail are.
func TestSendTestShowsDMARCRefusal(t *testing.T) {
	f := startFake(t, &fakeMX{data: "550 5.7.26 Unauthenticated email from example.org is not accepted due to domain's DMARC policy. - gsmtp"})
	o := options(t, f)
	o.Destinations[0].Users = nil
	o.Destinations = nil
	o.SendTest = "test@ex.test"
	o.SendTestDest = options(t, f).Destinations[0]
	rep := Run(context.Background(), o)
	r := rowOf(t, rep, "send-test", "test@ex.test")
	if r.Status != Fail || !strings.Contains(r.Seen, "5.7.26") || !strings.Contains(r.Do, "srs_domain") {
		t.Errorf("send-test: %+v", r)
	}
	cmds := strings.Join(f.commands(), "\n")
	if !strings.Contains(cmds, "DATA") || !strings.Contains(cmds, "MAIL FROM:<postmaster@client.test>") {
		t.Errorf("commands:\n%s", cmds)
	}
}

// smtp_tls_security_level = encrypt and no STARTTLS: mail would wait,
// and nothing is sent in clear text.
func TestStrictTLSWithoutSTARTTLS(t *testing.T) {
	f := startFake(t, &fakeMX{})
	o := options(t, f, "u1@ex.test")
	o.Destinations[0].TLSLevel = "encrypt"
	rep := Run(context.Background(), o)
	if r := rowOf(t, rep, "tls", fmt.Sprintf("127.0.0.1[127.0.0.1]:%d", f.port)); r.Status != Fail || !strings.Contains(r.Do, "encrypt") {
		t.Errorf("tls: %+v", r)
	}
	if r := rowOf(t, rep, "account", "u1@ex.test"); r.Status != Unknown {
		t.Errorf("account: %+v", r)
	}
	for _, c := range f.commands() {
		if strings.HasPrefix(c, "MAIL") || strings.HasPrefix(c, "RCPT") {
			t.Errorf("%q sent without TLS", c)
		}
	}
}

// Extra checks (the SRS checks) run last and see the source addresses.
func TestExtraChecks(t *testing.T) {
	f := startFake(t, &fakeMX{})
	o := options(t, f, "u1@ex.test")
	var got []netip.Addr
	o.Extra = append(o.Extra, func(ctx context.Context, env *Env) []Row {
		got = env.Sources
		return []Row{{Check: "srs-mx", Target: "srs.example", Status: Warn, Seen: "test"}}
	})
	rep := Run(context.Background(), o)
	if len(got) != 1 || got[0] != netip.MustParseAddr("127.0.0.1") {
		t.Errorf("Env.Sources = %v", got)
	}
	if last := rep.Rows[len(rep.Rows)-1]; last.Check != "srs-mx" {
		t.Errorf("last row %+v", last)
	}
}

// selfSigned is a certificate for 127.0.0.1 and the pool that trusts it.
func selfSigned(t *testing.T) (*tls.Config, *x509.CertPool) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "mx.fake.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(90 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}, pool
}

// A certificate that verifies (the test's own root) is ok, with what was
// negotiated; the RCPTs go over TLS.
func TestTLSVerifies(t *testing.T) {
	cfg, pool := selfSigned(t)
	f := startFake(t, &fakeMX{tls: cfg, rcpt: noMadeUp})
	o := options(t, f, "u1@ex.test")
	o.RootCAs = pool
	rep := Run(context.Background(), o)
	r := rowOf(t, rep, "tls", fmt.Sprintf("127.0.0.1[127.0.0.1]:%d", f.port))
	if r.Status != OK || !strings.Contains(r.Seen, "TLS 1.3") || !strings.Contains(r.Seen, "verifies for 127.0.0.1") || !strings.Contains(r.Seen, `subject "CN=mx.fake.test"`) {
		t.Errorf("tls: %+v", r)
	}
	if r := rowOf(t, rep, "account", "u1@ex.test"); r.Status != OK {
		t.Errorf("account: %+v", r)
	}
	if cmds := strings.Join(f.commands(), "\n"); strings.Count(cmds, "EHLO") != 2 {
		t.Errorf("commands:\n%s", cmds)
	}
}

// A handshake that fails is a warning at level may; the probes go on
// in clear text on a new connection, as Postfix's delivery would.
func TestTLSHandshakeFails(t *testing.T) {
	f := startFake(t, &fakeMX{badTLS: true, rcpt: noMadeUp})
	rep := Run(context.Background(), options(t, f, "u1@ex.test"))
	r := rowOf(t, rep, "tls", fmt.Sprintf("127.0.0.1[127.0.0.1]:%d", f.port))
	if r.Status != Warn || !strings.Contains(r.Seen, "handshake failed") {
		t.Errorf("tls: %+v", r)
	}
	if r := rowOf(t, rep, "account", "u1@ex.test"); r.Status != OK {
		t.Errorf("account: %+v", r)
	}
	if f.conns != 2 {
		t.Errorf("%d connections, want 2", f.conns)
	}
}

// noMadeUp knows every address but the made-up ones.
func noMadeUp(addr string, _ int) string {
	if strings.HasPrefix(addr, "mailtee-preflight-") {
		return "550 5.1.1 <" + addr + ">: Recipient address rejected: User unknown"
	}
	return "250 2.1.5 OK"
}

// Microsoft 365 refuses a relay it cannot attribute to a tenant at MAIL.
func TestMailRefusesSource(t *testing.T) {
	f := startFake(t, &fakeMX{mail: "550 5.7.64 TenantAttribution; Relay Access Denied [BN8NAM12FT011.eop-nam12.prod.protection.outlook.com]"})
	rep := Run(context.Background(), options(t, f, "u1@ex.test", "u2@ex.test"))
	r := rowOf(t, rep, "allow-list", "127.0.0.1")
	if r.Status != Fail || !strings.Contains(r.Seen, "at MAIL FROM:<postmaster@client.test>") || !strings.Contains(r.Do, "add 127.0.0.1 to the Microsoft 365 inbound connector") {
		t.Errorf("allow-list: %+v", r)
	}
	for _, u := range []string{"u1@ex.test", "u2@ex.test"} {
		if r := rowOf(t, rep, "account", u); r.Status != Unknown {
			t.Errorf("account %s: %+v", u, r)
		}
	}
	for _, c := range f.commands() {
		if strings.HasPrefix(c, "RCPT") {
			t.Errorf("%q after MAIL was refused", c)
		}
	}
}

// --rate spaces the RCPTs at one destination (only a lower bound is
// asserted: a busy machine may be slower, never faster).
func TestRateSpacesProbes(t *testing.T) {
	f := startFake(t, &fakeMX{rcpt: noMadeUp})
	o := options(t, f, "u1@ex.test", "u2@ex.test", "u3@ex.test")
	o.Interval = 150 * time.Millisecond
	start := time.Now()
	Run(context.Background(), o)
	if d := time.Since(start); d < 450*time.Millisecond {
		t.Errorf("4 RCPTs at one per 150ms took %v", d)
	}
}
