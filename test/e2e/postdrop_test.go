package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mailtee/mailtee/test/internal/harness"
)

// localUser is a throw-away account made with useradd for one test.
type localUser struct {
	name     string
	uid, gid int
}

func addUser(t *testing.T, name string) localUser {
	t.Helper()
	if out, err := exec.Command("useradd", "-M", "-N", "-g", "nogroup", "-s", "/usr/sbin/nologin", name).CombinedOutput(); err != nil {
		t.Skipf("useradd %s: %v %s", name, err, out)
	}
	t.Cleanup(func() { exec.Command("userdel", name).Run() })
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return localUser{name, uid, gid}
}

// as runs a command as u, with the real and effective IDs of u (and,
// with group set, that group as real and effective group, as a setgid
// program has it), its stdin given.
func (u localUser) as(stdin, group string, name string, args ...string) (string, error) {
	p := []string{"--reuid", u.name, "--regid", strconv.Itoa(u.gid), "--init-groups"}
	if group != "" {
		p = []string{"--reuid", u.name, "--regid", group, "--clear-groups"}
	}
	cmd := exec.Command("setpriv", append(append(p, "--", name), args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// Issue 13, defect 8: a normal user's sendmail (a setgid copy of
// mailtee, as Postfix's postdrop) delivers, with the uid in the log; it
// works with the server stopped; and neither that user nor the group's
// privilege reaches the queue, another user's submission or any other
// command.
func TestSendmailUnprivileged(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root: useradd, groupadd, a setgid install")
	}
	for _, tool := range []string{"useradd", "groupadd", "setpriv"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is missing", tool)
		}
	}
	suffix := strconv.Itoa(os.Getpid() % 100000)
	group := "mtdrop" + suffix
	if out, err := exec.Command("groupadd", group).CombinedOutput(); err != nil {
		t.Skipf("groupadd: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("groupdel", group).Run() })
	alice, bob := addUser(t, "mtalice"+suffix), addUser(t, "mtbob"+suffix)

	other := harness.TempDir(t) // an alternate configuration, listed
	in := newInstance(t, "setgid_group = "+group+"\nalternate_config_directories = "+other+"\n", nil)
	os.WriteFile(filepath.Join(other, "main.cf"), []byte("queue_directory = "+in.Dir+"/queue\n"), 0o644)
	unlisted := harness.TempDir(t)
	os.WriteFile(filepath.Join(unlisted, "main.cf"), []byte("queue_directory = "+unlisted+"/queue\n"), 0o644)

	// The install: a copy of mailtee, setgid group, mode 2755, whose
	// built-in configuration directory is this instance's.
	binDir := harness.TempDir(t)
	var st unix.Statfs_t
	if err := unix.Statfs(binDir, &st); err != nil || st.Flags&unix.ST_NOSUID != 0 {
		t.Skipf("%s is on a nosuid file system (or statfs: %v): no setgid install possible", binDir, err)
	}
	bin := filepath.Join(binDir, "mailtee")
	if out, err := exec.Command("go", "build", "-ldflags", "-X main.builtinConfigDir="+in.Dir, "-o", bin, "github.com/mailtee/mailtee/cmd/mailtee").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	g, err := user.LookupGroup(group)
	if err != nil {
		t.Fatal(err)
	}
	gid, _ := strconv.Atoi(g.Gid)
	if err := os.Chown(bin, 0, gid); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(bin, 0o755|os.ModeSetgid); err != nil {
		t.Fatal(err)
	}

	in.Start()
	out, err := alice.as("Subject: from alice's cron\n\nbackup done\n", "", bin, "sendmail", "alice")
	if err != nil || out != "" {
		t.Fatalf("sendmail as %s: %v %q", alice.name, err, out)
	}
	waitUntil(t, "delivery", 15*time.Second, func() bool { return len(in.MaildirMessages("alice")) == 1 })
	in.WaitLog(fmt.Sprintf(": uid=%d from=<%s>", alice.uid, alice.name))
	m := in.MaildirMessages("alice")[0]
	for _, want := range []string{fmt.Sprintf("(mailtee, from userid %d)", alice.uid), "Return-Path: <" + alice.name + "@test.example>", "backup done"} {
		if !strings.Contains(m, want) {
			t.Errorf("the message lacks %q:\n%s", want, m)
		}
	}

	// -c: the built-in directory and a listed one only.
	if out, err := alice.as("Subject: x\n\nx\n", "", bin, "sendmail", "-c", other, "alice"); err != nil {
		t.Errorf("sendmail -c (listed in alternate_config_directories): %v %s", err, out)
	}
	waitUntil(t, "delivery with -c", 15*time.Second, func() bool { return len(in.MaildirMessages("alice")) == 2 })
	out, err = alice.as("Subject: x\n\nx\n", "", bin, "sendmail", "-c", unlisted, "alice")
	if err == nil || !strings.Contains(out, "alternate_config_directories") {
		t.Errorf("sendmail -c (not listed): %v %q, want refused", err, out)
	}

	// With the server stopped: exit 0, nothing alarming; the next start
	// delivers.
	in.Stop()
	if out, err := bob.as("Subject: while stopped\n\nx\n", "", bin, "sendmail", "bob"); err != nil || out != "" {
		t.Fatalf("sendmail with the server stopped: %v %q", err, out)
	}
	drops, _ := os.ReadDir(filepath.Join(in.Dir, "queue", "maildrop"))
	if len(drops) != 1 {
		t.Fatalf("maildrop holds %d files, want 1", len(drops))
	}
	bobsFile := filepath.Join(in.Dir, "queue", "maildrop", drops[0].Name())
	// Another user, even with the group's privilege (what a hole in
	// the setgid program would give), can neither list maildrop, nor
	// read, replace or remove bob's file, nor reach the queue.
	for _, c := range [][]string{
		{"ls", filepath.Join(in.Dir, "queue", "maildrop")},
		{"cat", bobsFile},
		{"rm", "-f", bobsFile},
		{"mv", bobsFile, bobsFile + "x"},
		{"ls", filepath.Join(in.Dir, "queue", "queue")},
		{"ls", filepath.Join(in.Dir, "queue", "corrupt")},
	} {
		for _, grp := range []string{"", group} {
			if out, err := alice.as("", grp, c[0], c[1:]...); err == nil {
				t.Errorf("%s as %s (group %q) succeeded: %s", c, alice.name, grp, out)
			}
		}
	}
	if _, err := os.Stat(bobsFile); err != nil {
		t.Fatalf("bob's file: %v", err)
	}
	in.Start()
	waitUntil(t, "delivery after the start", 15*time.Second, func() bool { return len(in.MaildirMessages("bob")) == 1 })
	in.WaitLog(fmt.Sprintf(": uid=%d from=<%s>", bob.uid, bob.name))

	// No other command keeps the group: with it, each would read the
	// group-only files below.
	secret := harness.TempDir(t)
	os.WriteFile(filepath.Join(secret, "main.cf"), []byte("queue_directory = "+in.Dir+"/queue\n"), 0o640)
	os.WriteFile(filepath.Join(secret, "table"), []byte("key value\n"), 0o640)
	for _, f := range []string{secret, filepath.Join(secret, "main.cf"), filepath.Join(secret, "table")} {
		os.Chown(f, 0, gid)
	}
	os.Chmod(secret, 0o750)
	for _, args := range [][]string{
		{"postconf", "-c", secret, "queue_directory"},
		{"postmap", "-q", "key", "texthash:" + filepath.Join(secret, "table")},
		{"queue", "list", "-c", secret},
		{"check", "-c", secret},
	} {
		if out, err := alice.as("", "", bin, args...); err == nil || strings.Contains(out, "value") {
			t.Errorf("setgid mailtee %s as %s: %v %q; want it to fail without the group", args, alice.name, err, out)
		}
	}
	// The same, as a member of the group (so the files are readable):
	// the commands do work, which shows the failures above come from
	// the dropped group.
	if out, err := alice.as("", group, bin, "postmap", "-q", "key", "texthash:"+filepath.Join(secret, "table")); err != nil || !strings.Contains(out, "value") {
		t.Errorf("postmap with the group: %v %q", err, out)
	}
}
