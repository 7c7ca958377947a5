package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/users/userstest"
	"github.com/mailtee/mailtee/test/internal/harness"
)

// migrateUsers are the accounts of the migrate tests, made with useradd
// and removed when the test ends. People get uids from base up, in a
// range useradd never picks by itself (above UID_MAX 60000, below
// nobody), so that a run with --min-uid base sees only them whatever
// other accounts the machine has.
type migrateUsers struct {
	prefix string
	base   int
}

func newMigrateUsers(t *testing.T) migrateUsers {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: useradd")
	}
	for _, tool := range []string{"useradd", "userdel", "getent"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not found", tool)
		}
	}
	// 64000-65399: useradd picks uids up to UID_MAX (60000) by itself,
	// and other tests take theirs below 64000 (TestNSSOnlyUserGetsMail:
	// 62000-62999).
	pid := os.Getpid()
	u := migrateUsers{prefix: fmt.Sprintf("mg%d", pid%1000)}
	for k := 0; ; k++ {
		if k == 20 {
			t.Skip("no free uid range for the migrate test's users")
		}
		base := 64000 + (pid+k*7)%140*10
		free := true
		for i := 0; i < 10; i++ {
			if err := exec.Command("getent", "passwd", fmt.Sprint(base+i)).Run(); err == nil {
				free = false
			}
		}
		if free {
			u.base = base
			break
		}
	}
	return u
}

// add makes PREFIX+suffix with uid (0: a system uid from useradd -r)
// and shell.
func (m migrateUsers) add(t *testing.T, suffix string, uid int, shell string) string {
	t.Helper()
	name := m.prefix + suffix
	exec.Command("userdel", name).Run()
	args := []string{"-M", "-N", "-s", shell}
	if uid == 0 {
		args = append(args, "-r")
	} else {
		args = append(args, "-u", fmt.Sprint(uid))
	}
	if out, err := exec.Command("useradd", append(args, name)...).CombinedOutput(); err != nil {
		t.Fatalf("useradd %s: %v %s", name, err, out)
	}
	t.Cleanup(func() { exec.Command("userdel", name).Run() })
	if uid == 0 {
		lu, err := user.Lookup(name)
		if err != nil {
			t.Fatal(err)
		}
		if n, _ := strconv.Atoi(lu.Uid); n >= 1000 {
			t.Fatalf("useradd -r gave %s uid %s, not a system uid", name, lu.Uid)
		}
	}
	return name
}

// runMigrateCmd runs the built mailtee migrate; stdout and stderr apart.
func runMigrateCmd(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return runBin(t, append([]string{"migrate"}, args...)...)
}

// tableLines are the non-comment lines of an output.
func migrateEntries(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return out
}

