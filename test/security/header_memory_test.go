package security

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The attack of issue 12 (item 2): many sessions, from two addresses,
// each send one header field folded over millions of bytes. Before, the
// server held every header whole (100 sessions of 9.6 MB took it from
// 14 MB to 1.17 GB); Postfix keeps at most header_size_limit bytes of a
// field (mime_state.c) and streams the rest of the message, so its
// memory does not depend on what clients send. Half the sessions fold an
// unstructured field, half an address list that header rewriting parses
// (local_header_rewrite_clients takes loopback clients by default).
func TestFoldedHeaderMemory(t *testing.T) {
	const (
		sessions  = 100
		headerMB  = 5
		peakLimit = 100 << 20 // VmHWM, bytes
	)
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skip("needs /proc to read the server's peak memory")
	}
	sk := newSink(t)
	// Outside clients (mynetworks is 127.0.0.3 only), so the per-client
	// limits apply: raised so that 50 sessions from each address fit.
	in := newInstance(t, fmt.Sprintf(`mynetworks = 127.0.0.3/32
relay_domains = far.example
transport_maps = inline:{ far.example=smtp:[127.0.0.1]:%d }
smtpd_client_connection_count_limit = 100
`, sk.Port()), nil)
	in.Start()
	pid := in.Pid()
	start := procStatus(t, pid, "VmRSS")

	deadline := time.Now().Add(slow(5 * time.Minute))
	var wg sync.WaitGroup
	errs := make(chan error, sessions)
	for i := 0; i < sessions; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			local := "127.0.0.1"
			if i%2 == 1 {
				local = "127.0.0.2"
			}
			if err := sendFoldedHeader(in.Addr(), local, i, headerMB<<20, deadline); err != nil {
				errs <- fmt.Errorf("session %d from %s: %w", i, local, err)
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}
	waitUntil(t, "delivery of every message to the next hop", slow(2*time.Minute), func() bool { return sk.Total() == sessions })
	in.running()
	peak := procStatus(t, pid, "VmHWM")
	t.Logf("server memory: %d kB at start, peak (VmHWM) %d kB after %d sessions of a %d MB folded header", start>>10, peak>>10, sessions, headerMB)
	if peak > peakLimit {
		t.Errorf("peak memory %d MB, want under %d MB", peak>>20, peakLimit>>20)
	}

	// What went on: each field cut at header_size_limit (102400), the
	// rest of the message intact, and a log line per cut.
	big, bodyless, rewritten := 0, 0, 0
	for _, m := range sk.Messages() {
		if len(m.Data) > 110<<10 {
			big++
		}
		if strings.Contains(m.Data, " u17@test.example,") {
			rewritten++
		}
		if !strings.HasSuffix(m.Data, "\r\n\r\nthe body\r\n") {
			bodyless++
		}
	}
	if big > 0 || bodyless > 0 {
		t.Errorf("of %d messages delivered, %d are over 110 KB (the folded field not cut at header_size_limit) and %d lost their body", sk.Total(), big, bodyless)
	}
	if rewritten != sessions/2 {
		t.Errorf("%d messages with the address list rewritten (u17 -> u17@test.example), want %d", rewritten, sessions/2)
	}
	if n := strings.Count(in.Log.String(), "exceeds header_size_limit"); n != sessions {
		t.Errorf("%d log lines about a header over header_size_limit, want %d", n, sessions)
	}
	in.alive("hdrmem")
}

// sendFoldedHeader submits one message whose header has a field of size
// bytes folded over lines of 78 characters, written as it is generated.
func sendFoldedHeader(addr, local string, i, size int, deadline time.Time) error {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: slow(10 * time.Second)}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(deadline)
	r := bufio.NewReader(c)
	w := bufio.NewWriterSize(c, 64<<10)
	reply := func() (string, error) {
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return line, err
			}
			if len(line) < 4 || line[3] != '-' {
				return strings.TrimRight(line, "\r\n"), nil
			}
		}
	}
	cmd := func(line, want string) error {
		if line != "" {
			w.WriteString(line + "\r\n")
			if err := w.Flush(); err != nil {
				return err
			}
		}
		got, err := reply()
		if err != nil || !strings.HasPrefix(got, want) {
			return fmt.Errorf("%q: got %q (%v), want %s", line, got, err, want)
		}
		return nil
	}
	rcpt := "big" + strconv.Itoa(i) + "@far.example"
	for _, step := range [][2]string{
		{"", "220"}, {"EHLO client" + strconv.Itoa(i) + ".outside.example", "250"},
		{"MAIL FROM:<sender@outside.example>", "250"}, {"RCPT TO:<" + rcpt + ">", "250"}, {"DATA", "354"},
	} {
		if err := cmd(step[0], step[1]); err != nil {
			return err
		}
	}
	fmt.Fprintf(w, "From: sender@outside.example\r\nSubject: folded %d\r\n", i)
	// Even sessions: an unstructured field. Odd ones: an address list
	// of unqualified names, which rewriting would qualify.
	name, piece := "X-Folded:", "\tabcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvw\r\n"
	if i%2 == 1 {
		name, piece = "To:", "\tu1, u2, u3, u4, u5, u6, u7, u8, u9, u10, u11, u12, u13, u14, u15, u16, u17,\r\n"
	}
	w.WriteString(name + " " + rcpt + ",\r\n")
	for n := 0; n < size; n += len(piece) {
		if _, err := w.WriteString(piece); err != nil {
			return err
		}
	}
	w.WriteString("\tlast\r\n\r\nthe body\r\n")
	return cmd(".", "250")
}

// procStatus reads a size field (in kB) of /proc/PID/status, in bytes.
func procStatus(t *testing.T, pid int, field string) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("%s: %q: %v", field, line, err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}
