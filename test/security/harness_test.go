// Package security drives a real `mailtee serve` process on loopback with
// hostile input: SMTP smuggling, open relay tricks, resource limits and
// malformed messages. The harness is a copy of test/e2e's, trimmed to what
// these tests need, plus a liveness check.
//
// Set MAILTEE_BIN to test a binary built elsewhere instead of building
// github.com/mailtee/mailtee/cmd/mailtee from this tree.
package security

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log"
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
)

var mailteeBin string

func TestMain(m *testing.M) {
	if bin := os.Getenv("MAILTEE_BIN"); bin != "" {
		mailteeBin = bin
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "mailtee-security-")
	if err != nil {
		panic(err)
	}
	mailteeBin = filepath.Join(dir, "mailtee")
	out, err := exec.Command("go", "build", "-o", mailteeBin, "github.com/mailtee/mailtee/cmd/mailtee").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building mailtee: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(2)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// slow scales a time bound for a loaded machine (tests run in parallel
// with other packages); MAILTEE_TEST_SLOW=N multiplies it further.
func slow(d time.Duration) time.Duration {
	if f := os.Getenv("MAILTEE_TEST_SLOW"); f != "" {
		var n int
		if _, err := fmt.Sscan(f, &n); err == nil && n > 0 {
			return d * time.Duration(n)
		}
	}
	return d
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
	t      testing.TB
	dir    string // configuration directory
	port   int
	cmd    *exec.Cmd
	log    *syncBuffer
	exited chan struct{} // closed when the process has exited
	err    error         // its exit status, once exited is closed
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
// defaults; a later line overrides an earlier one, as in Postfix) and
// extra files into a fresh directory.
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

func (in *instance) addr() string { return fmt.Sprintf("127.0.0.1:%d", in.port) }

// start runs mailtee serve and waits until it listens. The port was free
// when newInstance chose it, but another process on this busy machine
// may take it first: then mailtee fails to listen and start tries again
// on another port (rewriting smtpd_port in main.cf). A connection is
// only trusted once mailtee's own log says it listens, so a test never
// talks to someone else's server.
func (in *instance) start() {
	in.t.Helper()
	for try := 0; ; try++ {
		if in.startOnce() {
			return
		}
		if try == 4 {
			in.t.Fatalf("mailtee could not listen; log:\n%s", in.log.String())
		}
		in.t.Logf("mailtee could not listen on port %d (taken?), trying another", in.port)
		old := fmt.Sprintf("smtpd_port = %d\n", in.port)
		in.port = freePort(in.t)
		cf := filepath.Join(in.dir, "main.cf")
		b, err := os.ReadFile(cf)
		if err != nil {
			in.t.Fatal(err)
		}
		if err := os.WriteFile(cf, []byte(strings.Replace(string(b), old, fmt.Sprintf("smtpd_port = %d\n", in.port), 1)), 0o644); err != nil {
			in.t.Fatal(err)
		}
		in.log = &syncBuffer{}
	}
}

// startOnce starts the process; it returns false when the process
// exited without listening on in.port.
func (in *instance) startOnce() bool {
	in.t.Helper()
	in.cmd = exec.Command(mailteeBin, "serve", "-c", in.dir)
	in.cmd.Stdout = in.log
	in.cmd.Stderr = in.log
	if err := in.cmd.Start(); err != nil {
		in.t.Fatal(err)
	}
	exited := make(chan struct{})
	in.exited = exited
	cmd := in.cmd
	go func() {
		err := cmd.Wait()
		in.err = err
		close(exited)
	}()
	in.t.Cleanup(func() {
		select {
		case <-exited:
		default:
			cmd.Process.Kill()
			<-exited
		}
	})
	listening := fmt.Sprintf("listening on %s,", in.addr())
	deadline := time.Now().Add(slow(30 * time.Second))
	for {
		select {
		case <-exited:
			if strings.Contains(in.log.String(), "address already in use") {
				return false
			}
			in.t.Fatalf("mailtee exited at start-up (%v); log:\n%s", in.err, in.log.String())
		default:
		}
		if strings.Contains(in.log.String(), listening) {
			c, err := net.DialTimeout("tcp", in.addr(), time.Second)
			if err == nil {
				c.Close()
				return true
			}
		}
		if time.Now().After(deadline) {
			in.t.Fatalf("mailtee did not start listening on %s; log:\n%s", in.addr(), in.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop sends SIGTERM and waits for a clean exit.
func (in *instance) stop() {
	in.t.Helper()
	in.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-in.exited:
		if in.err != nil {
			in.t.Errorf("mailtee exited with %v after SIGTERM; log:\n%s", in.err, in.log.String())
		}
	case <-time.After(slow(40 * time.Second)):
		in.cmd.Process.Kill()
		in.t.Fatalf("mailtee did not exit after SIGTERM")
	}
}

// run runs a mailtee subcommand against this instance's configuration.
func (in *instance) run(args ...string) (string, error) {
	full := append([]string{args[0], "-c", in.dir}, args[1:]...)
	out, err := exec.Command(mailteeBin, full...).CombinedOutput()
	return string(out), err
}

// running fails the test if the process has exited (a crash).
func (in *instance) running() {
	in.t.Helper()
	select {
	case <-in.exited:
		in.t.Fatalf("mailtee has exited (%v); log:\n%s", in.err, in.log.String())
	default:
	}
	if l := in.log.String(); strings.Contains(l, "panic:") || strings.Contains(l, "goroutine ") && strings.Contains(l, "[running]") {
		in.t.Fatalf("mailtee logged a panic:\n%s", l)
	}
}

// alive checks that the process still runs and still serves: a message
// to a local mailbox is accepted and delivered.
func (in *instance) alive(tag string) {
	in.t.Helper()
	in.running()
	user := "alive-" + tag
	if err := send(in.addr(), "check@outside.example", []string{user + "@localhost"}, testMessage("alive "+tag)); err != nil {
		in.t.Fatalf("mailtee no longer accepts mail: %v; log:\n%s", err, in.log.String())
	}
	waitUntil(in.t, "delivery of the liveness message "+tag, slow(30*time.Second), func() bool {
		return len(in.maildirMessages(user)) == 1
	})
	in.running()
}

// waitLog waits until the mail log contains s.
func (in *instance) waitLog(s string) {
	in.t.Helper()
	deadline := time.Now().Add(slow(30 * time.Second))
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

// mailboxes returns the names of the Maildirs that exist.
func (in *instance) mailboxes() []string {
	entries, _ := os.ReadDir(filepath.Join(in.dir, "mail"))
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// queueEmpty reports whether `mailtee queue list` shows no message.
func (in *instance) queueEmpty() bool {
	out, err := in.run("queue", "list")
	if err != nil {
		return false
	}
	return strings.Contains(out, "is empty") || strings.TrimSpace(out) == ""
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
	return sendFrom("", addr, from, to, body)
}

// sendFrom is send from the source address local ("" for any).
func sendFrom(local, addr, from string, to []string, body string) error {
	d := net.Dialer{Timeout: slow(10 * time.Second)}
	if local != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
	}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		return err
	}
	nc.SetDeadline(time.Now().Add(slow(60 * time.Second)))
	c := smtp.NewClient(nc)
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
	mu   sync.Mutex
	msgs []sunk
	srv  *smtp.Server
	l    net.Listener
}

type sunk struct {
	From string
	To   []string
	Data string
}

func newSink(t testing.TB) *sink {
	t.Helper()
	s := &sink{}
	s.srv = smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &sinkSession{s: s}, nil
	}))
	s.srv.Domain = "sink.test.example"
	s.srv.ErrorLog = log.New(io.Discard, "", 0)
	s.srv.MaxLineLength = 4 << 20
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.l = l
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
	ss.to = append(ss.to, to)
	return nil
}
func (ss *sinkSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	ss.s.mu.Lock()
	ss.s.msgs = append(ss.s.msgs, sunk{From: ss.from, To: append([]string(nil), ss.to...), Data: string(b)})
	ss.s.mu.Unlock()
	return nil
}

// rawSMTP is a line-level SMTP conversation, for checking exact replies.
type rawSMTP struct {
	t testing.TB
	c net.Conn
	r *bufio.Reader
}

// dialRaw connects from the source address local ("" for any) and reads
// the greeting.
func dialRaw(t testing.TB, addr, local string) *rawSMTP {
	t.Helper()
	r := dialRawNoGreeting(t, addr, local)
	if g := r.reply(); !strings.HasPrefix(g, "220 ") {
		t.Fatalf("greeting: %q", g)
	}
	return r
}

func dialRawNoGreeting(t testing.TB, addr, local string) *rawSMTP {
	t.Helper()
	d := net.Dialer{Timeout: slow(10 * time.Second)}
	if local != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(slow(60 * time.Second)))
	t.Cleanup(func() { c.Close() })
	return &rawSMTP{t: t, c: c, r: bufio.NewReader(c)}
}

// reply reads one (possibly multi-line) reply and returns its last line,
// or "EOF ..." when the connection ended or failed first.
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

// send writes raw bytes.
func (r *rawSMTP) send(s string) {
	r.t.Helper()
	if _, err := io.WriteString(r.c, s); err != nil {
		r.t.Fatalf("write: %v", err)
	}
}

func (r *rawSMTP) cmd(line string) string {
	r.t.Helper()
	r.send(line + "\r\n")
	return r.reply()
}

// try is cmd for a connection the server may have closed: a failed
// write is returned as "EOF ...", as a closed read is.
func (r *rawSMTP) try(line string) string {
	if _, err := io.WriteString(r.c, line+"\r\n"); err != nil {
		return "EOF " + err.Error()
	}
	return r.reply()
}

// must sends a command and fails unless the reply starts with want.
func (r *rawSMTP) must(line, want string) string {
	r.t.Helper()
	got := r.cmd(line)
	if !strings.HasPrefix(got, want) {
		r.t.Fatalf("%q: got %q, want %q...", line, got, want)
	}
	return got
}

// closed waits (bounded) for the server to close the connection and
// returns what it still sent.
func (r *rawSMTP) closed(within time.Duration) (rest string, ok bool) {
	r.c.SetReadDeadline(time.Now().Add(within))
	b, err := io.ReadAll(r.r)
	if err == nil {
		return string(b), true
	}
	if ne, isNet := err.(net.Error); isNet && ne.Timeout() {
		return string(b), false
	}
	return string(b), true // reset by peer and the like: closed
}

// hasBareNewline reports a CR not followed by LF or an LF not preceded by
// CR.
func hasBareNewline(s string) bool {
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\r' && (i+1 == len(s) || s[i+1] != '\n'):
			return true
		case s[i] == '\n' && (i == 0 || s[i-1] != '\r'):
			return true
		}
	}
	return false
}

// knownGap skips a test of a known, documented shortfall (in go-smtp,
// which mailtee cannot fix from the outside), unless MAILTEE_KNOWN_GAPS=1:
// the test stays runnable and says what is missing.
func knownGap(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("MAILTEE_KNOWN_GAPS") != "1" {
		t.Skip("known gap: " + why + " (MAILTEE_KNOWN_GAPS=1 runs it)")
	}
}
