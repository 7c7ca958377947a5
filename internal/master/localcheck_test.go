package master

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailtee/mailtee/internal/config"
	"github.com/mailtee/mailtee/internal/diag"
)

// localCfg writes main.cf with local domains and the lines of extra, and
// loads it.
func localCfg(t *testing.T, dir, extra string) *config.Config {
	t.Helper()
	cf := "myhostname = mx.example.org\nmydestination = $myhostname, localhost\nalias_maps =\n" + extra
	if err := os.WriteFile(filepath.Join(dir, "main.cf"), []byte(cf), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// one returns the single finding of severity sev containing sub, failing
// the test when there is not exactly one.
func one(t *testing.T, l diag.List, sev diag.Severity, sub string) diag.Diag {
	t.Helper()
	var got []diag.Diag
	for _, d := range l {
		if d.Severity == sev && strings.Contains(d.Msg, sub) {
			got = append(got, d)
		}
	}
	if len(got) != 1 {
		t.Fatalf("want one %v containing %q, got:\n%v", sev, sub, l)
	}
	return got[0]
}

// Postfix's rule for who owns a new mailbox in the spool
// (src/local/mailbox.c): a group-writable spool such as Debian's
// /var/mail (root:mail 2775) gives user:spoolgroup; a world-writable one
// user:user; any other, root creates it and hands it over.
func TestLocalMboxInSpool(t *testing.T) {
	dir := t.TempDir()
	spool := filepath.Join(dir, "mail")
	os.Mkdir(spool, 0o755)
	for _, tc := range []struct {
		mode os.FileMode
		want string
	}{
		{0o775 | os.ModeSetgid, "created as the user with the spool's group"},
		{0o777 | os.ModeSticky, "created as the user (owner user:user's group"},
		{0o755, "created by root and handed to the user"},
	} {
		if err := os.Chmod(spool, tc.mode); err != nil {
			t.Fatal(err)
		}
		cfg := localCfg(t, dir, "mail_spool_directory = "+spool+"\nmailbox_delivery_lock = dotlock\nmailbox_size_limit = 0\n")
		d := one(t, LocalDeliveryFindings(cfg), diag.Info, "mbox file "+spool+"/USER")
		if !strings.Contains(d.Msg, tc.want) || !strings.Contains(d.Msg, "locked with dotlock") || !strings.Contains(d.Msg, "no mailbox size limit") || d.Line != 4 {
			t.Errorf("mode %v: want %q, dotlock and no limit at line 4 in %v", tc.mode, tc.want, d)
		}
	}
}

// A missing spool cannot take mbox mail: local(8) does not create it and
// every message would bounce. A missing Maildir spool is created by
// mailtee (internal/local/spool.go), so it is only said.
func TestLocalMissingSpool(t *testing.T) {
	dir := t.TempDir()
	spool := filepath.Join(dir, "nomail")
	cfg := localCfg(t, dir, "mail_spool_directory = "+spool+"\n")
	d := one(t, LocalDeliveryFindings(cfg), diag.Error, "mail_spool_directory = "+spool+" does not exist")
	if d.Line != 4 || d.File != filepath.Join(dir, "main.cf") {
		t.Errorf("want main.cf, line 4: %v", d)
	}
	if all, _ := Check(cfg); !all.HasErrors() {
		t.Errorf("Check does not refuse the missing spool: %v", all)
	}
	cfg = localCfg(t, dir, "mail_spool_directory = "+spool+"/\n")
	if l := LocalDeliveryFindings(cfg); l.HasErrors() {
		t.Errorf("Maildir spool: %v", l)
	}
	one(t, LocalDeliveryFindings(cfg), diag.Info, "created at the first delivery")
	// Without local domains, nothing is said.
	cfg = localCfg(t, dir, "mail_spool_directory = "+spool+"\nmydestination =\n")
	if l := LocalDeliveryFindings(cfg); len(l) != 0 {
		t.Errorf("no local domains: %v", l)
	}
}

func TestLocalHomeMailbox(t *testing.T) {
	dir := t.TempDir()
	one(t, LocalDeliveryFindings(localCfg(t, dir, "home_mailbox = Maildir/\n")), diag.Info, "Maildir $HOME/Maildir/ of each user")
	d := one(t, LocalDeliveryFindings(localCfg(t, dir, "home_mailbox = Mailbox\nmailbox_size_limit = 20480000\n")), diag.Info, "mbox file $HOME/Mailbox")
	if !strings.Contains(d.Msg, "at most 20480000 bytes") || !strings.Contains(d.Msg, "fcntl, dotlock") {
		t.Errorf("want the limit and the default locks: %v", d)
	}
}

// local(8) stops when a mailbox could not hold a message of the largest
// accepted size (src/local/local.c).
func TestLocalSizeLimits(t *testing.T) {
	dir := t.TempDir()
	d := one(t, LocalDeliveryFindings(localCfg(t, dir, "mailbox_size_limit = 1000\n")), diag.Error, "smaller than message_size_limit")
	if d.Line != 4 {
		t.Errorf("want line 4: %v", d)
	}
	one(t, LocalDeliveryFindings(localCfg(t, dir, "mailbox_size_limit = 1000\nmessage_size_limit = 0\n")), diag.Error, "message_size_limit is unlimited")
	if l := LocalDeliveryFindings(localCfg(t, dir, "mailbox_size_limit = 0\nmessage_size_limit = 0\n")); l.HasErrors() {
		t.Errorf("no limits at all: %v", l)
	}
}

func TestLocalMailboxCommand(t *testing.T) {
	dir := t.TempDir()
	prog := filepath.Join(dir, "deliver")
	os.WriteFile(prog, []byte("#!/bin/sh\ncat >/dev/null\n"), 0o755)
	one(t, LocalDeliveryFindings(localCfg(t, dir, "mailbox_command = "+prog+" -a \"$EXTENSION\"\n")), diag.Info, "delivered by mailbox_command = "+prog)

	os.Chmod(prog, 0o644)
	d := one(t, LocalDeliveryFindings(localCfg(t, dir, "mailbox_command = "+prog+"\n")), diag.Error, prog+" is not executable")
	if d.Line != 4 {
		t.Errorf("want line 4: %v", d)
	}
	one(t, LocalDeliveryFindings(localCfg(t, dir, "mailbox_command = "+dir+"/nosuch -d $USER\n")), diag.Error, dir+"/nosuch: no such file or directory")
	one(t, LocalDeliveryFindings(localCfg(t, dir, "mailbox_command = no-such-program-mailtee -d $USER\n")), diag.Error, "no-such-program-mailtee is not an absolute path and is not in /bin or /usr/bin")
	// Debian's installer writes "procmail -a "$EXTENSION"": Postfix finds
	// a bare name in /bin or /usr/bin; check asks for the full path.
	w := one(t, LocalDeliveryFindings(localCfg(t, dir, "mailbox_command = sh -c 'cat >/dev/null'\n")), diag.Warning, "sh is not an absolute path")
	if !strings.Contains(w.Msg, "write /bin/sh") && !strings.Contains(w.Msg, "write /usr/bin/sh") {
		t.Errorf("want the full path: %v", w)
	}
}

// Alias entries that deliver to a command or a file bounce where
// allow_mail_to_commands / allow_mail_to_files do not allow the class
// (src/local/token.c, file.c); so do those in :include: files without
// "include". Each is an error at the alias file's line.
func TestLocalAliasRestrictions(t *testing.T) {
	dir := t.TempDir()
	inc := filepath.Join(dir, "list.inc")
	os.WriteFile(inc, []byte("# members\nalice\n|/usr/bin/archive\n/var/log/list.log\n"), 0o644)
	aliases := filepath.Join(dir, "aliases")
	os.WriteFile(aliases, []byte("postmaster: root\nprog: \"|/usr/bin/vacation bob\", bob\nlog:\n  /var/log/mail-copy\nlist: :include:"+inc+"\n"), 0o644)
	extra := "alias_maps = hash:" + aliases + "\n"

	// Postfix's defaults: alias, forward: the alias file's entries pass,
	// the :include: file's command and file do not.
	l := LocalDeliveryFindings(localCfg(t, dir, extra))
	d := one(t, l, diag.Error, "|/usr/bin/archive: mail to command is restricted")
	if d.File != inc || d.Line != 3 || !strings.Contains(d.Msg, `does not include "include"`) {
		t.Errorf("want %s, line 3: %v", inc, d)
	}
	if d := one(t, l, diag.Error, "/var/log/list.log: mail to file is restricted"); d.File != inc || d.Line != 4 {
		t.Errorf("want %s, line 4: %v", inc, d)
	}
	if len(l) != 3 { // the info, and the two
		t.Errorf("want the info and two errors: %v", l)
	}

	l = LocalDeliveryFindings(localCfg(t, dir, extra+"allow_mail_to_commands = forward\nallow_mail_to_files = forward, include\n"))
	if d := one(t, l, diag.Error, "alias prog: |/usr/bin/vacation bob: mail to command is restricted"); d.File != aliases || d.Line != 2 {
		t.Errorf("want %s, line 2: %v", aliases, d)
	}
	if d := one(t, l, diag.Error, "alias log: /var/log/mail-copy: mail to file is restricted"); d.File != aliases || d.Line != 3 {
		t.Errorf("want %s, line 3: %v", aliases, d)
	}
	one(t, l, diag.Error, "|/usr/bin/archive: mail to command is restricted")
	if n := len(l); n != 4 {
		t.Errorf("want the info and three errors: %v", l)
	}

	l = LocalDeliveryFindings(localCfg(t, dir, extra+"allow_mail_to_commands = alias, forward, include\nallow_mail_to_files = alias, include\n"))
	if l.HasErrors() {
		t.Errorf("all allowed: %v", l)
	}
}

// Shell syntax in mailbox_command is not taken for a missing program:
// such a command runs through /bin/sh (review finding: "exec
// /usr/bin/procmail" and "umask 077; ..." stopped serve).
func TestMailboxCommandShellSyntaxNotRefused(t *testing.T) {
	for _, cmd := range []string{"exec /nonexistent/procmail -a x", "umask 077; /nonexistent/procmail", "/bin/cat -a \"$EXTENSION\""} {
		cfg := config.Parse("/etc/postfix", "/etc/postfix/main.cf", []byte("mailbox_command = "+cmd+"\n"))
		if d := mailboxCommandFindings(cfg); d.HasErrors() {
			t.Errorf("%s: %v", cmd, d)
		}
	}
	cfg := config.Parse("/etc/postfix", "/etc/postfix/main.cf", []byte("mailbox_command = /usr/bin/procmial -a x\n"))
	if d := mailboxCommandFindings(cfg); !d.HasErrors() {
		t.Errorf("a missing program is not refused: %v", d)
	}
}

// mailbox_delivery_lock is checked by mbox's own rules: an unknown word,
// and an empty value (no locking at all, which local(8) refuses).
func TestMailboxDeliveryLockChecked(t *testing.T) {
	for v, want := range map[string]string{
		"fcntl, dotlock": "",
		"fcntl, dotlok":  `unknown mailbox_delivery_lock value "dotlok"`,
		"":               "no applicable mailbox locking method",
	} {
		cfg := config.Parse("/etc/postfix", "/etc/postfix/main.cf", []byte("mydestination = localhost\nmailbox_delivery_lock = "+v+"\n"))
		err := LocalDeliveryFindings(cfg).Err()
		switch {
		case want == "" && err != nil && strings.Contains(err.Error(), "mailbox_delivery_lock"):
			t.Errorf("%q: %v", v, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "line 2")):
			t.Errorf("%q: got %v, want %q at line 2", v, err, want)
		}
	}
}
