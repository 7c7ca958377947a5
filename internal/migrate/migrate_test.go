package migrate

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/config"
	"github.com/mailtee/mailtee/internal/users"
)

// passwd is the fake name service: people, system accounts, no-login
// accounts, a shell missing from /etc/shells.
const passwd = `root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
sys999:x:999:999::/home/sys999:/bin/bash
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
admin:x:1000:1000::/home/admin:/bin/bash
user1:x:1001:1001::/home/user1:/bin/bash
user2:x:1002:1002::/home/user2:/bin/zsh
user3:x:1003:1003::/home/user3:/bin/bash
user4:x:1004:1004::/home/user4:/usr/sbin/nologin
user5:x:1005:1005::/home/user5:/bin/bash
user6:x:1006:1006::/home/user6:/bin/bash
ftp1:x:1007:1007::/srv/ftp:/bin/false
odd:x:1008:1008::/home/odd:/opt/shell
Caps:x:1009:1009::/home/caps:/bin/bash
empty:x:1010:1010::/home/empty:
user1:x:2001:2001:a second source's user1:/home/other:/bin/bash
`

const shells = "# /etc/shells: valid login shells\n/bin/sh\n/bin/bash\n/usr/bin/bash\n/bin/zsh\n"

const aliases = `postmaster: root
root: admin
staff: user1, user2
user5: user5@elsewhere.example
user3: \user3, user3@archive.example
user2: user2
`

