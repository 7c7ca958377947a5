package users_test

import (
	"strings"
	"testing"

	"github.com/mailtee/mailtee/internal/users"
)

// FuzzParsePasswdLine: what parses has seven fields whose numbers and
// strings come back unchanged when the entry is written out again.
func FuzzParsePasswdLine(f *testing.F) {
	for _, s := range []string{
		"root:x:0:0:root:/root:/bin/bash",
		"nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin",
		"a:x:4294967295:1::/:",
		"a:x:4294967296:1::/:",
		"a:x:-1:1::/:",
		"a:x:1:1::/",
		":x:1:1:::",
		"a:x:+1:1:::",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		u, err := users.ParsePasswdLine(line)
		if err != nil {
			return
		}
		f := strings.Split(line, ":")
		if u.Name == "" || u.Name != f[0] || u.Home != f[5] || u.Shell != f[6] {
			t.Fatalf("%q -> %+v", line, u)
		}
		if strings.ContainsRune(u.Name+u.Home+u.Shell, ':') {
			t.Fatalf("%q -> %+v: field with ':'", line, u)
		}
	})
}
