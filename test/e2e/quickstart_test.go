package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mailtee/mailtee/test/internal/harness"
)

// The README's first command, as a user who is not root, on a machine
// where the group postdrop exists (any with Postfix installed): serve
// starts and mail submitted with sendmail is delivered. serve once
// refused to start, unable to give maildrop a group its user is not in.
func TestQuickstartAsUser(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to make a user to run as")
	}
	for _, tool := range []string{"useradd", "groupadd", "setpriv"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is missing", tool)
		}
	}
	if out, err := exec.Command("getent", "group", "postdrop").CombinedOutput(); err != nil {
		if out, err := exec.Command("groupadd", "--system", "postdrop").CombinedOutput(); err != nil {
			t.Skipf("groupadd postdrop: %v %s", err, out)
		}
		t.Cleanup(func() { exec.Command("groupdel", "postdrop").Run() })
	} else if len(out) == 0 {
		t.Fatal("getent printed nothing")
	}
	u := addUser(t, "mtqs"+strconv.Itoa(os.Getpid()%100000))

	// The quickstart as a user has it: a copy of the example, and the
	// binary, owned by the user; a free port instead of 2525.
	dir := harness.TempDir(t)
	qs := filepath.Join(dir, "quickstart")
	if out, err := exec.Command("cp", "-r", "../../examples/quickstart", qs).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	os.RemoveAll(filepath.Join(qs, "run"))
	cf, err := os.ReadFile(filepath.Join(qs, "main.cf"))
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(harness.FreePort(t))
	os.WriteFile(filepath.Join(qs, "main.cf"), []byte(strings.Replace(string(cf), "smtpd_port = 2525", "smtpd_port = "+port, 1)), 0o644)
	bin := filepath.Join(dir, "mailtee")
	if out, err := exec.Command("cp", harness.Bin, bin).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	if out, err := exec.Command("chown", "-R", u.name, dir).CombinedOutput(); err != nil {
		t.Fatalf("chown: %v %s", err, out)
	}

	var log harness.SyncBuffer
	serve := exec.Command("setpriv", "--reuid", u.name, "--regid", strconv.Itoa(u.gid), "--init-groups", "--", bin, "serve", "-c", qs)
	serve.Stdout, serve.Stderr = &log, &log
	serve.Env = []string{"PATH=/usr/bin:/bin"}
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- serve.Wait() }()
	t.Cleanup(func() { serve.Process.Kill(); <-exited })
	harness.WaitUntil(t, "serve to start", 15*time.Second, func() bool {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("serve exited (%v):\n%s", err, log.String())
		default:
		}
		return strings.Contains(log.String(), "daemon started")
	})
	if out, err := u.as("Subject: hello\n\nfirst message\n", "", bin, "sendmail", "-c", qs, "alice"); err != nil || out != "" {
		t.Fatalf("sendmail: %v %q", err, out)
	}
	harness.WaitUntil(t, "delivery to alice", 15*time.Second, func() bool {
		files, _ := os.ReadDir(filepath.Join(qs, "run", "mail", "alice", "new"))
		return len(files) == 1
	})
}
