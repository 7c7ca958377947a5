package security

import (
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mailtee/mailtee/test/internal/harness"
)

// newLocalUser is a real login for one test, with a home in base; its
// login shell is /bin/sh, for commands run as it.
func newLocalUser(t *testing.T, base string) harness.User { return harness.NewUser(t, base) }

func ownerOf(t *testing.T, path string) (int, int) { return harness.OwnerOf(t, path) }

// The attack: a local user links ~/Maildir/new to a directory only root
// may write. mailtee used to deliver as root and followed the link, so
// any outside sender's message was created by root in that directory.
// Now the Maildir is written by a helper with her uid and gid: the write
// fails (the mail waits), and once she removes the link her mail arrives
// as her own files.
func TestMaildirLinkAttack(t *testing.T) {
	base := harness.TempDir(t)
	victim := newLocalUser(t, base)
	target := filepath.Join(base, "root-only")
	if err := os.Mkdir(target, 0o700); err != nil {
		t.Fatal(err)
	}
	md := filepath.Join(victim.Home, "Maildir")
	for _, d := range []string{md, filepath.Join(md, "tmp"), filepath.Join(md, "cur")} {
		os.Mkdir(d, 0o700)
		victim.As(t, d)
	}
	if err := os.Symlink(target, filepath.Join(md, "new")); err != nil {
		t.Fatal(err)
	}
	victim.As(t, filepath.Join(md, "new"))

	in := newInstance(t, "home_mailbox = Maildir/\n", nil)
	in.Start()
	rcpt := victim.Name + "@test.example"
	if err := harness.Send(in.Addr(), "outsider@far.example", []string{rcpt}, "Subject: chosen by the sender\r\n\r\nwritten by root?\r\n"); err != nil {
		t.Fatal(err)
	}
	in.WaitLogFor("to=<"+rcpt+">", slow(20*time.Second))
	in.WaitLogFor("status=deferred", slow(20*time.Second))
	if ents, _ := os.ReadDir(target); len(ents) > 0 {
		t.Fatalf("mail was written into the root-only directory through the link: %d entries; log:\n%s", len(ents), in.Log.String())
	}
	if !strings.Contains(in.Log.String(), "Permission denied") {
		t.Errorf("the deferral does not say why; log:\n%s", in.Log.String())
	}

	// She removes the link: the retry delivers, as her.
	os.Remove(filepath.Join(md, "new"))
	in.WaitLogFor("status=sent", slow(30*time.Second))
	files, _ := filepath.Glob(filepath.Join(md, "new", "*"))
	if len(files) != 1 {
		t.Fatalf("%d messages in her Maildir, want 1", len(files))
	}
	for _, p := range []string{files[0], filepath.Join(md, "new")} {
		if uid, gid := ownerOf(t, p); uid != victim.UID || gid != victim.GID {
			t.Errorf("%s is owned by %d:%d, want her %d:%d", p, uid, gid, victim.UID, victim.GID)
		}
	}
	if ents, _ := os.ReadDir(target); len(ents) > 0 {
		t.Errorf("the root-only directory got %d entries", len(ents))
	}
}

// In mail_spool_directory: a new Maildir is made by root and handed to
// its owner (default_privs, nobody, for a name with no passwd entry); a
// link put in the spool and a Maildir an older mailtee left owned by
// root are refused with a deferral that says what to do, and `mailtee
// check` lists the latter.
func TestSpoolMailboxesBelongToTheirRecipients(t *testing.T) {
	base := harness.TempDir(t)
	owner := newLocalUser(t, base)
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody")
	}
	in := newInstance(t, "", nil)
	spool := filepath.Join(in.Dir, "mail")
	target := filepath.Join(base, "root-only")
	os.Mkdir(target, 0o700)
	os.MkdirAll(spool, 0o755)
	os.Symlink(target, filepath.Join(spool, "linked"))
	for _, d := range []string{"new", "cur", "tmp"} {
		os.MkdirAll(filepath.Join(spool, "legacy", d), 0o700)
	}
	out, _ := in.Run("", "check")
	if !strings.Contains(out, "maildir "+filepath.Join(spool, "legacy")+" is owned by root") || !strings.Contains(out, "chown -R "+nobody.Uid+":"+nobody.Gid) {
		t.Errorf("mailtee check does not report the root-owned maildir:\n%s", out)
	}
	in.Start()
	for _, name := range []string{"ghost", owner.Name, "linked", "legacy"} {
		if err := harness.Send(in.Addr(), "outsider@far.example", []string{name + "@test.example"}, "Subject: "+name+"\r\n\r\nhi\r\n"); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, "two deliveries and two deferrals", slow(30*time.Second), func() bool {
		l := in.Log.String()
		return strings.Count(l, "status=sent") >= 2 && strings.Contains(l, "to=<linked@test.example>") && strings.Contains(l, "to=<legacy@test.example>")
	})
	log := in.Log.String()
	for _, want := range []string{"is a symbolic link", "is owned by uid 0, not by its recipient nobody"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	if ents, _ := os.ReadDir(target); len(ents) > 0 {
		t.Errorf("the link's root-only target got %d entries", len(ents))
	}
	check := func(name string, uid, gid int) {
		files, _ := filepath.Glob(filepath.Join(spool, name, "new", "*"))
		if len(files) != 1 {
			t.Fatalf("%s: %d messages, want 1", name, len(files))
		}
		for _, p := range []string{filepath.Join(spool, name), files[0]} {
			if u, g := ownerOf(t, p); u != uid || g != gid {
				t.Errorf("%s is owned by %d:%d, want %d:%d", p, u, g, uid, gid)
			}
		}
	}
	nuid, _ := strconv.Atoi(nobody.Uid)
	ngid, _ := strconv.Atoi(nobody.Gid)
	check("ghost", nuid, ngid)
	check(owner.Name, owner.UID, owner.GID)
	if files, _ := filepath.Glob(filepath.Join(spool, "legacy", "new", "*")); len(files) > 0 {
		t.Errorf("mail was written into the root-owned maildir")
	}
}
