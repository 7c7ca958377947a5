package provider

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/dnsresolve"
	"github.com/mailtee/mailtee/internal/dnsresolve/dnstest"
)

func TestSiteOfHosts(t *testing.T) {
	google := Site{Provider: "google", Key: "google"}
	for _, c := range []struct {
		hosts []string
		want  Site
	}{
		{[]string{"aspmx.l.google.com", "alt1.aspmx.l.google.com", "alt2.aspmx.l.google.com", "alt3.aspmx.l.google.com", "alt4.aspmx.l.google.com"}, google},
		{[]string{"ASPMX.L.GOOGLE.COM.", "ALT1.ASPMX.L.GOOGLE.COM."}, google},
		{[]string{"smtp.google.com"}, google},
		{[]string{"aspmx.l.google.com", "aspmx2.googlemail.com", "aspmx3.googlemail.com"}, google},
		{[]string{"gmail-smtp-in.l.google.com"}, google},
		// Mixed sets are not Google: the backup would get Google's limits.
		{[]string{"aspmx.l.google.com", "backup.example.org"}, Site{}},
		{[]string{"mx.example.org", "aspmx.l.google.com"}, Site{}},
		// Look-alikes.
		{[]string{"google.com"}, Site{}},
		{[]string{"aspmx.l.google.com.evil.example"}, Site{}},
		{[]string{"notgoogle.com"}, Site{}},
		{[]string{"xgooglemail.com"}, Site{}},
		// Microsoft 365: one site per tenant MX host.
		{[]string{"contoso-com.mail.protection.outlook.com"}, Site{"microsoft365", "microsoft365:contoso-com.mail.protection.outlook.com"}},
		{[]string{"Contoso-COM.mail.protection.outlook.com."}, Site{"microsoft365", "microsoft365:contoso-com.mail.protection.outlook.com"}},
		{[]string{"contoso-com.j-v1.mx.microsoft"}, Site{"microsoft365", "microsoft365:contoso-com.j-v1.mx.microsoft"}},
		// During the DNSSEC move a tenant has both; the preferred names it.
		{[]string{"contoso-com.mail.protection.outlook.com", "contoso-com.r-v1.mx.microsoft"}, Site{"microsoft365", "microsoft365:contoso-com.mail.protection.outlook.com"}},
		{[]string{"mail.protection.outlook.com"}, Site{}},
		{[]string{".mail.protection.outlook.com"}, Site{}},
		{[]string{"mx.microsoft"}, Site{}},
		{[]string{"[contoso-com.mail.protection.outlook.com"}, Site{}},
		{[]string{"a b.mail.protection.outlook.com"}, Site{}},
		{[]string{"xn--bcher-kva.mail.protection.outlook.com"}, Site{"microsoft365", "microsoft365:xn--bcher-kva.mail.protection.outlook.com"}},
		// Outlook.com's consumer hosts are not Microsoft 365.
		{[]string{"hotmail-com.olc.protection.outlook.com"}, Site{}},
		{[]string{"contoso-com.mail.protection.outlook.com", "aspmx.l.google.com"}, Site{}},
		{[]string{"mx.example.org"}, Site{}},
		{[]string{"142.250.1.27"}, Site{}},
		{[]string{""}, Site{}},
		{nil, Site{}},
	} {
		if got := SiteOfHosts(c.hosts); got != c.want {
			t.Errorf("SiteOfHosts(%q) = %+v, want %+v", c.hosts, got, c.want)
		}
	}
}

// fakeLookup answers from a table and counts its calls per domain.
type fakeLookup struct {
	mu    sync.Mutex
	mx    map[string][]string
	fail  map[string]bool
	calls map[string]int
}

func (f *fakeLookup) lookup(ctx context.Context, domain string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.calls == nil {
		f.calls = map[string]int{}
	}
	f.calls[domain]++
	if f.fail[domain] {
		return nil, errors.New("SERVFAIL")
	}
	return f.mx[domain], nil
}