// setup writes main.cf (the lines given, after mydestination and the
// alias file) and its tables into a directory and loads it.
func setup(t *testing.T, mainCf string, files map[string]string) *config.Config {
	t.Helper()
	dir := t.TempDir()
	files["aliases"] = aliases
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	text := strings.ReplaceAll("myhostname = mail.students.iiit.ac.in\nmydomain = students.iiit.ac.in\nmyorigin = $mydomain\n"+
		"mydestination = $myhostname, $mydomain, localhost\nalias_maps = hash:DIR/aliases\n"+mainCf, "DIR", dir)
	if err := os.WriteFile(filepath.Join(dir, "main.cf"), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func build(t *testing.T, cfg *config.Config, pattern string, postfix bool) (*Options, *Result) {
	t.Helper()
	p, err := ParsePattern(pattern)
	if err != nil {
		t.Fatal(err)
	}
	o := &Options{CopyTo: p, Postfix: postfix, MinUID: 1000, Shells: ParseShells(shells),
		Accounts: func(context.Context) ([]users.User, error) { return ParsePasswd(passwd) }}
	if _, err := FromConfig(cfg, o); err != nil {
		t.Fatal(err)
	}
	r, err := Build(context.Background(), *o)
	if err != nil {
		t.Fatal(err)
	}
	return o, r
}

func table(t *testing.T, r *Result) string {
	t.Helper()
	var b bytes.Buffer
	if err := WriteTable(&b, Header{Command: "test", Time: time.Unix(0, 0)}, r.Mailboxes); err != nil {
		t.Fatal(err)
	}
	return entries(b.String())
}

// entries drops the header's comment lines.
func entries(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func skipped(r *Result) map[string]string {
	m := map[string]string{}
	for _, s := range r.Skipped {
		m[s.Name] = s.Why
	}
	return m
}

func TestMailboxBCCTable(t *testing.T) {
	cfg := setup(t, "virtual_alias_maps = hash:DIR/virtual\nvirtual_mailbox_maps = hash:DIR/vmailbox\n", map[string]string{
		"virtual":  "user6@students.iiit.ac.in  someone@else.example\n",
		"vmailbox": "alice@virt.example  virt.example/alice/\n@virt.example  catchall/\nbob@virt.example  virt.example/bob/\n",
	})
	o, r := build(t, cfg, "%u@relay.students.iiit.ac.in", false)
	if o.Domain != "students.iiit.ac.in" || !o.Passwd {
		t.Errorf("Domain %q Passwd %v, want students.iiit.ac.in, true", o.Domain, o.Passwd)
	}
	want := `admin@students.iiit.ac.in   admin@relay.students.iiit.ac.in
alice@virt.example          alice@relay.students.iiit.ac.in
bob@virt.example            bob@relay.students.iiit.ac.in
empty@students.iiit.ac.in   empty@relay.students.iiit.ac.in
user1@students.iiit.ac.in   user1@relay.students.iiit.ac.in
user2@students.iiit.ac.in   user2@relay.students.iiit.ac.in
user3@students.iiit.ac.in   user3@relay.students.iiit.ac.in`
	if got := table(t, r); got != want {
		t.Errorf("table:\n%s\nwant:\n%s", got, want)
	}
	sk := skipped(r)
	for name, why := range map[string]string{
		"root": "system account", "daemon": "system account", "sys999": "system account", "nobody": "nobody",
		"user4": "no login shell", "user5": "aliased away", "user6@students.iiit.ac.in": "virtual_alias_maps",
		"ftp1": "no login shell", "odd": "not in /etc/shells", "Caps": "upper case", "@virt.example": "not a full address",
	} {
		if !strings.Contains(sk[name], why) {
			t.Errorf("skipped %s: %q, want it to say %q", name, sk[name], why)
		}
	}
	// The second source's user1 is not another mailbox.
	if len(r.Mailboxes) != 7 {
		t.Errorf("%d mailboxes, want 7", len(r.Mailboxes))
	}
}

func TestPostfixAliases(t *testing.T) {
	cfg := setup(t, "", map[string]string{})
	_, r := build(t, cfg, "%u@relay.students.iiit.ac.in", true)
	var b bytes.Buffer
	if err := WriteAliases(&b, Header{Command: "test", Time: time.Unix(0, 0)}, r.Mailboxes); err != nil {
		t.Fatal(err)
	}
	want := `admin: \admin, admin@relay.students.iiit.ac.in
empty: \empty, empty@relay.students.iiit.ac.in
user1: \user1, user1@relay.students.iiit.ac.in
user2: \user2, user2@relay.students.iiit.ac.in
user3: \user3, user3@archive.example, user3@relay.students.iiit.ac.in
user6: \user6, user6@relay.students.iiit.ac.in`
	if got := entries(b.String()); got != want {
		t.Errorf("aliases:\n%s\nwant:\n%s", got, want)
	}
	var s bytes.Buffer
	Summary(&s, "mailtee migrate", r, true)
	for _, w := range []string{"user3 already has an alias", "no entry for user5: aliased away in alias_maps", "6 mailboxes written"} {
		if !strings.Contains(s.String(), w) {
			t.Errorf("summary lacks %q:\n%s", w, s.String())
		}
	}
}

// Run again on its own output, first in alias_maps, the result is the
// same: the copy is not added twice.
func TestPostfixAliasesIdempotent(t *testing.T) {
	cfg := setup(t, "", map[string]string{})
	_, r := build(t, cfg, "%u@relay.students.iiit.ac.in", true)
	var b bytes.Buffer
	WriteAliases(&b, Header{Command: "test", Time: time.Unix(0, 0)}, r.Mailboxes)
	cfg2 := setup(t, "alias_maps = hash:DIR/copy, hash:DIR/aliases\n", map[string]string{"copy": b.String()})
	_, r2 := build(t, cfg2, "%u@relay.students.iiit.ac.in", true)
	var b2 bytes.Buffer
	WriteAliases(&b2, Header{Command: "test", Time: time.Unix(0, 0)}, r2.Mailboxes)
	if entries(b.String()) != entries(b2.String()) {
		t.Errorf("second run:\n%s\nfirst:\n%s", entries(b2.String()), entries(b.String()))
	}
}

// local_recipient_maps naming its own table: those are the local
// recipients, NSS accounts are not (Postfix rejects them at RCPT).
func TestLocalRecipientTable(t *testing.T) {
	cfg := setup(t, "local_recipient_maps = hash:DIR/local $alias_maps\n", map[string]string{
		"local": "user1 x\nvuser@students.iiit.ac.in x\ndaemon x\nuser4 x\nremote@other.example x\n@students.iiit.ac.in x\n",
	})
	o, r := build(t, cfg, "%u@%d.copy.example", false)
	if o.Passwd {
		t.Error("Passwd set: local_recipient_maps does not name unix:passwd.byname")
	}
	want := `user1@students.iiit.ac.in   user1@students.iiit.ac.in.copy.example
vuser@students.iiit.ac.in   vuser@students.iiit.ac.in.copy.example`
	if got := table(t, r); got != want {
		t.Errorf("table:\n%s\nwant:\n%s", got, want)
	}
}

// An empty local_recipient_maps accepts every local name: the mailboxes
// are the accounts.
func TestEmptyLocalRecipientMaps(t *testing.T) {
	cfg := setup(t, "local_recipient_maps =\n", map[string]string{})
	o, r := build(t, cfg, "%u@relay.example", false)
	if !o.Passwd || len(r.Mailboxes) != 6 {
		t.Errorf("Passwd %v, %d mailboxes; want true, 6", o.Passwd, len(r.Mailboxes))
	}
}

func TestMinUIDAndDomain(t *testing.T) {
	cfg := setup(t, "", map[string]string{})
	p, _ := ParsePattern("%u@relay.example")
	o := &Options{CopyTo: p, MinUID: 1005, Domain: "mail.students.iiit.ac.in", Shells: ParseShells(shells),
		Accounts: func(context.Context) ([]users.User, error) { return ParsePasswd(passwd) }}
	if _, err := FromConfig(cfg, o); err != nil {
		t.Fatal(err)
	}
	r, err := Build(context.Background(), *o)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := table(t, r), "empty@mail.students.iiit.ac.in   empty@relay.example\nuser6@mail.students.iiit.ac.in   user6@relay.example"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	o.Domain = "elsewhere.example"
	if _, err := Build(context.Background(), *o); err == nil || !strings.Contains(err.Error(), "--domain") {
		t.Errorf("a non-local --domain: %v", err)
	}
}

func TestPostfixCopyInLocalDomain(t *testing.T) {
	cfg := setup(t, "", map[string]string{})
	p, _ := ParsePattern("%u@%d")
	o := &Options{CopyTo: p, Postfix: true, MinUID: 1000, Shells: ParseShells(shells),
		Accounts: func(context.Context) ([]users.User, error) { return ParsePasswd(passwd) }}
	if _, err := FromConfig(cfg, o); err != nil {
		t.Fatal(err)
	}
	if _, err := Build(context.Background(), *o); err == nil || !strings.Contains(err.Error(), "the mailbox itself") {
		t.Errorf("copy to the mailbox itself with --postfix: %v", err)
	}
	o.Postfix = false
	r, err := Build(context.Background(), *o)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Notes) != 1 || !strings.Contains(r.Notes[0], "copy_transport") {
		t.Errorf("notes %q, want one on copy_transport", r.Notes)
	}
}

func TestBadTable(t *testing.T) {
	cfg := setup(t, "virtual_mailbox_maps = regexp:DIR/bad\n", map[string]string{"bad": "/(unclosed/ x\n"})
	o := &Options{}
	_, err := FromConfig(cfg, o)
	var ce *ConfigError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "bad, line 1") {
		t.Errorf("err %v, want a ConfigError naming bad, line 1", err)
	}
	cfg = setup(t, "virtual_mailbox_maps = hash:DIR/missing\n", map[string]string{})
	if _, err := FromConfig(cfg, &Options{}); !errors.As(err, &ce) || !strings.Contains(err.Error(), "missing") {
		t.Errorf("err %v, want a ConfigError naming the missing file", err)
	}
}

func TestUnlistable(t *testing.T) {
	cfg := setup(t, "virtual_mailbox_maps = regexp:DIR/vm\n", map[string]string{"vm": "/^(.*)@virt\\.example$/ virt/$1/\n"})
	_, r := build(t, cfg, "%u@relay.example", false)
	if len(r.Notes) != 1 || !strings.Contains(r.Notes[0], "cannot be listed") {
		t.Errorf("notes %q", r.Notes)
	}
}

func TestParsePattern(t *testing.T) {
	for _, tc := range []struct{ in, user, domain, want, err string }{
		{"%u@relay.students.iiit.ac.in", "user1", "students.iiit.ac.in", "user1@relay.students.iiit.ac.in", ""},
		{"%u@%d", "a", "b.example", "a@b.example", ""},
		{"%u%%x@new.%d", "a", "b.example", "a%x@new.b.example", ""},
		{"copy-%u@archive.example", "a", "b", "copy-a@archive.example", ""},
		{"user@relay.example", "", "", "", "no %u"},
		{"%u", "", "", "", "no '@domain'"},
		{"%u@", "", "", "", "empty domain"},
		{"%d@%u", "", "", "", "puts %u in the domain"},
		{"%u@x%", "", "", "", "lone %"},
		{"%x@y", "", "", "", "unknown %x"},
		{"%u @y", "", "", "", "cannot be part"},
		{"%u@a,b", "", "", "", "cannot be part"},
	} {
		p, err := ParsePattern(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: err %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		if got := p.Expand(tc.user, tc.domain); got != tc.want {
			t.Errorf("%q: %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestParsePasswd(t *testing.T) {
	us, err := ParsePasswd("+::::::\na:x:1:2::/h:/bin/sh\n-b\n\n")
	if err != nil || len(us) != 1 || us[0].Name != "a" {
		t.Errorf("%v %v", us, err)
	}
	if _, err := ParsePasswd("a:x:1:2::/h:/bin/sh\nbroken\n"); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("err %v, want line 2", err)
	}
}

func TestLoginShellsMissing(t *testing.T) {
	s, err := LoginShells(filepath.Join(t.TempDir(), "none"))
	if err != nil || !s["/bin/sh"] || s["/bin/bash"] {
		t.Errorf("%v %v", s, err)
	}
}

// A table type mailtee cannot read is skipped with a warning: Postfix's
// own default alias_maps names nis:mail.aliases.
func TestUnsupportedTableType(t *testing.T) {
	cfg := setup(t, "alias_maps = hash:DIR/aliases, nis:mail.aliases\nvirtual_mailbox_maps = ldap:/etc/postfix/ldap.cf\n", map[string]string{})
	o := &Options{}
	warnings, err := FromConfig(cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 2 || !strings.Contains(warnings[0], "nis:mail.aliases") || !strings.Contains(warnings[1], "ldap:") || len(o.Aliases) != 1 {
		t.Errorf("warnings %q, %d alias tables", warnings, len(o.Aliases))
	}
}
