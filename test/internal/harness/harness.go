// Package harness is the common ground of the end-to-end test packages
// (test/e2e, test/reliability, test/security): each runs real `mailtee
// serve` processes on loopback, built from this tree, and talks to them
// with real SMTP clients, sinks and a DNS server. The packages differ in
// how patient and how defensive they are; those differences are fields
// and options here, and what only one package needs stays in it.
package harness

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// Bin is the mailtee binary under test; Main sets it.
var Bin string

// Option changes what Main does.
type Option int

const (
	// BinFromEnv lets MAILTEE_BIN name an already built binary to test
	// instead of building one (to test a fixed build while the tree
	// changes).
	BinFromEnv Option = iota + 1
)

// Main is a test package's TestMain: it builds mailtee from this tree
// once for the whole package run (into a temporary directory named after
// name, removed afterwards), sets Bin, runs the tests and exits with
// their status.
func Main(m *testing.M, name string, opts ...Option) {
	if bin := os.Getenv("MAILTEE_BIN"); bin != "" && slices.Contains(opts, BinFromEnv) {
		Bin = bin
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "mailtee-"+name+"-")
	if err != nil {
		panic(err)
	}
	Bin = filepath.Join(dir, "mailtee")
	out, err := exec.Command("go", "build", "-o", Bin, "github.com/mailtee/mailtee/cmd/mailtee").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building mailtee: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(2)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// FreePort returns a TCP port on 127.0.0.1 that is free now.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// FreePortOn returns a port that is free on every one of the addresses,
// for hosts (one loopback address each) that use the same port.
func FreePortOn(t testing.TB, ips ...string) int {
	t.Helper()
	for try := 0; try < 50; try++ {
		p := FreePort(t)
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

// WaitUntil polls cond until it holds, failing the test (as waiting for
// what) after timeout: mail moves asynchronously.
func WaitUntil(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// SyncBuffer is a bytes.Buffer safe for concurrent use: a process writes
// its log into it while the test reads it.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Len is the number of bytes written so far: an offset for Since.
func (s *SyncBuffer) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Len()
}

// Since returns what was written after offset.
func (s *SyncBuffer) Since(offset int) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.b.Bytes()
	if offset > len(b) {
		offset = len(b)
	}
	return string(b[offset:])
}

// QueueIDs picks the queue IDs out of `mailtee queue list` output.
func QueueIDs(list string) []string {
	var ids []string
	for _, line := range strings.Split(list, "\n") {
		f := strings.Fields(line)
		// A reason longer than the indent starts at column 0, in
		// parentheses, as in Postfix's mailq.
		if len(f) >= 2 && !strings.HasPrefix(line, " ") && !strings.HasPrefix(line, "-") && !strings.HasPrefix(line, "(") {
			ids = append(ids, strings.TrimRight(f[0], "!*"))
		}
	}
	return ids
}
