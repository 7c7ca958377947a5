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
	in := newInstance(t, `mailbox_command = id -u > "$HOME/mc.uid"; env > "$HOME/mc.env"; cat > "$HOME/mc.msg"
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
	env := readFile(t, filepath.Join(carol.Home, "mc.env"))
	for _, want := range []string{"HOME=" + carol.Home, "USER=" + carol.Name, "LOGNAME=" + carol.Name, "SHELL=/bin/sh",
		"EXTENSION=ext", "DOMAIN=test.example", "LOCAL=" + carol.Name + "+ext", "RECIPIENT=" + carol.Name + "+ext@test.example",
		"SENDER=sender@outside.example", "ORIGINAL_RECIPIENT=" + carol.Name + "+ext@test.example", "CLIENT_ADDRESS=127.0.0.1", "CLIENT_PROTOCOL=ESMTP"} {
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
