// Package dist holds the install script and the systemd unit; its test
// runs the script as root into a temporary DESTDIR.
package dist

import (
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

const sbin = "/usr/local/sbin/mailtee"

var links = []string{"/usr/sbin/sendmail", "/usr/bin/mailq", "/usr/bin/newaliases", "/usr/sbin/postqueue", "/usr/sbin/postsuper"}

func runInstall(t *testing.T, env []string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("sh", append([]string{"install.sh"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// install.sh into a DESTDIR: the binary setgid GROUP with its version,
// the five links, the spool and data directories, the unit; run again
// it changes nothing; a file of Postfix's where a link goes is kept
// unless --force, which moves it aside.
func TestInstall(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("install.sh needs root (chown, the setgid bit, groupadd)")
	}
	group := "mtinst" + strconv.Itoa(os.Getpid()%100000)
	if out, err := exec.Command("groupadd", group).CombinedOutput(); err != nil {
		t.Skipf("groupadd: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("groupdel", group).Run() })
	g, _ := user.LookupGroup(group)
	gid, _ := strconv.Atoi(g.Gid)

	dest := t.TempDir()
	env := []string{"DESTDIR=" + dest, "GROUP=" + group, "VERSION=9.9.9-test"}
	if out, err := runInstall(t, env); err != nil {
		t.Fatalf("install.sh: %v\n%s", err, out)
	}
	bin := filepath.Join(dest, sbin)
	st, err := os.Stat(bin)
	if err != nil {
		t.Fatal(err)
	}
	sys := st.Sys().(*syscall.Stat_t)
	if st.Mode()&os.ModeSetgid == 0 || st.Mode().Perm() != 0o755 || sys.Uid != 0 || int(sys.Gid) != gid {
		t.Errorf("%s: mode %v, owner %d:%d; want root:%s, 2755", bin, st.Mode(), sys.Uid, sys.Gid, group)
	}
	if out, err := exec.Command(bin, "version").Output(); err != nil || !strings.HasPrefix(string(out), "mailtee 9.9.9-test (go1.") {
		t.Errorf("mailtee version: %v %q", err, out)
	}
	for _, l := range links {
		if target, err := os.Readlink(filepath.Join(dest, l)); err != nil || target != sbin {
			t.Errorf("%s: %q %v, want a link to %s", l, target, err, sbin)
		}
	}
	for dir, mode := range map[string]os.FileMode{"/var/spool/mailtee": 0o711, "/var/lib/mailtee": 0o700} {
		if st, err := os.Stat(filepath.Join(dest, dir)); err != nil || st.Mode().Perm() != mode || !st.IsDir() {
			t.Errorf("%s: %v %v, want a directory %v", dir, st.Mode(), err, mode)
		}
	}
	unit, err := os.ReadFile(filepath.Join(dest, "lib/systemd/system/mailtee.service"))
	if err != nil || !strings.Contains(string(unit), "ExecStart="+sbin+" serve -c /etc/postfix\n") || strings.Contains(string(unit), "@") ||
		!strings.Contains(string(unit), "ExecReload=/bin/kill -HUP $MAINPID") {
		t.Errorf("unit: %v\n%s", err, unit)
	}

	// Again: nothing to do, no error.
	if out, err := runInstall(t, env, "--no-build", "BIN="+bin); err == nil {
		t.Errorf("install.sh accepted an operand: %s", out)
	}
	if out, err := runInstall(t, append(env, "BIN="+bin), "--no-build"); err != nil {
		t.Fatalf("install.sh a second time: %v\n%s", err, out)
	}

	// Postfix's postsuper in the way: kept, and a way out is shown.
	pf := filepath.Join(dest, "/usr/sbin/postsuper")
	os.Remove(pf)
	os.WriteFile(pf, []byte("postfix's postsuper"), 0o755)
	out, err := runInstall(t, append(env, "BIN="+bin), "--no-build")
	if err == nil || !strings.Contains(out, "dpkg-divert") || !strings.Contains(out, "update-alternatives") || !strings.Contains(out, "--force") {
		t.Errorf("install.sh over a foreign postsuper: %v\n%s", err, out)
	}
	if b, _ := os.ReadFile(pf); string(b) != "postfix's postsuper" {
		t.Errorf("the foreign postsuper was replaced without --force")
	}
	if out, err := runInstall(t, append(env, "BIN="+bin), "--no-build", "--force"); err != nil {
		t.Fatalf("install.sh --force: %v\n%s", err, out)
	}
	if b, _ := os.ReadFile(pf + ".pre-mailtee"); string(b) != "postfix's postsuper" {
		t.Errorf("--force did not keep the foreign postsuper as postsuper.pre-mailtee")
	}
	if target, _ := os.Readlink(pf); target != sbin {
		t.Errorf("--force: postsuper is %q, want a link to %s", target, sbin)
	}
}

// The unit passes systemd-analyze verify (with its binary where the
// install put it, since verify checks that ExecStart exists).
func TestUnitVerify(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("systemd-analyze is missing (Debian package systemd)")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "mailtee")
	os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755)
	src, err := os.ReadFile("mailtee.service")
	if err != nil {
		t.Fatal(err)
	}
	verify := func(text string) (string, error) {
		p := filepath.Join(dir, "mailtee.service")
		os.WriteFile(p, []byte(text), 0o644)
		out, err := exec.Command("systemd-analyze", "verify", p).CombinedOutput()
		return string(out), err
	}
	unit := strings.NewReplacer("@SBINDIR@/mailtee", bin, "@CONFIG_DIR@", "/etc/postfix").Replace(string(src))
	if out, err := verify(unit); err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	// The check can fail: a unit with a bad setting does.
	if out, err := verify(strings.Replace(unit, "KillMode=mixed", "KillMode=gently", 1)); err == nil && out == "" {
		t.Error("systemd-analyze verify accepted KillMode=gently")
	}
}
