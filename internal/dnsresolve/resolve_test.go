package dnsresolve

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/dnsresolve/dnstest"
)

func newResolver(t *testing.T, records ...string) (*Resolver, *dnstest.Server) {
	srv := dnstest.Start(t, records...)
	// Generous, for a loaded machine; the test of a server that never
	// answers uses its own.
	return &Resolver{Servers: []string{srv.Addr}, Timeout: 2 * time.Second}, srv
}

func hostsString(hs []Host) string {
	var b strings.Builder
	for _, h := range hs {
		fmt.Fprintf(&b, "%d %s %v;", h.Pref, h.Name, h.Addrs)
	}
	return b.String()
}

func TestHostsMX(t *testing.T) {
	r, _ := newResolver(t,
		"example.test. MX 20 backup.example.test.",
		"example.test. MX 10 mx1.example.test.",
		"mx1.example.test. A 127.0.0.2",
		"mx1.example.test. AAAA ::1",
		"backup.example.test. A 127.0.0.3",
	)
	hs, err := r.Hosts(context.Background(), "example.test", true)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := hostsString(hs), "10 mx1.example.test [127.0.0.2 ::1];20 backup.example.test [127.0.0.3];"; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
	// A port is ignored; the MX lookup still happens ("host:port").
	hs, err = r.Hosts(context.Background(), "example.test:2525", true)
	if err != nil || len(hs) != 2 {
		t.Errorf("with port: %s, %v", hostsString(hs), err)
	}
}

// RFC 5321 5.1: "the domain name ... is treated as an implicit MX RR
// with a preference of 0, pointing to that host", and [host] suppresses
// the MX lookup (transport(5)).
func TestHostsNoMX(t *testing.T) {
	r, _ := newResolver(t,
		"plain.test. A 127.0.0.5",
		"mxonly.test. MX 10 mx.mxonly.test.",
		"mxonly.test. A 127.0.0.6",
		"mx.mxonly.test. A 127.0.0.7",
	)
	ctx := context.Background()
	for _, c := range []struct {
		nexthop string
		mx      bool
		want    string
	}{
		{"plain.test", true, "0 plain.test [127.0.0.5];"},
		{"[mxonly.test]", true, "0 mxonly.test [127.0.0.6];"},
		{"mxonly.test", false, "0 mxonly.test [127.0.0.6];"},
		{"mxonly.test", true, "10 mx.mxonly.test [127.0.0.7];"},
		{"[127.0.0.9]:25", true, "0 127.0.0.9 [127.0.0.9];"},
		{"[IPv6:::1]", true, "0 ::1 [::1];"},
	} {
		hs, err := r.Hosts(ctx, c.nexthop, c.mx)
		if err != nil || hostsString(hs) != c.want {
			t.Errorf("Hosts(%q, %v) = %s, %v; want %s", c.nexthop, c.mx, hostsString(hs), err, c.want)
		}
	}
}

// Equal preferences are shuffled (RFC 5321 5.1: "If there are multiple
// destinations with the same preference ... the SMTP client SHOULD
// randomize them"); lower preferences always come first.
func TestHostsShuffle(t *testing.T) {
	r, _ := newResolver(t,
		"rr.test. MX 10 a.rr.test.", "rr.test. MX 10 b.rr.test.", "rr.test. MX 5 first.rr.test.",
		"a.rr.test. A 127.0.0.1", "b.rr.test. A 127.0.0.2", "first.rr.test. A 127.0.0.3",
	)
	seen := map[string]bool{}
	for range 50 {
		hs, err := r.Hosts(context.Background(), "rr.test", true)
		if err != nil || len(hs) != 3 || hs[0].Name != "first.rr.test" {
			t.Fatalf("%s, %v", hostsString(hs), err)
		}
		seen[hs[1].Name] = true
	}
	if len(seen) != 2 {
		t.Errorf("equal-preference MX hosts never shuffled: %v", seen)
	}
}

