package dnsresolve

import (
	"context"
	"reflect"
	"testing"
)

func TestMXHosts(t *testing.T) {
	r, srv := newResolver(t,
		// Google's legacy set, out of order and in capitals, as zones
		// often have it; no address records are needed.
		"google.test. MX 10 ALT4.ASPMX.L.GOOGLE.COM.",
		"google.test. MX 5 alt2.aspmx.l.google.com.",
		"google.test. MX 1 aspmx.l.google.com.",
		"google.test. MX 5 alt1.aspmx.l.google.com.",
		"google.test. MX 10 alt3.aspmx.l.google.com.",
		"alias.test. CNAME google.test.",
		"plain.test. A 127.0.0.5",
		"nullmx.test. MX 0 .",
	)
	srv.ServFail("broken.test")
	ctx := context.Background()

	got, err := r.MXHosts(ctx, "google.test.")
	want := []string{"aspmx.l.google.com", "alt1.aspmx.l.google.com", "alt2.aspmx.l.google.com",
		"ALT4.ASPMX.L.GOOGLE.COM", "alt3.aspmx.l.google.com"}
	// Ties are ordered by name, case-blind: alt3 before ALT4.
	want[3], want[4] = want[4], want[3]
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("MXHosts(google.test.) = %q, %v; want %q", got, err, want)
	}
	if got2, _ := r.MXHosts(ctx, "alias.test"); !reflect.DeepEqual(got2, want) {
		t.Errorf("through a CNAME: %q, want %q", got2, want)
	}
	// A name with an address and no MX: no names, no error (the caller
	// uses the name itself).
	if got, err := r.MXHosts(ctx, "plain.test"); err != nil || len(got) != 0 {
		t.Errorf("MXHosts(plain.test) = %q, %v; want none, nil", got, err)
	}
	for _, c := range []struct {
		domain    string
		temporary bool
		status    string
	}{
		{"nosuch.test", false, "5.4.4"},
		{"nullmx.test", false, "5.1.0"},
		{"broken.test", true, "4.4.3"},
		{"", true, "4.3.5"},
	} {
		got, err := r.MXHosts(ctx, c.domain)
		e, ok := err.(*Error)
		if !ok || e.Temporary != c.temporary || e.Status != c.status {
			t.Errorf("MXHosts(%q) = %q, %v; want an error with status %s, temporary %v", c.domain, got, err, c.status, c.temporary)
		}
	}
	// Names only: two MX records, answered by queries for MX alone.
	before := srv.Queries.Load()
	if _, err := r.MXHosts(ctx, "google.test"); err != nil {
		t.Fatal(err)
	}
	if n := srv.Queries.Load() - before; n != 1 {
		t.Errorf("MXHosts sent %d queries, want 1 (no address lookups)", n)
	}
}
