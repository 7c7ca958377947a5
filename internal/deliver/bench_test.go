package deliver

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// benchMessage is a 2 KB message, CRLF line ends.
func benchMessage() *Message {
	line := "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.\n" // 65 bytes
	body := "From: sender@example.org\nTo: rcpt@example.com\nSubject: bench\n\n" +
		strings.Repeat(line, 30)
	return testMessage(body)
}

// cpuMeter reports the process's CPU time (user + system, every thread:
// the benchmark, the runtime, an in-process server) per operation, as
// "cpu-µs/op". Kernel work done elsewhere (the journal thread) is not in
// it.
type cpuMeter struct{ start time.Duration }

func cpuNow() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func startCPU() *cpuMeter { return &cpuMeter{start: cpuNow()} }

func (m *cpuMeter) report(b *testing.B) {
	if b.N > 0 {
		b.ReportMetric(float64(cpuNow()-m.start)/float64(time.Microsecond)/float64(b.N), "cpu-µs/op")
	}
}

// BenchmarkDeliverSMTP is the SMTP client's delivery loop: one 2 KB
// message with one recipient per Deliver, to an in-process go-smtp server
// on 127.0.0.1 that discards what it gets, connections reused. "parallel"
// runs GOMAXPROCS delivering goroutines, "parallel-x4" four times as many.
// The cpu-µs/op figure includes the server's share.
func BenchmarkDeliverSMTP(b *testing.B) {
	msg := benchMessage()
	for _, bc := range []struct {
		name string
		par  int // 0: sequential
	}{
		{"sequential", 0},
		{"parallel", 1},
		{"parallel-x4", 4},
	} {
		b.Run(bc.name, func(b *testing.B) {
			srv := startBenchSink(b)
			c := testClient(srv.port)
			c.TLSLevel = "none"
			c.MaxIdle = time.Minute
			defer c.Close()
			nexthop := "[127.0.0.1]:" + srv.port
			var n atomic.Int64
			deliver := func() bool {
				rcpt := fmt.Sprintf("r%d@example.com", n.Add(1))
				r := c.Deliver(context.Background(), nexthop, msg, []string{rcpt})[0]
				if r.Err != nil {
					b.Error(r.Err)
					return false
				}
				return true
			}
			b.ReportAllocs()
			cpu := startCPU()
			b.ResetTimer()
			if bc.par > 0 {
				b.SetParallelism(bc.par)
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if !deliver() {
							return
						}
					}
				})
			} else {
				for i := 0; i < b.N; i++ {
					if !deliver() {
						b.FailNow()
					}
				}
			}
			b.StopTimer()
			cpu.report(b)
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
			if got := srv.msgs.Load(); got != int64(b.N) {
				b.Errorf("server got %d messages, want %d", got, b.N)
			}
			if conns := srv.conns.Load(); conns > int64(max(bc.par, 1)*64) {
				b.Errorf("%d connections for %d messages: not reused", conns, b.N)
			}
		})
	}
}

// benchSink is a go-smtp server on 127.0.0.1 that counts and discards
// messages.
type benchSink struct {
	port  string
	msgs  atomic.Int64
	conns atomic.Int64
}

func startBenchSink(b *testing.B) *benchSink {
	b.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	s := &benchSink{}
	_, s.port, _ = net.SplitHostPort(l.Addr().String())
	srv := smtp.NewServer(s)
	srv.Domain = "sink.test"
	srv.ReadTimeout = 10 * time.Second
	srv.WriteTimeout = 10 * time.Second
	go srv.Serve(l)
	b.Cleanup(func() { srv.Close() })
	return s
}

func (s *benchSink) NewSession(*smtp.Conn) (smtp.Session, error) {
	s.conns.Add(1)
	return benchSession{s}, nil
}

type benchSession struct{ s *benchSink }

func (benchSession) Reset()                               {}
func (benchSession) Logout() error                        { return nil }
func (benchSession) Mail(string, *smtp.MailOptions) error { return nil }
func (benchSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (ss benchSession) Data(r io.Reader) error {
	if _, err := io.Copy(io.Discard, r); err != nil {
		return err
	}
	ss.s.msgs.Add(1)
	return nil
}
