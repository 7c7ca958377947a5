// Package e2e drives real mailtee processes on loopback: the binary built
// from this tree, a configuration written per test, real SMTP sinks
// (go-smtp servers in this process) as next hops, a DNS server
// (miekg/dns) for MX lookups, and a real SMTP client as the sender.
package e2e

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/miekg/dns"
)

var mailteeBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "mailtee-e2e-")
	if err != nil {
		panic(err)
	}
	mailteeBin = filepath.Join(dir, "mailtee")
	out, err := exec.Command("go", "build", "-o", mailteeBin, "github.com/mailtee/mailtee/cmd/mailtee").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building mailtee: %v\n%s", err, out)
		os.Exit(2)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// freePort returns a TCP port on 127.0.0.1 that is free now.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// instance is one mailtee serve process.
type instance struct {
	t    testing.TB
	dir  string // configuration directory
	host string // listen address, 127.0.0.1 when empty
	port int
	cmd  *exec.Cmd
	log  *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// newInstance writes main.cf (the given lines after sensible test
// defaults) and extra files into a fresh directory.
func newInstance(t testing.TB, mainCf string, files map[string]string) *instance {
	t.Helper()
	dir := t.TempDir()
	port := freePort(t)
	base := fmt.Sprintf(`myhostname = mx.test.example
mydomain = test.example
myorigin = test.example
mydestination = $myhostname, test.example, localhost
inet_interfaces = 127.0.0.1
smtpd_port = %d
mynetworks = 127.0.0.0/8
queue_directory = %s/queue
mail_spool_directory = %s/mail/
alias_maps = hash:%s/aliases
local_recipient_maps =
minimal_backoff_time = 1s
maximal_backoff_time = 2s
queue_run_delay = 1s
smtp_connect_timeout = 2s
`, port, dir, dir, dir)
	if err := os.WriteFile(filepath.Join(dir, "main.cf"), []byte(base+mainCf), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, ok := files["aliases"]; !ok {
		os.WriteFile(filepath.Join(dir, "aliases"), []byte("postmaster: admin\n"), 0o644)
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return &instance{t: t, dir: dir, port: port, log: &syncBuffer{}}
}

func (in *instance) addr() string {
	h := in.host
	if h == "" {
		h = "127.0.0.1"
	}
	return fmt.Sprintf("%s:%d", h, in.port)
}

// freePortOn returns a port that is free on every one of the addresses.
func freePortOn(t testing.TB, ips ...string) int {
	t.Helper()
	for try := 0; try < 50; try++ {
		p := freePort(t)
		ok := true
		for _, ip := range ips {
			l, err := net.Listen("tcp", fmt.Sprintf("%s:%d", ip, p))
			if err != nil {
				ok = false
				break
			}
			l.Close()
		}
		if ok {
			return p
		}
	}
	t.Fatal("no common free port")
	return 0
}

// start runs mailtee serve and waits until it accepts connections.
func (in *instance) start() {
	in.t.Helper()
	in.cmd = exec.Command(mailteeBin, "serve", "-c", in.dir)
	in.cmd.Stdout = in.log
	in.cmd.Stderr = in.log
	if err := in.cmd.Start(); err != nil {
		in.t.Fatal(err)
	}
	cmd := in.cmd
	in.t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", in.addr(), 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			in.t.Fatalf("mailtee did not start listening on %s; log:\n%s", in.addr(), in.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop sends SIGTERM and waits for a clean exit.
func (in *instance) stop() {
	in.t.Helper()
	in.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- in.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			in.t.Errorf("mailtee exited with %v after SIGTERM; log:\n%s", err, in.log.String())
		}
	case <-time.After(40 * time.Second):
		in.cmd.Process.Kill()
		in.t.Fatalf("mailtee did not exit after SIGTERM")
	}
}

// kill sends SIGKILL: a crash.
func (in *instance) kill() {
	in.cmd.Process.Kill()
	in.cmd.Wait()
}

// run runs a mailtee subcommand against this instance's configuration.
func (in *instance) run(stdin string, args ...string) (string, error) {
	full := append([]string{args[0], "-c", in.dir}, args[1:]...)
	cmd := exec.Command(mailteeBin, full...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// waitLog waits until the mail log contains s.
func (in *instance) waitLog(s string) {
	in.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(in.log.String(), s) {
		if time.Now().After(deadline) {
			in.t.Fatalf("timed out waiting for %q in the log:\n%s", s, in.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// maildirMessages returns the messages in user's Maildir new/.
func (in *instance) maildirMessages(user string) []string {
	entries, _ := os.ReadDir(filepath.Join(in.dir, "mail", user, "new"))
	var out []string
	for _, e := range entries {
		b, _ := os.ReadFile(filepath.Join(in.dir, "mail", user, "new", e.Name()))
		out = append(out, string(b))
	}
	return out
}

func waitUntil(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// send submits one message over SMTP and returns the error of the
// transaction (nil when the server said 250 to DATA).
func send(addr, from string, to []string, body string) error {
	c, err := smtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Hello("client.test.example"); err != nil {
		return err
	}
	if err := c.Mail(from, nil); err != nil {
		return err
	}
	for _, r := range to {
		if err := c.Rcpt(r, nil); err != nil {
			return err
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := io.WriteString(w, body); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}

func testMessage(subject string) string {
	return "From: sender@outside.example\r\nTo: someone\r\nSubject: " + subject + "\r\n\r\nHello.\r\n"
}

// sink is an SMTP server that records what it receives.
type sink struct {
	mu       sync.Mutex
	msgs     []sunk
	srv      *smtp.Server
	l        net.Listener
	addr     string
	rcptErr  map[string]*smtp.SMTPError // per recipient answer
	tlsState []bool
}

type sunk struct {
	From  string
	To    []string
	Data  string
	Local string // client's source address
}

func newSink(t testing.TB, addr string, tlsCfg *tls.Config) *sink {
	t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	s := &sink{rcptErr: map[string]*smtp.SMTPError{}}
	s.srv = smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &sinkSession{s: s, c: c}, nil
	}))
	s.srv.Domain = "sink.test.example"
	s.srv.ErrorLog = log.New(io.Discard, "", 0)
	s.srv.TLSConfig = tlsCfg
	s.srv.AllowInsecureAuth = true
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s.l, s.addr = l, l.Addr().String()
	go s.srv.Serve(l)
	t.Cleanup(func() { s.srv.Close() })
	return s
}

func (s *sink) port() int { return s.l.Addr().(*net.TCPAddr).Port }

func (s *sink) messages() []sunk {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sunk(nil), s.msgs...)
}

// count returns how many copies rcpt received.
func (s *sink) count(rcpt string) int {
	n := 0
	for _, m := range s.messages() {
		for _, r := range m.To {
			if strings.EqualFold(r, rcpt) {
				n++
			}
		}
	}
	return n
}

type sinkSession struct {
	s    *sink
	c    *smtp.Conn
	from string
	to   []string
}

func (ss *sinkSession) Reset()        { ss.from, ss.to = "", nil }
func (ss *sinkSession) Logout() error { return nil }
func (ss *sinkSession) Mail(from string, _ *smtp.MailOptions) error {
	ss.from = from
	return nil
}
func (ss *sinkSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	ss.s.mu.Lock()
	e := ss.s.rcptErr[strings.ToLower(to)]
	ss.s.mu.Unlock()
	if e != nil {
		return e
	}
	ss.to = append(ss.to, to)
	return nil
}
func (ss *sinkSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	_, isTLS := ss.c.TLSConnectionState()
	ss.s.mu.Lock()
	ss.s.msgs = append(ss.s.msgs, sunk{From: ss.from, To: ss.to, Data: string(b), Local: ss.c.Conn().RemoteAddr().String()})
	ss.s.tlsState = append(ss.s.tlsState, isTLS)
	ss.s.mu.Unlock()
	return nil
}

// dnsServer answers A and MX queries from a fixed zone.
type dnsServer struct {
	addr string
	srv  *dns.Server
}

// newDNS starts a resolver on 127.0.0.1: a maps names to IPv4
// addresses, mx maps domains to "pref host" lines.
func newDNS(t testing.TB, a map[string]string, mx map[string][]string) *dnsServer {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		q := r.Question[0]
		name := strings.TrimSuffix(strings.ToLower(q.Name), ".")
		found := false
		if ip, ok := a[name]; ok {
			found = true
			if q.Qtype == dns.TypeA {
				rr, _ := dns.NewRR(fmt.Sprintf("%s 60 IN A %s", q.Name, ip))
				m.Answer = append(m.Answer, rr)
			}
		}
		if recs, ok := mx[name]; ok {
			found = true
			if q.Qtype == dns.TypeMX {
				for _, rec := range recs {
					rr, _ := dns.NewRR(fmt.Sprintf("%s 60 IN MX %s.", q.Name, rec))
					m.Answer = append(m.Answer, rr)
				}
			}
		}
		if !found {
			m.Rcode = dns.RcodeNameError
		}
		w.WriteMsg(m)
	})
	srv := &dns.Server{PacketConn: pc, Handler: h}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
	return &dnsServer{addr: pc.LocalAddr().String(), srv: srv}
}

// testCert writes a self-signed certificate for names into dir and
// returns the paths and a tls.Config serving it.
func testCert(t testing.TB, dir string, names ...string) (certFile, keyFile string, cfg *tls.Config) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, &tls.Config{Certificates: []tls.Certificate{pair}}
}

// rawSMTP is a line-level SMTP conversation, for checking exact replies.
type rawSMTP struct {
	c net.Conn
	r *bufio.Reader
}

func dialRaw(t testing.TB, addr, local string) *rawSMTP {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if local != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	t.Cleanup(func() { c.Close() })
	r := &rawSMTP{c: c, r: bufio.NewReader(c)}
	r.reply()
	return r
}

// reply reads one (possibly multi-line) reply and returns its last line.
func (r *rawSMTP) reply() string {
	var last string
	for {
		line, err := r.r.ReadString('\n')
		if err != nil {
			return "EOF " + err.Error()
		}
		last = strings.TrimRight(line, "\r\n")
		if len(last) < 4 || last[3] != '-' {
			return last
		}
	}
}

func (r *rawSMTP) cmd(line string) string {
	fmt.Fprintf(r.c, "%s\r\n", line)
	return r.reply()
}

// tlsInsecure accepts the test certificates.
var tlsInsecure = tls.Config{InsecureSkipVerify: true}
