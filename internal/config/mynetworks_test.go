package config

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/mailtee/mailtee/internal/diag"
)

// fakeHost replaces the host's interfaces and resolver for one test: lo
// (127.0.0.1/8, ::1/128), eth0 (192.0.2.2/24, 172.16.5.9/20, fd00::2/64,
// fe80::fc:ff:fe00:1/64) and "mx.test" resolving to 192.0.2.2 and
// fd00::2.
func fakeHost(t *testing.T) {
	t.Helper()
	mask := func(s string) []byte {
		p := netip.MustParsePrefix(s)
		m := make([]byte, p.Addr().BitLen()/8)
		for i := 0; i < p.Bits(); i++ {
			m[i/8] |= 0x80 >> (i % 8)
		}
		return m
	}
	ifa := func(p string) ifaceAddr {
		return ifaceAddr{netip.MustParsePrefix(p).Addr(), mask(p)}
	}
	oldAddrs, oldLookup := localAddrs, lookupHost
	localAddrs = func() ([]ifaceAddr, error) {
		// getifaddrs mixes the families; Postfix takes IPv4 first.
		return []ifaceAddr{ifa("127.0.0.1/8"), ifa("::1/128"), ifa("192.0.2.2/24"),
			ifa("fd00::2/64"), ifa("172.16.5.9/20"), ifa("fe80::fc:ff:fe00:1/64")}, nil
	}
	lookupHost = func(host string) ([]netip.Addr, error) {
		switch host {
		case "localhost":
			return []netip.Addr{netip.MustParseAddr("::1"), netip.MustParseAddr("127.0.0.1")}, nil
		case "mx.test":
			return []netip.Addr{netip.MustParseAddr("fd00::2"), netip.MustParseAddr("192.0.2.2")}, nil
		}
		return nil, errors.New("no such host")
	}
	t.Cleanup(func() { localAddrs, lookupHost = oldAddrs, oldLookup })
}

// TestMynetworksDefault follows mynetworks.c and own_inet_addr.c; the
// expected values are what Postfix 3.7's `postconf -h mynetworks` prints
// for the same main.cf on a host with these interfaces (the same cases
// against the real postconf, on the real host, are in
// test/postfixeq/testdata/cases.txt).
func TestMynetworksDefault(t *testing.T) {
	fakeHost(t)
	for _, tc := range []struct{ mainCf, want string }{
		// compatibility_level < 2: subnet style.
		{"", "127.0.0.0/8 192.0.2.0/24 172.16.0.0/20 [::1]/128 [fd00::]/64 [fe80::]/64"},
		{"compatibility_level = 1\ninet_interfaces = 127.0.0.1", "127.0.0.0/8"},
		// compatibility_level >= 2: host style; the case.
		{"compatibility_level = 2\ninet_interfaces = 127.0.0.1", "127.0.0.1/32"},
		{"compatibility_level = 3.6\ninet_interfaces = 127.0.0.1", "127.0.0.1/32"},
		{"compatibility_level = 3.6", "127.0.0.1/32 192.0.2.2/32 172.16.5.9/32 [::1]/128 [fd00::2]/128 [fe80::fc:ff:fe00:1]/128"},
		{"compatibility_level = 3.6\ninet_protocols = ipv4", "127.0.0.1/32 192.0.2.2/32 172.16.5.9/32"},
		{"compatibility_level = 3.6\ninet_protocols = ipv6", "[::1]/128 [fd00::2]/128 [fe80::fc:ff:fe00:1]/128"},
		{"compatibility_level = 3.6\ninet_interfaces = loopback-only", "127.0.0.1/32 [::1]/128"},
		{"compatibility_level = 3.6\ninet_interfaces = localhost", "127.0.0.1/32 [::1]/128"},
		{"compatibility_level = 3.6\ninet_interfaces = localhost\ninet_protocols = ipv4", "127.0.0.1/32"},
		// Listed addresses are sorted, IPv4 first, and made unique.
		{"compatibility_level = 3.6\ninet_interfaces = [fd00::2], 192.0.2.2, 127.0.0.1, mx.test", "127.0.0.1/32 192.0.2.2/32 [fd00::2]/128"},
		{"mynetworks_style = subnet\ninet_interfaces = mx.test", "192.0.2.0/24 [fd00::]/64"},
		// class: natural IPv4 networks; IPv6 gets its subnet.
		{"mynetworks_style = class", "127.0.0.0/8 192.0.2.0/24 172.16.0.0/16 [::1]/128 [fd00::]/64 [fe80::]/64"},
		{"mynetworks_style = class\ninet_interfaces = 172.16.5.9", "172.16.0.0/16"},
		// All protocols off: nothing.
		{"inet_protocols =", ""},
		// Set explicitly: as set.
		{"mynetworks = 10.0.0.0/8\ninet_interfaces = 127.0.0.5", "10.0.0.0/8"},
	} {
		c := parse(t, tc.mainCf+"\n")
		got := c.Get("mynetworks")
		if got != tc.want {
			t.Errorf("%q:\n got %q\nwant %q", tc.mainCf, got, tc.want)
		}
		if errs := diagsMatching(c.Check(), "mynetworks"); len(errs) != 0 {
			t.Errorf("%q: unexpected findings %v", tc.mainCf, errs)
		}
	}
}

// Where Postfix stops with a fatal error, check reports an error at the
// inet_interfaces line and serve would not start.
func TestMynetworksDefaultErrors(t *testing.T) {
	fakeHost(t)
	for _, tc := range []struct {
		mainCf, want string
		line         int
	}{
		{"myhostname = x.example\ninet_interfaces = 127.0.0.10", "no local interface found for 127.0.0.10", 2},
		{"inet_interfaces = nowhere.test", "host not found: nowhere.test", 1},
		{"inet_interfaces = [::1]\ninet_protocols = ipv4", "host not found: [::1]", 1},
		{"inet_interfaces = 127.0.0.1\ninet_protocols = ipv7", "unknown protocol", 1},
	} {
		c := parse(t, tc.mainCf+"\n")
		if _, err := c.Mynetworks(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: Mynetworks error %v, want %q", tc.mainCf, err, tc.want)
		}
		d := diagsMatching(c.Check(), tc.want)
		if len(d) != 1 || d[0].Severity != diag.Error || d[0].Line != tc.line {
			t.Errorf("%q: want one error on line %d, got %v", tc.mainCf, tc.line, d)
		}
	}
}

// postconf -d shows the value from the defaults alone (subnet style, all
// interfaces), whatever main.cf sets, as Postfix's postconf -d does.
func TestMynetworksPostconfD(t *testing.T) {
	fakeHost(t)
	c := parse(t, "compatibility_level = 3.6\ninet_interfaces = 127.0.0.1\n")
	if got, _ := c.Default("mynetworks"); got != "127.0.0.0/8 192.0.2.0/24 172.16.0.0/20 [::1]/128 [fd00::]/64 [fe80::]/64" {
		t.Errorf("postconf -d mynetworks = %q", got)
	}
	if got := c.Get("mynetworks"); got != "127.0.0.1/32" {
		t.Errorf("mynetworks = %q", got)
	}
}
