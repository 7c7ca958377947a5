package asuser

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/command"
	"github.com/mailtee/mailtee/internal/deliver"
	"github.com/mailtee/mailtee/internal/mailcopy"
)

var userSeq int

// realUser creates a user with a home directory for the test, and
// removes both after it.
func realUser(t *testing.T) (Cred, string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates a user")
	}
	if _, err := exec.LookPath("useradd"); err != nil {
		t.Skip("no useradd")
	}
	userSeq++
	name := fmt.Sprintf("mtcmd%d_%d", os.Getpid()%100000, userSeq)
	if out, err := exec.Command("useradd", "-m", "-s", "/bin/sh", name).CombinedOutput(); err != nil {
		t.Fatalf("useradd %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() {
		// The user's helper may take a moment to exit after the pool
		// closes, and userdel refuses a user with processes.
		var out []byte
		var err error
		for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
			if out, err = exec.Command("userdel", "-r", name).CombinedOutput(); err == nil {
				return
			}
		}
		t.Errorf("userdel %s: %v: %s", name, err, out)
	})
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return Cred{UID: uint32(uid), GID: uint32(gid)}, u.HomeDir
}

func commandSpec(cmd, home string) command.Spec {
	return command.Spec{Command: cmd, Dir: home, TimeLimit: 10 * time.Second,
		Env:      command.Env(command.Attrs{Home: home, User: "u", Recipient: "u@example.com", Local: "u"}, nil, "1234567890!@%-_=+:,./abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"),
		Envelope: mailcopy.Envelope{Sender: "sender@example.com", DeliveredTo: "u@example.com", Time: time.Date(2026, 12, 6, 9, 5, 3, 0, time.Local)}}
}

// A command runs with the user's uid and gid, in her home directory,
// cannot read what only root may, and gets the message byte for byte,
// small (inline to the helper) or large (through a pipe).
func TestCommandRunsAsUser(t *testing.T) {
	c, home := realUser(t)
	p := testPool(t, Options{})
	secretDir := t.TempDir()
	os.Chmod(secretDir, 0o755)
	os.Chmod(filepath.Dir(secretDir), 0o755)
	secret := filepath.Join(secretDir, "secret")
	if err := os.WriteFile(secret, []byte("root only\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := "id -u > ids; id -g >> ids; id -G >> ids; pwd >> ids; echo $HOME >> ids; umask >> ids; " +
		"if cat " + secret + " > stolen 2>/dev/null; then echo READ >> ids; fi; cat > msg"
	for _, size := range []int{100, 300000} {
		body := "Subject: x\r\n\r\n" + strings.Repeat("y", size) + "\r\n"
		if err := p.Command(context.Background(), c, commandSpec(cmd, home), message("Q1", body)); err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		ids, _ := os.ReadFile(filepath.Join(home, "ids"))
		want := fmt.Sprintf("%d\n%d\n%d\n%s\n%s\n0077\n", c.UID, c.GID, c.GID, home, home)
		if string(ids) != want {
			t.Errorf("the command said\n%s\nwant\n%s", ids, want)
		}
		got, _ := os.ReadFile(filepath.Join(home, "msg"))
		wantMsg := "From sender@example.com  Sun Dec  6 09:05:03 2026\nReturn-Path: <sender@example.com>\nDelivered-To: u@example.com\n" +
			strings.ReplaceAll(body, "\r\n", "\n")
		if string(got) != wantMsg {
			t.Errorf("size %d: the command read %d bytes, want %d", size, len(got), len(wantMsg))
		}
		st, err := os.Stat(filepath.Join(home, "msg"))
		if err != nil || st.Sys().(*syscall.Stat_t).Uid != c.UID {
			t.Errorf("msg not written by the user: %v", err)
		}
	}
}

// An exit status crosses from the helper with its status and text.
func TestCommandStatusThroughHelper(t *testing.T) {
	c, home := realUser(t)
	p := testPool(t, Options{})
	for cmd, want := range map[string]string{
		"echo nobody here; exit 67": "true 5.1.1 user unknown. Command output: nobody here ",
		"exit 75":                   "false 4.3.0 temporary failure",
		"echo 5.7.1 no way; exit 1": "true 5.7.1 no way ",
	} {
		err := p.Command(context.Background(), c, commandSpec(cmd, home), message("Q", "A: b\r\n"))
		var de *deliver.Error
		if !errors.As(err, &de) {
			t.Errorf("%s: %v", cmd, err)
			continue
		}
		if got := fmt.Sprintf("%v %s %s", de.Permanent, de.Enhanced, de.Text); got != want {
			t.Errorf("%s: got %q, want %q", cmd, got, want)
		}
	}
	if err := p.Command(context.Background(), c, commandSpec("true", home), message("Q", "A: b\r\n")); err != nil {
		t.Error(err)
	}
}

// When the server gives up (ctx), the command still ends at its time
// limit, with what it started, and the server, which waits a while for
// the helper's answer rather than guess, reports that.
func TestCommandTimeLimitInHelper(t *testing.T) {
	c, home := realUser(t)
	p := testPool(t, Options{})
	s := commandSpec("sleep 1000 & echo $! > pid; sleep 1000", home)
	s.TimeLimit = time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	err := p.Command(ctx, c, s, message("Q", "A: b\r\n"))
	var de *deliver.Error
	if !errors.As(err, &de) || !strings.Contains(de.Text, "time limit exceeded") {
		t.Errorf("got %v, want the helper's answer: the time limit", err)
	}
	var pid int
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		b, _ := os.ReadFile(filepath.Join(home, "pid"))
		if pid, _ = strconv.Atoi(strings.TrimSpace(string(b))); pid > 0 {
			break
		}
	}
	if pid == 0 {
		t.Fatal("the command did not start")
	}
	for end := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil || strings.Contains(string(b), ") Z ") {
			break
		}
		if time.Now().After(end) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("process %d outlived the time limit", pid)
		}
	}
}

