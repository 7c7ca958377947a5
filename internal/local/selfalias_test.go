package local

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// An alias that names its own user ("user1: user1, x" or, as migrate
// --postfix writes it, "user1: \user1, x"): Postfix 3.7 delivers that
// name as if there were no alias (alias.c's exp_from: deliver_alias
// answers NO), so the user's ~/.forward is read, then the mailbox
// (recipient.c's deliver_switch); the tokenizer has already taken the
// backslash off (recipient.c: "\user ... currently does not work"). The
// user's own name in the .forward keeps a copy in the mailbox
// (dotforward.c: a recursive .forward is not "found").
func TestSelfAliasReadsDotForward(t *testing.T) {
	for _, alias := range []string{"user1: user1, user1@copy.example\n", "user1: \\user1, user1@copy.example\n"} {
		for _, fwd := range []string{"user1@fwd.example\n", "\\user1, user1@fwd.example\n", "user1, user1@fwd.example\n"} {
			l, spool, fw := setup(t, alias)
			homes := withHomes(t, l, "user1")
			os.WriteFile(filepath.Join(homes, "user1", ".forward"), []byte(fwd), 0o644)
			if err := deliverOne(l, msg("Subject: x\r\n\r\n"), "user1@example.org"); err != nil {
				t.Fatalf("%q %q: %v", alias, fwd, err)
			}
			var rcpts []string
			for _, f := range *fw {
				rcpts = append(rcpts, f.rcpts...)
			}
			slices.Sort(rcpts)
			if !slices.Equal(rcpts, []string{"user1@copy.example", "user1@fwd.example"}) {
				t.Errorf("alias %q, .forward %q: forwarded to %v, want the alias's copy and the .forward's address", alias, fwd, rcpts)
			}
			want := 0
			if fwd != "user1@fwd.example\n" {
				want = 1
			}
			if got := mailboxes(t, spool)["user1"]; got != want {
				t.Errorf("alias %q, .forward %q: mailbox got %d, want %d", alias, fwd, got, want)
			}
		}
	}
}
