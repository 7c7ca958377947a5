package reliability

// Retry state on disk (issue 12, item 3): a backlog whose next hop is
// down is retried every second; the state it leaves in the spool must
// stay the same size however many retries there are. The old code
// appended a record of ~171 bytes per recipient per retry to each
// message's state file: this backlog grew its spool by about 1 MB/s with
// no new mail.

import (
	"bufio"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mailtee/mailtee/test/internal/harness"
)

// spoolBytes is what du says queue_directory takes: the blocks of every
// file under it.
func spoolBytes(t testing.TB, dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // removed meanwhile
		}
		if fi, err := d.Info(); err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				n += st.Blocks * 512
			}
		}
		return nil
	})
	return n
}

// deadPort returns a loopback port bound by a socket that never listens:
// every connection to it is refused, and no other process can take it
// while the test runs.
func deadPort(t testing.TB) int {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return sa.(*syscall.SockaddrInet4).Port
}

// countingLog takes mailtee's log without keeping it (a backlog retried
// every second logs thousands of lines a second): it counts deferrals
// and keeps the lines that are not deliveries, for failure reports.
type countingLog struct {
	deferred atomic.Int64
	mu       sync.Mutex
	other    strings.Builder
	started  chan struct{}
	once     sync.Once
}

func (l *countingLog) consume(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.Contains(line, "status=deferred"):
			l.deferred.Add(1)
			continue
		case strings.Contains(line, " to=<"):
			continue
		case strings.Contains(line, "daemon started"):
			l.once.Do(func() { close(l.started) })
		}
		l.mu.Lock()
		if l.other.Len() < 1<<20 {
			l.other.WriteString(line + "\n")
		}
		l.mu.Unlock()
	}
}

func (l *countingLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.other.String()
}

// retryServer is a mailtee serve process whose log is only counted.
type retryServer struct {
	cmd *exec.Cmd
	log *countingLog
	up  time.Duration // from exec to "daemon started"
}

func startRetryServer(t testing.TB, dir string) *retryServer {
	t.Helper()
	s := &retryServer{log: &countingLog{started: make(chan struct{})}}
	s.cmd = exec.Command(harness.Bin, "serve", "-c", dir)
	pr, pw := io.Pipe()
	s.cmd.Stdout, s.cmd.Stderr = pw, pw
	t0 := time.Now()
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go s.log.consume(pr)
	exited := make(chan struct{})
	go func() { s.cmd.Wait(); pw.Close(); close(exited) }()
	t.Cleanup(func() {
		s.cmd.Process.Kill()
		<-exited
	})
	select {
	case <-s.log.started:
		s.up = time.Since(t0)
	case <-exited:
		t.Fatalf("mailtee exited at start:\n%s", s.log)
	case <-time.After(60 * time.Second):
		t.Fatalf("mailtee did not start within 60 s:\n%s", s.log)
	}
	return s
}

// peakRSS is the process's VmHWM, in bytes.
func (s *retryServer) peakRSS() int64 {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func (s *retryServer) stop(t testing.TB) {
	s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		for s.cmd.ProcessState == nil {
			time.Sleep(10 * time.Millisecond)
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatalf("mailtee did not stop within 60 s")
	}
}

// TestRetryStateStaysFlat: 100 messages of 100 recipients each, to a
// relay_domains domain whose next hop refuses every connection, retried
// every second (minimal_backoff_time = maximal_backoff_time =
// queue_run_delay = 1s) for two minutes (MAILTEE_SOAK=1: ten minutes).
// Once the first retries are done, the spool may grow by at most
// retryGrowth however many more retries come; the deferrals must keep
// coming all along (the test counts them), and a restart must find every
// recipient still deferred, with its reason.
func TestRetryStateStaysFlat(t *testing.T) {
	const (
		msgs, rcpts = 100, 100
		retryGrowth = 1 << 20
	)
	window := 2 * time.Minute
	if os.Getenv("MAILTEE_SOAK") != "" {
		window = 10 * time.Minute
	}
	dead := deadPort(t)
	in := harness.NewInstance(t, fmt.Sprintf(`relay_domains = far.example
transport_maps = inline:{ far.example=smtp:[127.0.0.1]:%d }
minimal_backoff_time = 1s
maximal_backoff_time = 1s
queue_run_delay = 1s
`, dead), nil)
	qdir := filepath.Join(in.Dir, "queue")
	srv := startRetryServer(t, in.Dir)

	var wg sync.WaitGroup
	errs := make(chan error, msgs)
	next := atomic.Int64{}
	for w := 0; w < 5; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= msgs {
					return
				}
				to := make([]string, rcpts)
				for k := range to {
					to[k] = fmt.Sprintf("m%03d.u%03d@far.example", i, k)
				}
				if err := send(in.Addr(), "sender@outside.example", to, testMessage(fmt.Sprintf("backlog %d", i))); err != nil {
					errs <- fmt.Errorf("message %d: %v", i, err)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	total := int64(msgs * rcpts)
	// The first retries: every recipient deferred three times.
	waitUntil(t, "three deferrals of every recipient", 5*time.Minute, func() bool { return srv.log.deferred.Load() >= 3*total })
	start, d0 := spoolBytes(t, qdir), srv.log.deferred.Load()
	t0 := time.Now()
	most := start
	for time.Since(t0) < window {
		time.Sleep(5 * time.Second)
		most = max(most, spoolBytes(t, qdir))
	}
	end, retries := spoolBytes(t, qdir), srv.log.deferred.Load()-d0
	t.Logf("spool %d KB after the first retries, %d KB after %v more (at most %d KB); %d deferrals meanwhile (%.1f per recipient); peak RSS %d MB",
		start>>10, end>>10, window, most>>10, retries, float64(retries)/float64(total), srv.peakRSS()>>20)
	// Every recipient must have been retried all along: at least once
	// every 6 s on a busy machine (every second when idle).
	if min := total * int64(window/(6*time.Second)); retries < min {
		t.Errorf("%d deferrals in %v, want at least %d: the backlog was not retried every second\n%s", retries, window, min, srv.log)
	}
	if most-start > retryGrowth {
		t.Errorf("the spool grew from %d KB to %d KB (end %d KB) with no new mail, over %d deferrals; want at most %d KB more",
			start>>10, most>>10, end>>10, retries, retryGrowth>>10)
	}

	// A restart finds the backlog as it was: every recipient deferred,
	// with the reason of its last attempt.
	srv.stop(t)
	srv = startRetryServer(t, in.Dir)
	t.Logf("restart with the backlog: %v to \"daemon started\"", srv.up.Round(time.Millisecond))
	out, err := in.Run("", "queue", "list")
	if err != nil {
		t.Fatalf("queue list: %v\n%s", err, out)
	}
	if n := len(harness.QueueIDs(out)); n != msgs {
		t.Errorf("queue list after a restart shows %d messages, want %d", n, msgs)
	}
	if n := strings.Count(out, "connect to 127.0.0.1"); n < int(total) {
		t.Errorf("queue list after a restart gives %d recipients the reason of their last attempt, want %d:\n%.2000s", n, total, out)
	}
}
