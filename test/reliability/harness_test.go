// Package reliability drives real mailtee processes on loopback through
// crashes (kill -9), reloads, damaged queue files and injected faults.
//
// The harness is shared by every file of the package (crash, reload,
// corrupt, faults, diskfull tests). Its API is kept stable; it is a copy of
// test/e2e/harness_test.go with additions that are safe to call from
// goroutines other than the test's own (startErr, killErr, sendTimeout,
// sink counters).
package reliability

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
	"errors"
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

// TestMain builds the binary from this tree, unless MAILTEE_BIN names one
// already built (to test a fixed build while the tree changes).
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "mailtee-reliability-")
	if err != nil {
		panic(err)
	}
	if bin := os.Getenv("MAILTEE_BIN"); bin != "" {
		mailteeBin = bin
	} else {
		mailteeBin = filepath.Join(dir, "mailtee")
		out, err := exec.Command("go", "build", "-o", mailteeBin, "github.com/mailtee/mailtee/cmd/mailtee").CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "building mailtee: %v\n%s", err, out)
			os.Exit(2)
		}
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

// Len is the number of bytes written so far: an offset for Since.
func (s *syncBuffer) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Len()
}

// Since returns what was written after offset.
func (s *syncBuffer) Since(offset int) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.b.Bytes()
	if offset > len(b) {
		offset = len(b)
	}
	return string(b[offset:])
}

// instance is one mailtee serve process, restartable on the same
// configuration and queue. Its log (stdout+stderr of every run, in order)
// accumulates in log; each start appends a line "=== harness: start N ===".
type instance struct {
	t    testing.TB
	dir  string // configuration directory
	host string // listen address, 127.0.0.1 when empty
	port int
	log  *syncBuffer

	mu     sync.Mutex
	cmd    *exec.Cmd
	done   chan struct{} // closed when cmd has been waited for
	err    error         // cmd.Wait result, valid after done
	starts int
}

// newInstance writes main.cf (the given lines after sensible test
// defaults) and extra files into a fresh directory. The queue is
// dir/queue, Maildirs are under dir/mail/.
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

// queueDir is queue_directory as newInstance sets it.
func (in *instance) queueDir() string { return filepath.Join(in.dir, "queue") }

// msgDir is where message files live: queue_directory/queue (files ID and
// ID.st, see internal/queue/store.go).
func (in *instance) msgDir() string { return filepath.Join(in.dir, "queue", "queue") }

// corruptDir is where damaged queue files are set aside:
// queue_directory/corrupt.
func (in *instance) corruptDir() string { return filepath.Join(in.dir, "queue", "corrupt") }

// writeMainCf replaces main.cf (the text is written verbatim).
func (in *instance) writeMainCf(text string) { in.writeFile("main.cf", text) }

// readMainCf returns main.cf as it is now.
func (in *instance) readMainCf() string {
	b, err := os.ReadFile(filepath.Join(in.dir, "main.cf"))
	if err != nil {
		in.t.Fatal(err)
	}
	return string(b)
}

// writeFile writes a file in the configuration directory.
func (in *instance) writeFile(name, text string) {
	in.t.Helper()
	if err := os.WriteFile(filepath.Join(in.dir, name), []byte(text), 0o644); err != nil {
		in.t.Fatal(err)
	}
}

