package deliver

import (
	"slices"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The connection cache, as Postfix's smtp_connection_cache_on_demand:
// after a transaction, the session is kept under its next hop for
// MaxIdle, and the next Deliver to that next hop takes it (one session per
// call; concurrent calls open their own) if it is still alive: the
// server has neither closed it nor said anything since (a 421 before
// closing), which a peek at the socket tells without the round trip of
// a NOOP (Postfix does not probe either).

// release caches s, or closes it when caching is off.
func (c *Client) release(s *session) {
	c.mu.Lock()
	if c.MaxIdle <= 0 || c.closed {
		c.mu.Unlock()
		s.close()
		return
	}
	if c.idle == nil {
		c.idle = map[string][]*session{}
	}
	s.idleSince = time.Now()
	c.idle[s.key] = append(c.idle[s.key], s)
	s.timer = time.AfterFunc(c.MaxIdle, func() {
		if c.remove(s) {
			s.close()
		}
	})
	c.mu.Unlock()
}

// remove takes s out of the cache and reports whether it was there.
func (c *Client) remove(s *session) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	list := c.idle[s.key]
	i := slices.Index(list, s)
	if i < 0 {
		return false
	}
	c.idle[s.key] = slices.Delete(list, i, i+1)
	if len(c.idle[s.key]) == 0 {
		delete(c.idle, s.key)
	}
	return true
}

// takeIdle returns a live cached session for key that fits (nil: any),
// or nil. Sessions that do not fit stay cached for other deliveries;
// those that idled too long, outlived MaxLifetime or were closed by the
// server are closed.
func (c *Client) takeIdle(key string, fits func(*session) bool) *session {
	for {
		c.mu.Lock()
		list := c.idle[key]
		var s *session
		for i := len(list) - 1; i >= 0; i-- { // the most recently used first
			if fits == nil || fits(list[i]) {
				s = list[i]
				list = slices.Delete(list, i, i+1)
				break
			}
		}
		if s == nil {
			c.mu.Unlock()
			return nil
		}
		if len(list) == 0 {
			delete(c.idle, key)
		} else {
			c.idle[key] = list
		}
		c.mu.Unlock()
		s.timer.Stop()
		if time.Since(s.idleSince) > c.MaxIdle || c.tooOld(s) || !s.alive() {
			s.close()
			continue
		}
		return s
	}
}

// Close closes the cached connections. Deliver still works afterwards,
// but caches no more connections.
func (c *Client) Close() error {
	c.mu.Lock()
	c.closed = true
	idle := c.idle
	c.idle = nil
	c.mu.Unlock()
	for _, list := range idle {
		for _, s := range list {
			s.timer.Stop()
			s.close()
		}
	}
	return nil
}

// alive reports whether nothing is waiting to be read on the session's
// socket, neither data nor end of file: what a server that closes an idle
// session leaves. Where the socket cannot be peeked at, a NOOP decides.
func (s *session) alive() bool {
	sc, ok := s.raw.(syscall.Conn)
	if !ok {
		return s.cl.Noop() == nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return s.cl.Noop() == nil
	}
	var peekErr error
	var n int
	err = rc.Read(func(fd uintptr) bool {
		var b [1]byte
		n, _, peekErr = unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		return true // never wait for the socket to become readable
	})
	return err == nil && n <= 0 && (peekErr == unix.EAGAIN || peekErr == unix.EWOULDBLOCK)
}
