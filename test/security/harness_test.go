// Package security drives a real `mailtee serve` process on loopback with
// hostile input: SMTP smuggling, open relay tricks, resource limits and
// malformed messages. The harness is test/internal/harness, shared with
// test/e2e and test/reliability; this file sets the package's policy (time
// bounds scaled by slow, ports that other processes may take) and adds a
// liveness check and a stricter raw SMTP conversation.
//
// Set MAILTEE_BIN to test a binary built elsewhere instead of building
// github.com/mailtee/mailtee/cmd/mailtee from this tree.
package security

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/mailtee/mailtee/test/internal/harness"
)

func TestMain(m *testing.M) { harness.Main(m, "security", harness.BinFromEnv) }

type sink = harness.Sink

var (
	waitUntil   = harness.WaitUntil
	testMessage = harness.TestMessage
)

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

// instance is one mailtee serve process.
type instance struct{ *harness.Instance }

// newInstance writes main.cf (the given lines after sensible test
// defaults; a later line overrides an earlier one, as in Postfix) and
// extra files into a fresh directory. Start only trusts a connection once
// mailtee's own log says it listens, and moves to another port if the
// chosen one was taken meanwhile (see harness.Instance.PortRace).
func newInstance(t testing.TB, mainCf string, files map[string]string) *instance {
	t.Helper()
	in := harness.NewInstance(t, mainCf, files)
	in.StartTimeout = slow(30 * time.Second)
	in.StopTimeout = slow(40 * time.Second)
	in.LogTimeout = slow(30 * time.Second)
	in.PortRace = true
	return &instance{in}
}

// running fails the test if the process has exited (a crash).
func (in *instance) running() {
	in.T.Helper()
	if !in.Running() {
		in.T.Fatalf("mailtee has exited (%v); log:\n%s", in.ExitErr(), in.Log.String())
	}
	if l := in.Log.String(); strings.Contains(l, "panic:") || strings.Contains(l, "goroutine ") && strings.Contains(l, "[running]") {
		in.T.Fatalf("mailtee logged a panic:\n%s", l)
	}
}

// alive checks that the process still runs and still serves: a message
// to a local mailbox is accepted and delivered.
func (in *instance) alive(tag string) {
	in.T.Helper()
	in.running()
	user := "alive-" + tag
	if err := send(in.Addr(), "check@outside.example", []string{user + "@localhost"}, testMessage("alive "+tag)); err != nil {
		in.T.Fatalf("mailtee no longer accepts mail: %v; log:\n%s", err, in.Log.String())
	}
	waitUntil(in.T, "delivery of the liveness message "+tag, slow(30*time.Second), func() bool {
		return len(in.MaildirMessages(user)) == 1
	})
	in.running()
}

// mailboxes returns the names of the Maildirs that exist.
func (in *instance) mailboxes() []string {
	entries, _ := os.ReadDir(filepath.Join(in.Dir, "mail"))
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// queueEmpty reports whether `mailtee queue list` shows no message.
func (in *instance) queueEmpty() bool {
	out, err := in.Run("", "queue", "list")
	if err != nil {
		return false
	}
	return strings.Contains(out, "is empty") || strings.TrimSpace(out) == ""
}

// send submits one message over SMTP and returns the error of the
// transaction (nil when the server said 250 to DATA).
func send(addr, from string, to []string, body string) error {
	return sendFrom("", addr, from, to, body)
}

// sendFrom is send from the source address local ("" for any).
func sendFrom(local, addr, from string, to []string, body string) error {
	return harness.Client{Local: local, DialTimeout: slow(10 * time.Second), Deadline: slow(60 * time.Second)}.Send(addr, from, to, body)
}

// newSink starts a next hop that takes lines far longer than SMTP allows,
// so that what mailtee relays is seen whole.
func newSink(t testing.TB) *sink {
	t.Helper()
	return harness.NewSink(t, "", nil, func(s *smtp.Server) { s.MaxLineLength = 4 << 20 })
}

// rawSMTP is a line-level SMTP conversation where a failed write fails
// the test (but see try).
type rawSMTP struct{ *harness.RawSMTP }

// dialRaw connects from the source address local ("" for any) and reads
// the greeting.
func dialRaw(t testing.TB, addr, local string) *rawSMTP {
	t.Helper()
	r := dialRawNoGreeting(t, addr, local)
	if g := r.Reply(); !strings.HasPrefix(g, "220 ") {
		t.Fatalf("greeting: %q", g)
	}
	return r
}

func dialRawNoGreeting(t testing.TB, addr, local string) *rawSMTP {
	t.Helper()
	return &rawSMTP{harness.DialRawNoGreeting(t, addr, local, slow(10*time.Second), slow(60*time.Second))}
}

// send writes raw bytes.
func (r *rawSMTP) send(s string) {
	r.T.Helper()
	if _, err := io.WriteString(r.Conn, s); err != nil {
		r.T.Fatalf("write: %v", err)
	}
}

func (r *rawSMTP) cmd(line string) string {
	r.T.Helper()
	r.send(line + "\r\n")
	return r.Reply()
}

// try is cmd for a connection the server may have closed: a failed
// write is returned as "EOF ...", as a closed read is.
func (r *rawSMTP) try(line string) string {
	if _, err := io.WriteString(r.Conn, line+"\r\n"); err != nil {
		return "EOF " + err.Error()
	}
	return r.Reply()
}

// must sends a command and fails unless the reply starts with want.
func (r *rawSMTP) must(line, want string) string {
	r.T.Helper()
	got := r.cmd(line)
	if !strings.HasPrefix(got, want) {
		r.T.Fatalf("%q: got %q, want %q...", line, got, want)
	}
	return got
}

// closed waits (bounded) for the server to close the connection and
// returns what it still sent.
func (r *rawSMTP) closed(within time.Duration) (rest string, ok bool) {
	r.Conn.SetReadDeadline(time.Now().Add(within))
	b, err := io.ReadAll(r.R)
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
