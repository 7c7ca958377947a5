// Command smtplat measures an SMTP server's DATA→250 latency: the time
// from writing the end of a message ("\r\n.\r\n") to reading the server's
// complete 250 reply — for a queueing MTA, the time it takes to put the
// message safely on disk. bench/compare.sh runs it next to smtp-source so
// that the latency is measured under load.
//
// Usage:
//
//	smtplat -addr 127.0.0.1:PORT [-n COUNT] [-t DURATION] [-c SESSIONS]
//	        [-size BYTES] [-from ADDR] [-to ADDR] [-helo NAME]
//
// It opens -c sessions (default 1) to -addr, which must be a loopback
// address, sends EHLO once per session, then message after message (MAIL
// FROM, RCPT TO, DATA, a body of -size bytes), without pipelining, until
// -n messages have been sent, -t has passed, or it gets SIGTERM/SIGINT. A
// message in flight when the time is up or the signal comes is finished
// (its reply is awaited, bounded by -reply-timeout), so that the count of
// accepted messages is exact. Then it prints one line:
//
//	p50=1.84ms p99=7.02ms max=12.50ms n=812 fail=0 unknown=0
//
// n counts the messages that got 250 after DATA (the ones the server
// queued: the caller adds them to what it expects to be delivered);
// fail those refused at any step (not queued); unknown those whose fate
// is unknown because the connection failed after the end of the message
// was sent. The exit status is 0 when unknown is 0 and at least one
// session could be opened, else 1.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/textproto"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

type options struct {
	addr         string
	n            int
	dur          time.Duration
	sessions     int
	size         int
	from, to     string
	helo         string
	replyTimeout time.Duration
}

// result is what a run measured.
type result struct {
	lat     []time.Duration // DATA→250 of each accepted message
	fail    int             // refused: not queued
	unknown int             // connection lost after the final dot
	opened  int             // sessions that got past EHLO
	errs    []string        // first error of each session that ended on one
}

func main() {
	var o options
	flag.StringVar(&o.addr, "addr", "", "server address, `IP:PORT` (loopback only)")
	flag.IntVar(&o.n, "n", 1000, "at most this many messages")
	flag.DurationVar(&o.dur, "t", time.Minute, "start no message after this `duration`")
	flag.IntVar(&o.sessions, "c", 1, "concurrent sessions")
	flag.IntVar(&o.size, "size", 2048, "message size in `bytes` (headers and body)")
	flag.StringVar(&o.from, "from", "probe@bench.example", "envelope sender")
	flag.StringVar(&o.to, "to", "rcpt@sink.example", "envelope recipient")
	flag.StringVar(&o.helo, "helo", "smtplat.bench.example", "EHLO name")
	flag.DurationVar(&o.replyTimeout, "reply-timeout", time.Minute, "bound on waiting for each reply")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: smtplat -addr 127.0.0.1:PORT [-n COUNT] [-t DURATION] [-c SESSIONS] [-size BYTES] [-from ADDR] [-to ADDR]\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 0 {
		flag.Usage()
		os.Exit(2)
	}
	if err := o.check(); err != nil {
		fmt.Fprintln(os.Stderr, "smtplat:", err)
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	r := run(ctx, o)
	for _, e := range r.errs {
		fmt.Fprintln(os.Stderr, "smtplat:", e)
	}
	fmt.Println(r.summary())
	if r.unknown > 0 || r.opened == 0 {
		os.Exit(1)
	}
}

func (o *options) check() error {
	if err := loopbackOnly(o.addr); err != nil {
		return err
	}
	switch {
	case o.n < 1:
		return errors.New("-n must be at least 1")
	case o.sessions < 1:
		return errors.New("-c must be at least 1")
	case o.dur <= 0:
		return errors.New("-t must be positive")
	case o.replyTimeout <= 0:
		return errors.New("-reply-timeout must be positive")
	case o.size < 0 || o.size > 64<<20:
		return errors.New("-size must be between 0 and 64 MiB")
	}
	for _, a := range []string{o.from, o.to, o.helo} {
		if a == "" || strings.ContainsAny(a, "\r\n<> ") {
			return fmt.Errorf("bad address or name %q", a)
		}
	}
	return nil
}

// loopbackOnly accepts an IP:PORT whose IP is a loopback address: this
// tool puts load on a server and must not be pointed anywhere else.
func loopbackOnly(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("-addr %q: %v", addr, err)
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("-addr %q: not a loopback IP address (only 127.0.0.0/8 or ::1 are allowed)", addr)
	}
	if port == "" || port == "0" {
		return fmt.Errorf("-addr %q: no port", addr)
	}
	return nil
}

// run sends the messages and collects the latencies.
func run(ctx context.Context, o options) *result {
	deadline := time.Now().Add(o.dur)
	body := message(o)
	var claimed atomic.Int64
	var mu sync.Mutex
	r := &result{}
	var wg sync.WaitGroup
	for range o.sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := session{o: o, body: body}
			err := s.loop(ctx, deadline, &claimed)
			mu.Lock()
			defer mu.Unlock()
			r.lat = append(r.lat, s.lat...)
			r.fail += s.fail
			r.unknown += s.unknown
			if s.opened {
				r.opened++
			}
			if err != nil {
				r.errs = append(r.errs, err.Error())
			}
		}()
	}
	wg.Wait()
	return r
}

