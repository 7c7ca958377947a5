// Package dnsresolve finds the hosts behind an SMTP next hop in the DNS, as
// Postfix's smtp(8) does: MX records in preference order (random within a
// preference), the destination itself when it has none, a null MX (RFC
// 7505) as a permanent failure, and the addresses of each host. It asks
// name servers directly (miekg/dns), not the system resolver, so that tests
// and the mailtee-only dns_servers parameter can point it anywhere.
package dnsresolve

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/idna"
)

// Resolver looks up the hosts behind an SMTP next hop in the DNS, with
// miekg/dns rather than the system resolver, so that tests (and the
// mailtee-only dns_servers parameter) can point it at any server.
type Resolver struct {
	// Servers are the name servers, "host:port", asked in order. Empty
	// means the nameserver lines of /etc/resolv.conf.
	Servers []string
	// Timeout bounds one query to one server; 0 means 5s, the resolver
	// library's default. Each server is tried twice, as with the
	// resolv.conf default "attempts:2".
	Timeout time.Duration

	once sync.Once
	sys  []string
}

// Host is one mail server: an MX host, or the destination itself when it
// has no MX records or the MX lookup was suppressed.
type Host struct {
	Name  string // host name, without the trailing dot; an IP literal as written
	Pref  uint16 // MX preference; 0 without MX
	Addrs []netip.Addr
}

// Error is a failed lookup, worded as Postfix's smtp(8) logs it:
//
//	Host or domain name not found. Name service error for name=example.invalid type=A: Host not found
type Error struct {
	Temporary bool
	Status    string // enhanced status code: "5.4.4", "4.4.3", "5.1.0"
	Text      string

	notFound bool // NXDOMAIN or no record of the type (Postfix's DNS_NOTFOUND)
}

func (e *Error) Error() string { return e.Text }

// EnhancedCode returns the RFC 3463 status code, for delivery logs.
func (e *Error) EnhancedCode() string { return e.Status }

// IsTemporary reports whether a lookup may succeed later. Errors that
// are not an *Error (a canceled context, say) count as temporary: mail is
// never bounced on an error nobody classified.
func IsTemporary(err error) bool {
	var e *Error
	if errors.As(err, &e) {
		return e.Temporary
	}
	return err != nil
}

// SplitNexthop takes an SMTP next hop apart: "[host]:port", "[host]",
// "host:port" or "host". bracketed reports the "[...]" form, which
// suppresses MX lookups; an "IPv6:" prefix inside the brackets is dropped.
// port is "" when none is given.
func SplitNexthop(nexthop string) (host, port string, bracketed bool) {
	s := strings.TrimSpace(nexthop)
	if strings.HasPrefix(s, "[") {
		if i := strings.IndexByte(s, ']'); i > 0 {
			host, rest := s[1:i], s[i+1:]
			if len(host) > 5 && strings.EqualFold(host[:5], "ipv6:") {
				host = host[5:]
			}
			return host, strings.TrimPrefix(rest, ":"), true
		}
	}
	if _, err := netip.ParseAddr(s); err == nil {
		return s, "", false // a bare IPv6 address has colons but no port
	}
	if i := strings.LastIndexByte(s, ':'); i >= 0 {
		return s[:i], s[i+1:], false
	}
	return s, "", false
}

// Hosts resolves an SMTP next hop the way Postfix's smtp(8) does.
//
//   - "[host]" or "[192.0.2.1]": no MX lookup; the host's A and AAAA
//     records, or the literal address.
//   - "host" with useMX: its MX records by preference, equal
//     preferences shuffled (RFC 5321 section 5.1), each resolved to A and
//     AAAA; MX hosts without an address are skipped. Without MX records,
//     the host's own addresses (the implicit MX).
//   - A port (":25") is allowed and ignored.
//
// NXDOMAIN and "no such record" are permanent errors (5.4.4), as is a
// null MX (RFC 7505, "Domain example.com does not accept mail (nullMX)",
// 5.1.0); SERVFAIL, timeouts and network errors are temporary (4.4.3).
func (r *Resolver) Hosts(ctx context.Context, nexthop string, useMX bool) ([]Host, error) {
	host, _, bracketed := SplitNexthop(nexthop)
	host = strings.TrimSuffix(host, ".")
	if host == "" {
		// A configuration error: defer, as Postfix does when smtp(8) dies
		// on a bad destination.
		return nil, &Error{Temporary: true, Status: "4.3.5", Text: fmt.Sprintf("bad next hop %q: no host name", nexthop)}
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return []Host{{Name: host, Addrs: []netip.Addr{a.Unmap()}}}, nil
	}
	name := host
	if a, err := idna.Lookup.ToASCII(host); err == nil {
		name = a
	}
	if useMX && !bracketed {
		return r.mx(ctx, host, name)
	}
	addrs, err := r.addrs(ctx, name)
	if err != nil {
		return nil, err
	}
	return []Host{{Name: host, Addrs: addrs}}, nil
}

