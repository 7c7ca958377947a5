package config

import "testing"

// postfix_queue_directory is Postfix's queue directory for this main.cf:
// what `postconf -h queue_directory` says when the file sets it, else
// Postfix's default (mailtee's own queue_directory default differs).
func TestPostfixQueueDirectory(t *testing.T) {
	for _, tc := range []struct{ cf, want string }{
		{"", "/var/spool/postfix"},
		{"queue_directory = /var/spool/pf2\n", "/var/spool/pf2"},
		{"queue_directory = /q\npostfix_queue_directory = /var/spool/postfix\n", "/var/spool/postfix"},
	} {
		c := parse(t, tc.cf)
		if got := c.Get("postfix_queue_directory"); got != tc.want {
			t.Errorf("%q: postfix_queue_directory = %q, want %q", tc.cf, got, tc.want)
		}
		if d, _ := c.Default("postfix_queue_directory"); d != "/var/spool/postfix" {
			t.Errorf("%q: default %q", tc.cf, d)
		}
		if n := len(diagsMatching(c.Check(), "postfix_queue_directory")); n != 0 {
			t.Errorf("%q: check reports postfix_queue_directory: %v", tc.cf, c.Check())
		}
	}
}
