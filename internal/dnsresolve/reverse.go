package dnsresolve

import (
	"context"
	"net/netip"
	"strings"

	"github.com/miekg/dns"
)

// PTR returns the names that addr's reverse DNS (in-addr.arpa, ip6.arpa)
// gives, without trailing dots. An address without a PTR record gives no
// names and no error (NXDOMAIN or no record: what a receiving site sees
// as "no reverse DNS"); a failed lookup is a temporary *Error.
func (r *Resolver) PTR(ctx context.Context, addr netip.Addr) ([]string, error) {
	arpa, err := dns.ReverseAddr(addr.Unmap().String())
	if err != nil {
		return nil, &Error{Status: "5.1.0", Text: "bad address " + addr.String()}
	}
	rrs, lerr := r.lookup(ctx, arpa, dns.TypePTR)
	if lerr != nil {
		if lerr.notFound {
			return nil, nil
		}
		return nil, lerr
	}
	var out []string
	for _, rr := range rrs {
		if p, ok := rr.(*dns.PTR); ok {
			out = append(out, strings.TrimSuffix(p.Ptr, "."))
		}
	}
	return out, nil
}

// Addrs returns the A and AAAA records of name, IPv4 first, as Hosts
// resolves a host without MX lookup; for forward-confirmed reverse DNS.
func (r *Resolver) Addrs(ctx context.Context, name string) ([]netip.Addr, error) {
	addrs, err := r.addrs(ctx, strings.TrimSuffix(name, "."))
	if err != nil {
		return nil, err
	}
	return addrs, nil
}