// startErr runs mailtee serve and waits (up to 30 s) until it accepts
// connections. Safe from any goroutine; returns an error instead of
// failing the test. The process is killed at test cleanup if still running.
func (in *instance) startErr() error {
	in.mu.Lock()
	if in.cmd != nil && !isClosed(in.done) {
		in.mu.Unlock()
		return errors.New("harness: start while mailtee is running")
	}
	in.starts++
	fmt.Fprintf(in.log, "=== harness: start %d ===\n", in.starts)
	mark := in.log.Len()
	cmd := exec.Command(mailteeBin, "serve", "-c", in.dir)
	cmd.Stdout = in.log
	cmd.Stderr = in.log
	if err := cmd.Start(); err != nil {
		in.mu.Unlock()
		return err
	}
	done := make(chan struct{})
	in.cmd, in.done = cmd, done
	go func() {
		err := cmd.Wait()
		in.mu.Lock()
		in.err = err
		in.mu.Unlock()
		close(done)
	}()
	in.mu.Unlock()
	in.t.Cleanup(func() {
		if !isClosed(done) {
			cmd.Process.Kill()
			<-done
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", in.addr(), 200*time.Millisecond)
		if err == nil {
			c.Close()
			// mailtee installs its signal handlers just after it logs
			// "daemon started" (see TestSignalRightAfterStart): wait for
			// that line too, when the log comes here (not with
			// maillog_file), so that a signal sent next is handled.
			for t0 := time.Now(); time.Since(t0) < 5*time.Second && !isClosed(done); time.Sleep(5 * time.Millisecond) {
				if strings.Contains(in.log.Since(mark), "daemon started") {
					time.Sleep(20 * time.Millisecond)
					break
				}
			}
			return nil
		}
		if isClosed(done) {
			return fmt.Errorf("mailtee exited before listening on %s (%v)", in.addr(), in.exitErr())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("mailtee did not start listening on %s", in.addr())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func isClosed(c chan struct{}) bool {
	if c == nil {
		return true
	}
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// start is startErr failing the test (test goroutine only).
func (in *instance) start() {
	in.t.Helper()
	if err := in.startErr(); err != nil {
		in.t.Fatalf("%v; log:\n%s", err, in.log.String())
	}
}

// running reports whether the current process has not exited.
func (in *instance) running() bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.cmd != nil && !isClosed(in.done)
}

// pid of the current process (0 when never started).
func (in *instance) pid() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.cmd == nil {
		return 0
	}
	return in.cmd.Process.Pid
}

// exitErr is the Wait error of the last process (nil while running or
// after a clean exit).
func (in *instance) exitErr() error {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.err
}

// signal sends sig to the current process.
func (in *instance) signal(sig os.Signal) error {
	in.mu.Lock()
	cmd := in.cmd
	in.mu.Unlock()
	if cmd == nil {
		return errors.New("harness: not started")
	}
	return cmd.Process.Signal(sig)
}

// waitExit waits up to d for the current process to exit.
func (in *instance) waitExit(d time.Duration) error {
	in.mu.Lock()
	done := in.done
	in.mu.Unlock()
	select {
	case <-done:
		return nil
	case <-time.After(d):
		return fmt.Errorf("mailtee still running after %v", d)
	}
}

// stop sends SIGTERM and waits for a clean exit.
func (in *instance) stop() {
	in.t.Helper()
	in.signal(syscall.SIGTERM)
	if err := in.waitExit(40 * time.Second); err != nil {
		in.killErr()
		in.t.Fatalf("mailtee did not exit after SIGTERM")
	}
	if err := in.exitErr(); err != nil {
		in.t.Errorf("mailtee exited with %v after SIGTERM; log:\n%s", err, in.log.String())
	}
}

// killErr sends SIGKILL (a crash) and waits for the process to be gone.
// Safe from any goroutine.
func (in *instance) killErr() error {
	in.mu.Lock()
	cmd, done := in.cmd, in.done
	in.mu.Unlock()
	if cmd == nil {
		return errors.New("harness: not started")
	}
	cmd.Process.Kill()
	select {
	case <-done:
		return nil
	case <-time.After(10 * time.Second):
		return errors.New("harness: process did not die after SIGKILL")
	}
}

// kill sends SIGKILL: a crash.
func (in *instance) kill() {
	if err := in.killErr(); err != nil {
		in.t.Error(err)
	}
}

// run runs a mailtee subcommand against this instance's configuration
// (mailtee ARGS[0] -c DIR ARGS[1:]...), with a 60 s limit.
func (in *instance) run(stdin string, args ...string) (string, error) {
	full := append([]string{args[0], "-c", in.dir}, args[1:]...)
	cmd := exec.Command(mailteeBin, full...)
	cmd.Stdin = strings.NewReader(stdin)
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return "", err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return out.String(), err
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		<-done
		return out.String(), fmt.Errorf("mailtee %s: timed out", args[0])
	}
}

// exitCode of an error returned by run (0 for nil, -1 when not an exit).
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

// waitLog waits until the mail log contains s.
func (in *instance) waitLog(s string) {
	in.t.Helper()
	in.waitLogFor(s, 30*time.Second)
}

// waitLogFor waits up to d until the mail log contains s.
func (in *instance) waitLogFor(s string, d time.Duration) {
	in.t.Helper()
	deadline := time.Now().Add(d)
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

// queueList runs `mailtee queue list` and returns the queue IDs in it.
func (in *instance) queueList() ([]string, string, error) {
	out, err := in.run("", "queue", "list")
	return queueIDs(out), out, err
}

// queueFiles returns the names of the regular files in msgDir (message
// files ID and their state files ID.st).
func (in *instance) queueFiles() []string {
	entries, _ := os.ReadDir(in.msgDir())
	var out []string
	for _, e := range entries {
		if e.Type().IsRegular() {
			out = append(out, e.Name())
		}
	}
	return out
}

func queueIDs(list string) []string {
	var ids []string
	for _, line := range strings.Split(list, "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && !strings.HasPrefix(line, " ") && !strings.HasPrefix(line, "-") {
			ids = append(ids, strings.TrimRight(f[0], "!*"))
		}
	}
	return ids
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
// transaction (nil when the server said 250 to DATA). Bounded: 30 s.
func send(addr, from string, to []string, body string) error {
	return sendTimeout(addr, from, to, body, 30*time.Second)
}

// sendTimeout is send with a deadline on the whole transaction. The
// result is nil exactly when DATA got 250 (QUIT errors are ignored: the
// message is acknowledged once the 250 to DATA was read).
func sendTimeout(addr, from string, to []string, body string, d time.Duration) error {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	conn.SetDeadline(time.Now().Add(d))
	c := smtp.NewClient(conn)
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
	c.Quit()
	return nil
}

func testMessage(subject string) string {
	return "From: sender@outside.example\r\nTo: someone\r\nSubject: " + subject + "\r\n\r\nHello.\r\n"
}

// sink is an SMTP server that records what it receives, and counts
// deliveries per recipient (lower-cased) for fast lookups.
type sink struct {
	mu       sync.Mutex
	msgs     []sunk
	byRcpt   map[string]int
	srv      *smtp.Server
	l        net.Listener
	addr     string
	rcptErr  map[string]*smtp.SMTPError // per recipient answer
	dataErr  *smtp.SMTPError            // answer to every DATA, when set
	delay    time.Duration              // before answering DATA
	tlsState []bool
}

type sunk struct {
	From  string
	To    []string
	Data  string
	Local string // client's source address
}

// newSink starts a sink on addr ("" for 127.0.0.1:0); it is closed at
// test cleanup.
func newSink(t testing.TB, addr string, tlsCfg *tls.Config) *sink {
	t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	s := &sink{rcptErr: map[string]*smtp.SMTPError{}, byRcpt: map[string]int{}}
	s.srv = smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &sinkSession{s: s, c: c}, nil
	}))
	s.srv.Domain = "sink.test.example"
	s.srv.ErrorLog = log.New(io.Discard, "", 0)
	s.srv.TLSConfig = tlsCfg
	s.srv.AllowInsecureAuth = true
	s.srv.MaxRecipients = 0
	s.srv.ReadTimeout = 60 * time.Second
	s.srv.WriteTimeout = 60 * time.Second
	var l net.Listener
	var err error
	for try := 0; try < 50; try++ { // a port just released may linger
		if l, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	s.l, s.addr = l, l.Addr().String()
	go s.srv.Serve(l)
	t.Cleanup(func() { s.srv.Close() })
	return s
}

func (s *sink) port() int { return s.l.Addr().(*net.TCPAddr).Port }

// close stops the sink (the next hop goes down).
func (s *sink) close() { s.srv.Close() }

func (s *sink) messages() []sunk {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sunk(nil), s.msgs...)
}

// total is the number of messages (DATA transactions) received.
func (s *sink) total() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.msgs)
}