func TestHostsErrors(t *testing.T) {
	r, srv := newResolver(t,
		"nullmx.test. MX 0 .",
		"nodata.test. TXT \"hello\"",
		"badmx.test. MX 10 missing.badmx.test.",
		"halfmx.test. MX 10 missing.halfmx.test.",
		"halfmx.test. MX 20 ok.halfmx.test.",
		"ok.halfmx.test. A 127.0.0.8",
		"softmx.test. MX 10 fail.softmx.test.",
	)
	srv.ServFail("servfail.test")
	srv.ServFail("fail.softmx.test")
	srv.Drop("slow.test")
	ctx := context.Background()
	for _, c := range []struct {
		nexthop   string
		temporary bool
		status    string
		text      string
	}{
		{"nxdomain.test", false, "5.4.4", "Host or domain name not found. Name service error for name=nxdomain.test type=A: Host not found"},
		{"[nxdomain.test]", false, "5.4.4", "Host or domain name not found. Name service error for name=nxdomain.test type=A: Host not found"},
		{"nodata.test", false, "5.4.4", "Host or domain name not found. Name service error for name=nodata.test type=A: Host found but no data record of requested type"},
		{"servfail.test", true, "4.4.3", "Host or domain name not found. Name service error for name=servfail.test type=MX: Host not found, try again"},
		{"nullmx.test", false, "5.1.0", "Domain nullmx.test does not accept mail (nullMX)"},
		{"badmx.test", false, "5.4.4", "Host or domain name not found. Name service error for name=missing.badmx.test type=A: Host not found"},
		{"softmx.test", true, "4.4.3", "Host or domain name not found. Name service error for name=fail.softmx.test type=A: Host not found, try again"},
	} {
		hs, err := r.Hosts(ctx, c.nexthop, true)
		if err == nil {
			t.Errorf("%s: no error, hosts %s", c.nexthop, hostsString(hs))
			continue
		}
		e, ok := err.(*Error)
		if !ok || e.Temporary != c.temporary || IsTemporary(err) != c.temporary || e.Status != c.status || e.Text != c.text {
			t.Errorf("%s: got %#v\nwant temporary=%v %s %q", c.nexthop, err, c.temporary, c.status, c.text)
		}
	}
	// A server that never answers: a temporary error after two tries.
	fast := &Resolver{Servers: r.Servers, Timeout: 200 * time.Millisecond}
	_, err := fast.Hosts(ctx, "slow.test", true)
	if e, ok := err.(*Error); !ok || !e.Temporary || e.Status != "4.4.3" ||
		e.Text != "Host or domain name not found. Name service error for name=slow.test type=MX: Host not found, try again" {
		t.Errorf("slow.test: got %#v", err)
	}

	// An MX host without address is skipped when another has one.
	hs, err := r.Hosts(ctx, "halfmx.test", true)
	if err != nil || hostsString(hs) != "20 ok.halfmx.test [127.0.0.8];" {
		t.Errorf("halfmx: %s, %v", hostsString(hs), err)
	}
}

func TestHostsCNAMEAndTCP(t *testing.T) {
	r, srv := newResolver(t,
		"alias.test. CNAME real.test.",
		"real.test. A 127.0.0.4",
		"real.test. MX 10 real.test.",
	)
	srv.TruncateUDP(true)
	hs, err := r.Hosts(context.Background(), "alias.test", true)
	if err != nil || hostsString(hs) != "10 real.test [127.0.0.4];" {
		t.Errorf("got %s, %v", hostsString(hs), err)
	}
}

func TestHostsNoServer(t *testing.T) {
	// A closed port: the query fails at once or times out; either way a
	// temporary error.
	r := &Resolver{Servers: []string{"127.0.0.1:1"}, Timeout: 200 * time.Millisecond}
	_, err := r.Hosts(context.Background(), "example.test", true)
	if !IsTemporary(err) {
		t.Errorf("got %v, want a temporary error", err)
	}
	want := netip.MustParseAddr("192.0.2.1")
	hs, err := r.Hosts(context.Background(), "[192.0.2.1]", true)
	if err != nil || len(hs) != 1 || hs[0].Addrs[0] != want {
		t.Errorf("literal needs no DNS: %s, %v", hostsString(hs), err)
	}
}

// A server that fails is skipped for the next one, as the resolver
// library does with the nameserver lines of resolv.conf.
func TestHostsServerFailover(t *testing.T) {
	bad := dnstest.Start(t)
	bad.ServFail("example.test")
	good := dnstest.Start(t, "example.test. A 127.0.0.1")
	r := &Resolver{Servers: []string{bad.Addr, good.Addr}, Timeout: 2 * time.Second}
	hs, err := r.Hosts(context.Background(), "example.test", true)
	if err != nil || hostsString(hs) != "0 example.test [127.0.0.1];" {
		t.Errorf("got %s, %v", hostsString(hs), err)
	}
	if bad.Queries.Load() == 0 {
		t.Error("the first server was never asked")
	}
}

// Internationalized domains are looked up by their A-labels (Postfix's
// midna_domain_to_ascii), and logged as written.
func TestHostsIDNA(t *testing.T) {
	r, _ := newResolver(t, "xn--bcher-kva.test. A 127.0.0.1")
	hs, err := r.Hosts(context.Background(), "bücher.test", true)
	if err != nil || hostsString(hs) != "0 bücher.test [127.0.0.1];" {
		t.Errorf("got %s, %v", hostsString(hs), err)
	}
}

func TestSplitNexthop(t *testing.T) {
	for _, c := range []struct {
		in, host, port string
		bracketed      bool
	}{
		{"[mx.example.com]:587", "mx.example.com", "587", true},
		{"[mx.example.com]", "mx.example.com", "", true},
		{"mx.example.com:smtp", "mx.example.com", "smtp", false},
		{"example.com", "example.com", "", false},
		{"[192.0.2.1]", "192.0.2.1", "", true},
		{"[IPv6:2001:db8::1]:25", "2001:db8::1", "25", true},
		{"[2001:db8::1]", "2001:db8::1", "", true},
		{"2001:db8::1", "2001:db8::1", "", false},
	} {
		h, p, b := SplitNexthop(c.in)
		if h != c.host || p != c.port || b != c.bracketed {
			t.Errorf("SplitNexthop(%q) = %q %q %v", c.in, h, p, b)
		}
	}
}