// summary is the line the caller parses.
func (r *result) summary() string {
	if len(r.lat) == 0 {
		return fmt.Sprintf("p50=- p99=- max=- n=0 fail=%d unknown=%d", r.fail, r.unknown)
	}
	d := slices.Clone(r.lat)
	slices.Sort(d)
	return fmt.Sprintf("p50=%s p99=%s max=%s n=%d fail=%d unknown=%d",
		ms(percentile(d, 50)), ms(percentile(d, 99)), ms(d[len(d)-1]), len(d), r.fail, r.unknown)
}

// percentile is the nearest-rank p-th percentile of sorted d.
func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	i := int(math.Ceil(p/100*float64(len(d)))) - 1
	return d[max(0, min(i, len(d)-1))]
}

func ms(d time.Duration) string {
	return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
}

// message is the DATA payload, dot-stuffing unnecessary (no line starts
// with "."), ending in "\r\n.\r\n": about o.size bytes of headers and
// body in lines of at most 78 characters.
func message(o options) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "From: <%s>\r\nTo: <%s>\r\nSubject: smtplat probe\r\nMessage-ID: <%d.smtplat@bench.example>\r\n\r\n",
		o.from, o.to, time.Now().UnixNano())
	const line = "smtplat probe body xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	for b.Len() < o.size {
		n := min(len(line), o.size-b.Len()-2)
		if n < 1 {
			n = 1
		}
		b.WriteString(line[:n])
		b.WriteString("\r\n")
	}
	b.WriteString(".\r\n")
	return []byte(b.String())
}

// session is one SMTP connection and what it measured.
type session struct {
	o       options
	body    []byte
	c       net.Conn
	tp      *textproto.Reader
	w       *bufio.Writer
	opened  bool
	lat     []time.Duration
	fail    int
	unknown int
}

func (s *session) loop(ctx context.Context, deadline time.Time, claimed *atomic.Int64) error {
	if err := s.open(); err != nil {
		return err
	}
	defer s.c.Close()
	for ctx.Err() == nil && time.Now().Before(deadline) {
		if claimed.Add(1) > int64(s.o.n) {
			break
		}
		unknown, err := s.send()
		switch {
		case err == nil:
			continue
		case unknown:
			s.unknown++
			return err
		}
		s.fail++
		var pe *textproto.Error
		if !errors.As(err, &pe) {
			return err
		}
		// Refused: the transaction is over; reset and go on.
		if err := s.cmd("RSET", 250); err != nil {
			return fmt.Errorf("RSET after %v: %v", pe, err)
		}
	}
	s.cmd("QUIT", 221) // best effort
	return nil
}

func (s *session) open() error {
	c, err := net.DialTimeout("tcp", s.o.addr, s.o.replyTimeout)
	if err != nil {
		return err
	}
	s.c = c
	s.tp = textproto.NewReader(bufio.NewReader(c))
	s.w = bufio.NewWriterSize(c, 64<<10)
	c.SetDeadline(time.Now().Add(s.o.replyTimeout))
	if _, _, err := s.tp.ReadResponse(220); err != nil {
		c.Close()
		return fmt.Errorf("greeting: %v", err)
	}
	if err := s.cmd("EHLO "+s.o.helo, 250); err != nil {
		c.Close()
		return fmt.Errorf("EHLO: %v", err)
	}
	s.opened = true
	return nil
}

// cmd sends one command and reads its reply, which must have code.
func (s *session) cmd(line string, code int) error {
	s.c.SetDeadline(time.Now().Add(s.o.replyTimeout))
	if _, err := s.w.WriteString(line + "\r\n"); err != nil {
		return err
	}
	if err := s.w.Flush(); err != nil {
		return err
	}
	_, _, err := s.tp.ReadResponse(code)
	return err
}

// send sends one message. unknown reports an I/O error after the final
// dot was written, which leaves the message's fate unknown; any other
// error means it was not queued (a *textproto.Error is a refusal).
func (s *session) send() (unknown bool, err error) {
	if err := s.cmd("MAIL FROM:<"+s.o.from+">", 250); err != nil {
		return false, err
	}
	if err := s.cmd("RCPT TO:<"+s.o.to+">", 250); err != nil {
		return false, err
	}
	if err := s.cmd("DATA", 354); err != nil {
		return false, err
	}
	// Everything but the final "\r\n.\r\n" first (the body ends in CRLF),
	// then the clock starts with the write of the end of data.
	cut := len(s.body) - len("\r\n.\r\n")
	if _, err := s.w.Write(s.body[:cut]); err != nil {
		return false, err
	}
	if err := s.w.Flush(); err != nil {
		return false, err
	}
	s.c.SetDeadline(time.Now().Add(s.o.replyTimeout))
	start := time.Now()
	_, err = s.c.Write(s.body[cut:])
	if err == nil {
		_, _, err = s.tp.ReadResponse(250)
	}
	took := time.Since(start)
	var pe *textproto.Error
	switch {
	case err == nil:
		s.lat = append(s.lat, took)
		return false, nil
	case errors.As(err, &pe):
		return false, err
	}
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return true, fmt.Errorf("after end of data: %v", err)
}
