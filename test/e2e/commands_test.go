package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mailtee/mailtee/test/internal/harness"
)

// Issue 15: mailtee started through links named after Postfix's
// programs, installed as dist/install.sh installs it (one binary, setgid
// setgid_group, the links beside it): a user's `sendmail -t -i` and
// `sendmail -bs` are delivered; mailq lists a deferred message with its
// columns in line; postsuper -h, -H and -d work on the stopped server's
// spool and the server started afterwards honours each; newaliases
// reports a bad alias line with file:line and exit 1.
func TestPostfixCommandNames(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root: useradd, groupadd, a setgid install")
	}
	for _, tool := range []string{"useradd", "groupadd", "setpriv"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is missing", tool)
		}
	}
	suffix := strconv.Itoa(os.Getpid() % 100000)
	group := "mtcmd" + suffix
	if out, err := exec.Command("groupadd", group).CombinedOutput(); err != nil {
		t.Skipf("groupadd: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("groupdel", group).Run() })
	alice := addUser(t, "mtcmdal"+suffix)

	hop := freePort(t) // remote.example's next hop: down at first
	in := newInstance(t, fmt.Sprintf("setgid_group = %s\ntransport_maps = inline:{ remote.example=smtp:[127.0.0.1]:%d }\n", group, hop), nil)

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
	link := func(name string) string {
		p := filepath.Join(binDir, name)
		if err := os.Symlink("mailtee", p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	sendmail, mailq, newaliases, postsuper, postqueue := link("sendmail"), link("mailq"), link("newaliases"), link("postsuper"), link("postqueue")
	// root runs a link with the instance's configuration (the built-in
	// one) and returns its output and exit code.
	root := func(stdin, name string, args ...string) (string, int) {
		cmd := exec.Command(name, args...)
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return string(out), ee.ExitCode()
		} else if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return string(out), 0
	}

	in.Start()
	// sendmail -t -i as a user, as cron and mail(1) call it.
	out, err := alice.as("To: "+alice.name+"\nSubject: from cron\n\nbackup done\n.\nstill the body\n", "", sendmail, "-t", "-i", "-oem", "-odi", "-F", "Cron Daemon")
	if err != nil || out != "" {
		t.Fatalf("sendmail -t -i as %s: %v %q", alice.name, err, out)
	}
	waitUntil(t, "delivery of sendmail -t -i", 15*time.Second, func() bool { return len(in.MaildirMessages(alice.name)) == 1 })
	if m := in.MaildirMessages(alice.name)[0]; !strings.Contains(m, "still the body") || !strings.Contains(m, fmt.Sprintf("from userid %d", alice.uid)) {
		t.Errorf("the message of sendmail -t -i:\n%s", m)
	}
	in.WaitLog(fmt.Sprintf(": uid=%d from=<%s>", alice.uid, alice.name))

	// sendmail -bs: SMTP on standard input and output.
	dialog := "EHLO client.test.example\r\nMAIL FROM:<" + alice.name + "@test.example>\r\nRCPT TO:<" + alice.name + "@test.example>\r\nDATA\r\nSubject: over -bs\r\n\r\n..a stuffed dot\r\n.\r\nQUIT\r\n"
	out, err = alice.as(dialog, "", sendmail, "-bs")
	if err != nil || !strings.HasPrefix(out, "220 ") || !strings.Contains(out, "250 2.0.0 Ok: queued") || !strings.HasSuffix(out, "221 2.0.0 Bye\r\n") {
		t.Fatalf("sendmail -bs as %s: %v\n%s", alice.name, err, out)
	}
	waitUntil(t, "delivery of sendmail -bs", 15*time.Second, func() bool { return len(in.MaildirMessages(alice.name)) == 2 })
	for _, m := range in.MaildirMessages(alice.name) {
		if strings.Contains(m, "over -bs") && !strings.Contains(m, "\n.a stuffed dot") {
			t.Errorf("the message of sendmail -bs is not unstuffed:\n%s", m)
		}
	}

	// A message for a next hop that is down stays in the queue: mailq
	// lists it, its columns under the header's.
	if out, code := root("Subject: deferred\n\nx\n", sendmail, "far@remote.example"); code != 0 {
		t.Fatalf("sendmail: %d %s", code, out)
	}
	in.WaitLog("to=<far@remote.example>")
	in.WaitLog("status=deferred")
	// The local messages above may still be leaving the queue (their
	// removal trails the Maildir write): the lines below are the
	// deferred message's only once it is alone.
	waitUntil(t, "the deferred message alone in the queue", 15*time.Second, func() bool {
		out, _ := root("", mailq)
		return strings.Contains(out, " in 1 Request.")
	})
	out, code := root("", mailq)
	lines := strings.Split(out, "\n")
	if code != 0 || len(lines) < 4 || !strings.Contains(out, "far@remote.example") || !strings.Contains(out, "Connection refused") {
		t.Fatalf("mailq: exit %d\n%s", code, out)
	}
	col := strings.Index(lines[0], "--Sender/Recipient")
	at := strings.Index(lines[0], "---Arrival Time")
	size := strings.Index(lines[0], "--Size--") + len("--Size--")
	if col < 0 || at < 0 || strings.Index(lines[1], "root@") != col || strings.Index(lines[3], "far@remote.example") != col ||
		lines[1][at-1] != ' ' || lines[1][at] < 'A' || lines[1][at] > 'Z' || lines[1][size-1] < '0' || lines[1][size-1] > '9' || lines[1][size] != ' ' {
		t.Errorf("mailq's columns are out of line:\n%s", out)
	}
	out, code = root("", postqueue, "-j")
	var jm struct {
		QueueName string `json:"queue_name"`
		QueueID   string `json:"queue_id"`
	}
	if err := json.Unmarshal([]byte(strings.SplitN(out, "\n", 2)[0]), &jm); code != 0 || err != nil || jm.QueueName != "deferred" {
		t.Fatalf("postqueue -j: exit %d, %v\n%s", code, err, out)
	}
	id := jm.QueueID
	// The queue is root's (DESIGN.md: no user can read or change it),
	// whatever the link: refused with a reason, the group never used.
	for _, c := range [][]string{{mailq}, {postqueue, "-p"}, {sendmail, "-bp"}, {postsuper, "-d", "ALL"}, {postqueue, "-f"}} {
		out, err := alice.as("", "", c[0], c[1:]...)
		if err == nil || strings.Contains(out, "far@remote.example") || !strings.Contains(out, "root") && !strings.Contains(out, "superuser") {
			t.Errorf("%s as %s: %v %q; want refused", c, alice.name, err, out)
		}
	}

	// postsuper -h on the stopped server; started again, it keeps the
	// message on hold although its next hop is up.
	in.Stop()
	out, code = root("", postsuper, "-h", id)
	if code != 0 || !strings.Contains(out, "postsuper: "+id+": placed on hold") || !strings.Contains(out, "Placed on hold: 1 message") {
		t.Fatalf("postsuper -h on a stopped server: exit %d %q", code, out)
	}
	if out, _ := root("", mailq); !strings.Contains(out, id+"!") {
		t.Errorf("mailq after postsuper -h lacks %s!:\n%s", id, out)
	}
	sink := newSink(t, fmt.Sprintf("127.0.0.1:%d", hop), nil)
	in.Start()
	time.Sleep(4 * time.Second) // two backoff periods, four queue runs
	if n := sink.Total(); n != 0 {
		t.Fatalf("a held message was delivered after the restart (%d)", n)
	}
	if out, _ := root("", mailq); !strings.Contains(out, id+"!") {
		t.Errorf("mailq after the restart lacks %s!:\n%s", id, out)
	}

	// postsuper -H on the stopped server: delivered after the start.
	in.Stop()
	if out, code := root("", postsuper, "-H", id); code != 0 || !strings.Contains(out, "Released from hold: 1 message") {
		t.Fatalf("postsuper -H: exit %d %q", code, out)
	}
	in.Start()
	waitUntil(t, "delivery after postsuper -H", 15*time.Second, func() bool { return sink.Count("far@remote.example") == 1 })

	// postsuper -d on the stopped server: never delivered.
	sink.Close()
	if out, code := root("Subject: to delete\n\nx\n", sendmail, "gone@remote.example"); code != 0 {
		t.Fatalf("sendmail: %d %s", code, out)
	}
	in.WaitLog("to=<gone@remote.example>")
	in.Stop()
	out, code = root("", postsuper, "-d", "ALL", "deferred")
	if code != 0 || !strings.Contains(out, "Deleted: 1 message") {
		t.Fatalf("postsuper -d ALL deferred: exit %d %q", code, out)
	}
	sink2 := newSink(t, fmt.Sprintf("127.0.0.1:%d", hop), nil)
	in.Start()
	time.Sleep(3 * time.Second)
	if n := sink2.Total(); n != 0 {
		t.Errorf("a deleted message was delivered after the restart (%d)", n)
	}
	if out, _ := root("", mailq); !strings.Contains(out, "Mail queue is empty") {
		t.Errorf("mailq after postsuper -d:\n%s", out)
	}

	// newaliases: silent on a good file; file:line and exit 0 on a line
	// it leaves out, as Postfix's postalias (a Debian maintainer script
	// runs it under set -e); exit 1 on a file it cannot read.
	if out, code := root("", newaliases); code != 0 || out != "" {
		t.Errorf("newaliases on a good aliases file: exit %d %q", code, out)
	}
	in.WriteFile("aliases", "postmaster: admin\nstaff\n")
	if out, code := root("", newaliases); code != 0 || !strings.Contains(out, filepath.Join(in.Dir, "aliases")+", line 2: need name:value pair") {
		t.Errorf("newaliases on a bad line: exit %d %q; want 0, file and line", code, out)
	}
	os.Remove(filepath.Join(in.Dir, "aliases"))
	if out, code := root("", newaliases); code != 1 || !strings.Contains(out, filepath.Join(in.Dir, "aliases")) {
		t.Errorf("newaliases on a missing aliases file: exit %d %q; want 1 naming it", code, out)
	}
}

// A server starting while the spool is being edited offline (postsuper
// holding queue_directory/lock) waits for the edit to end before it
// opens the queue, and then starts.
func TestServeWaitsForQueueLock(t *testing.T) {
	in := newInstance(t, "", nil)
	qdir := filepath.Join(in.Dir, "queue")
	os.MkdirAll(qdir, 0o700)
	// The holder is another process, as a postsuper would be.
	holder := exec.Command("flock", "-x", filepath.Join(qdir, "lock"), "sleep", "3")
	if _, err := exec.LookPath("flock"); err != nil {
		t.Skip("flock(1) is missing (util-linux)")
	}
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	defer holder.Process.Kill()
	waitUntil(t, "the lock taken", 5*time.Second, func() bool {
		_, err := os.Stat(filepath.Join(qdir, "lock"))
		return err == nil
	})
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	in.Start()
	if held := time.Since(start); held < 2*time.Second {
		t.Errorf("the server started %v after the lock was taken for 3 s: it did not wait", held)
	}
	if _, err := os.Stat(filepath.Join(qdir, "journal")); err != nil {
		t.Errorf("the server did not open its queue after the lock was released: %v", err)
	}
}

// serve speaks sd_notify, for dist/mailtee.service's Type=notify:
// READY=1 once it accepts connections, RELOADING=1 and READY=1 around a
// SIGHUP, STOPPING=1 on SIGTERM.
func TestServeNotify(t *testing.T) {
	sock := filepath.Join(harness.TempDir(t), "notify")
	l, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	got := make(chan string, 10)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := l.Read(buf)
			if err != nil {
				return
			}
			got <- string(buf[:n])
		}
	}()
	next := func(want string) {
		t.Helper()
		select {
		case s := <-got:
			if !strings.HasPrefix(s, want) {
				t.Fatalf("notification %q, want %q", s, want)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("no %q notification", want)
		}
	}
	t.Setenv("NOTIFY_SOCKET", sock)
	in := newInstance(t, "", nil)
	in.Start()
	next("READY=1\nSTATUS=listening")
	if c, err := net.Dial("tcp", in.Addr()); err != nil {
		t.Errorf("READY=1 came before the port answered: %v", err)
	} else {
		c.Close()
	}
	in.Signal(syscall.SIGHUP)
	next("RELOADING=1")
	next("READY=1")
	in.Stop()
	next("STOPPING=1")
}
