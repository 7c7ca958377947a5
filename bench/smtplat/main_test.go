package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestLoopbackOnly(t *testing.T) {
	for _, a := range []string{"127.0.0.1:25", "127.1.2.3:2525", "[::1]:25"} {
		if err := loopbackOnly(a); err != nil {
			t.Errorf("%s: %v", a, err)
		}
	}
	for _, a := range []string{"10.0.0.1:25", "localhost:25", "example.com:25", "0.0.0.0:25", "127.0.0.1", "127.0.0.1:0", "[::]:25"} {
		if err := loopbackOnly(a); err == nil {
			t.Errorf("%s accepted", a)
		}
	}
}

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	for _, c := range []struct {
		p    float64
		want time.Duration
	}{{50, 50 * time.Millisecond}, {99, 99 * time.Millisecond}, {100, 100 * time.Millisecond}, {1, time.Millisecond}} {
		if got := percentile(d, c.p); got != c.want {
			t.Errorf("p%v = %v, want %v", c.p, got, c.want)
		}
	}
	if got := percentile(d[:1], 99); got != time.Millisecond {
		t.Errorf("p99 of one = %v", got)
	}
}

func TestMessage(t *testing.T) {
	for _, size := range []int{0, 100, 2048, 10000} {
		m := message(options{size: size, from: "a@b", to: "c@d"})
		if !bytes.HasSuffix(m, []byte("\r\n.\r\n")) {
			t.Errorf("size %d: does not end in CRLF.CRLF", size)
		}
		body := m[:len(m)-3]
		if bytes.Count(body, []byte("\r\n.")) != 0 || bytes.Count(body, []byte("\n")) != bytes.Count(body, []byte("\r\n")) {
			t.Errorf("size %d: needs dot-stuffing or has a bare LF", size)
		}
		if len(body) < size || len(body) > size+250 {
			t.Errorf("size %d: message is %d bytes", size, len(body))
		}
	}
}

// fakeServer is a minimal SMTP server: it refuses every refuseEvery-th
// RCPT with 550 (0: none) and counts the messages it accepts.
type fakeServer struct {
	l           net.Listener
	refuseEvery int64
	delay       time.Duration
	rcpts       atomic.Int64
	accepted    atomic.Int64
	wg          sync.WaitGroup
}

func newFakeServer(t *testing.T, refuseEvery int64, delay time.Duration) *fakeServer {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &fakeServer{l: l, refuseEvery: refuseEvery, delay: delay}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s.wg.Add(1)
			go s.serve(c)
		}
	}()
	t.Cleanup(func() { l.Close(); s.wg.Wait() })
	return s
}

func (s *fakeServer) serve(c net.Conn) {
	defer s.wg.Done()
	defer c.Close()
	r := bufio.NewReader(c)
	fmt.Fprint(c, "220 fake ESMTP\r\n")
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		verb := strings.ToUpper(strings.Fields(line + " x")[0])
		switch verb {
		case "EHLO":
			fmt.Fprint(c, "250-fake\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
		case "RCPT":
			if n := s.rcpts.Add(1); s.refuseEvery > 0 && n%s.refuseEvery == 0 {
				fmt.Fprint(c, "550 5.1.1 no\r\n")
			} else {
				fmt.Fprint(c, "250 ok\r\n")
			}
		case "DATA":
			fmt.Fprint(c, "354 go\r\n")
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
			}
			time.Sleep(s.delay)
			s.accepted.Add(1)
			fmt.Fprint(c, "250 2.0.0 queued\r\n")
		case "QUIT":
			fmt.Fprint(c, "221 bye\r\n")
			return
		default:
			fmt.Fprint(c, "250 ok\r\n")
		}
	}
}

func TestRun(t *testing.T) {
	s := newFakeServer(t, 3, 2*time.Millisecond)
	o := options{addr: s.l.Addr().String(), n: 30, dur: time.Minute, sessions: 3, size: 500,
		from: "a@b.example", to: "c@d.example", helo: "h", replyTimeout: 5 * time.Second}
	if err := o.check(); err != nil {
		t.Fatal(err)
	}
	r := run(context.Background(), o)
	if len(r.errs) > 0 {
		t.Fatalf("errors: %v", r.errs)
	}
	if len(r.lat) != 20 || r.fail != 10 || r.unknown != 0 || r.opened != 3 {
		t.Errorf("n=%d fail=%d unknown=%d opened=%d, want 20, 10, 0, 3", len(r.lat), r.fail, r.unknown, r.opened)
	}
	if got := s.accepted.Load(); got != int64(len(r.lat)) {
		t.Errorf("server accepted %d, smtplat counted %d", got, len(r.lat))
	}
	for _, d := range r.lat {
		if d < 2*time.Millisecond {
			t.Errorf("latency %v below the server's 2ms delay", d)
		}
	}
	if sum := r.summary(); !strings.Contains(sum, " n=20 fail=10 unknown=0") || !strings.HasPrefix(sum, "p50=") {
		t.Errorf("summary %q", sum)
	}
}

// A cancelled run (SIGTERM) finishes the message in flight and counts it.
func TestRunCancel(t *testing.T) {
	s := newFakeServer(t, 0, 50*time.Millisecond)
	o := options{addr: s.l.Addr().String(), n: 1000, dur: time.Minute, sessions: 2, size: 100,
		from: "a@b.example", to: "c@d.example", helo: "h", replyTimeout: 5 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 220*time.Millisecond)
	defer cancel()
	r := run(ctx, o)
	if len(r.lat) < 4 || len(r.lat) > 12 || r.unknown != 0 || r.fail != 0 {
		t.Errorf("n=%d fail=%d unknown=%d", len(r.lat), r.fail, r.unknown)
	}
	if got := s.accepted.Load(); got != int64(len(r.lat)) {
		t.Errorf("server accepted %d, smtplat counted %d", got, len(r.lat))
	}
}
