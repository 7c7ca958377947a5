package harness

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Instance is one mailtee serve process on its own configuration
// directory, restartable on the same configuration and queue. Its log
// (stdout and stderr of every run, in order) accumulates in Log.
//
// The exported fields after Log are the package's policy: how long to
// wait, and how defensive to be. Set them before Start; zero values are
// the defaults given.
type Instance struct {
	T    testing.TB
	Dir  string // configuration directory
	Host string // listen address, 127.0.0.1 when empty
	Port int
	Log  *SyncBuffer

	StartTimeout time.Duration // for Start to see mailtee listen; 15 s
	StopTimeout  time.Duration // for Stop to see it exit after SIGTERM; 40 s
	LogTimeout   time.Duration // for WaitLog; 20 s
	RunTimeout   time.Duration // for Run; none when zero

	// MarkStarts writes "=== harness: start N ===" into Log before each
	// start, so that the log of a restarted instance shows which run
	// said what.
	MarkStarts bool
	// AwaitReady makes Start also wait (up to 5 s) for "daemon started"
	// in the log: mailtee installs its signal handlers just after it logs
	// that, so a signal sent right after Start is then handled.
	AwaitReady bool
	// PortRace is for a busy machine, where another process may take the
	// port between FreePort and Start: a connection is only trusted once
	// mailtee's own log says it listens on it (so a test never talks to
	// someone else's server), and when mailtee finds the port taken,
	// Start tries again on another one (rewriting smtpd_port in main.cf,
	// with a fresh Log).
	PortRace bool

	mu     sync.Mutex
	cmd    *exec.Cmd
	done   chan struct{} // closed when cmd has been waited for
	err    error         // cmd.Wait result, valid after done
	starts int
}

// NewInstance writes main.cf (the given lines after test defaults; a
// later line overrides an earlier one, as in Postfix) and the extra
// files into a fresh directory, and picks a free port. The queue is
// Dir/queue, Maildirs are under Dir/mail/.
func NewInstance(t testing.TB, mainCf string, files map[string]string) *Instance {
	t.Helper()
	dir := TempDir(t)
	port := FreePort(t)
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
	// The ledger in the instance's own directory, last: tests name
	// main.cf's lines by number.
	if !strings.Contains(mainCf, "data_directory") {
		mainCf += "\ndata_directory = " + dir + "/data\n"
	}
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
	return &Instance{T: t, Dir: dir, Port: port, Log: &SyncBuffer{}}
}

