package maillog_test

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/maillog"
)

// The record is byte for byte the one glibc's syslog(3) sends for Postfix
// (msg_syslog.c: openlog(name, LOG_NDELAY|LOG_PID, facility), then
// syslog(facility|LOG_WARNING, "%s: %s", "warning", text)). glibc's own
// syslog(3) is the oracle, called through Python's syslog module, in a
// private mount namespace whose /dev is the test's directory, so that its
// fixed /dev/log is the test's socket.
func TestSyslogMatchesGlibc(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for a mount namespace")
	}
	for _, p := range []string{"unshare", "python3"} {
		if _, err := exec.LookPath(p); err != nil {
			t.Skipf("no %s", p)
		}
	}
	dir := t.TempDir()
	l := listen(t, filepath.Join(dir, "log"))
	script := `import syslog
syslog.openlog("postfix/qmgr", syslog.LOG_PID | syslog.LOG_NDELAY, syslog.LOG_LOCAL2)
syslog.syslog(syslog.LOG_WARNING, "warning: 4F9D: to=<a@b>, status=deferred (x)")`
	cmd := exec.Command("unshare", "-m", "sh", "-c", `mount --bind "$1" /dev && exec python3 -c "$2"`, "sh", dir, script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Skipf("cannot run glibc's syslog in a namespace: %v: %s", err, out)
	}
	glibc := readRecord(t, l)

	// Ours, with glibc's time stamp and pid.
	m := regexp.MustCompile(`^<\d+>(\w{3} [ \d]\d \d\d:\d\d:\d\d) postfix/qmgr\[(\d+)\]: `).FindStringSubmatch(glibc)
	if m == nil {
		t.Fatalf("glibc sent %q", glibc)
	}
	when, err := time.ParseInLocation(time.Stamp, m[1], time.Local)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(m[2])
	s := newSyslog(t, maillog.SyslogOptions{Socket: filepath.Join(dir, "log"), Facility: "local2"})
	h := maillog.NewHandler(s, &maillog.Options{Host: "mx", Program: "postfix", PID: pid})
	r := slog.NewRecord(when, slog.LevelWarn, "4F9D: to=<a@b>, status=deferred (x)", 0)
	r.AddAttrs(slog.String(maillog.ComponentKey, "qmgr"))
	h.Handle(context.Background(), r)
	if ours := readRecord(t, l); ours != glibc {
		t.Errorf("ours  %q\nglibc %q", ours, glibc)
	}
}

// rsyslogd finds rsyslogd: $MAILTEE_RSYSLOGD, else the PATH, else
// /usr/sbin; $MAILTEE_RSYSLOG_MODDIR is its module directory when it is not
// installed (a binary unpacked from the package with dpkg-deb -x).
func rsyslogd(t *testing.T) string {
	for _, p := range []string{os.Getenv("MAILTEE_RSYSLOGD"), "rsyslogd", "/usr/sbin/rsyslogd"} {
		if p == "" {
			continue
		}
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	t.Skip("no rsyslogd (apt-get install rsyslog, or set MAILTEE_RSYSLOGD)")
	return ""
}

// A private rsyslogd, configured as Debian's for the mail facility, writes
// into its mail.log exactly the line that maillog writes to a file: the
// tools that read Postfix's mail.log read mailtee's.
func TestSyslogRsyslog(t *testing.T) {
	bin := rsyslogd(t)
	dir := t.TempDir()
	sock, mailLog := filepath.Join(dir, "log"), filepath.Join(dir, "mail.log")
	conf := `global(workDirectory="` + dir + `" localHostname="mx")
module(load="imuxsock" SysSock.Use="off")
input(type="imuxsock" Socket="` + sock + `" UseSysTimeStamp="off")
mail.* action(type="omfile" file="` + mailLog + `" template="RSYSLOG_TraditionalFileFormat")
`
	if err := os.WriteFile(filepath.Join(dir, "rsyslog.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"-n", "-f", filepath.Join(dir, "rsyslog.conf"), "-i", filepath.Join(dir, "pid")}
	if md := os.Getenv("MAILTEE_RSYSLOG_MODDIR"); md != "" {
		args = append(args, "-M", md)
	}
	cmd := exec.Command(bin, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	var s *maillog.Syslog
	for deadline := time.Now().Add(5 * time.Second); s == nil; time.Sleep(20 * time.Millisecond) {
		var err error
		if s, err = maillog.NewSyslog(maillog.SyslogOptions{Socket: sock}); err != nil && time.Now().After(deadline) {
			t.Fatalf("rsyslogd did not open %s: %v\n%s", sock, err, out.String())
		}
	}
	defer s.Close()

	var file bytes.Buffer
	opts := &maillog.Options{Host: "mx", Program: "postfix", PID: 4242}
	hs := maillog.NewHandler(s, opts)
	hf := maillog.NewHandler(&file, opts)
	d := maillog.Delivery{ID: "4F9D2", To: "u@example.org", Relay: "local", Transport: "local",
		Delay: 1200 * time.Millisecond, DSN: "2.0.0", Status: "sent", Reason: "delivered to mailbox"}
	for _, h := range []*maillog.Handler{hs, hf} {
		l := maillog.NewWithHandler(h)
		l.Delivery(d)
		l.Warnf("smtpd", "hostname %s does not resolve to address %s", "x.example", "192.0.2.1")
	}
	var got []byte
	for deadline := time.Now().Add(5 * time.Second); bytes.Count(got, []byte("\n")) < 2 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		got, _ = os.ReadFile(mailLog)
	}
	if string(got) != file.String() {
		t.Errorf("rsyslog's mail.log:\n%s\nmaillog's file:\n%s\nrsyslogd said: %s", got, file.String(), out.String())
	}
	if !strings.Contains(string(got), " mx postfix/local[4242]: 4F9D2: to=<u@example.org>, relay=local, delay=1.2,") {
		t.Errorf("mail.log: %s", got)
	}
}
