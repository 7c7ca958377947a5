package local

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailtee/mailtee/internal/deliver"
	"github.com/mailtee/mailtee/internal/maps"
)

// withHomes gives setup's agent users whose homes are under a temporary
// directory, owned by whoever runs the test, and Postfix's forward_path.
func withHomes(t *testing.T, l *Local, names ...string) string {
	t.Helper()
	base := t.TempDir()
	for _, n := range names {
		os.MkdirAll(filepath.Join(base, n), 0o755)
	}
	l.o.Users = func(name string) (User, bool, error) {
		for _, n := range names {
			if n == name {
				return User{Name: n, UID: uint32(os.Getuid()), GID: uint32(os.Getgid()), Home: filepath.Join(base, n)}, true, nil
			}
		}
		return User{}, false, nil
	}
	l.o.ForwardPath = []string{"$home/.forward${recipient_delimiter}${extension}", "$home/.forward"}
	l.o.AllowCommands, l.o.AllowFiles = FromAlias|FromForward, FromAlias|FromForward
	l.o.ForwardFilter = "1234567890!@%-_=+:,./abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	return base
}

// .forward as local(8) reads it: the user's own name (with or without
// a backslash) keeps a copy in the mailbox, other addresses are
// forwarded, and an address extension picks .forward+EXT first.
func TestDotForward(t *testing.T) {
	l, spool, fw := setup(t, "")
	homes := withHomes(t, l, "alice", "bob")
	os.WriteFile(filepath.Join(homes, "alice", ".forward"), []byte("# keep one\n\\alice, alice@far.example\n"), 0o644)
	os.WriteFile(filepath.Join(homes, "bob", ".forward"), []byte("bob@far.example\n"), 0o644)
	os.WriteFile(filepath.Join(homes, "bob", ".forward+lists"), []byte("lists@far.example, \\bob\n"), 0o644)
	for _, r := range []string{"alice@example.org", "bob@example.org", "bob+lists@example.org"} {
		if err := deliverOne(l, msg("Subject: x\r\n\r\n"), r); err != nil {
			t.Fatalf("%s: %v", r, err)
		}
	}
	if got := mailboxes(t, spool); got["alice"] != 1 || got["bob"] != 1 || len(got) != 2 {
		t.Errorf("mailboxes %v, want alice 1 (kept by \\alice) and bob 1 (kept by .forward+lists)", got)
	}
	var rcpts []string
	for _, f := range *fw {
		rcpts = append(rcpts, f.rcpts...)
	}
	if strings.Join(rcpts, " ") != "alice@far.example bob@far.example lists@far.example" {
		t.Errorf("forwarded to %v", rcpts)
	}
}

// A .forward that others may write, or that is a link, is ignored with
// a warning: the mail goes to the mailbox, as with local(8).
func TestDotForwardUnsafeIgnored(t *testing.T) {
	for name, plant := range map[string]func(path string){
		"world-writable": func(p string) { os.WriteFile(p, []byte("thief@far.example\n"), 0o666); os.Chmod(p, 0o666) },
		"symlink": func(p string) {
			target := p + ".real"
			os.WriteFile(target, []byte("thief@far.example\n"), 0o644)
			os.Symlink(target, p)
		},
	} {
		t.Run(name, func(t *testing.T) {
			l, spool, fw := setup(t, "")
			homes := withHomes(t, l, "carol")
			var warned []string
			l.o.Warn = func(m string) { warned = append(warned, m) }
			plant(filepath.Join(homes, "carol", ".forward"))
			if err := deliverOne(l, msg("\r\n"), "carol@example.org"); err != nil {
				t.Fatal(err)
			}
			if len(*fw) != 0 || mailboxes(t, spool)["carol"] != 1 {
				t.Errorf("forwards %v, mailboxes %v: want the mailbox only", *fw, mailboxes(t, spool))
			}
			if len(warned) != 1 || !strings.Contains(warned[0], ".forward") {
				t.Errorf("warnings %q", warned)
			}
		})
	}
}

// :include: files: members are expanded (local users delivered, remote
// forwarded), the list's own name in it is its mailbox, and a command or
// file in an include file is refused unless allow_mail_to_commands and
// allow_mail_to_files name include.
func TestInclude(t *testing.T) {
	dir := t.TempDir()
	members := filepath.Join(dir, "staff")
	os.WriteFile(members, []byte("dave\n# comment\nstaff, far@far.example\n"), 0o644)
	withCmd := filepath.Join(dir, "cmd")
	os.WriteFile(withCmd, []byte("|/bin/true\n"), 0o644)
	l, spool, fw := setup(t, "staff: :include:"+members+"\nrun: :include:"+withCmd+"\nrel: :include:staff\n")
	if err := deliverOne(l, msg("\r\n"), "staff@example.org"); err != nil {
		t.Fatal(err)
	}
	if got := mailboxes(t, spool); got["dave"] != 1 || got["staff"] != 1 {
		t.Errorf("mailboxes %v", got)
	}
	if len(*fw) != 1 || (*fw)[0].rcpts[0] != "far@far.example" {
		t.Errorf("forwards %+v", *fw)
	}
	var de *deliver.Error
	err := deliverOne(l, msg("\r\n"), "run@example.org")
	if !errors.As(err, &de) || !de.Permanent || de.Enhanced != "5.7.1" || !strings.Contains(de.Text, "mail to command is restricted") {
		t.Errorf("command in an :include: file: %v, want 5.7.1 mail to command is restricted", err)
	}
	err = deliverOne(l, msg("\r\n"), "rel@example.org")
	if !errors.As(err, &de) || !de.Permanent || de.Enhanced != "5.3.5" {
		t.Errorf("relative :include: path: %v, want 5.3.5", err)
	}
}

