package config

import (
	"testing"

	"github.com/mailtee/mailtee/internal/diag"
)

// copy_transport's next hop is checked as relayhost's is: a missing ']'
// or a bad port was accepted by check, and every copy then went to a
// next hop that does not exist (or waited) with nothing said at start.
func TestCopyTransportNexthop(t *testing.T) {
	for _, tc := range []struct{ line, match string }{
		{"copy_transport = smtp:[aspmx.l.google.com", "missing ']'"},
		{"copy_transport = smtp:[aspmx.l.google.com]:99999", "bad network port"},
		{"copy_transport = smtp:[aspmx.l.google.com]x", "unexpected text after ']'"},
		{"copy_transport = relay:mx..example", "empty label"},
	} {
		d := parse(t, tc.line+"\n").Check()
		m := diagsMatching(d, tc.match)
		if len(m) != 1 || m[0].Severity != diag.Error || m[0].Line != 1 {
			t.Errorf("%q: want one error at line 1 containing %q, got %v", tc.line, tc.match, d)
		}
	}
	for _, ok := range []string{"copy_transport = smtp:[aspmx.l.google.com]", "copy_transport = smtp:[aspmx.l.google.com]:25",
		"copy_transport = smtp:", "copy_transport = relay", "copy_transport = smtp:[2001:db8::1]", "copy_transport = smtp:[ipv6:2001:db8::1]:587",
		"copy_transport = lmtp:unix:/var/run/lmtp", "copy_transport = lmtp:inet:[127.0.0.1]:24", "copy_transport = smtp:relay.example:587"} {
		if d := parse(t, ok+"\n").Check(); d.HasErrors() {
			t.Errorf("%q: %v", ok, d.Err())
		}
	}
}
