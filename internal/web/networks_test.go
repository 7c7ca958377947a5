package web

import (
	"net/netip"
	"testing"
)

func TestNetworks(t *testing.T) {
	n, err := ParseNetworks("127.0.0.0/8, [::1]/128 !192.0.2.9 192.0.2.0/24,[2001:db8::]/32")
	if err != nil {
		t.Fatal(err)
	}
	for a, want := range map[string]bool{
		"127.0.0.1": true, "127.255.0.3": true, "::1": true, "::ffff:127.0.0.1": true,
		"192.0.2.1": true, "192.0.2.9": false, "198.51.100.1": false,
		"2001:db8::5": true, "2001:db9::5": false, "::2": false,
	} {
		if got := n.Contains(netip.MustParseAddr(a)); got != want {
			t.Errorf("Contains(%s) = %v, want %v", a, got, want)
		}
	}
	if s := n.String(); s != "127.0.0.0/8, [::1]/128, !192.0.2.9/32, 192.0.2.0/24, [2001:db8::]/32" {
		t.Errorf("String() = %q", s)
	}
	// the default value
	if _, err := ParseNetworks("127.0.0.0/8, [::1]/128"); err != nil {
		t.Error(err)
	}
	// The first match decides: a negation after the network is too late.
	late := MustParseNetworks("192.0.2.0/24, !192.0.2.9")
	if !late.Contains(netip.MustParseAddr("192.0.2.9")) {
		t.Error("a later negation decided")
	}
	if e := MustParseNetworks(""); !e.Empty() || e.Contains(netip.MustParseAddr("127.0.0.1")) {
		t.Error("an empty list admitted someone")
	}
	for _, bad := range []string{"10.0.0.300/8", "10.0.0.1/8", "cidr:/etc/x", "/etc/mailtee/nets", "localhost", "[::1/128"} {
		if _, err := ParseNetworks(bad); err == nil {
			t.Errorf("ParseNetworks(%q) accepted", bad)
		}
	}
}

func FuzzParseNetworks(f *testing.F) {
	for _, s := range []string{"127.0.0.0/8, [::1]/128", "!10.0.0.1 10.0.0.0/8", "[::ffff:1.2.3.4]/128", "!!1.2.3.4", "{a, b}", "0.0.0.0/0"} {
		f.Add(s, "10.0.0.1")
	}
	f.Fuzz(func(t *testing.T, v, addr string) {
		n, err := ParseNetworks(v)
		if err != nil {
			return
		}
		a, err := netip.ParseAddr(addr)
		if err != nil {
			return
		}
		got := n.Contains(a)
		// Writing the list back and reading it again keeps its meaning.
		m, err := ParseNetworks(n.String())
		if err != nil {
			t.Fatalf("String() %q of %q does not parse: %v", n.String(), v, err)
		}
		if m.Contains(a) != got {
			t.Fatalf("%q and its String() %q disagree on %s", v, n.String(), a)
		}
	})
}
