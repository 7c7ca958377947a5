package harness

import (
	"crypto/tls"
	"io"
	"log"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// Sink is an SMTP server (go-smtp, in the test process) standing for a
// next hop: it records what it receives, counts deliveries per recipient
// (lower-cased), and can be told to refuse or stall.
type Sink struct {
	Addr string // where it listens

	srv      *smtp.Server
	l        net.Listener
	mu       sync.Mutex
	msgs     []Sunk
	byRcpt   map[string]int
	rcptErr  map[string]*smtp.SMTPError // per recipient answer
	dataErr  *smtp.SMTPError            // answer to every DATA, when set
	delay    time.Duration              // before answering DATA
	tlsState []bool
	conns    []ConnSpan // every connection accepted, by number - 1
}

// Sunk is one message a Sink received.
type Sunk struct {
	From  string
	To    []string
	Data  string
	Local string // client's source address
	UTF8  bool   // MAIL FROM had SMTPUTF8

	// When and on which connection (sink_times.go): pacing tests
	// compare these with Postfix's.
	Conn   int       // connection number, from 1 in accept order
	MailAt time.Time // MAIL FROM received
	DataAt time.Time // end of DATA received (before any SetDelay)
	DoneAt time.Time // DATA answered (after any SetDelay)
}

// NewSink starts a sink on addr ("" for 127.0.0.1:0), offering STARTTLS
// with tlsCfg when not nil; configure, if given, adjusts the server
// before it starts (limits, timeouts). It is closed at test cleanup.
func NewSink(t testing.TB, addr string, tlsCfg *tls.Config, configure ...func(*smtp.Server)) *Sink {
	t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	s := &Sink{rcptErr: map[string]*smtp.SMTPError{}, byRcpt: map[string]int{}}
	s.srv = smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &sinkSession{s: s, c: c}, nil
	}))
	s.srv.Domain = "sink.test.example"
	s.srv.ErrorLog = log.New(io.Discard, "", 0)
	s.srv.TLSConfig = tlsCfg
	s.srv.AllowInsecureAuth = true
	for _, f := range configure {
		f(s.srv)
	}
	l := &countingListener{Listener: Listen(t, addr), s: s}
	s.l, s.Addr = l, l.Addr().String()
	go s.srv.Serve(l)
	t.Cleanup(func() { s.srv.Close() })
	return s
}

// Listen listens on the TCP address addr, trying for 5 s: a next hop
// that went down and comes back takes its old port, which a port just
// released may still hold.
func Listen(t testing.TB, addr string) net.Listener {
	t.Helper()
	for try := 1; ; try++ {
		l, err := net.Listen("tcp", addr)
		if err == nil {
			return l
		}
		if try == 50 {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Port is the port the sink listens on.
func (s *Sink) Port() int { return s.l.Addr().(*net.TCPAddr).Port }

// Close stops the sink (the next hop goes down).
func (s *Sink) Close() { s.srv.Close() }

// Messages returns a copy of what was received so far.
func (s *Sink) Messages() []Sunk {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Sunk(nil), s.msgs...)
}

// Total is the number of messages (DATA transactions) received.
func (s *Sink) Total() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.msgs)
}

// Count returns how many copies rcpt received.
func (s *Sink) Count(rcpt string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byRcpt[strings.ToLower(rcpt)]
}

// Counts returns a copy of the per-recipient counts.
func (s *Sink) Counts() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := make(map[string]int, len(s.byRcpt))
	for k, v := range s.byRcpt {
		m[k] = v
	}
	return m
}

// TLS says, per message received, whether it came over TLS.
func (s *Sink) TLS() []bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]bool(nil), s.tlsState...)
}

// SetRcptErr makes the sink answer err to RCPT TO:<rcpt> (nil clears).
func (s *Sink) SetRcptErr(rcpt string, err *smtp.SMTPError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil {
		delete(s.rcptErr, strings.ToLower(rcpt))
	} else {
		s.rcptErr[strings.ToLower(rcpt)] = err
	}
}

// SetDataErr makes the sink answer err to every DATA (nil clears); such
// messages are not recorded.
func (s *Sink) SetDataErr(err *smtp.SMTPError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dataErr = err
}

// SetDelay makes the sink wait d before answering DATA.
func (s *Sink) SetDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delay = d
}

type sinkSession struct {
	s      *Sink
	c      *smtp.Conn
	from   string
	to     []string
	utf8   bool
	mailAt time.Time
}

func (ss *sinkSession) Reset()        { ss.from, ss.to = "", nil }
func (ss *sinkSession) Logout() error { return nil }
func (ss *sinkSession) Mail(from string, o *smtp.MailOptions) error {
	ss.from = from
	ss.utf8 = o != nil && o.UTF8
	ss.mailAt = time.Now()
	return nil
}
func (ss *sinkSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	ss.s.mu.Lock()
	e := ss.s.rcptErr[strings.ToLower(to)]
	ss.s.mu.Unlock()
	if e != nil {
		return e
	}
	ss.to = append(ss.to, to)
	return nil
}
func (ss *sinkSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	dataAt := time.Now()
	ss.s.mu.Lock()
	delay, derr := ss.s.delay, ss.s.dataErr
	ss.s.mu.Unlock()
	if delay > 0 {
		time.Sleep(delay)
	}
	if derr != nil {
		return derr
	}
	_, isTLS := ss.c.TLSConnectionState()
	ss.s.mu.Lock()
	ss.s.msgs = append(ss.s.msgs, Sunk{From: ss.from, To: append([]string(nil), ss.to...), Data: string(b), Local: ss.c.Conn().RemoteAddr().String(), UTF8: ss.utf8,
		Conn: connNumber(ss.c.Conn()), MailAt: ss.mailAt, DataAt: dataAt, DoneAt: time.Now()})
	for _, r := range ss.to {
		ss.s.byRcpt[strings.ToLower(r)]++
	}
	ss.s.tlsState = append(ss.s.tlsState, isTLS)
	ss.s.mu.Unlock()
	return nil
}
