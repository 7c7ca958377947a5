package migrate

import (
	"strings"
	"testing"
)

// A pattern that parses always gives an address with the user in its
// local part and a domain.
func FuzzParsePattern(f *testing.F) {
	for _, s := range []string{"%u@relay.students.iiit.ac.in", "%u@%d", "%u%%@x", "%d-%u@a.%d", "%", "%u@", "@%u", "%u@%", "a@b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePattern(s)
		if err != nil {
			return
		}
		if p.String() != s {
			t.Fatalf("String() %q, want %q", p.String(), s)
		}
		a := p.Expand("zq", "dom.example")
		at := strings.LastIndexByte(a, '@')
		if at < 0 || at == len(a)-1 || !strings.Contains(a[:at], "zq") || strings.Contains(a[at:], "zq") {
			t.Fatalf("%q expands to %q", s, a)
		}
		if strings.ContainsAny(a, " \t\n,") {
			t.Fatalf("%q expands to %q, which a table would split", s, a)
		}
	})
}

// ParsePasswd never panics, and what it returns has names that are
// unique and not empty.
func FuzzParsePasswd(f *testing.F) {
	f.Add(passwd)
	f.Add("+::::::\n-x\na:x:1:2::/h:/bin/sh\r\n")
	f.Add("a:x:99999999999:1::/:/\n")
	f.Fuzz(func(t *testing.T, s string) {
		us, err := ParsePasswd(s)
		if err != nil {
			return
		}
		seen := map[string]bool{}
		for _, u := range us {
			if u.Name == "" || seen[u.Name] {
				t.Fatalf("name %q empty or twice", u.Name)
			}
			seen[u.Name] = true
		}
	})
}

func FuzzParseShells(f *testing.F) {
	f.Add(shells)
	f.Add("  /bin/sh extra\n#/bin/x\nrelative\n")
	f.Fuzz(func(t *testing.T, s string) {
		for sh := range ParseShells(s) {
			if !strings.HasPrefix(sh, "/") || strings.ContainsAny(sh, " \t\n") {
				t.Fatalf("shell %q", sh)
			}
		}
	})
}
