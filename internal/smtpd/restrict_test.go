package smtpd

import "testing"

// The restriction lists as smtpd_check.c evaluates them: the relay list
// first, the first permit ends a list, the first reject or defer ends
// the command; a nil Restrictions is Postfix's default relay list.
func TestRestrict(t *testing.T) {
	for _, tc := range []struct {
		relay, rcpt     []string
		mynet, authDest bool
		want            string
	}{
		{nil, nil, false, false, "554 5.7.1 <x@y>: Relay access denied"},
		{nil, nil, true, false, ""},
		{nil, nil, false, true, ""},
		{nil, []string{"reject"}, true, true, "554 5.7.1 <x@y>: Recipient address rejected: Access denied"},
		{nil, []string{"permit_mynetworks", "reject"}, true, true, ""},
		{nil, []string{"permit_mynetworks", "reject"}, false, true, "554 5.7.1 <x@y>: Recipient address rejected: Access denied"},
		{nil, []string{"permit_mynetworks", "DEFER"}, false, true, "450 4.3.2 <x@y>: Recipient address rejected: Try again later"},
		{[]string{}, []string{"permit_sasl_authenticated", "reject_unauth_destination"}, false, false, "554 5.7.1 <x@y>: Relay access denied"},
		{[]string{"permit", "reject"}, []string{"reject_unauth_destination"}, true, false, "554 5.7.1 <x@y>: Relay access denied"},
		{[]string{"permit"}, []string{"permit", "reject"}, false, false, ""},
	} {
		p := &Policy{}
		if tc.relay != nil || tc.rcpt != nil {
			p.Restrictions = &Restrictions{Relay: tc.relay, Recipient: tc.rcpt}
			if tc.relay == nil {
				p.Restrictions.Relay = defaultRestrictions.Relay
			}
		}
		got := ""
		if r := p.restrict(tc.mynet, tc.authDest, "x@y"); r != nil {
			got = replyText(r)
		}
		if got != tc.want {
			t.Errorf("relay %q, recipient %q, mynetworks %v, our domain %v: %q, want %q", tc.relay, tc.rcpt, tc.mynet, tc.authDest, got, tc.want)
		}
	}
}
