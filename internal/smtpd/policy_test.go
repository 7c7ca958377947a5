package smtpd

import (
	"context"
	"net/netip"
	"testing"

	"github.com/mailtee/mailtee/internal/address"
)

// RFC 5321 Appendix C (and 3.6.1): a source route is stripped and the
// final address alone decides, as Postfix's trivial-rewrite strips it. A
// route through a local domain grants no relaying; a route in front of
// a local address does not make it relaying; routing in the final local
// part (%, !) is still refused from outside mynetworks.
func TestSourceRouteFinalAddress(t *testing.T) {
	p := testPolicy(t, notUs)
	client := netip.MustParseAddr("127.0.0.1")
	for in, want := range map[string]int{
		"<@hop.example:alice@example.com>":              0,
		"<@hop.example,@other.example:bob@example.com>": 0,
		"<@hop.example:info@virtual.example>":           0,
		"<@example.com:x@foreign.example>":              554,
		"<@hop.example,@example.com:x@foreign.example>": 554,
		"<@relay.example:x@foreign.example>":            554,
		"<@hop.example:x%foreign.example@example.com>":  554,
		"<@hop.example:nobody@example.com>":             550,
	} {
		a, err := address.Parse(in)
		if err != nil {
			t.Fatalf("Parse(%q): %v", in, err)
		}
		got := 0
		if r := p.checkRcpt(context.Background(), client, a); r != nil {
			got = r.Code
		}
		if got != want {
			t.Errorf("RCPT TO:%s from outside mynetworks: %d, want %d (0: accepted)", in, got, want)
		}
	}
}