// mx is smtp_domain_addr().
func (r *Resolver) mx(ctx context.Context, domain, name string) ([]Host, error) {
	rrs, err := r.lookup(ctx, name, dns.TypeMX)
	if err != nil {
		if !err.notFound {
			return nil, err
		}
		// No MX: the domain is its own mail host (RFC 5321 5.1).
		addrs, err := r.addrs(ctx, name)
		if err != nil {
			return nil, err
		}
		return []Host{{Name: domain, Addrs: addrs}}, nil
	}
	var mxs []*dns.MX
	for _, rr := range rrs {
		mxs = append(mxs, rr.(*dns.MX))
	}
	if len(mxs) == 1 && mxs[0].Mx == "." {
		return nil, &Error{Status: "5.1.0", Text: fmt.Sprintf("Domain %s does not accept mail (nullMX)", domain)}
	}
	mxs = slices.DeleteFunc(mxs, func(m *dns.MX) bool { return m.Mx == "." })
	rand.Shuffle(len(mxs), func(i, j int) { mxs[i], mxs[j] = mxs[j], mxs[i] })
	slices.SortStableFunc(mxs, func(a, b *dns.MX) int { return int(a.Preference) - int(b.Preference) })

	var hosts []Host
	var soft, hard *Error
	for _, m := range mxs {
		h := strings.TrimSuffix(m.Mx, ".")
		if a, err := netip.ParseAddr(h); err == nil {
			hosts = append(hosts, Host{Name: h, Pref: m.Preference, Addrs: []netip.Addr{a.Unmap()}})
			continue
		}
		addrs, err := r.addrs(ctx, h)
		switch {
		case err == nil:
			hosts = append(hosts, Host{Name: h, Pref: m.Preference, Addrs: addrs})
		case err.Temporary:
			// "A soft error dominates past and future hard errors."
			if soft == nil {
				soft = err
			}
		default:
			hard = err
		}
	}
	if len(hosts) > 0 {
		return hosts, nil
	}
	if soft != nil {
		return nil, soft
	}
	if hard != nil {
		return nil, hard
	}
	return nil, &Error{Status: "5.4.4", Text: fmt.Sprintf("no MX host for %s has a valid address record", domain)}
}

// addrs returns the A and AAAA records of name, IPv4 first.
func (r *Resolver) addrs(ctx context.Context, name string) ([]netip.Addr, *Error) {
	type result struct {
		rrs []dns.RR
		err *Error
	}
	six := make(chan result, 1)
	go func() {
		rrs, err := r.lookup(ctx, name, dns.TypeAAAA)
		six <- result{rrs, err}
	}()
	a, errA := r.lookup(ctx, name, dns.TypeA)
	aaaa := <-six

	var out []netip.Addr
	for _, rr := range append(a, aaaa.rrs...) {
		var ip net.IP
		switch rr := rr.(type) {
		case *dns.A:
			ip = rr.A
		case *dns.AAAA:
			ip = rr.AAAA
		}
		if addr, ok := netip.AddrFromSlice(ip); ok {
			out = append(out, addr.Unmap())
		}
	}
	switch {
	case len(out) > 0:
		return out, nil
	case errA != nil && errA.Temporary:
		return nil, errA
	case aaaa.err != nil && aaaa.err.Temporary:
		return nil, aaaa.err
	case errA != nil:
		return nil, errA
	}
	return nil, aaaa.err
}

