package migrate

import (
	"context"
	"strings"
	"testing"

	"github.com/mailtee/mailtee/internal/users"
)

// An account whose name a table line cannot hold (a blank in it, as an
// LDAP directory may have; a '#' first, a comment) must not be written
// as a broken line: "john smith@d   john smith@relay" is the key "john"
// with a value that is no address. It gets no entry, with the reason.
func TestOddAccountNames(t *testing.T) {
	cfg := setup(t, "", map[string]string{})
	p, err := ParsePattern("%u@relay.students.iiit.ac.in")
	if err != nil {
		t.Fatal(err)
	}
	o := &Options{CopyTo: p, MinUID: 1000, Shells: ParseShells(shells),
		Accounts: func(context.Context) ([]users.User, error) {
			return ParsePasswd("john smith:x:1001:1001::/home/js:/bin/bash\n#hash:x:1002:1002::/home/h:/bin/bash\ntab\there:x:1003:1003::/home/t:/bin/bash\nok1:x:1004:1004::/home/ok1:/bin/bash\n")
		}}
	if _, err := FromConfig(cfg, o); err != nil {
		t.Fatal(err)
	}
	r, err := Build(context.Background(), *o)
	if err != nil {
		t.Fatal(err)
	}
	got := table(t, r)
	for _, line := range strings.Split(got, "\n") {
		if f := strings.Fields(line); len(f) != 2 || strings.HasPrefix(line, "#") {
			t.Errorf("table line %q is not one key and one address", line)
		}
	}
	if !strings.Contains(got, "ok1@students.iiit.ac.in") {
		t.Errorf("ok1 is missing:\n%s", got)
	}
	sk := skipped(r)
	for _, name := range []string{"john smith", "#hash", "tab\there"} {
		if sk[name] == "" {
			t.Errorf("%q: no entry and no reason given (skipped: %v)", name, sk)
		}
	}
}
