package diag

import (
	"strings"
	"testing"
)

// A driver's multi-line error stays on its finding's one line, each
// address it tried once.
func TestOneLine(t *testing.T) {
	for in, want := range map[string]string{
		"plain": "plain",
		"failed to connect to `user=u`:\n\t127.0.0.1:5999: refused\n\t127.0.0.1:5999: refused": "failed to connect to `user=u`: 127.0.0.1:5999: refused",
		"a\nb\r\n\nc\n": "a; b; c",
	} {
		if got := OneLine(in); got != want {
			t.Errorf("OneLine(%q) = %q, want %q", in, got, want)
		}
	}
	var l List
	l.Warnf("main.cf", 3, "x: %v", "one\n  two")
	if got := l[0].String(); got != "warning: main.cf, line 3: x: one; two" {
		t.Errorf("finding %q", got)
	}
}

// A database URL in a finding or a log line shows no password, in
// either of libpq's places for it; one without is shown as it is.
func TestRedactURL(t *testing.T) {
	for _, uri := range []string{"postgresql://u@db/mail?password=s3cret", "postgresql://u:s3cret@db/mail", "postgresql://u@db/mail?sslmode=disable&password=s3cret", "postgres://u:s3cret@db:5432/x?pass word=1&password=s3cret"} {
		if r := RedactURL(uri); strings.Contains(r, "s3cret") || !strings.Contains(r, "db") {
			t.Errorf("RedactURL(%s) = %s", uri, r)
		}
	}
	for _, s := range []string{"postgresql://u@db/mail", "inet:db.example.com:5432", "unix:/run/postgresql"} {
		if r := RedactURL(s); r != s {
			t.Errorf("%s without a password changed: %s", s, r)
		}
	}
	for _, bad := range []string{"postgres://u:%zz@db?password=s3cret", "postgres://u:s3cret%zz@db"} {
		if r := RedactURL(bad); strings.Contains(r, "s3cret") {
			t.Errorf("an unparsable URL with a password shown: %s", r)
		}
	}
	if r := RedactURL("10.0.0.1:5432"); r != "10.0.0.1:5432" {
		t.Errorf("a host:port that url.Parse refuses changed: %s", r)
	}
}
