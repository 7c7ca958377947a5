package deliver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mailtee/mailtee/internal/dnsresolve"
)

// target is one address to connect to.
type target struct {
	name string     // host name, for texts
	ip   netip.Addr // for TCP
	port int
	path string // UNIX-domain socket, for LMTP
}

func (t target) namaddr() string {
	if t.path != "" {
		return t.name + "[" + t.path + "]"
	}
	return t.name + "[" + t.ip.String() + "]"
}

func (t target) relay() string {
	if t.path != "" {
		return t.namaddr()
	}
	return t.namaddr() + ":" + strconv.Itoa(t.port)
}

// destination is one element of a next-hop list.
type destination struct {
	text string // as written, for the resolver
	path string // LMTP "unix:" socket
	port int
	mx   bool
}

func (c *Client) destinations(nexthop string) ([]destination, error) {
	var out []destination
	for _, el := range strings.FieldsFunc(nexthop, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
		if c.LMTP {
			// Only lmtp(8) knows these prefixes; for smtp(8) they would
			// be host names.
			if p, ok := strings.CutPrefix(el, "unix:"); ok {
				if c.SocketDir != "" && !filepath.IsAbs(p) {
					p = filepath.Join(c.SocketDir, p)
				}
				out = append(out, destination{text: el, path: p})
				continue
			}
			el = strings.TrimPrefix(el, "inet:")
		}
		host, port, bracketed := dnsresolve.SplitNexthop(el)
		if host == "" {
			return nil, fmt.Errorf("bad next hop %q", nexthop)
		}
		if port == "" {
			port = c.Port
		}
		if port == "" {
			port = "25"
			if c.LMTP {
				port = "24"
			}
		}
		n, err := dnsresolve.ParsePort(port)
		if err != nil {
			return nil, fmt.Errorf("%v for destination: %s", err, el)
		}
		out = append(out, destination{text: el, port: n, mx: !c.LMTP && !bracketed})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("empty next hop")
	}
	return out, nil
}

// targets resolves a destination to the addresses to try, in order.
func (c *Client) targets(ctx context.Context, dst destination) ([]target, *Error) {
	if dst.path != "" {
		return []target{{name: c.helo(), path: dst.path}}, nil
	}
	r := c.Resolver
	if r == nil {
		r = &c.sysResolver
	}
	hosts, err := r.Hosts(ctx, dst.text, dst.mx)
	if err != nil {
		var re *dnsresolve.Error
		if errors.As(err, &re) {
			return nil, &Error{Permanent: !re.Temporary, Enhanced: re.Status, Text: re.Text, Relay: "none"}
		}
		return nil, tempf("none", "4.4.3", "%v", err)
	}
	var out []target
	for _, h := range hosts {
		for _, a := range h.Addrs {
			out = append(out, target{name: h.Name, ip: a, port: dst.port})
		}
	}
	return out, nil
}

func parseBind(s string) (netip.Addr, error) {
	if s == "" {
		return netip.Addr{}, nil
	}
	a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]"))
	if err != nil {
		return netip.Addr{}, fmt.Errorf("bad smtp_bind_address %q: %v", s, err)
	}
	return a, nil
}

// dial connects to t, from the bind address if one is set.
func (c *Client) dial(ctx context.Context, t target) (net.Conn, *Error) {
	timeout := c.ConnectTimeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	d := net.Dialer{Timeout: timeout}
	if t.path != "" {
		conn, err := d.DialContext(ctx, "unix", t.path)
		if err != nil {
			return nil, tempf(t.relay(), "4.4.1", "connect to %s: %s", t.namaddr(), Strerror(err))
		}
		return conn, nil
	}
	bind := c.BindAddr
	if t.ip.Is6() {
		bind = c.BindAddr6
	}
	addr := netip.AddrPortFrom(t.ip, uint16(t.port)).String()
	if b, _ := parseBind(bind); b.IsValid() {
		d.LocalAddr = &net.TCPAddr{IP: b.AsSlice()}
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err == nil || !isBindError(err) {
			if err != nil {
				return nil, c.connectError(t, err)
			}
			return conn, nil
		}
		if c.BindEnforce {
			return nil, tempf("none", "4.4.0", "server configuration error: bind %s: %s", bind, Strerror(err))
		}
		// Postfix warns and connects from another address.
		c.log().Warn("bind failed; connecting from another address", "bind", bind, "err", Strerror(err), "server", t.relay())
		d.LocalAddr = nil
	}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, c.connectError(t, err)
	}
	return conn, nil
}

func (c *Client) connectError(t target, err error) *Error {
	// Postfix logs relay=none for a server it could not reach.
	return tempf("none", "4.4.1", "connect to %s:%d: %s", t.namaddr(), t.port, Strerror(err))
}

// isBindError reports a failure to bind to the source address, which is
// EADDRNOTAVAIL when this host does not have it.
func isBindError(err error) bool {
	return errors.Is(err, syscall.EADDRNOTAVAIL)
}
