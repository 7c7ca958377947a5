package migrate

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// The advice that goes with --postfix output rewrites alias_maps: it
// must keep the tables main.cf has there (an LDAP table of lists, an
// alias file elsewhere than /etc/aliases), not replace them all with
// hash:/etc/aliases, which would drop every alias they hold.
func TestPostfixAdviceKeepsAliasMaps(t *testing.T) {
	h := Header{Command: "test", Time: time.Unix(0, 0),
		AliasMaps: "hash:/etc/postfix/aliases, ldap:/etc/postfix/ldap-lists.cf", AliasDatabase: "hash:/etc/postfix/aliases"}
	var b bytes.Buffer
	if err := WriteAliases(&b, h, []Mailbox{{Addr: "user1@x.example", User: "user1", Copy: "user1@relay.example"}}); err != nil {
		t.Fatal(err)
	}
	for _, text := range []string{b.String(), strings.Join(PostfixAdvice(h), "\n")} {
		if !strings.Contains(text, "alias_maps = hash:/etc/postfix/aliases_copy, hash:/etc/postfix/aliases, ldap:/etc/postfix/ldap-lists.cf") ||
			!strings.Contains(text, "alias_database = hash:/etc/postfix/aliases_copy, hash:/etc/postfix/aliases") {
			t.Errorf("the advice drops main.cf's alias tables:\n%s", text)
		}
		if strings.Contains(text, "hash:/etc/aliases") {
			t.Errorf("the advice names hash:/etc/aliases, which main.cf does not use:\n%s", text)
		}
	}
}
