package e2e

import (
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
)

// postfixInstance is a private instance of the system's Postfix
// (`postfix -c DIR`), as bench/compare.sh runs them: its own configuration,
// queue, data directory and mail log under one temporary directory, its
// smtpd on one loopback address and a high port, chroot off. The system
// instance (port 25, /etc/postfix's queue) is never started.
type postfixInstance struct {
	t        *testing.T
	base     string // everything lives here; reachable by the postfix user
	etc      string // config_directory (postfix -c)
	ip       string
	port     int
	uid, gid int // the postfix user: mail_owner, owner of vmail/
}

// requirePostfix skips the test unless a private Postfix can run here.
func requirePostfix(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: a private Postfix instance (postfix -c DIR start) starts as root; ./test.sh runs as root in CI")
	}
	for _, c := range []string{"postfix", "postmap", "script"} {
		if _, err := exec.LookPath(c); err != nil {
			t.Skipf("%s not found: Debian's postfix package (and util-linux's script) is needed; ./test.sh installs postfix", c)
		}
	}
	for _, f := range []string{"/usr/share/postfix/master.cf.dist", "/etc/postfix/main.cf"} {
		if _, err := os.Stat(f); err != nil {
			// Postfix's tools read the default main.cf even with -c.
			t.Skipf("%s is missing; ./test.sh installs postfix and creates /etc/postfix/main.cf", f)
		}
	}
	if _, err := user.Lookup("postfix"); err != nil {
		t.Skip("no postfix user: Debian's postfix package is not installed")
	}
}

// newPostfix prepares (but does not start) a private Postfix whose smtpd
// listens on ip:port.
func newPostfix(t *testing.T, ip string, port int) *postfixInstance {
	t.Helper()
	requirePostfix(t)
	u, err := user.Lookup("postfix")
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	// Not t.TempDir: its parents are 0700, and Postfix's daemons (user
	// postfix) must reach the queue and the mailboxes below base.
	base, err := os.MkdirTemp("", "mailtee-e2e-postfix-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) }) // runs after stop (LIFO)
	p := &postfixInstance{t: t, base: base, etc: filepath.Join(base, "etc"), ip: ip, port: port, uid: uid, gid: gid}
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Chmod(base, 0o755))
	for _, d := range []string{"etc", "queue", "data", "vmail"} {
		must(os.Mkdir(filepath.Join(base, d), 0o755))
	}
	// `postfix check` creates the queue's subdirectories; data and the
	// virtual mailboxes belong to the postfix user.
	must(os.Chown(filepath.Join(base, "data"), uid, gid))
	must(os.Chmod(filepath.Join(base, "data"), 0o700))
	must(os.Chown(filepath.Join(base, "vmail"), uid, gid))
	return p
}

// path names a file below the instance's directory.
func (p *postfixInstance) path(name string) string { return filepath.Join(p.base, name) }

func (p *postfixInstance) addr() string { return fmt.Sprintf("%s:%d", p.ip, p.port) }

// start writes main.cf (test settings, then mainCf), master.cf (Debian's
// master.cf.dist, smtpd on ip:port, chroot off), the tables (each in the
// configuration directory, indexed with postmap as hash:), then runs
// `postfix check` and `postfix start` and waits until smtpd listens. The
// instance is stopped when the test ends; on failure its maillog is
// printed.
func (p *postfixInstance) start(mainCf string, tables map[string]string) {
	t := p.t
	t.Helper()
	base := fmt.Sprintf(`# private Postfix instance for mailtee's test/e2e (interop_test.go)
compatibility_level = 3.6
queue_directory = %[1]s/queue
data_directory = %[1]s/data
maillog_file = %[1]s/maillog
maillog_file_prefixes = %[1]s
mail_owner = postfix
setgid_group = postdrop
# smtpd's address is in master.cf; inet_interfaces accepts only addresses
# configured on an interface ("no local interface found for 127.0.0.10").
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost =
alias_maps =
alias_database =
local_recipient_maps =
# Nothing may leave loopback: mail is routed only by transport_maps to
# [127.0.0.x]:port next hops; anything else (bounces to outside senders)
# fails at once instead of looking up MX records in the real DNS.
default_transport = error:5.7.1 interop test: no delivery outside loopback
smtpd_peername_lookup = no
smtp_tls_security_level = none
smtpd_tls_security_level = none
smtp_connect_timeout = 2s
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
delay_warning_time = 0
biff = no
`, p.base)
	if err := os.WriteFile(filepath.Join(p.etc, "main.cf"), []byte(base+mainCf), 0o644); err != nil {
		t.Fatal(err)
	}
	master, err := p.masterCf()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(p.etc, "master.cf"), []byte(master), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, text := range tables {
		f := filepath.Join(p.etc, name)
		if err := os.WriteFile(f, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := p.cmd("postmap", "-c", p.etc, "hash:"+f); err != nil {
			t.Fatalf("postmap %s: %v\n%s", name, err, out)
		}
	}
	// Registered before start, so a half-started instance is stopped too;
	// the maillog cleanup is registered after it and so runs first.
	t.Cleanup(p.stop)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("Postfix %s maillog:\n%s", p.addr(), p.maillog())
		}
	})
	// Postfix commands report fatal errors on stderr only when it is a
	// terminal (otherwise only to the maillog): run them under script(1).
	for _, c := range []string{"check", "start"} {
		if out, err := p.cmd("script", "-qec", "postfix -c '"+p.etc+"' "+c, "/dev/null"); err != nil {
			t.Fatalf("postfix -c %s %s: %v\n%s\nmaillog:\n%s", p.etc, c, err, out, p.maillog())
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", p.addr(), 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Postfix smtpd did not listen on %s; maillog:\n%s", p.addr(), p.maillog())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// cmd runs a Postfix tool, bounded.
func (p *postfixInstance) cmd(name string, args ...string) (string, error) {
	c := exec.Command(name, args...)
	c.Env = append(os.Environ(), "MAIL_CONFIG="+p.etc)
	done := make(chan struct{})
	var out []byte
	var err error
	go func() { out, err = c.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		c.Process.Kill()
		<-done
		err = fmt.Errorf("timed out after 60s")
	}
	return strings.ReplaceAll(string(out), "\r", ""), err
}

// masterCf is Debian's master.cf.dist with the smtp inet service on
// ip:port and chroot off everywhere (the queue directory is no prepared
// chroot jail), postlog (maillog_file) kept.
func (p *postfixInstance) masterCf() (string, error) {
	b, err := os.ReadFile("/usr/share/postfix/master.cf.dist")
	if err != nil {
		return "", err
	}
	var out []string
	smtpd := false
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if line == "" || line[0] == '#' || line[0] == ' ' || line[0] == '\t' || len(f) < 8 {
			out = append(out, line)
			continue
		}
		if f[0] == "smtp" && f[1] == "inet" {
			f[0] = p.addr()
			smtpd = true
		}
		f[4] = "n"
		out = append(out, strings.Join(f, "\t"))
	}
	if !smtpd {
		return "", fmt.Errorf("master.cf.dist has no smtp inet service")
	}
	return strings.Join(out, "\n"), nil
}

