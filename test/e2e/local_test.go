package e2e

import (
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/users/userstest"
	"github.com/mailtee/mailtee/test/internal/harness"
)

// mboxSpool makes a mail spool as Debian's /var/mail is: root:mail,
// mode 2775.
func mboxSpool(t *testing.T, base string) string {
	t.Helper()
	spool := filepath.Join(base, "var-mail")
	if err := os.Mkdir(spool, 0o775); err != nil {
		t.Fatal(err)
	}
	g, err := user.LookupGroup("mail")
	if err != nil {
		t.Skip("no group mail")
	}
	gid, _ := strconv.Atoi(g.Gid)
	os.Chown(spool, 0, gid)
	os.Chmod(spool, 0o2775|os.ModeSetgid)
	return spool
}

func mailGID(t *testing.T) int {
	g, err := user.LookupGroup("mail")
	if err != nil {
		t.Skip("no group mail")
	}
	gid, _ := strconv.Atoi(g.Gid)
	return gid
}

func nobodyUID(t *testing.T) int {
	u, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody")
	}
	uid, _ := strconv.Atoi(u.Uid)
	return uid
}

// fromLine is the mbox separator as Postfix writes it: two spaces, then
// asctime()'s date.
var fromLine = regexp.MustCompile(`(?m)^From sender@outside\.example  [A-Z][a-z]{2} [A-Z][a-z]{2} [ 0-9]\d \d\d:\d\d:\d\d \d{4}$`)

// quotedBody is a message whose body has a line an mbox reader would
// take for a new message.
const quotedBody = "Subject: %s\r\n\r\nFrom the start of a line\r\nbye\r\n"

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// checkMbox checks path as an mbox of n messages owned by uid:gid, mode
// 0600, each with its From_ line, >From quoting and a blank line after it.
func checkMbox(t *testing.T, path string, n, uid, gid int) string {
	t.Helper()
	text := readFile(t, path)
	if got := len(fromLine.FindAllString(text, -1)); got != n {
		t.Errorf("%s: %d From_ lines, want %d:\n%s", path, got, n, text)
	}
	if c := strings.Count(text, "\n>From the start of a line\n"); c != n {
		t.Errorf("%s: %d quoted >From lines, want %d:\n%s", path, c, n, text)
	}
	if !strings.HasSuffix(text, "bye\n\n") || strings.Contains(text, "\r") {
		t.Errorf("%s: does not end with the message and a blank line, or has CRs:\n%q", path, text)
	}
	if u, g := harness.OwnerOf(t, path); u != uid || g != gid {
		t.Errorf("%s is owned by %d:%d, want %d:%d", path, u, g, uid, gid)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Errorf("%s has mode %v, want 0600", path, st.Mode().Perm())
	}
	return text
}