// lookup returns the records of type qtype for name, following CNAMEs.
func (r *Resolver) lookup(ctx context.Context, name string, qtype uint16) ([]dns.RR, *Error) {
	fail := func(temporary bool, why string) *Error {
		e := &Error{Temporary: temporary, Status: "5.4.4", notFound: !temporary,
			Text: fmt.Sprintf("Host or domain name not found. Name service error for name=%s type=%s: %s",
				name, dns.TypeToString[qtype], why)}
		if temporary {
			e.Status = "4.4.3"
		}
		return e
	}
	target := dns.Fqdn(name)
	for hops := 0; hops < 8; hops++ {
		q := new(dns.Msg)
		q.SetQuestion(target, qtype)
		q.SetEdns0(1232, false)
		resp, err := r.exchange(ctx, q)
		if err != nil {
			return nil, fail(true, "Host not found, try again")
		}
		if resp.Rcode == dns.RcodeNameError {
			return nil, fail(false, "Host not found")
		}
		var rrs []dns.RR
		rrs, target = chase(resp.Answer, target, qtype)
		if len(rrs) > 0 {
			return rrs, nil
		}
		if target == "" {
			return nil, fail(false, "Host found but no data record of requested type")
		}
		// The answer stopped at a CNAME: ask for its target.
	}
	return nil, fail(false, "CNAME chain too long")
}

// chase follows the CNAME chain from name within one answer and returns
// the records of type qtype at its end, or, when there are none, the name
// the chain ends at if that is another name ("" otherwise).
func chase(answer []dns.RR, name string, qtype uint16) ([]dns.RR, string) {
	start := name
	for range 8 {
		var rrs []dns.RR
		next := ""
		for _, rr := range answer {
			h := rr.Header()
			if !strings.EqualFold(h.Name, name) {
				continue
			}
			if h.Rrtype == qtype {
				rrs = append(rrs, rr)
			} else if c, ok := rr.(*dns.CNAME); ok && next == "" {
				next = c.Target
			}
		}
		if len(rrs) > 0 {
			return rrs, ""
		}
		if next == "" {
			break
		}
		name = next
	}
	if strings.EqualFold(name, start) {
		return nil, ""
	}
	return nil, name
}

// exchange sends q to each server in turn, twice around, until one gives
// an answer (NOERROR or NXDOMAIN). UDP first, TCP when the answer is
// truncated.
func (r *Resolver) exchange(ctx context.Context, q *dns.Msg) (*dns.Msg, error) {
	servers := r.servers()
	timeout := r.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	var last error = errors.New("no name servers")
	for range 2 {
		for _, s := range servers {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			c := &dns.Client{Net: "udp", Timeout: timeout}
			resp, _, err := c.ExchangeContext(ctx, q, s)
			if err == nil && resp.Truncated {
				c.Net = "tcp"
				resp, _, err = c.ExchangeContext(ctx, q, s)
			}
			switch {
			case err != nil:
				last = err
			case resp.Rcode == dns.RcodeSuccess || resp.Rcode == dns.RcodeNameError:
				return resp, nil
			default:
				last = fmt.Errorf("%s: %s", s, dns.RcodeToString[resp.Rcode])
			}
		}
	}
	return nil, last
}

func (r *Resolver) servers() []string {
	if len(r.Servers) > 0 {
		return r.Servers
	}
	r.once.Do(func() {
		cfg, err := dns.ClientConfigFromFile("/etc/resolv.conf")
		if err != nil || len(cfg.Servers) == 0 {
			// The resolver library's default when resolv.conf names none.
			r.sys = []string{"127.0.0.1:53"}
			return
		}
		for _, s := range cfg.Servers {
			r.sys = append(r.sys, net.JoinHostPort(s, cfg.Port))
		}
	})
	return r.sys
}

// ParsePort converts a next hop's port or service name ("25", "smtp",
// "submission") to a number.
func ParsePort(s string) (int, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n <= 0 || n > 65535 {
			return 0, fmt.Errorf("bad network port: %s", s)
		}
		return n, nil
	}
	n, err := net.LookupPort("tcp", s)
	if err != nil {
		return 0, fmt.Errorf("unknown service: %s/tcp", s)
	}
	return n, nil
}
