package master

import (
	"strings"
	"testing"
)

// smtpd honours the order of smtpd_relay_restrictions as Postfix's
// smtpd_check.c does (internal/smtpd's restrict): with
// reject_unauth_destination before any permit_mynetworks, a client in
// mynetworks may not relay. check must then pass that main.cf: an
// error there ("mailtee lets mynetworks relay whatever the order") was
// a false alarm written before smtpd evaluated the lists.
func TestRelayOrderHonoured(t *testing.T) {
	for _, tc := range []struct {
		restrictions string
		relays       bool
	}{
		{"permit_sasl_authenticated, reject_unauth_destination", false},
		{"permit_sasl_authenticated, reject_unauth_destination, permit_mynetworks", false},
		{"permit_mynetworks, reject_unauth_destination", true},
	} {
		dir := t.TempDir()
		port := freePort(t)
		s, _ := serve(t, writeMainCF(t, dir, port, "", "smtpd_relay_restrictions = "+tc.restrictions+"\n"))
		got := rcpt(t, s.listeners[0].Addr().String(), "b@example.com")
		if tc.relays && got != "" || !tc.relays && !(strings.HasPrefix(got, "554 ") && strings.Contains(got, "5.7.1 <b@example.com>: Relay access denied")) {
			t.Errorf("%s: RCPT from mynetworks to another domain: %q, relays %v", tc.restrictions, got, tc.relays)
		}
	}
}
