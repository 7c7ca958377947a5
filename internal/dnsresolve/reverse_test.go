package dnsresolve_test

import (
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/dnsresolve"
	"github.com/mailtee/mailtee/internal/dnsresolve/dnstest"
)

func TestPTRAndAddrs(t *testing.T) {
	srv := dnstest.Start(t,
		"7.0.0.127.in-addr.arpa. PTR mx.example.",
		"1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa. PTR six.example.",
		"mx.example. A 127.0.0.7", "mx.example. AAAA ::7",
		"servfail.example. A 127.0.0.1")
	srv.ServFail("8.0.0.127.in-addr.arpa")
	r := &dnsresolve.Resolver{Servers: []string{srv.Addr}, Timeout: time.Second}
	ctx := context.Background()
	if names, err := r.PTR(ctx, netip.MustParseAddr("127.0.0.7")); err != nil || !slices.Equal(names, []string{"mx.example"}) {
		t.Errorf("PTR 127.0.0.7 = %q, %v", names, err)
	}
	if names, err := r.PTR(ctx, netip.MustParseAddr("::1")); err != nil || !slices.Equal(names, []string{"six.example"}) {
		t.Errorf("PTR ::1 = %q, %v", names, err)
	}
	if names, err := r.PTR(ctx, netip.MustParseAddr("127.0.0.9")); err != nil || len(names) != 0 {
		t.Errorf("PTR 127.0.0.9 (none) = %q, %v", names, err)
	}
	if _, err := r.PTR(ctx, netip.MustParseAddr("127.0.0.8")); !dnsresolve.IsTemporary(err) {
		t.Errorf("PTR with SERVFAIL: %v, want a temporary error", err)
	}
	if addrs, err := r.Addrs(ctx, "mx.example."); err != nil || len(addrs) != 2 || addrs[0] != netip.MustParseAddr("127.0.0.7") {
		t.Errorf("Addrs = %v, %v", addrs, err)
	}
	if _, err := r.Addrs(ctx, "none.example"); err == nil || dnsresolve.IsTemporary(err) {
		t.Errorf("Addrs of a missing name: %v, want a permanent error", err)
	}
}