// Run refuses root: mailtee as root runs commands only through helpers.
func TestCommandRunRefusesRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	marker := filepath.Join(t.TempDir(), "ran")
	err := command.Run(context.Background(), command.Spec{Command: "touch " + marker}, &deliver.Message{Open: func() (io.ReadCloser, error) {
		return io.NopCloser(strings.NewReader("")), nil
	}})
	if err == nil {
		t.Error("Run ran a command as root")
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("the command ran as root")
	}
}

// A request the helper could not read whole is refused before it is sent.
func TestCommandTooLarge(t *testing.T) {
	c := nobody(t)
	p := testPool(t, Options{})
	s := command.Spec{Command: "true", Env: []string{"BIG=" + strings.Repeat("x", maxRecord)}}
	err := p.Command(context.Background(), c, s, message("Q", "A: b\r\n"))
	var de *deliver.Error
	if !errors.As(err, &de) || de.Permanent || !strings.Contains(de.Text, "too large") {
		t.Errorf("got %v", err)
	}
	if n := p.Helpers(); n != 0 {
		t.Errorf("%d helpers started for a refused request", n)
	}
}

// A command gets standard input, output and error, nothing else: not the
// helper's socket to the server (with it, a command could read other
// deliveries' requests and forge replies), nor what the server inherited.
func TestCommandGetsNoOtherDescriptors(t *testing.T) {
	c, home := realUser(t)
	p := testPool(t, Options{})
	if err := p.Command(context.Background(), c, commandSpec("ls /proc/self/fd > fds", home), message("Q1", "Subject: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	fds, _ := os.ReadFile(filepath.Join(home, "fds"))
	// ls itself opens one descriptor to read the directory.
	if got := strings.Fields(string(fds)); len(got) > 4 {
		t.Errorf("the command had descriptors %v; want 0, 1, 2 (and ls's own)", got)
	}
}