// The server's users, system accounts, aliases and a list: mailtee
// migrate writes an entry for exactly the real mailboxes.
func TestMigrateRealMailboxes(t *testing.T) {
	u := newMigrateUsers(t)
	p := u.prefix
	a := u.add(t, "a", u.base, "/bin/bash")     // user1
	b := u.add(t, "b", u.base+1, "/bin/bash")   // user2
	adm := u.add(t, "adm", u.base+2, "/bin/sh") // admin, root's alias
	nol := u.add(t, "nol", u.base+3, "/usr/sbin/nologin")
	away := u.add(t, "away", u.base+4, "/bin/bash") // user5: aliased away
	sys := u.add(t, "sys", 0, "/bin/bash")          // uid < 1000
	// Known only to the name service (libnss-extrausers), as an LDAP or
	// SSSD account.
	nss := p + "nss"
	userstest.AddNSSUser(t, nss, u.base+5, u.base+5, "/nonexistent")
	dir := t.TempDir()
	aliases := fmt.Sprintf(`postmaster: root
root: %[2]s
%[1]sstaff: %[3]s, %[4]s
%[5]s: %[5]s@elsewhere.example
%[1]sold: %[3]s
%[6]s: %[3]s
`, p, adm, a, b, away, sys)
	if err := os.WriteFile(filepath.Join(dir, "aliases"), []byte(aliases), 0o644); err != nil {
		t.Fatal(err)
	}
	mainCf := "myhostname = mail.students.iiit.ac.in\nmydomain = students.iiit.ac.in\nmyorigin = $mydomain\n" +
		"mydestination = $myhostname, $mydomain, localhost\nalias_maps = hash:$config_directory/aliases\n"
	if err := os.WriteFile(filepath.Join(dir, "main.cf"), []byte(mainCf), 0o644); err != nil {
		t.Fatal(err)
	}
	want := []string{
		a + "@students.iiit.ac.in   " + a + "@relay.students.iiit.ac.in",
		adm + "@students.iiit.ac.in   " + adm + "@relay.students.iiit.ac.in",
		b + "@students.iiit.ac.in   " + b + "@relay.students.iiit.ac.in",
		nss + "@students.iiit.ac.in   " + nss + "@relay.students.iiit.ac.in",
	}
	// Exactly these, when only this test's people are above --min-uid.
	out, errs, code := runMigrateCmd(t, "-c", dir, "--copy-to", "%u@relay.students.iiit.ac.in", "--min-uid", fmt.Sprint(u.base))
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, errs)
	}
	var got []string
	for _, l := range migrateEntries(out) {
		got = append(got, strings.Join(strings.Fields(l), "   "))
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("output:\n%s\nwant exactly:\n%s\nstderr:\n%s", out, strings.Join(want, "\n"), errs)
	}
	if !strings.Contains(out, "# mailbox_bcc_maps table, made by mailtee migrate on ") {
		t.Errorf("no header comment:\n%s", out)
	}
	for _, w := range []string{"no entry for " + nol + ": no login shell", "no entry for " + away + ": aliased away", "4 mailboxes written"} {
		if !strings.Contains(errs, w) {
			t.Errorf("stderr lacks %q:\n%s", w, errs)
		}
	}
	// With the default --min-uid the machine's other people may be there
	// too, but of this test's accounts exactly the same three.
	out, errs, code = runMigrateCmd(t, "-c", dir, "--copy-to", "%u@relay.students.iiit.ac.in")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, errs)
	}
	got = nil
	for _, l := range migrateEntries(out) {
		if strings.HasPrefix(l, p) {
			got = append(got, strings.Join(strings.Fields(l), "   "))
		}
		if strings.HasPrefix(l, "root@") || strings.HasPrefix(l, "nobody@") || strings.HasPrefix(l, "postmaster@") {
			t.Errorf("a system account or alias in the output: %s", l)
		}
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("this test's accounts with the default --min-uid:\n%s\nwant:\n%s\nstderr:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"), errs)
	}
	// The table works as it is: mailtee's postmap reads it.
	tf := filepath.Join(dir, "mailbox_bcc")
	os.WriteFile(tf, []byte(out), 0o644)
	if q, err := exec.Command(harness.Bin, "postmap", "-c", dir, "-q", a+"@students.iiit.ac.in", "hash:"+tf).CombinedOutput(); err != nil || strings.TrimSpace(string(q)) != a+"@relay.students.iiit.ac.in" {
		t.Errorf("postmap -q on the output: %v %q", err, q)
	}

	// Bad input exits 1 and names the file and line.
	os.WriteFile(filepath.Join(dir, "main.cf"), []byte(mainCf+"virtual_mailbox_maps = regexp:$config_directory/vm\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "vm"), []byte("# comment\n/(unclosed/ x\n"), 0o644)
	if _, errs, code := runMigrateCmd(t, "-c", dir, "--copy-to", "%u@relay.example"); code != 1 || !strings.Contains(errs, filepath.Join(dir, "vm")+", line 2") {
		t.Errorf("a bad table: exit %d, want 1 naming vm, line 2:\n%s", code, errs)
	}
	if _, errs, code := runMigrateCmd(t, "-c", dir, "--copy-to", "relay.example"); code != 1 || !strings.Contains(errs, "no %u") {
		t.Errorf("a pattern without %%u: exit %d, want 1:\n%s", code, errs)
	}
}

// The table, as written, is a mailtee primary's mailbox_bcc_maps: mail
// to a list makes one copy per member, mail to a member one copy, an
// account aliased away none of its own.
func TestMigrateMailteePrimary(t *testing.T) {
	u := newMigrateUsers(t)
	p := u.prefix
	a := u.add(t, "a", u.base, "/bin/bash")
	b := u.add(t, "b", u.base+1, "/bin/bash")
	away := u.add(t, "away", u.base+2, "/bin/bash")
	sk := newSink(t, "", nil)
	in := newInstance(t, "", map[string]string{
		"aliases": fmt.Sprintf("postmaster: %[2]s\n%[1]sstaff: %[2]s, %[3]s, %[4]s\n%[4]s: %[2]s\n", p, a, b, away),
	})
	out, errs, code := runMigrateCmd(t, "-c", in.Dir, "--copy-to", "%u@relay.example", "--min-uid", fmt.Sprint(u.base))
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, errs)
	}
	if n := len(migrateEntries(out)); n != 2 {
		t.Fatalf("%d entries, want 2 (%s, %s):\n%s\n%s", n, a, b, out, errs)
	}
	in.WriteFile("mailbox_bcc", out)
	cf, err := os.OpenFile(filepath.Join(in.Dir, "main.cf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(cf, "mailbox_bcc_maps = hash:$config_directory/mailbox_bcc\ntransport_maps = inline:{ relay.example=smtp:[127.0.0.1]:%d }\n", sk.Port())
	cf.Close()
	in.Start()
	defer in.Stop()
	for _, m := range []struct {
		to      []string
		subject string
	}{
		{[]string{p + "staff"}, "to-list"}, {[]string{a}, "to-a"}, {[]string{away}, "to-away"}, {[]string{p + "staff", a}, "to-both"},
	} {
		var to []string
		for _, r := range m.to {
			to = append(to, r+"@test.example")
		}
		if err := send(in.Addr(), "sender@outside.example", to, testMessage(m.subject)); err != nil {
			t.Fatal(err)
		}
	}
	copies := func() map[string]int { // "rcpt subject" -> count
		m := map[string]int{}
		for _, s := range sk.Messages() {
			for _, r := range s.To {
				m[strings.ToLower(r)+" "+migrateSubject(s.Data)]++
			}
		}
		return m
	}
	waitUntil(t, "the copies", 60*time.Second, func() bool {
		return len(copies()) >= 6 && len(in.MaildirMessages(a)) >= 4 && len(in.MaildirMessages(b)) >= 2
	})
	time.Sleep(2 * time.Second) // a late duplicate would show now
	got := copies()
	// The message to the account aliased away reaches a's mailbox, which
	// makes the copy; the one to the list and to a member reaches each
	// mailbox, and makes each copy, once.
	want := map[string]int{a + "@relay.example to-list": 1, b + "@relay.example to-list": 1, a + "@relay.example to-a": 1, a + "@relay.example to-away": 1,
		a + "@relay.example to-both": 1, b + "@relay.example to-both": 1}
	if fmt.Sprint(migrateSorted(got)) != fmt.Sprint(migrateSorted(want)) {
		t.Errorf("copies:\n%v\nwant:\n%v\nlog:\n%s", migrateSorted(got), migrateSorted(want), in.Log.String())
	}
	if n, m := len(in.MaildirMessages(a)), len(in.MaildirMessages(b)); n != 4 || m != 2 {
		t.Errorf("mailboxes: %s has %d messages, %s %d; want 4 and 2", a, n, b, m)
	}
}

// With --postfix, the entries go to a real Postfix primary's alias_maps:
// mail to a list makes one copy per member, mail to a user one copy, and
// each local mailbox gets each message once.
func TestMigratePostfixAliases(t *testing.T) {
	u := newMigrateUsers(t)
	p := u.prefix
	a := u.add(t, "a", u.base, "/bin/bash")
	b := u.add(t, "b", u.base+1, "/bin/bash")
	f := u.add(t, "f", u.base+2, "/bin/bash") // has an alias of its own: merged
	sink := harness.NewSink(t, "", nil)
	pf := newPostfix(t, "127.0.0.1", harness.FreePort(t))
	spool := pf.path("spool")
	if err := os.Mkdir(spool, 0o1777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(spool, 0o1777|os.ModeSticky)
	// g keeps a copy here and forwards one with its ~/.forward: Postfix
	// 3.7 reads "\g" in g's own alias as "g" (its address parser drops
	// the backslash, see the XXX in src/local/recipient.c), and an alias
	// that names its own user delivers as if there were no alias
	// (src/local/alias.c), ~/.forward included. The entries keep users'
	// .forward files working.
	g := u.add(t, "g", u.base+3, "/bin/bash")
	home := pf.path("home-" + g)
	if out, err := exec.Command("usermod", "-d", home, g).CombinedOutput(); err != nil {
		t.Fatalf("usermod: %v %s", err, out)
	}
	os.Mkdir(home, 0o755)
	fwd := filepath.Join(home, ".forward")
	os.WriteFile(fwd, []byte(`\`+g+", "+g+"-fwd@archive.example\n"), 0o644)
	gu, _ := user.Lookup(g)
	guid, _ := strconv.Atoi(gu.Uid)
	os.Chown(home, guid, -1)
	os.Chown(fwd, guid, -1)
	aliases := fmt.Sprintf("postmaster: root\nroot: %[2]s\n%[1]sstaff: %[2]s, %[3]s\n%[4]s: \\%[4]s, %[4]s@archive.example\n", p, a, b, f)
	for name, text := range map[string]string{"aliases": aliases, "aliases_copy": "# empty until mailtee migrate writes it\n"} {
		if err := os.WriteFile(filepath.Join(pf.etc, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	pf.start(fmt.Sprintf(`myhostname = students.iiit.ac.in
mydomain = students.iiit.ac.in
myorigin = $mydomain
mydestination = $myhostname, localhost
mail_spool_directory = %s
alias_maps = hash:$config_directory/aliases_copy, hash:$config_directory/aliases
alias_database = hash:$config_directory/aliases_copy, hash:$config_directory/aliases
transport_maps = hash:$config_directory/transport
`, spool), map[string]string{"transport": fmt.Sprintf("relay.students.iiit.ac.in smtp:[127.0.0.1]:%[1]d\narchive.example smtp:[127.0.0.1]:%[1]d\n", sink.Port())})
	postalias := func(name string) {
		t.Helper()
		if out, err := pf.cmd("postalias", "-c", pf.etc, "hash:"+filepath.Join(pf.etc, name)); err != nil {
			t.Fatalf("postalias %s: %v %s", name, err, out)
		}
	}
	postalias("aliases")
	postalias("aliases_copy")
	// Before any copy entry: Postfix's own handling of a message to a
	// list and to one of its members.
	dom := "@students.iiit.ac.in"
	pfSend(t, pf.addr(), "sender@outside.example", []string{p + "staff" + dom, a + dom}, "before-both", nil, nil)
	harness.WaitUntil(t, "the message before migrate to be delivered", 60*time.Second, func() bool {
		q, _ := pf.cmd("postqueue", "-c", pf.etc, "-p")
		return strings.Contains(q, "Mail queue is empty") && migrateMbox(t, filepath.Join(spool, b))["before-both"] == 1
	})

	// mailtee migrate reads the Postfix primary's own main.cf.
	out, errs, code := runMigrateCmd(t, "-c", pf.etc, "--copy-to", "%u@relay.students.iiit.ac.in", "--postfix", "--min-uid", fmt.Sprint(u.base))
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, errs)
	}
	want := []string{
		a + `: \` + a + ", " + a + "@relay.students.iiit.ac.in",
		b + `: \` + b + ", " + b + "@relay.students.iiit.ac.in",
		f + `: \` + f + ", " + f + "@archive.example, " + f + "@relay.students.iiit.ac.in",
		g + `: \` + g + ", " + g + "@relay.students.iiit.ac.in",
	}
	if got := migrateEntries(out); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("output:\n%s\nwant exactly:\n%s\nstderr:\n%s", out, strings.Join(want, "\n"), errs)
	}
	for _, w := range []string{f + " already has an alias", "postalias", "alias_maps = hash:/etc/postfix/aliases_copy, hash:" + filepath.Join(pf.etc, "aliases") + "'"} {
		if !strings.Contains(errs, w) {
			t.Errorf("stderr lacks %q:\n%s", w, errs)
		}
	}
	if err := os.WriteFile(filepath.Join(pf.etc, "aliases_copy"), []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	postalias("aliases_copy")
	if o, err := pf.cmd("postfix", "-c", pf.etc, "reload"); err != nil {
		t.Fatalf("postfix reload: %v %s", err, o)
	}
	time.Sleep(time.Second) // the reload reaches local(8) with its next process

	pfSend(t, pf.addr(), "sender@outside.example", []string{p + "staff" + dom}, "to-list", nil, nil)
	pfSend(t, pf.addr(), "sender@outside.example", []string{a + dom}, "to-user", nil, nil)
	pfSend(t, pf.addr(), "sender@outside.example", []string{f + dom}, "to-merged", nil, nil)
	pfSend(t, pf.addr(), "sender@outside.example", []string{g + dom}, "to-forward", nil, nil)
	pfSend(t, pf.addr(), "sender@outside.example", []string{p + "staff" + dom, a + dom}, "to-both", nil, nil)

	// Everything delivered: 4 messages in the mailboxes' spool... and the
	// queue empty.
	copies := func() map[string]int { // "rcpt subject" -> count
		m := map[string]int{}
		for _, s := range sink.Messages() {
			for _, r := range s.To {
				m[strings.ToLower(r)+" "+migrateSubject(s.Data)]++
			}
		}
		return m
	}
	harness.WaitUntil(t, "Postfix's queue to empty and the copies to arrive", 60*time.Second, func() bool {
		q, _ := pf.cmd("postqueue", "-c", pf.etc, "-p")
		return strings.Contains(q, "Mail queue is empty") && len(copies()) >= 8
	})
	time.Sleep(2 * time.Second) // a late duplicate would show now
	relay := "@relay.students.iiit.ac.in"
	got := copies()
	wantCopies := map[string]int{
		a + relay + " to-list": 1, b + relay + " to-list": 1,
		a + relay + " to-user":   1,
		f + relay + " to-merged": 1, f + "@archive.example to-merged": 1,
		b + relay + " to-both":    1,
		g + relay + " to-forward": 1, g + "-fwd@archive.example to-forward": 1,
	}
	bothA := got[a+relay+" to-both"]
	delete(got, a+relay+" to-both")
	if fmt.Sprint(migrateSorted(got)) != fmt.Sprint(migrateSorted(wantCopies)) {
		t.Errorf("copies at the sink:\n%v\nwant:\n%v\nmaillog:\n%s", migrateSorted(got), migrateSorted(wantCopies), pf.maillog())
	}
	// A message to the list and to one member: Postfix's local(8)
	// delivers each recipient alone (local_destination_recipient_limit =
	// 1) and its duplicate filter lives for one delivery, so the member's
	// mailbox gets it as often as it did before migrate (twice, measured
	// on Postfix 3.7), and makes one copy per delivery: the copies follow
	// the mailbox, never more.
	boxes := map[string]map[string]int{}
	for _, n := range []string{a, b, f, g} {
		boxes[n] = migrateMbox(t, filepath.Join(spool, n))
	}
	before := boxes[a]["before-both"]
	t.Logf("message to %sstaff and %s: before migrate its mailbox got it %d times; after, %d times and %d copies at the sink",
		p, a, before, boxes[a]["to-both"], bothA)
	if bothA != before || boxes[a]["to-both"] != before {
		t.Errorf("%s: %d copies and %d local deliveries of the message to the list and the member, want %d of each (Postfix's own count before migrate)", a, bothA, boxes[a]["to-both"], before)
	}
	wantBoxes := map[string]map[string]int{
		a: {"before-both": before, "to-list": 1, "to-user": 1, "to-both": before},
		b: {"before-both": 1, "to-list": 1, "to-both": 1},
		f: {"to-merged": 1},
		g: {"to-forward": 1},
	}
	if fmt.Sprint(boxes) != fmt.Sprint(wantBoxes) {
		t.Errorf("mailboxes:\n%v\nwant:\n%v", boxes, wantBoxes)
	}
	if before < 1 || before > 2 {
		t.Errorf("%s got the message to the list and to itself %d times", a, before)
	}
}

var migrateSubjectRE = regexp.MustCompile(`(?m)^Subject: (.*?)\r?$`)

func migrateSubject(data string) string {
	if m := migrateSubjectRE.FindStringSubmatch(data); m != nil {
		return m[1]
	}
	return ""
}

// mboxSubjects counts the messages of an mbox by subject.
func migrateMbox(t *testing.T, path string) map[string]int {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Errorf("mailbox: %v", err)
		return nil
	}
	m := map[string]int{}
	for _, msg := range strings.Split("\n"+string(data), "\nFrom ")[1:] {
		m[migrateSubject(msg)]++
	}
	return m
}

func migrateSorted(m map[string]int) []string {
	var out []string
	for k, v := range m {
		out = append(out, fmt.Sprintf("%s=%d", k, v))
	}
	sort.Strings(out)
	return out
}
