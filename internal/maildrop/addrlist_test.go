package maildrop

import (
	"reflect"
	"strings"
	"testing"
)

// sendmail -t reads what cron, mail(1) and scripts write, as Postfix
// does: bare local names, every To/Cc/Bcc field, comments, groups.
func TestExtractRecipientsLoose(t *testing.T) {
	for _, c := range []struct {
		hdr  string
		want []string
	}{
		{"To: root\r\n", []string{"root"}},
		{"To: root, alice\r\nCc: bob (the admin)\r\n", []string{"root", "alice", "bob"}},
		{"To: a@example.org\r\nTo: b@example.org\r\n", []string{"a@example.org", "b@example.org"}},
		{"To: John Q. Public <jqp@example.org>, root\r\n", []string{"jqp@example.org", "root"}},
		{"To: undisclosed-recipients:;\r\nBcc: alice\r\n", []string{"alice"}},
		{"To: \"Doe, Jane\" <jane@example.org>\r\n", []string{"jane@example.org"}},
	} {
		got, _, err := ExtractRecipients([]byte(c.hdr))
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("%q: %q %v, want %q", c.hdr, got, err, c.want)
		}
	}
	for _, bad := range []string{"To: <broken\r\n", "To: a (unclosed\r\n", "To: two words\r\n"} {
		if got, _, err := ExtractRecipients([]byte(bad)); err == nil {
			t.Errorf("%q: %q, want an error", bad, got)
		}
	}
}

// FuzzHeaderAddresses: no panic, and no address with a blank, a line
// end or a bracket, whatever the header says.
func FuzzHeaderAddresses(f *testing.F) {
	for _, s := range []string{"root", "a@b, c", "John <j@x>", "g:;", "\"q, r\" <s@t> (c (n))", "<", "a\\", "((", "x:<y>;"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		list, err := headerAddresses(v)
		if err != nil {
			return
		}
		for _, a := range list {
			if a == "" || strings.ContainsAny(a, "\r\n") {
				t.Fatalf("%q: address %q", v, a)
			}
		}
	})
}