// Each local destination runs with local(8)'s rights: a command or file
// in root's alias table as default_privs (nobody), a command in an
// :include: file as the file's owner, a command in a .forward as its
// user; the user's mailbox in a Debian-like spool is hers, group mail.
func TestLocalDestinationsWithTheirRights(t *testing.T) {
	base := harness.TempDir(t)
	alice := harness.NewUser(t, base)
	bob := harness.NewUser(t, base)
	nobody := nobodyUID(t)
	spool := mboxSpool(t, base)
	out := filepath.Join(base, "out")
	os.Mkdir(out, 0o777)
	os.Chmod(out, 0o1777)
	staff := filepath.Join(base, "staff")
	os.WriteFile(staff, []byte("# list members\n"+alice.Name+"\n|id -u > "+out+"/staff.uid\n"), 0o644)
	bob.As(t, staff)
	fwd := filepath.Join(alice.Home, ".forward")
	os.WriteFile(fwd, []byte("\\"+alice.Name+", \"|id -u >> $HOME/fwd.uid\"\n"), 0o644)
	alice.As(t, fwd)

	in := newInstance(t, "mail_spool_directory = "+spool+"\nallow_mail_to_commands = alias, forward, include\n", map[string]string{"aliases": `postmaster: root
prog: "|id -u > ` + out + `/prog.uid; cat > ` + out + `/prog.msg"
log: ` + out + `/log.mbox
staff: :include:` + staff + `
`})
	in.Start()
	for _, rcpt := range []string{"prog", "log", "staff", alice.Name} {
		if err := send(in.Addr(), "sender@outside.example", []string{rcpt + "@test.example"}, strings.ReplaceAll(quotedBody, "%s", rcpt)); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, "four deliveries", 30*time.Second, func() bool { return strings.Count(in.Log.String(), "status=sent") >= 4 })
	if l := in.Log.String(); strings.Contains(l, "status=deferred") || strings.Contains(l, "status=bounced") {
		t.Errorf("a delivery failed:\n%s", l)
	}
	uidIn := func(path string) string { return strings.TrimSpace(readFile(t, path)) }
	if got := uidIn(filepath.Join(out, "prog.uid")); got != strconv.Itoa(nobody) {
		t.Errorf("a command in root's aliases ran as uid %s, want default_privs (nobody, %d)", got, nobody)
	}
	prog := readFile(t, filepath.Join(out, "prog.msg"))
	if !fromLine.MatchString(prog) || !strings.Contains(prog, "Delivered-To: prog@test.example\n") || !strings.Contains(prog, "\nFrom the start of a line\n") {
		t.Errorf("the command's input is not local(8)'s (From_ line, Delivered-To, unquoted body):\n%s", prog)
	}
	checkMbox(t, filepath.Join(out, "log.mbox"), 1, nobody, int(nobodyGID(t)))
	if got := uidIn(filepath.Join(out, "staff.uid")); got != strconv.Itoa(bob.UID) {
		t.Errorf("a command in an :include: file ran as uid %s, want its owner %s (%d)", got, bob.Name, bob.UID)
	}
	// alice got the staff message and her own, each kept by \alice in
	// her .forward, whose command ran as her for both.
	checkMbox(t, filepath.Join(spool, alice.Name), 2, alice.UID, mailGID(t))
	if got := uidIn(filepath.Join(alice.Home, "fwd.uid")); got != strconv.Itoa(alice.UID)+"\n"+strconv.Itoa(alice.UID) {
		t.Errorf("the command in alice's .forward ran as %q, want her uid twice", got)
	}
}

func nobodyGID(t *testing.T) int {
	u, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody")
	}
	gid, _ := strconv.Atoi(u.Gid)
	return gid
}

