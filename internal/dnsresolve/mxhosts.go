package dnsresolve

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/miekg/dns"
	"golang.org/x/net/idna"
)

// MXHosts returns the names of domain's MX hosts in preference order,
// ties by name so that the answer is the same each time (it names the
// receiving site, see internal/provider; Hosts shuffles ties for
// delivery). No address is looked up. A domain without MX records gives
// no names and no error; a domain that does not exist, and a null MX
// (RFC 7505), give the permanent errors Hosts gives, and a failed lookup
// a temporary one.
func (r *Resolver) MXHosts(ctx context.Context, domain string) ([]string, error) {
	host := strings.TrimSuffix(strings.TrimSpace(domain), ".")
	if host == "" {
		return nil, &Error{Temporary: true, Status: "4.3.5", Text: fmt.Sprintf("bad domain %q: no name", domain)}
	}
	name := host
	if a, err := idna.Lookup.ToASCII(host); err == nil {
		name = a
	}
	rrs, err := r.lookup(ctx, name, dns.TypeMX)
	if err != nil {
		// lookup words NXDOMAIN "...: Host not found" and NODATA "...:
		// Host found but no data record of requested type"; only the
		// second is a domain without MX records.
		if err.notFound && !strings.HasSuffix(err.Text, ": Host not found") {
			return nil, nil
		}
		return nil, err
	}
	var mxs []*dns.MX
	for _, rr := range rrs {
		mxs = append(mxs, rr.(*dns.MX))
	}
	if len(mxs) == 1 && mxs[0].Mx == "." {
		return nil, &Error{Status: "5.1.0", Text: fmt.Sprintf("Domain %s does not accept mail (nullMX)", host)}
	}
	slices.SortFunc(mxs, func(a, b *dns.MX) int {
		return cmp.Or(cmp.Compare(a.Preference, b.Preference), cmp.Compare(strings.ToLower(a.Mx), strings.ToLower(b.Mx)))
	})
	var out []string
	for _, m := range mxs {
		if h := strings.TrimSuffix(m.Mx, "."); h != "" && !slices.Contains(out, h) {
			out = append(out, h)
		}
	}
	return out, nil
}
