package web

import (
	"net"
	"net/netip"
	"sync"
)

// limitListener caps open connections in all (further ones wait in the
// kernel's backlog, as with x/net/netutil's LimitListener) and per
// client address (further ones are closed at once), so that one
// client, even one outside metrics_networks holding connections until
// ReadHeaderTimeout, cannot keep the others out.
type limitListener struct {
	net.Listener
	slots     chan struct{}
	perClient int

	mu   sync.Mutex
	open map[netip.Addr]int
}

func newLimitListener(l net.Listener, total, perClient int) *limitListener {
	return &limitListener{Listener: l, slots: make(chan struct{}, total), perClient: perClient, open: map[netip.Addr]int{}}
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		l.slots <- struct{}{}
		c, err := l.Listener.Accept()
		if err != nil {
			<-l.slots
			return nil, err
		}
		a := throttleKey(addrOf(c.RemoteAddr()))
		l.mu.Lock()
		if l.open[a] >= l.perClient {
			l.mu.Unlock()
			c.Close()
			<-l.slots
			continue
		}
		l.open[a]++
		l.mu.Unlock()
		return &limitConn{Conn: c, l: l, addr: a}, nil
	}
}

func addrOf(a net.Addr) netip.Addr {
	if t, ok := a.(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(t.IP)
		return ip.Unmap()
	}
	return netip.Addr{}
}

type limitConn struct {
	net.Conn
	l    *limitListener
	addr netip.Addr
	once sync.Once
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.l.mu.Lock()
		if c.l.open[c.addr]--; c.l.open[c.addr] <= 0 {
			delete(c.l.open, c.addr)
		}
		c.l.mu.Unlock()
		<-c.l.slots
	})
	return err
}
