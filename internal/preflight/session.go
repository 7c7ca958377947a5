package preflight

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/textproto"
	"strings"
	"time"
)

// session is one SMTP client connection. Preflight speaks SMTP itself,
// with net/textproto, rather than through deliver's client: it must see
// every reply as it comes (the greeting, EHLO, each RCPT), keep one
// transaction open over many RCPTs without DATA, and look at the TLS
// handshake, which a delivery client hides.
type session struct {
	conn    net.Conn
	tp      *textproto.Conn
	ext     map[string]string // EHLO keywords, upper case, and their parameters
	timeout time.Duration
	local   netip.Addr
	host    string // the server's name, for texts
	addr    netip.AddrPort
	left    int // what reply may still read (maxReply each)
}

// where is "name[ip]:port", as Postfix names a server.
func (s *session) where() string {
	return fmt.Sprintf("%s[%s]:%d", s.host, s.addr.Addr(), s.addr.Port())
}

// dial connects to addr from bind ("" lets the kernel choose).
func dial(ctx context.Context, bind string, addr netip.AddrPort, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout}
	if bind != "" {
		b, err := netip.ParseAddr(strings.Trim(bind, "[]"))
		if err != nil {
			return nil, fmt.Errorf("bad bind address %q: %v", bind, err)
		}
		d.LocalAddr = &net.TCPAddr{IP: b.AsSlice()}
	}
	return d.DialContext(ctx, "tcp", addr.String())
}

// maxReply bounds what is read of one reply, continuation lines
// included: real servers' replies are well under a kilobyte, and a
// hostile one must not make preflight keep all it sends until the
// command timeout (textproto itself reads lines of any length).
const maxReply = 64 << 10

// errReplyTooLong is the error of a reply longer than maxReply.
var errReplyTooLong = fmt.Errorf("reply too long (over %d bytes): not an SMTP server, or a hostile one", maxReply)

// capped is the connection as replies read it: at most left more bytes.
type capped struct {
	net.Conn
	left *int
}

func (c capped) Read(p []byte) (int, error) {
	if *c.left <= 0 {
		return 0, errReplyTooLong
	}
	if len(p) > *c.left {
		p = p[:*c.left]
	}
	n, err := c.Conn.Read(p)
	*c.left -= n
	return n, err
}

func newSession(conn net.Conn, host string, addr netip.AddrPort, timeout time.Duration) *session {
	s := &session{conn: conn, timeout: timeout, host: host, addr: addr}
	s.tp = textproto.NewConn(capped{conn, &s.left})
	if ap, err := netip.ParseAddrPort(conn.LocalAddr().String()); err == nil {
		s.local = ap.Addr().Unmap()
	}
	return s
}

// reply reads one reply, continuation lines included.
func (s *session) reply() (Reply, error) {
	s.conn.SetDeadline(time.Now().Add(s.timeout))
	s.left = maxReply
	code, msg, err := s.tp.ReadResponse(0)
	if errors.Is(err, errReplyTooLong) {
		return Reply{}, errReplyTooLong
	}
	var pe textproto.ProtocolError
	if err != nil && (errors.As(err, &pe) || code == 0) {
		if len(err.Error()) > 512 {
			// textproto quotes the whole line it could not read.
			return Reply{}, fmt.Errorf("%.200s... (malformed reply)", err.Error())
		}
		return Reply{}, err
	}
	return Reply{Code: code, Text: msg}, nil
}

// cmd sends one command line and reads its reply.
func (s *session) cmd(line string) (Reply, error) {
	s.conn.SetDeadline(time.Now().Add(s.timeout))
	if err := s.tp.PrintfLine("%s", line); err != nil {
		return Reply{}, err
	}
	return s.reply()
}

// hello sends EHLO, and HELO when EHLO is refused, and records the
// extensions offered.
func (s *session) hello(name string) (Reply, error) {
	r, err := s.cmd("EHLO " + name)
	if err != nil {
		return r, err
	}
	if r.Code != 250 {
		if r2, err := s.cmd("HELO " + name); err == nil && r2.Code == 250 {
			s.ext = map[string]string{}
			return r2, nil
		}
		return r, nil
	}
	s.ext = map[string]string{}
	lines := strings.Split(r.Text, "\n")
	for _, l := range lines[1:] {
		k, v, _ := strings.Cut(strings.TrimSpace(l), " ")
		s.ext[strings.ToUpper(k)] = v
	}
	return r, nil
}

// startTLS sends STARTTLS and makes the handshake. The reply is the
// server's answer to STARTTLS; err a failed handshake (the connection is
// then unusable).
func (s *session) startTLS(cfg *tls.Config) (Reply, *tls.ConnectionState, error) {
	r, err := s.cmd("STARTTLS")
	if err != nil || r.Code != 220 {
		return r, nil, err
	}
	tc := tls.Client(s.conn, cfg)
	tc.SetDeadline(time.Now().Add(s.timeout))
	if err := tc.Handshake(); err != nil {
		return r, nil, err
	}
	s.conn = tc
	s.tp = textproto.NewConn(capped{tc, &s.left})
	st := tc.ConnectionState()
	return r, &st, nil
}

// data sends the message after DATA, dot-stuffed, and returns the reply
// to its end.
func (s *session) data(msg string) (Reply, error) {
	r, err := s.cmd("DATA")
	if err != nil || r.Code != 354 {
		return r, err
	}
	s.conn.SetDeadline(time.Now().Add(s.timeout))
	w := s.tp.DotWriter()
	if _, err := w.Write([]byte(msg)); err != nil {
		return Reply{}, err
	}
	if err := w.Close(); err != nil {
		return Reply{}, err
	}
	return s.reply()
}

// quit ends the session politely, not waiting long for the answer.
func (s *session) quit() {
	s.timeout = min(s.timeout, 5*time.Second)
	s.cmd("QUIT")
	s.conn.Close()
}

// udpSource is the address the kernel would send from to reach dst: a UDP
// "connect" sends nothing but picks the route and the source address.
func udpSource(dst netip.Addr) (netip.Addr, error) {
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, 25)))
	if err != nil {
		return netip.Addr{}, err
	}
	defer c.Close()
	ap, err := netip.ParseAddrPort(c.LocalAddr().String())
	if err != nil {
		return netip.Addr{}, err
	}
	return ap.Addr().Unmap(), nil
}