// count returns how many copies rcpt received.
func (s *sink) count(rcpt string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byRcpt[strings.ToLower(rcpt)]
}

// counts returns a copy of the per-recipient counts.
func (s *sink) counts() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := make(map[string]int, len(s.byRcpt))
	for k, v := range s.byRcpt {
		m[k] = v
	}
	return m
}

// setRcptErr makes the sink answer err to RCPT TO:<rcpt> (nil clears).
func (s *sink) setRcptErr(rcpt string, err *smtp.SMTPError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil {
		delete(s.rcptErr, strings.ToLower(rcpt))
	} else {
		s.rcptErr[strings.ToLower(rcpt)] = err
	}
}

// setDataErr makes the sink answer err to every DATA (nil clears); such
// messages are not recorded.
func (s *sink) setDataErr(err *smtp.SMTPError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dataErr = err
}

// setDelay makes the sink wait d before answering DATA.
func (s *sink) setDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delay = d
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
	ss.s.mu.Lock()
	delay, derr := ss.s.delay, ss.s.dataErr
	ss.s.mu.Unlock()
	if delay > 0 {
		time.Sleep(delay)
	}
	if derr != nil {
		return derr
	}
	_, isTLS := ss.c.TLSConnectionState()
	ss.s.mu.Lock()
	ss.s.msgs = append(ss.s.msgs, sunk{From: ss.from, To: ss.to, Data: string(b), Local: ss.c.Conn().RemoteAddr().String()})
	for _, r := range ss.to {
		ss.s.byRcpt[strings.ToLower(r)]++
	}
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
