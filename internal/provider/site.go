package provider

import (
	"context"
	"net/netip"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/mailtee/mailtee/internal/dnsresolve"
)

// Site is the receiving site behind a destination: the unit that rates,
// concurrency and destination suspensions apply to.
type Site struct {
	Provider string // "google", "microsoft365", or "" when neither
	// Key names the site: "google" for every domain hosted at Google,
	// "microsoft365:<tenant MX host>" for Microsoft 365, "" otherwise
	// (the caller keeps its own next-hop key).
	Key string
}

// SiteOfHosts says which site a destination's MX hosts (in preference
// order; case and a trailing dot do not matter) belong to.
//
//   - Google: every host is Google's — aspmx.l.google.com,
//     altN.aspmx.l.google.com, smtp.google.com (Workspace since 2023),
//     aspmxN.googlemail.com, or any other *.google.com / *.googlemail.com.
//     All such domains are one site: Google's limits are per mailbox and
//     per sending address, whatever the recipient domain.
//   - Microsoft 365: every host is a tenant MX, *.mail.protection.outlook.com
//     or (DNSSEC, 2024 on) *.mx.microsoft such as
//     contoso-com.j-v1.mx.microsoft. One site per tenant, keyed by the
//     first host. Outlook.com's consumer hosts (*.olc.protection.outlook.com)
//     are not Microsoft 365.
//   - Anything else, including a mixed set (a backup MX elsewhere): no
//     site. A provider profile must not apply to hosts it does not
//     describe.
func SiteOfHosts(hosts []string) Site {
	provider := ""
	first := ""
	for i, h := range hosts {
		h = normHost(h)
		p := hostProvider(h)
		if p == "" || i > 0 && p != provider {
			return Site{}
		}
		if i == 0 {
			provider, first = p, h
		}
	}
	switch provider {
	case "google":
		return Site{Provider: "google", Key: "google"}
	case "microsoft365":
		return Site{Provider: "microsoft365", Key: "microsoft365:" + first}
	}
	return Site{}
}

func normHost(h string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(h)), ".")
}

// hostProvider says whose one normalized host name is.
func hostProvider(h string) string {
	if h == "" || strings.Contains(h, "..") || strings.ContainsFunc(h, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '.')
	}) {
		return "" // not a host name ("[host" with its bracket unclosed, say)
	}
	if _, err := netip.ParseAddr(h); err == nil {
		return "" // an address says nothing of who runs it
	}
	for _, suffix := range []string{".google.com", ".googlemail.com"} {
		if strings.HasSuffix(h, suffix) {
			return "google"
		}
	}
	for _, suffix := range []string{".mail.protection.outlook.com", ".mx.microsoft"} {
		if label, ok := strings.CutSuffix(h, suffix); ok && label != "" {
			return "microsoft365"
		}
	}
	return ""
}

// DefaultTTL is how long Rollup keeps a domain's site when its TTL is 0.
const DefaultTTL = 5 * time.Minute

// failTTL is how long a failed lookup's "no site" is kept.
const failTTL = 30 * time.Second

// maxCached bounds the cache; past it, expired entries go, and if none
// has expired, all do (a relay sees few destination domains; this only
// stops a flood of one-off domains from growing it without end).
const maxCached = 8192

// Rollup groups SMTP next hops into sites by their MX hosts, caching
// each domain's answer. Its zero value classifies by the next hop's own
// name only; it is safe for concurrent use.
type Rollup struct {
	// Lookup returns a domain's MX host names in preference order; none
	// (and no error) when it has no MX records.
	// (*dnsresolve.Resolver).MXHosts fits.
	Lookup func(ctx context.Context, domain string) ([]string, error)
	// TTL is how long a domain's site is kept; 0 means DefaultTTL.
	TTL time.Duration

	now   func() time.Time // for tests; nil means time.Now
	mu    sync.Mutex
	cache map[string]cached
}

type cached struct {
	site    Site
	expires time.Time
}

// Site returns the site behind transport's next hop, in the forms of
// smtp(8)'s "SMTP SERVER LOOKUP": "[host]:port" and "[host]" (no MX
// lookup: the host's own name decides), "host:port" and "host" (its MX
// hosts decide; a host without MX records is its own). For an lmtp
// transport, which looks up addresses only ("LMTP SERVER LOOKUP"), the
// host's own name decides, "inet:" dropped. Several destinations
// separated by commas or whitespace (Postfix 3.5) are one site only when
// each is that site. A failed lookup gives the site last seen for the
// host, or none (the caller keeps its own next-hop key until the DNS
// answers); it is asked again after 30 seconds.
func (r *Rollup) Site(ctx context.Context, transport, nexthop string) Site {
	// One destination, the usual case: it runs before every delivery,
	// so no slice for it.
	if !strings.ContainsFunc(nexthop, isDestSep) {
		if nexthop == "" {
			return Site{}
		}
		return r.site(ctx, transport, nexthop)
	}
	dests := strings.FieldsFunc(nexthop, isDestSep)
	if len(dests) == 0 {
		return Site{}
	}
	site := r.site(ctx, transport, dests[0])
	for _, d := range dests[1:] {
		if site.Key == "" || r.site(ctx, transport, d) != site {
			return Site{}
		}
	}
	return site
}

func isDestSep(r rune) bool { return r == ',' || unicode.IsSpace(r) }

func (r *Rollup) site(ctx context.Context, transport, nh string) Site {
	noMX := false
	if transport == "lmtp" {
		if strings.HasPrefix(nh, "unix:") {
			return Site{}
		}
		nh = strings.TrimPrefix(nh, "inet:")
		noMX = true
	}
	host, _, bracketed := dnsresolve.SplitNexthop(nh)
	host = normHost(host)
	if host == "" {
		return Site{}
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return Site{} // an address says nothing of who runs it (hostProvider)
	}
	if bracketed || noMX || r.Lookup == nil {
		return SiteOfHosts([]string{host})
	}

	now := time.Now
	if r.now != nil {
		now = r.now
	}
	r.mu.Lock()
	c, ok := r.cache[host]
	r.mu.Unlock()
	if ok && now().Before(c.expires) {
		return c.site
	}

	ttl := r.TTL
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	var site Site
	hosts, err := r.Lookup(ctx, host)
	switch {
	case err != nil:
		// The site last seen, even expired: a transient DNS failure
		// must not lift the provider's profile (its mailbox rates,
		// TLS) while the client's own lookup may still get through.
		// Kept for failTTL, not asked at every delivery pass (a
		// resolver that times out would add its timeout to each).
		site, ttl = c.site, min(ttl, failTTL)
	case len(hosts) == 0:
		site = SiteOfHosts([]string{host}) // the implicit MX (RFC 5321 5.1)
	default:
		site = SiteOfHosts(hosts)
	}
	t := now()
	r.mu.Lock()
	if r.cache == nil {
		r.cache = map[string]cached{}
	}
	if len(r.cache) >= maxCached {
		for k, v := range r.cache {
			if !t.Before(v.expires) {
				delete(r.cache, k)
			}
		}
		if len(r.cache) >= maxCached {
			clear(r.cache)
		}
	}
	r.cache[host] = cached{site: site, expires: t.Add(ttl)}
	r.mu.Unlock()
	return site
}