func TestRollupSite(t *testing.T) {
	f := &fakeLookup{
		mx: map[string][]string{
			"students.example":   {"aspmx.l.google.com", "alt1.aspmx.l.google.com"},
			"other.example":      {"smtp.google.com"},
			"tenant.example":     {"tenant-example.mail.protection.outlook.com"},
			"mixed.example":      {"aspmx.l.google.com", "mx.mixed.example"},
			"aspmx.l.google.com": nil, // a host without MX records
		},
		fail: map[string]bool{"broken.example": true},
	}
	r := &Rollup{Lookup: f.lookup}
	ctx := context.Background()
	google := Site{Provider: "google", Key: "google"}
	for _, c := range []struct {
		transport, nexthop string
		want               Site
	}{
		{"smtp", "students.example", google},
		{"relay", "other.example:25", google},
		{"smtp", "tenant.example", Site{"microsoft365", "microsoft365:tenant-example.mail.protection.outlook.com"}},
		{"smtp", "mixed.example", Site{}},
		{"smtp", "broken.example", Site{}},
		// The seed's transport_maps: smtp:aspmx.l.google.com, an MX
		// lookup that finds none, so the host names itself.
		{"smtp", "aspmx.l.google.com", google},
		{"smtp", "ASPMX.L.GOOGLE.COM.", google},
		// Brackets: no MX lookup, the name decides.
		{"smtp", "[aspmx.l.google.com]:25", google},
		{"smtp", "[tenant-example.mail.protection.outlook.com]", Site{"microsoft365", "microsoft365:tenant-example.mail.protection.outlook.com"}},
		{"smtp", "[students.example]", Site{}},
		{"smtp", "[142.250.1.27]", Site{}},
		{"smtp", "142.250.1.27", Site{}},
		{"lmtp", "inet:aspmx.l.google.com:24", google},
		{"lmtp", "students.example", Site{}},
		{"lmtp", "unix:/var/run/lmtp", Site{}},
		{"smtp", "", Site{}},
		{"smtp", " , ", Site{}},
		// Postfix 3.5's lists of destinations: one site only if all are.
		{"relay", "[aspmx.l.google.com], students.example other.example:25", google},
		{"relay", "[aspmx.l.google.com], [mx.example.org]", Site{}},
		{"relay", "[mx.example.org], [aspmx.l.google.com]", Site{}},
		{"relay", "students.example, broken.example", Site{}},
		{"smtp", "[]", Site{}},
	} {
		if got := r.Site(ctx, c.transport, c.nexthop); got != c.want {
			t.Errorf("Site(%q, %q) = %+v, want %+v", c.transport, c.nexthop, got, c.want)
		}
	}
	// Once: cached, and neither [students.example] nor lmtp looks up.
	if n := f.calls["students.example"]; n != 1 {
		t.Errorf("students.example looked up %d times, want 1", n)
	}
}

func TestRollupCache(t *testing.T) {
	f := &fakeLookup{mx: map[string][]string{"d.example": {"smtp.google.com"}}, fail: map[string]bool{}}
	now := time.Unix(1e9, 0)
	r := &Rollup{Lookup: f.lookup, TTL: time.Minute, now: func() time.Time { return now }}
	ctx := context.Background()
	site := func() Site { return r.Site(ctx, "smtp", "d.example") }

	if site().Key != "google" || site().Key != "google" {
		t.Fatal("not google")
	}
	if f.calls["d.example"] != 1 {
		t.Fatalf("%d lookups within the TTL, want 1", f.calls["d.example"])
	}
	// The domain moves to Microsoft 365; seen once the TTL has passed.
	f.mx["d.example"] = []string{"d-example.mail.protection.outlook.com"}
	now = now.Add(59 * time.Second)
	if site().Key != "google" {
		t.Error("cache expired early")
	}
	now = now.Add(time.Second)
	if got := site(); got.Provider != "microsoft365" {
		t.Errorf("after the TTL: %+v", got)
	}
	// A failed lookup keeps the site last seen, expired or not: a
	// transient DNS failure must not drop the destination's profile
	// (Microsoft's or Google's mailbox rates, TLS) while the client's
	// own lookup may well succeed. That answer is kept for failTTL:
	// the DNS is not asked at every pass while it fails.
	now = now.Add(time.Minute)
	f.fail["d.example"], f.fail["never.example"] = true, true
	if got := site(); got.Provider != "microsoft365" {
		t.Errorf("failed lookup of a domain seen before gave %+v", got)
	}
	if got := r.Site(ctx, "smtp", "never.example"); got != (Site{}) {
		t.Errorf("failed lookup of a domain never seen gave %+v", got)
	}
	f.fail["d.example"] = false
	calls := f.calls["d.example"]
	if got := site(); got.Provider != "microsoft365" || f.calls["d.example"] != calls {
		t.Errorf("within failTTL of a failure: %+v, %d lookups; want the site last seen, no lookup", got, f.calls["d.example"]-calls)
	}
	now = now.Add(failTTL)
	if got := site(); got.Provider != "microsoft365" || f.calls["d.example"] != calls+1 {
		t.Errorf("after a failure: %+v, %d lookups", got, f.calls["d.example"]-calls)
	}

	// The default TTL is five minutes.
	r2 := &Rollup{Lookup: f.lookup, now: func() time.Time { return now }}
	r2.Site(ctx, "smtp", "d.example")
	calls = f.calls["d.example"]
	now = now.Add(DefaultTTL - time.Second)
	r2.Site(ctx, "smtp", "d.example")
	if f.calls["d.example"] != calls {
		t.Error("default TTL shorter than 5m")
	}
	now = now.Add(time.Second)
	r2.Site(ctx, "smtp", "d.example")
	if f.calls["d.example"] != calls+1 {
		t.Error("default TTL longer than 5m")
	}
}

