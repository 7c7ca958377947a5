package security

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mailtee/mailtee/test/internal/harness"
)

// A local user attacks through what local(8) reads and writes for her:
// her mbox (home_mailbox = Mailbox) linked to a root-only file, a
// .forward that includes a root-only list, and a .forward command that
// reads a root-only file. Each runs with her rights: the link is refused
// and the mail waits, the list is not read (the mail bounces with a
// configuration error, not with its contents), the command cannot read
// the file; the root-only files are untouched.
func TestHostileLocalUser(t *testing.T) {
	base := harness.TempDir(t)
	eve := newLocalUser(t, base)
	mallory := newLocalUser(t, base)
	secret := filepath.Join(base, "root-only")
	os.WriteFile(secret, []byte("collector@far.example\n"), 0o600)
	before := readAll(t, secret)

	os.Symlink(secret, filepath.Join(eve.Home, "Mailbox"))
	eve.As(t, filepath.Join(eve.Home, "Mailbox"))
	fwd := filepath.Join(mallory.Home, ".forward")
	os.WriteFile(fwd, []byte(":include:"+secret+"\n\"|cat "+secret+" > $HOME/leak; echo ran > $HOME/ran\"\n"), 0o644)
	mallory.As(t, fwd)

	in := newInstance(t, "home_mailbox = Mailbox\n", nil)
	in.Start()
	for _, u := range []string{eve.Name, mallory.Name} {
		if err := harness.Send(in.Addr(), "outsider@far.example", []string{u + "@test.example"}, "Subject: x\r\n\r\nhi\r\n"); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, "both outcomes", slow(30*time.Second), func() bool {
		l := in.Log.String()
		return strings.Contains(l, "to=<"+eve.Name+"@test.example>") && strings.Contains(l, "to=<"+mallory.Name+"@test.example>")
	})
	log := in.Log.String()
	// Opened as eve, the link leads to a file she may not write; one to
	// a file she may would be refused as a link. Either way: deferred.
	if !regexp.MustCompile(`to=<` + eve.Name + `@test.example>, relay=local, .*status=deferred \(cannot update mailbox .*(Permission denied|symbolic link)`).MatchString(log) {
		t.Errorf("eve's linked mailbox was not refused with a deferral:\n%s", log)
	}
	if !strings.Contains(log, "dsn=5.3.5, status=bounced") || strings.Contains(log, "collector@far.example") {
		t.Errorf("mallory's :include: of a root-only file: want a 5.3.5 bounce that names no member:\n%s", log)
	}
	if got := readAll(t, secret); got != before {
		t.Errorf("the root-only file changed: %q", got)
	}
	// The failed :include: does not stop the command (local(8) goes on
	// past a destination that fails), which ran as mallory.
	if _, err := os.Stat(filepath.Join(mallory.Home, "ran")); err != nil {
		t.Errorf("mallory's .forward command did not run: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(mallory.Home, "leak")); err == nil && strings.Contains(string(b), "collector") {
		t.Errorf("mallory's command read the root-only file: %q", b)
	}

	// Eve removes her link: the waiting message arrives, hers.
	os.Remove(filepath.Join(eve.Home, "Mailbox"))
	in.Run("", "queue", "flush")
	waitUntil(t, "eve's mail after the link is gone", slow(30*time.Second), func() bool {
		return strings.Contains(in.Log.String(), "to=<"+eve.Name+"@test.example>, relay=local") && strings.Contains(in.Log.String(), "status=sent (delivered to mailbox)")
	})
	if u, _ := ownerOf(t, filepath.Join(eve.Home, "Mailbox")); u != eve.UID {
		t.Errorf("eve's new mailbox belongs to uid %d", u)
	}
}

func readAll(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
