package srs

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/dnsresolve"
	"github.com/mailtee/mailtee/internal/dnsresolve/dnstest"
)

func TestCheckDNS(t *testing.T) {
	dns := dnstest.Start(t,
		"mx.here.example. 60 IN A 127.0.0.5",
		"mx.here.example. 60 IN AAAA ::1",
		"mx.far.example. 60 IN A 192.0.2.9",
		// good: MX here, SPF by ip4 and mx.
		"good.example. 60 IN MX 10 mx.here.example.",
		`good.example. 60 IN TXT "v=spf1 ip4:127.0.0.0/24 mx -all"`,
		// elsewhere: MX elsewhere, SPF by include (one level).
		"far.example. 60 IN MX 10 mx.far.example.",
		`far.example. 60 IN TXT "v=spf1 include:_spf.far.example ~all"`,
		`_spf.far.example. 60 IN TXT "v=spf1 ip4:192.0.2.0/24 include:_deeper.far.example -all"`,
		// second: this host only as the second MX; no SPF.
		"second.example. 60 IN MX 10 mx.far.example.",
		"second.example. 60 IN MX 20 mx.here.example.",
		`second.example. 60 IN TXT "google-site-verification=x"`,
		// twice: two SPF records; a/24.
		"twice.example. 60 IN MX 10 mx.here.example.",
		`twice.example. 60 IN TXT "v=spf1 -all"`,
		`twice.example. 60 IN TXT "v=spf1 +all"`,
		"cidr.example. 60 IN MX 10 mx.here.example.",
		`cidr.example. 60 IN TXT "v=spf1 ip4:127.0.0.5 a:mx.far.example//64 redirect=_r.example"`,
		"cidr2.example. 60 IN MX 10 mx.here.example.",
		`cidr2.example. 60 IN TXT "v=spf1 a:mx.here.example/24//0 -all"`,
		`_r.example. 60 IN TXT "v=spf1 ip6:::1 -all"`,
	)
	r := &dnsresolve.Resolver{Servers: []string{dns.Addr}, Timeout: 2 * time.Second}
	host := []netip.Addr{netip.MustParseAddr("127.0.0.5"), netip.MustParseAddr("::1")}
	ctx := context.Background()
	for _, c := range []struct {
		domain string
		want   []string // "level: text fragment", in order
	}{
		{"good.example", []string{"ok: MX mx.here.example is this host", "ok: SPF allows 127.0.0.5 (ip4:127.0.0.0/24)", "ok: SPF allows ::1 (mx)"}},
		{"far.example", []string{"fail: its MX mx.far.example 192.0.2.9 is not this host", "fail: SPF soft-fails 127.0.0.5 (~all) (include:_deeper.far.example inside an include is not followed)", "fail: SPF soft-fails ::1"}},
		{"second.example", []string{"warn: this host is MX mx.here.example, but mx.far.example", "fail: SPF: no SPF record", ""}},
		{"twice.example", []string{"ok: MX", "fail: SPF: 2 SPF records"}},
		{"cidr.example", []string{"ok: MX", "ok: SPF allows 127.0.0.5 (ip4:127.0.0.5)", "ok: SPF allows ::1 (ip6:::1)"}},
		{"nowhere.example", []string{"fail: srs_domain nowhere.example: MX lookup", "fail: srs_domain nowhere.example: SPF"}},
	} {
		got := CheckDNS(ctx, r, c.domain, host)
		t.Logf("%s: %v", c.domain, got)
		for i, w := range c.want {
			if w == "" {
				continue
			}
			lvl, frag, _ := strings.Cut(w, ": ")
			if i >= len(got) {
				t.Errorf("%s: finding %d missing, want %s", c.domain, i, w)
				continue
			}
			if string(got[i].Level) != lvl || !strings.Contains(got[i].Text, frag) {
				t.Errorf("%s: finding %d = %s: %s; want %s", c.domain, i, got[i].Level, got[i].Text, w)
			}
			if got[i].Level != OK && got[i].Fix == "" {
				t.Errorf("%s: finding %d has no fix", c.domain, i)
			}
		}
	}
	// A prefix length on a: 127.0.0.77 is in mx.here.example's /24;
	// //0 takes every IPv6 address.
	got := CheckDNS(ctx, r, "cidr2.example", []netip.Addr{netip.MustParseAddr("127.0.0.77"), netip.MustParseAddr("2001:db8::1")})
	if len(got) != 3 || got[1].Level != OK || got[2].Level != OK {
		t.Errorf("cidr2.example: %v, want MX ok and both addresses allowed by a:mx.here.example/24//0", got)
	}
}