// TempDir is t.TempDir made passable for everyone: run as root, mailtee
// writes each mailbox as its owner (nobody for the tests' names), who
// must reach the spool below it, as on a real system.
func TempDir(t testing.TB) string {
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// Addr is the SMTP address mailtee listens on.
func (in *Instance) Addr() string {
	h := in.Host
	if h == "" {
		h = "127.0.0.1"
	}
	return fmt.Sprintf("%s:%d", h, in.Port)
}

// WriteFile writes a file in the configuration directory.
func (in *Instance) WriteFile(name, text string) {
	in.T.Helper()
	if err := os.WriteFile(filepath.Join(in.Dir, name), []byte(text), 0o644); err != nil {
		in.T.Fatal(err)
	}
}

func or(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// errPortTaken is StartErr's answer, with PortRace, when mailtee could
// not listen because the port is in use.
var errPortTaken = errors.New("mailtee could not listen: address already in use")

// Start runs mailtee serve and waits until it accepts connections,
// failing the test otherwise (test goroutine only).
func (in *Instance) Start() {
	in.T.Helper()
	for try := 0; ; try++ {
		err := in.StartErr()
		if err == nil {
			return
		}
		if !errors.Is(err, errPortTaken) || try == 4 {
			in.T.Fatalf("%v; log:\n%s", err, in.Log.String())
		}
		in.T.Logf("mailtee could not listen on port %d (taken?), trying another", in.Port)
		old := fmt.Sprintf("smtpd_port = %d\n", in.Port)
		in.Port = FreePort(in.T)
		cf := filepath.Join(in.Dir, "main.cf")
		b, err := os.ReadFile(cf)
		if err != nil {
			in.T.Fatal(err)
		}
		in.WriteFile("main.cf", strings.Replace(string(b), old, fmt.Sprintf("smtpd_port = %d\n", in.Port), 1))
		in.Log = &SyncBuffer{}
	}
}

// StartErr runs mailtee serve and waits (StartTimeout) until it accepts
// connections. Safe from any goroutine; it returns an error instead of
// failing the test. The process is killed at test cleanup if still
// running.
func (in *Instance) StartErr() error {
	in.mu.Lock()
	if in.cmd != nil && !isClosed(in.done) {
		in.mu.Unlock()
		return errors.New("harness: start while mailtee is running")
	}
	in.starts++
	if in.MarkStarts {
		fmt.Fprintf(in.Log, "=== harness: start %d ===\n", in.starts)
	}
	mark := in.Log.Len()
	cmd := exec.Command(Bin, "serve", "-c", in.Dir)
	cmd.Stdout = in.Log
	cmd.Stderr = in.Log
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
	in.T.Cleanup(func() {
		if !isClosed(done) {
			cmd.Process.Kill()
			<-done
		}
	})

	// With PortRace the port is only dialled once mailtee says it
	// listens; then a slow accept is worth waiting for.
	listening := fmt.Sprintf("listening on %s,", in.Addr())
	dialTimeout := 200 * time.Millisecond
	if in.PortRace {
		dialTimeout = time.Second
	}
	deadline := time.Now().Add(or(in.StartTimeout, 15*time.Second))
	for {
		if !in.PortRace || strings.Contains(in.Log.Since(mark), listening) {
			if c, err := net.DialTimeout("tcp", in.Addr(), dialTimeout); err == nil {
				c.Close()
				// The probe counts against the per-client connection
				// limit until mailtee has closed its side (it logs the
				// disconnect after freeing the place): a test that opens
				// the limit's worth of connections at once must not find
				// it still there. Bounded; never a failure.
				for t0 := time.Now(); time.Since(t0) < 5*time.Second && !isClosed(done); time.Sleep(5 * time.Millisecond) {
					if strings.Contains(in.Log.Since(mark), "disconnect from") {
						break
					}
				}
				if in.AwaitReady {
					for t0 := time.Now(); time.Since(t0) < 5*time.Second && !isClosed(done); time.Sleep(5 * time.Millisecond) {
						if strings.Contains(in.Log.Since(mark), "daemon started") {
							time.Sleep(20 * time.Millisecond)
							break
						}
					}
				}
				return nil
			}
		}
		if isClosed(done) {
			if in.PortRace && strings.Contains(in.Log.Since(mark), "address already in use") {
				return errPortTaken
			}
			return fmt.Errorf("mailtee exited before listening on %s (%v)", in.Addr(), in.ExitErr())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("mailtee did not start listening on %s", in.Addr())
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

// Running reports whether the current process has not exited.
func (in *Instance) Running() bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.cmd != nil && !isClosed(in.done)
}

// Pid of the current process (0 when never started).
func (in *Instance) Pid() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.cmd == nil {
		return 0
	}
	return in.cmd.Process.Pid
}

// ExitErr is the Wait error of the last process to exit (nil after a
// clean exit).
func (in *Instance) ExitErr() error {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.err
}

// Signal sends sig to the current process.
func (in *Instance) Signal(sig os.Signal) error {
	in.mu.Lock()
	cmd := in.cmd
	in.mu.Unlock()
	if cmd == nil {
		return errors.New("harness: not started")
	}
	return cmd.Process.Signal(sig)
}

// WaitExit waits up to d for the current process to exit.
func (in *Instance) WaitExit(d time.Duration) error {
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

// Stop sends SIGTERM and waits (StopTimeout) for a clean exit.
func (in *Instance) Stop() {
	in.T.Helper()
	in.Signal(syscall.SIGTERM)
	if err := in.WaitExit(or(in.StopTimeout, 40*time.Second)); err != nil {
		in.KillErr()
		in.T.Fatalf("mailtee did not exit after SIGTERM")
	}
	if err := in.ExitErr(); err != nil {
		in.T.Errorf("mailtee exited with %v after SIGTERM; log:\n%s", err, in.Log.String())
	}
}

// KillErr sends SIGKILL (a crash) and waits for the process to be gone.
// Safe from any goroutine.
func (in *Instance) KillErr() error {
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

// Kill sends SIGKILL: a crash.
func (in *Instance) Kill() {
	if err := in.KillErr(); err != nil {
		in.T.Error(err)
	}
}

// Run runs a mailtee subcommand against this instance's configuration
// (mailtee ARGS[0] -c DIR ARGS[1:]...) with stdin as its input, and
// returns its output (stdout and stderr), within RunTimeout if set.
func (in *Instance) Run(stdin string, args ...string) (string, error) {
	full := append([]string{args[0], "-c", in.Dir}, args[1:]...)
	cmd := exec.Command(Bin, full...)
	cmd.Stdin = strings.NewReader(stdin)
	var out SyncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return "", err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var timeout <-chan time.Time
	if in.RunTimeout > 0 {
		timeout = time.After(in.RunTimeout)
	}
	select {
	case err := <-done:
		return out.String(), err
	case <-timeout:
		cmd.Process.Kill()
		<-done
		return out.String(), fmt.Errorf("mailtee %s: timed out", args[0])
	}
}

// WaitLog waits (LogTimeout) until the log contains s.
func (in *Instance) WaitLog(s string) {
	in.T.Helper()
	in.WaitLogFor(s, or(in.LogTimeout, 20*time.Second))
}

// WaitLogFor waits up to d until the log contains s.
func (in *Instance) WaitLogFor(s string, d time.Duration) {
	in.T.Helper()
	deadline := time.Now().Add(d)
	for !strings.Contains(in.Log.String(), s) {
		if time.Now().After(deadline) {
			in.T.Fatalf("timed out waiting for %q in the log:\n%s", s, in.Log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// MaildirMessages returns the messages in user's Maildir new/.
func (in *Instance) MaildirMessages(user string) []string {
	entries, _ := os.ReadDir(filepath.Join(in.Dir, "mail", user, "new"))
	var out []string
	for _, e := range entries {
		b, _ := os.ReadFile(filepath.Join(in.Dir, "mail", user, "new", e.Name()))
		out = append(out, string(b))
	}
	return out
}
