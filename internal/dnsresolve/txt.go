package dnsresolve

import (
	"context"
	"strings"

	"github.com/miekg/dns"
)

// TXT returns the TXT records of name, each one's strings joined (as SPF
// reads them, RFC 7208 3.3). A name without TXT records gives none and no
// error; a name that does not exist gives a permanent *Error, a failed
// lookup a temporary one.
func (r *Resolver) TXT(ctx context.Context, name string) ([]string, error) {
	rrs, err := r.lookup(ctx, strings.TrimSuffix(name, "."), dns.TypeTXT)
	if err != nil {
		if err.notFound && !strings.HasSuffix(err.Text, ": Host not found") {
			return nil, nil
		}
		return nil, err
	}
	var out []string
	for _, rr := range rrs {
		if t, ok := rr.(*dns.TXT); ok {
			out = append(out, strings.Join(t.Txt, ""))
		}
	}
	return out, nil
}
