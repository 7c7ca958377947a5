package maps

import (
	"context"
	"net/netip"
	"testing"
)

// postconf(5) mydestination/relay_domains and parent_domain_matches_subdomains:
// "example.com" matches subdomains only in parent mode; ".example.com"
// always does; "!" excludes; the first match decides.
func TestDomainList(t *testing.T) {
	ctx := context.Background()
	tb := writeFile(t, "domains", "tabled.example OK\n.subs.example OK\n")
	file := writeFile(t, "list", "fromfile.example # comment\nother.example\n")
	l, err := NewDomainList([]string{"!no.example.com", "Example.COM.", ".dot.example", "hash:" + tb, file}, false)
	if err != nil {
		t.Fatal(err)
	}
	pl, _ := NewDomainList([]string{"example.com", "hash:" + tb}, true)
	for _, c := range []struct {
		domain      string
		want, wantP bool
	}{
		{"example.com", true, true},
		{"EXAMPLE.com.", true, true},
		{"sub.example.com", false, true},
		{"no.example.com", false, true},
		{"a.dot.example", true, false},
		{"dot.example", false, false},
		{"tabled.example", true, true},
		{"x.tabled.example", false, true},
		{"x.subs.example", true, false},
		{"fromfile.example", true, false},
		{"other.example", true, false},
		{"nowhere.example", false, false},
	} {
		if got, err := l.Match(ctx, c.domain); err != nil || got != c.want {
			t.Errorf("%s: got %v %v, want %v", c.domain, got, err, c.want)
		}
		if got, _ := pl.Match(ctx, c.domain); got != c.wantP {
			t.Errorf("parent mode %s: got %v, want %v", c.domain, got, c.wantP)
		}
	}
}

func TestNetList(t *testing.T) {
	ctx := context.Background()
	cidr := writeFile(t, "nets", "192.0.2.0/24 OK\n")
	l, err := NewNetList([]string{"!10.9.0.0/16", "10.0.0.0/8", "127.0.0.1", "[::1]/128", "[::ffff:127.0.0.0]/104", "cidr:" + cidr})
	if err != nil {
		t.Fatal(err)
	}
	for addr, want := range map[string]bool{
		"10.1.2.3": true, "10.9.1.1": false, "127.0.0.1": true, "127.0.0.2": true,
		"::1": true, "192.0.2.77": true, "192.0.3.1": false, "::ffff:10.1.1.1": true,
	} {
		if got, err := l.Match(ctx, netip.MustParseAddr(addr)); err != nil || got != want {
			t.Errorf("%s: got %v %v, want %v", addr, got, err, want)
		}
	}
	if _, err := NewNetList([]string{"10.1.2.3/8"}); err == nil {
		t.Error("host bits must be an error")
	}
}