// mailbox_command runs as the user with local(8)'s environment; its exit
// status says what happened (67, EX_NOUSER, bounces; 75 defers), and a
// home Maildir (home_mailbox = Maildir/) is the user's.
func TestMailboxCommandAndHomeMaildir(t *testing.T) {
	base := harness.TempDir(t)
	carol := harness.NewUser(t, base)
	dave := harness.NewUser(t, base)
	erin := harness.NewUser(t, base)
	in := newInstance(t, `mailbox_command = id -u > "$HOME/mc.uid"; env > "$HOME/mc.env"; pwd > "$HOME/mc.pwd"; cat > "$HOME/mc.msg"
command_execution_directory = $home
mailbox_command_maps = inline:{ {`+dave.Name+`=exit 67}, {`+erin.Name+`=exit 75} }
recipient_delimiter = +
`, nil)
	in.Start()
	if err := send(in.Addr(), "sender@outside.example", []string{carol.Name + "+ext@test.example", dave.Name + "@test.example", erin.Name + "@test.example"}, testMessage("cmd")); err != nil {
		t.Fatal(err)
	}
	in.WaitLog("to=<" + carol.Name + "+ext@test.example>, relay=local")
	in.WaitLog("to=<" + dave.Name + "@test.example>, relay=local")
	in.WaitLog("to=<" + erin.Name + "@test.example>, relay=local")
	log := in.Log.String()
	for _, want := range []string{
		carol.Name + "+ext@test.example>, relay=local, delay=",
		"status=sent (delivered to command: id -u",
		dave.Name + "@test.example>, relay=local",
		"dsn=5.1.1, status=bounced",
		"dsn=4.3.0, status=deferred",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	if got := strings.TrimSpace(readFile(t, filepath.Join(carol.Home, "mc.uid"))); got != strconv.Itoa(carol.UID) {
		t.Errorf("mailbox_command ran as uid %s, want %d", got, carol.UID)
	}
	if got := strings.TrimSpace(readFile(t, filepath.Join(carol.Home, "mc.pwd"))); got != carol.Home {
		t.Errorf("mailbox_command ran in %s, want command_execution_directory = $home, %s", got, carol.Home)
	}
	env := readFile(t, filepath.Join(carol.Home, "mc.env"))
	for _, want := range []string{"HOME=" + carol.Home, "USER=" + carol.Name, "LOGNAME=" + carol.Name, "SHELL=/bin/sh",
		"EXTENSION=ext", "DOMAIN=test.example", "LOCAL=" + carol.Name + "+ext", "RECIPIENT=" + carol.Name + "+ext@test.example",
		"SENDER=sender@outside.example", "ORIGINAL_RECIPIENT=" + carol.Name + "+ext@test.example", "CLIENT_ADDRESS=127.0.0.1", "CLIENT_PROTOCOL=ESMTP",
		"LANG=C"} {
		if !strings.Contains("\n"+env, "\n"+want+"\n") {
			t.Errorf("mailbox_command's environment lacks %s:\n%s", want, env)
		}
	}

	// The same users with home_mailbox = Maildir/.
	in.Stop()
	in2 := newInstance(t, "home_mailbox = Maildir/\n", nil)
	in2.Start()
	if err := send(in2.Addr(), "sender@outside.example", []string{carol.Name + "@test.example"}, testMessage("maildir")); err != nil {
		t.Fatal(err)
	}
	in2.WaitLog("status=sent (delivered to maildir)")
	files, _ := filepath.Glob(filepath.Join(carol.Home, "Maildir", "new", "*"))
	if len(files) != 1 {
		t.Fatalf("%d messages in %s's Maildir, want 1", len(files), carol.Name)
	}
	for _, p := range []string{filepath.Join(carol.Home, "Maildir"), filepath.Join(carol.Home, "Maildir", "new"), files[0]} {
		if u, g := harness.OwnerOf(t, p); u != carol.UID || g != carol.GID {
			t.Errorf("%s is owned by %d:%d, want %s's %d:%d", p, u, g, carol.Name, carol.UID, carol.GID)
		}
	}
}

// Debian's three stock configurations (internal/master/testdata/stock:
// main.cf.debian, main.cf.dist, and the "Internet Site" file its
// installer writes) deliver local mail as Postfix does with them: an
// mbox in mail_spool_directory, Postfix's default /var/mail, owned by
// the user with the spool's group. Only what a test must change is
// changed: the listening address and port, the queue, the test's
// domain and alias file, and TLS files of its own.
func TestStockDebianLocalDelivery(t *testing.T) {
	for _, name := range []string{"main.cf.debian", "main.cf.dist", "main.cf.internet-site"} {
		t.Run(name, func(t *testing.T) {
			stock, err := os.ReadFile(filepath.Join("..", "..", "internal", "master", "testdata", "stock", name))
			if err != nil {
				t.Fatal(err)
			}
			base := harness.TempDir(t)
			u := harness.NewUser(t, base)
			spool := varMail(t, base, u.Name)
			cert, key, _ := testCert(t, base, "mx.test.example")
			in := newInstance(t, "", nil)
			mainCf := readFile(t, filepath.Join(in.Dir, "main.cf")) + "\n# " + name + "\n" + string(stock) + "\n# the test's\n" +
				"myhostname = mx.test.example\nmyorigin = test.example\nmydestination = $myhostname, test.example, localhost\n" +
				"inet_interfaces = 127.0.0.1\ninet_protocols = ipv4\nsmtpd_port = " + strconv.Itoa(in.Port) + "\n" +
				"queue_directory = " + in.Dir + "/queue\ndata_directory = " + in.Dir + "/data\nalias_maps = hash:" + in.Dir + "/aliases\n" +
				"smtpd_tls_cert_file = " + cert + "\nsmtpd_tls_key_file = " + key + "\nsetgid_group = postdrop\n" +
				"mail_spool_directory = " + spool + "\n"
			// /var/mail is Postfix's default too: the line only undoes the
			// harness's Maildir spool.
			in.WriteFile("main.cf", mainCf)
			if out, err := in.Run("", "check"); strings.Contains(out, "error:") || err != nil {
				t.Fatalf("check on %s: %v\n%s", name, err, out)
			} else if !strings.Contains(out, "mbox") {
				t.Errorf("check does not say local mail goes to an mbox:\n%s", out)
			}
			in.Start()
			if err := send(in.Addr(), "sender@outside.example", []string{u.Name + "@test.example"}, strings.ReplaceAll(quotedBody, "%s", name)); err != nil {
				t.Fatal(err)
			}
			in.WaitLog("status=sent (delivered to mailbox)")
			text := checkMbox(t, filepath.Join(spool, u.Name), 1, u.UID, mailGID(t))
			for _, want := range []string{"Return-Path: <sender@outside.example>\n", "X-Original-To: " + u.Name + "@test.example\n", "Delivered-To: " + u.Name + "@test.example\n"} {
				if !strings.Contains(text, want) {
					t.Errorf("the mbox lacks %q:\n%s", want, text)
				}
			}
		})
	}
}

// varMail is the system's /var/mail when it is Debian's (root:mail 2775),
// with user's mailbox removed after the test; else a spool made like it.
func varMail(t *testing.T, base, user string) string {
	t.Helper()
	st, err := os.Stat("/var/mail")
	if err == nil && st.Mode().Perm() == 0o775 && st.Mode()&os.ModeSetgid != 0 {
		if _, g := harness.OwnerOf(t, "/var/mail"); g == mailGID(t) {
			t.Cleanup(func() { os.Remove(filepath.Join("/var/mail", user)) })
			return "/var/mail"
		}
	}
	return mboxSpool(t, base)
}

// A user known only to NSS (libnss-extrausers here, LDAP or SSSD on a
// university host) receives mail: accepted at RCPT by the default
// local_recipient_maps (unix:passwd.byname) and delivered to an mbox
// that is hers.
func TestNSSOnlyUserGetsMail(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	base := harness.TempDir(t)
	name := "mtnss" + strconv.Itoa(os.Getpid()%100000)
	home := filepath.Join(base, name)
	uid := 62000 + os.Getpid()%1000
	userstest.AddNSSUser(t, name, uid, uid, home)
	if strings.Contains(readFile(t, "/etc/passwd"), "\n"+name+":") {
		t.Fatal("the user is in /etc/passwd: this test is about NSS")
	}
	spool := mboxSpool(t, base)
	in := newInstance(t, "mail_spool_directory = "+spool+"\nlocal_recipient_maps = proxy:unix:passwd.byname $alias_maps\n", nil)
	in.Start()
	if err := send(in.Addr(), "sender@outside.example", []string{name + "@test.example"}, strings.ReplaceAll(quotedBody, "%s", "nss")); err != nil {
		t.Fatal(err)
	}
	if err := send(in.Addr(), "sender@outside.example", []string{"nosuch" + name + "@test.example"}, testMessage("x")); err == nil || !strings.Contains(err.Error(), "550") {
		t.Errorf("an unknown user was not refused with 550: %v", err)
	}
	in.WaitLog("status=sent (delivered to mailbox)")
	checkMbox(t, filepath.Join(spool, name), 1, uid, mailGID(t))
}