// Commands and files named in an alias are refused where
// allow_mail_to_commands / allow_mail_to_files leave out aliases.
func TestAllowMailTo(t *testing.T) {
	l, _, _ := setup(t, "prog: |/bin/true\nlog: /tmp/never-written\n")
	var de *deliver.Error
	for rcpt, want := range map[string]string{"prog@example.org": "mail to command is restricted", "log@example.org": "mail to file is restricted"} {
		err := deliverOne(l, msg("\r\n"), rcpt)
		if !errors.As(err, &de) || !de.Permanent || !strings.Contains(de.Text, want) {
			t.Errorf("%s: %v, want %q", rcpt, err, want)
		}
	}
}

func TestParseExpansion(t *testing.T) {
	e, err := ParseExpansion([]string{"alias", "Forward"})
	if err != nil || e != FromAlias|FromForward {
		t.Errorf("got %v %v", e, err)
	}
	if _, err := ParseExpansion([]string{"alias", "pipe"}); err == nil {
		t.Error("an unknown word was accepted")
	}
}

// A sender controls the extension: one with a '/' is dropped (it could
// climb out of the home directory in forward_path), and other
// characters outside forward_expansion_filter become '_'.
func TestExtensionCannotLeaveHome(t *testing.T) {
	l, spool, fw := setup(t, "")
	homes := withHomes(t, l, "frank")
	// With the extension "/../x", forward_path's first file would be
	// ~/.forward+/../x, that is ~/x once ~/.forward+ is a directory.
	os.Mkdir(filepath.Join(homes, "frank", ".forward+"), 0o755)
	os.WriteFile(filepath.Join(homes, "frank", "x"), []byte("stolen@far.example\n"), 0o644)
	os.WriteFile(filepath.Join(homes, "frank", ".forward+a_b_"), []byte("filtered@far.example\n"), 0o644)
	if err := deliverOne(l, msg("\r\n"), "frank+/../x@example.org"); err != nil {
		t.Fatal(err)
	}
	if len(*fw) != 0 || mailboxes(t, spool)["frank"] != 1 {
		t.Fatalf("an extension with '/' reached %v", *fw)
	}
	if err := deliverOne(l, msg("\r\n"), "frank+a$b;@example.org"); err != nil {
		t.Fatal(err)
	}
	if len(*fw) != 1 || (*fw)[0].rcpts[0] != "filtered@far.example" {
		t.Errorf("forwards %+v: want .forward+a_b_ read for the extension a$b;", *fw)
	}
}

// Root's rights, and group 0, become default_privs' for commands and
// files (command.c, file.c): a login whose primary group is root
// (RHEL's operator) does not run them with group root.
func TestUnprivileged(t *testing.T) {
	def := User{Name: "nobody", UID: 65534, GID: 65534}
	for _, c := range []struct{ in, want User }{
		{User{}, User{UID: 65534, GID: 65534}},
		{User{Name: "operator", UID: 11, GID: 0, Home: "/root"}, User{Name: "operator", UID: 11, GID: 65534, Home: "/root"}},
		{User{Name: "alice", UID: 1000, GID: 1000}, User{Name: "alice", UID: 1000, GID: 1000}},
	} {
		if got := unprivileged(c.in, def); got != c.want {
			t.Errorf("unprivileged(%+v) = %+v, want %+v", c.in, got, c.want)
		}
	}
}

// A destination that fails for good does not stop the others, as in
// local(8): the list's members get the message, remote ones are
// forwarded, the recipient bounces naming the one that failed, and the
// mailbox_bcc_maps copies of the mailboxes reached are made.
func TestOneFailedDestinationDoesNotStopTheRest(t *testing.T) {
	l, spool, fw := setup(t, "mix: alice, |/bin/true, far@far.example, :include:relative\n")
	bcc := filepath.Join(t.TempDir(), "mbcc")
	os.WriteFile(bcc, []byte("alice alice@relay.example.org\n"), 0o644)
	tb, _, err := maps.Open("hash:" + bcc)
	if err != nil {
		t.Fatal(err)
	}
	l.o.MailboxBCC = tb
	res := l.Deliver(context.Background(), msg("Subject: x\r\n\r\n"), []Rcpt{{Addr: "mix@example.org"}})[0]
	var de *deliver.Error
	if !errors.As(res.Err, &de) || !de.Permanent || de.Enhanced != "5.7.1" ||
		!strings.Contains(de.Text, "mail to command is restricted") || !strings.Contains(de.Text, "relative path") {
		t.Errorf("got %v, want a 5.7.1 bounce naming the command and the relative :include:", res.Err)
	}
	if mailboxes(t, spool)["alice"] != 1 || len(*fw) != 1 || (*fw)[0].rcpts[0] != "far@far.example" {
		t.Errorf("the other destinations: mailboxes %v, forwards %+v", mailboxes(t, spool), *fw)
	}
	if len(res.Add) != 1 || res.Add[0].Addr != "alice@relay.example.org" {
		t.Errorf("alice's copy: %+v", res.Add)
	}
}
