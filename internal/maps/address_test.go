package maps

import (
	"context"
	"errors"
	"testing"
)

// The order is Postfix's, from virtual(5) "TABLE SEARCH ORDER" and
// canonical(5): user+ext@domain, user@domain, user+ext and user (only when
// domain is $myorigin, $mydestination, $inet_interfaces or
// $proxy_interfaces), @domain. "With regular expression tables ... the
// entire address is used" - pattern tables see only the full address.
func TestLookupAddress(t *testing.T) {
	tb, _ := parseText("t", []byte(
		"full+ext@local.example  k1\n"+
			"full@local.example      k2\n"+
			"bare+ext                k3\n"+
			"bare                    k4\n"+
			"@local.example          k5\n"+
			"remote                  k6\n"+
			"@remote.example         k7\n"))
	opts := AddressOptions{Delimiters: "+", IsLocal: func(d string) bool { return d == "local.example" }}
	cases := []struct {
		addr, value, key, ext string
	}{
		{"full+ext@local.example", "k1", "full+ext@local.example", ""},
		{"full+other@local.example", "k2", "full@local.example", "+other"},
		{"bare+ext@local.example", "k3", "bare+ext", ""},
		{"bare+x@local.example", "k4", "bare", "+x"},
		{"nobody@local.example", "k5", "@local.example", ""},
		// bare local-part keys do not apply to a remote domain
		{"remote@remote.example", "k7", "@remote.example", ""},
		// no domain at all: local-part forms apply
		{"bare+q", "k4", "bare", "+q"},
	}
	for _, c := range cases {
		m, ok, err := LookupAddress(context.Background(), tb, c.addr, opts)
		if err != nil || !ok || m.Value != c.value || m.Key != c.key || m.Ext != c.ext {
			t.Errorf("%s: got %+v %v %v; want value %s via %s ext %q", c.addr, m, ok, err, c.value, c.key, c.ext)
		}
	}
	if _, ok, _ := LookupAddress(context.Background(), tb, "x@elsewhere.example", opts); ok {
		t.Error("x@elsewhere.example must not match")
	}
	// Without a delimiter, "+" is part of the local part.
	if m, ok, _ := LookupAddress(context.Background(), tb, "full+other@local.example", AddressOptions{IsLocal: opts.IsLocal}); !ok || m.Value != "k5" {
		t.Errorf("without recipient_delimiter: got %+v", m)
	}
}

func TestListOrder(t *testing.T) {
	a, _ := parseText("a", []byte("x 1\n"))
	b, _ := parseText("b", []byte("x 2\ny 3\n@d.example 4\n"))
	l := List{a, b}
	if v, ok := lookup(t, l, "x"); !ok || v != "1" {
		t.Errorf("first table wins: got %q", v)
	}
	if v, ok := lookup(t, l, "y"); !ok || v != "3" {
		t.Errorf("second table answers: got %q", v)
	}
	// Postfix searches each key form across all tables before the next
	// form: the full address in b beats @domain in a.
	c, _ := parseText("c", []byte("@d.example 5\n"))
	d, _ := parseText("d", []byte("u@d.example 6\n"))
	m, ok, _ := LookupAddress(context.Background(), List{c, d}, "u@d.example", AddressOptions{})
	if !ok || m.Value != "6" {
		t.Errorf("key form order across tables: got %+v", m)
	}
}

// A local-domain test that fails fails the lookup once the bare keys
// are needed, and not before: mail_addr_find asks resolve_local after
// the full address and user@domain.
func TestLookupAddressLocalFails(t *testing.T) {
	tab, _ := parseText("t", []byte("user@down.example found\ninfo alias\n"))
	down := errors.New("mydestination table down")
	o := AddressOptions{Delimiters: "+", IsLocalErr: func(string) (bool, error) { return false, down }}
	if m, ok, err := LookupAddress(context.Background(), tab, "user+x@down.example", o); !ok || err != nil || m.Value != "found" {
		t.Errorf("user+x@down.example: %v %v %v", m, ok, err)
	}
	if _, ok, err := LookupAddress(context.Background(), tab, "info@down.example", o); ok || !errors.Is(err, down) {
		t.Errorf("info@down.example: %v %v, want the error", ok, err)
	}
	o.IsLocalErr = func(string) (bool, error) { return true, nil }
	if m, ok, err := LookupAddress(context.Background(), tab, "info@down.example", o); !ok || err != nil || m.Value != "alias" {
		t.Errorf("info@down.example, local: %v %v %v", m, ok, err)
	}
}