func TestRollupCacheBound(t *testing.T) {
	f := &fakeLookup{}
	r := &Rollup{Lookup: f.lookup}
	for i := range maxCached + 10 {
		r.Site(context.Background(), "smtp", "d"+strconv.Itoa(i)+".example")
	}
	if n := len(r.cache); n > maxCached {
		t.Errorf("cache holds %d entries, more than %d", n, maxCached)
	}
}

// The lead wires Rollup.Lookup to dnsresolve; this is that wiring
// against the test name server.
func TestRollupWithResolver(t *testing.T) {
	srv := dnstest.Start(t,
		"students.test. MX 1 aspmx.l.google.com.",
		"students.test. MX 5 alt1.aspmx.l.google.com.",
		"staff.test. MX 0 staff-test.mail.protection.outlook.com.",
		"plain.test. A 127.0.0.5",
	)
	res := &dnsresolve.Resolver{Servers: []string{srv.Addr}, Timeout: 2 * time.Second}
	r := &Rollup{Lookup: res.MXHosts}
	ctx := context.Background()
	for nexthop, want := range map[string]string{
		"students.test":  "google",
		"staff.test":     "microsoft365:staff-test.mail.protection.outlook.com",
		"plain.test":     "",
		"nosuch.test":    "",
		"students.test.": "google",
	} {
		if got := r.Site(ctx, "smtp", nexthop); got.Key != want {
			t.Errorf("Site(%q) = %+v, want key %q", nexthop, got, want)
		}
	}
}

// FuzzSite feeds next hops and MX answers to Rollup.Site: it never
// panics, a site has a key exactly when it has a provider, and only
// Google's or Microsoft's names give one.
func FuzzSite(f *testing.F) {
	f.Add("smtp", "students.example", "aspmx.l.google.com alt1.aspmx.l.google.com")
	f.Add("relay", "[contoso-com.mail.protection.outlook.com]:25", "")
	f.Add("lmtp", "inet:smtp.google.com:24", "")
	f.Add("smtp", "[IPv6:::1]", "")
	f.Add("smtp", "tenant.example:2525", "tenant-example.j-v1.mx.microsoft. mx.example.org")
	f.Fuzz(func(t *testing.T, transport, nexthop, mx string) {
		r := &Rollup{Lookup: func(context.Context, string) ([]string, error) { return strings.Fields(mx), nil }}
		s := r.Site(context.Background(), transport, nexthop)
		if (s.Key == "") != (s.Provider == "") {
			t.Fatalf("Site(%q, %q) with MX %q = %+v", transport, nexthop, mx, s)
		}
		if s.Provider == "google" && s.Key != "google" || s.Provider == "microsoft365" && !strings.HasPrefix(s.Key, "microsoft365:") {
			t.Fatalf("Site(%q, %q) with MX %q = %+v", transport, nexthop, mx, s)
		}
		if s.Provider != "" && !strings.Contains(strings.ToLower(nexthop+" "+mx), map[string]string{"google": "google", "microsoft365": "outlook.com"}[s.Provider]) &&
			!strings.Contains(strings.ToLower(nexthop+" "+mx), ".mx.microsoft") {
			t.Fatalf("Site(%q, %q) with MX %q = %+v: from no such name", transport, nexthop, mx, s)
		}
	})
}