func (p *postfixInstance) maillog() string {
	b, err := os.ReadFile(p.path("maillog"))
	if err != nil {
		return "(no maillog: " + err.Error() + ")"
	}
	return string(b)
}

// waitLog waits until the maillog contains every one of parts on one line.
func (p *postfixInstance) waitLog(parts ...string) {
	p.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		for _, line := range strings.Split(p.maillog(), "\n") {
			ok := true
			for _, s := range parts {
				ok = ok && strings.Contains(line, s)
			}
			if ok {
				return
			}
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("timed out waiting for a line with %q in the Postfix maillog:\n%s", parts, p.maillog())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// vmailMessages counts the messages in the Maildir new/ of a virtual
// mailbox (virtual_mailbox_base = BASE/vmail, the map's value "user/").
func (p *postfixInstance) vmailMessages(mailbox string) int {
	entries, _ := os.ReadDir(filepath.Join(p.base, "vmail", mailbox, "new"))
	return len(entries)
}

// vmailTexts returns the messages in the Maildir new/ of a virtual
// mailbox, whole.
func (p *postfixInstance) vmailTexts(mailbox string) []string {
	dir := filepath.Join(p.base, "vmail", mailbox, "new")
	entries, _ := os.ReadDir(dir)
	var out []string
	for _, e := range entries {
		b, _ := os.ReadFile(filepath.Join(dir, e.Name()))
		out = append(out, string(b))
	}
	return out
}

// queueEmpty reports whether no message is in the instance's queue: no
// file in maildrop, incoming, active, deferred or hold (what
// `postqueue -p` lists, read without asking showq(8), so that it can be
// polled).
func (p *postfixInstance) queueEmpty() bool {
	for _, q := range []string{"maildrop", "incoming", "active", "deferred", "hold"} {
		found := false
		filepath.WalkDir(p.path(filepath.Join("queue", q)), func(_ string, d os.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				found = true
				return filepath.SkipAll
			}
			return nil
		})
		if found {
			return false
		}
	}
	return true
}

// stop runs `postfix stop` and waits (bounded) until the master exits;
// if it does not, `postfix abort`, then SIGKILL to that master by pid.
func (p *postfixInstance) stop() {
	pid := 0
	if b, err := os.ReadFile(p.path("queue/pid/master.pid")); err == nil {
		pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	}
	p.cmd("postfix", "-c", p.etc, "stop")
	if pid <= 0 {
		return
	}
	alive := func() bool {
		// The master is not our child (postfix-script starts it): a
		// zombie left for its new parent counts as gone.
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return syscall.Kill(pid, 0) == nil
		}
		s := string(b)
		if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
			return s[i+2] != 'Z'
		}
		return true
	}
	for i := 0; i < 100 && alive(); i++ {
		time.Sleep(100 * time.Millisecond)
	}
	if alive() {
		p.t.Logf("Postfix master %d still running 10 s after postfix stop; aborting", pid)
		p.cmd("postfix", "-c", p.etc, "abort")
		time.Sleep(time.Second)
		if alive() {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}
