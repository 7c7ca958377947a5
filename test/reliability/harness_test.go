// Package reliability drives real mailtee processes on loopback through
// crashes (kill -9), reloads, damaged queue files and injected faults.
//
// The harness is test/internal/harness, shared with test/e2e and
// test/security; this file sets the package's policy (more patience,
// start markers in the log, waiting until signals are handled, bounded
// subcommands and sessions) and adds the queue helpers of every file of
// the package (crash, reload, corrupt, faults, diskfull tests). The
// instance and sink methods are safe to call from goroutines other than
// the test's own (StartErr, KillErr, sendTimeout, sink counters).
package reliability

import (
	"crypto/tls"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/mailtee/mailtee/test/internal/harness"
)

// TestMain builds the binary from this tree, unless MAILTEE_BIN names one
// already built (to test a fixed build while the tree changes).
func TestMain(m *testing.M) { harness.Main(m, "reliability", harness.BinFromEnv) }

type sink = harness.Sink

var (
	freePort    = harness.FreePort
	waitUntil   = harness.WaitUntil
	testMessage = harness.TestMessage
	dialRaw     = harness.DialRaw
)

// instance is one mailtee serve process, restartable on the same
// configuration and queue. Each start appends a line
// "=== harness: start N ===" to its log.
type instance struct{ *harness.Instance }

// newInstance writes main.cf (the given lines after sensible test
// defaults) and extra files into a fresh directory. The queue is
// dir/queue, Maildirs are under dir/mail/.
func newInstance(t testing.TB, mainCf string, files map[string]string) *instance {
	t.Helper()
	in := harness.NewInstance(t, mainCf, files)
	in.StartTimeout = 30 * time.Second
	in.LogTimeout = 30 * time.Second
	in.RunTimeout = 60 * time.Second
	in.MarkStarts = true
	in.AwaitReady = true
	return &instance{in}
}

// queueDir is queue_directory as newInstance sets it.

// msgDir is where message files live: queue_directory/queue (files ID and
// ID.st, see internal/queue/store.go).
func (in *instance) msgDir() string { return filepath.Join(in.Dir, "queue", "queue") }

// corruptDir is where damaged queue files are set aside:
// queue_directory/corrupt.
func (in *instance) corruptDir() string { return filepath.Join(in.Dir, "queue", "corrupt") }

// writeMainCf replaces main.cf (the text is written verbatim).
func (in *instance) writeMainCf(text string) { in.WriteFile("main.cf", text) }

// readMainCf returns main.cf as it is now.
func (in *instance) readMainCf() string {
	b, err := os.ReadFile(filepath.Join(in.Dir, "main.cf"))
	if err != nil {
		in.T.Fatal(err)
	}
	return string(b)
}

// exitCode of an error returned by Run (0 for nil, -1 when not an exit).
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

// queueList runs `mailtee queue list` and returns the queue IDs in it.
func (in *instance) queueList() ([]string, string, error) {
	out, err := in.Run("", "queue", "list")
	return harness.QueueIDs(out), out, err
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

// send submits one message over SMTP and returns the error of the
// transaction (nil when the server said 250 to DATA). Bounded: 30 s.
func send(addr, from string, to []string, body string) error {
	return sendTimeout(addr, from, to, body, 30*time.Second)
}

// sendTimeout is send with a deadline on the whole transaction. The
// result is nil exactly when DATA got 250 (QUIT errors are ignored: the
// message is acknowledged once the 250 to DATA was read).
func sendTimeout(addr, from string, to []string, body string, d time.Duration) error {
	return harness.Client{DialTimeout: 5 * time.Second, Deadline: d, IgnoreQuit: true}.Send(addr, from, to, body)
}

// newSink starts a sink on addr ("" for 127.0.0.1:0); it is closed at
// test cleanup. Its sessions time out after a minute of silence.
func newSink(t testing.TB, addr string, tlsCfg *tls.Config) *sink {
	t.Helper()
	return harness.NewSink(t, addr, tlsCfg, func(s *smtp.Server) {
		s.ReadTimeout = 60 * time.Second
		s.WriteTimeout = 60 * time.Second
	})
}
