package harness

import (
	"crypto/tls"
	"net"
	"sync"
	"time"
)

// What the pacing tests (test/e2e/pacing_test.go) need of a Sink besides
// the messages: when each connection was open, so that the number of
// connections at once can be counted, and which connection carried each
// transaction (Sunk.Conn), so that reuse can be counted.

// ConnSpan is one connection the sink accepted: Closed is zero while it
// is open.
type ConnSpan struct {
	Opened, Closed time.Time
}

// Conns returns the connections accepted so far, in accept order
// (Sunk.Conn - 1 indexes it).
func (s *Sink) Conns() []ConnSpan {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]ConnSpan(nil), s.conns...)
}

// countingListener numbers the connections it accepts and records when
// each opens and closes.
type countingListener struct {
	net.Listener
	s *Sink
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.s.mu.Lock()
	l.s.conns = append(l.s.conns, ConnSpan{Opened: time.Now()})
	n := len(l.s.conns)
	l.s.mu.Unlock()
	return &countedConn{Conn: c, n: n, s: l.s}, nil
}

type countedConn struct {
	net.Conn
	n    int
	s    *Sink
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() {
		c.s.mu.Lock()
		c.s.conns[c.n-1].Closed = time.Now()
		c.s.mu.Unlock()
	})
	return c.Conn.Close()
}

// connNumber is the number countingListener gave the connection under
// c (after STARTTLS, under the TLS layer), 0 if none.
func connNumber(c net.Conn) int {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if cc, ok := c.(*countedConn); ok {
		return cc.n
	}
	return 0
}
