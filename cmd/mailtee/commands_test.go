package main

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/envelope"
	"github.com/mailtee/mailtee/internal/master"
	"github.com/mailtee/mailtee/internal/queue"
	"github.com/mailtee/mailtee/internal/queuelock"
)

// Started through a link named after a Postfix program, mailtee runs
// that command; under any other name, the command is its first
// argument.
func TestPersonality(t *testing.T) {
	for _, c := range []struct{ argv, want []string }{
		{[]string{"/usr/sbin/sendmail", "-t", "-i"}, []string{"sendmail", "-t", "-i"}},
		{[]string{"./mailq"}, []string{"mailq"}},
		{[]string{"newaliases"}, []string{"newaliases"}},
		{[]string{"/usr/sbin/postsuper", "-d", "ALL"}, []string{"postsuper", "-d", "ALL"}},
		{[]string{"/usr/sbin/postqueue", "-p"}, []string{"postqueue", "-p"}},
		{[]string{"/usr/local/sbin/mailtee", "sendmail", "-t"}, []string{"sendmail", "-t"}},
		{[]string{"mailtee-sendmail", "sendmail"}, []string{"sendmail"}},
	} {
		if got := personality(c.argv); !reflect.DeepEqual(got, c.want) {
			t.Errorf("personality(%q) = %q, want %q", c.argv, got, c.want)
		}
	}
}

// sendmail's command line as real callers write it, read as Postfix's
// sendmail reads it.
func TestParseSendmail(t *testing.T) {
	t.Setenv("MAIL_CONFIG", "/etc/postfix")
	for _, c := range []struct {
		name string
		args []string
		want sendmailOpts
	}{
		{"sendmail", []string{"-t", "-i"}, sendmailOpts{mode: smEnqueue, dir: "/etc/postfix", extract: true}},
		{"sendmail", []string{"-ti", "-oi", "-odi", "-oem", "-FCron Daemon", "-f", "root", "bob"}, sendmailOpts{mode: smEnqueue, dir: "/etc/postfix", extract: true, from: "root", fromSet: true, rcpts: []string{"bob"}}},
		{"sendmail", []string{"bob", "-fcron@example.org", "-F", "Cron", "-C", "/etc/alt/main.cf"}, sendmailOpts{mode: smEnqueue, dir: "/etc/alt", from: "cron@example.org", fromSet: true, dotEnds: true, rcpts: []string{"bob"}}},
		{"sendmail", []string{"-C/etc/alt", "-bm", "-N", "never", "-R", "hdrs", "-V", "envid", "--", "-odd"}, sendmailOpts{mode: smEnqueue, dir: "/etc/alt", dotEnds: true, rcpts: []string{"-odd"}}},
		{"sendmail", []string{"-bs"}, sendmailOpts{mode: smSMTP, dir: "/etc/postfix", dotEnds: true}},
		{"sendmail", []string{"-bp"}, sendmailOpts{mode: smMailq, dir: "/etc/postfix", dotEnds: true}},
		{"sendmail", []string{"-bi", "-oA/etc/aliases2"}, sendmailOpts{mode: smNewaliases, dir: "/etc/postfix", dotEnds: true, aliasFile: "/etc/aliases2"}},
		{"sendmail", []string{"-I"}, sendmailOpts{mode: smNewaliases, dir: "/etc/postfix", dotEnds: true}},
		{"sendmail", []string{"-q"}, sendmailOpts{mode: smFlush, dir: "/etc/postfix", dotEnds: true}},
		{"sendmail", []string{"-q30m"}, sendmailOpts{mode: smIgnore, dir: "/etc/postfix", dotEnds: true}},
		{"sendmail", []string{"-qRexample.org"}, sendmailOpts{mode: smFlush, dir: "/etc/postfix", dotEnds: true, siteFlush: "example.org"}},
		{"sendmail", []string{"-bh"}, sendmailOpts{mode: smIgnore, dir: "/etc/postfix", dotEnds: true}},
		{"mailq", nil, sendmailOpts{mode: smMailq, dir: "/etc/postfix", dotEnds: true}},
		{"newaliases", []string{"-c", "/etc/alt"}, sendmailOpts{mode: smNewaliases, dir: "/etc/alt", dotEnds: true}},
	} {
		got, err := parseSendmail(c.name, c.args)
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s %q: %+v, %v; want %+v", c.name, c.args, got, err, c.want)
		}
	}
	for _, args := range [][]string{{"-bd"}, {"-bv", "bob"}, {"-n"}, {"-Xlog"}, {"-bz"}, {"-t", "-bp"}, {"-bp", "bob"}, {"-qXyz"}, {"-B", "9BIT"}, {"-f"}, {"-qR"},
		// Letters Postfix's getopt does not know: mail(1)'s -s given to
		// sendmail must not make the subject a recipient.
		{"-s", "Hello", "bob"}, {"-d0.1"}, {"-tis", "x"}} {
		if _, err := parseSendmail("sendmail", args); err == nil {
			t.Errorf("sendmail %q: accepted, want a usage error", args)
		}
	}
}

// Usage errors exit 64 (EX_USAGE), as Postfix's sendmail and postqueue.
func TestSysexits(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "main.cf"), []byte("queue_directory = "+dir+"/queue\n"), 0o644)
	for _, args := range [][]string{{"sendmail", "-bd"}, {"sendmail", "-c", dir, "-n"}, {"postqueue", "-c", dir}, {"postqueue", "-c", dir, "-p", "-f"}, {"mailq", "-c", dir, "-f"}} {
		if code, _, errs := mailtee(t, "", args...); code != exUsage || !strings.Contains(errs, "fatal:") {
			t.Errorf("%q: exit %d %q, want %d", args, code, errs, exUsage)
		}
	}
	// No recipients: EX_USAGE too, with Postfix's words.
	var out, errb bytes.Buffer
	if code := runSendmail([]string{"-c", dir}, strings.NewReader("Subject: x\n\nx\n"), &out, &errb); code != exUsage || !strings.Contains(errb.String(), "Recipient addresses must be specified") {
		t.Errorf("no recipients: exit %d %q", code, errb.String())
	}
	// main.cf that cannot be read: EX_TEMPFAIL, as Postfix's sendmail
	// exits on any fatal error, so that Dovecot's LDA and procmail
	// retry a redirect rather than bounce it.
	errb.Reset()
	if code := runSendmail([]string{"-c", filepath.Join(dir, "nonexistent"), "bob"}, strings.NewReader("Subject: x\n\nx\n"), &out, &errb); code != exTempFail {
		t.Errorf("unreadable main.cf: exit %d %q, want %d", code, errb.String(), exTempFail)
	}
	// Flushing a stopped system: EX_UNAVAILABLE.
	if code, _, errs := mailtee(t, "", "postqueue", "-c", dir, "-f"); code != exUnavailable || !strings.Contains(errs, "mail system is down") {
		t.Errorf("postqueue -f, server stopped: exit %d %q", code, errs)
	}
}

// Every command's -h prints its full usage on standard output and
// exits 0; serve's and queue's list every option and verb.
func TestHelp(t *testing.T) {
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"serve", "-h"}, []string{"-c DIR", "SIGHUP", "SIGTERM"}},
		{[]string{"queue", "-h"}, []string{"list", "flush", "delete ID", "hold ID", "release ID", "-c DIR"}},
		{[]string{"queue", "list", "--help"}, []string{"release ID"}},
		{[]string{"check", "-h"}, []string{"-c DIR"}},
		{[]string{"reload", "-h"}, []string{"SIGHUP"}},
		{[]string{"version", "-h"}, []string{"mailtee version"}},
		{[]string{"sendmail", "--help"}, []string{"-bs", "-bp", "-bi", "-t", "-C FILE|DIR"}},
		{[]string{"postsuper", "--help"}, []string{"-d ID", "-h ID", "-H ID"}},
		{[]string{"postqueue", "--help"}, []string{"-p", "-j", "-f", "-i ID", "-s SITE"}},
		{[]string{"postconf", "--help"}, []string{"postconf"}},
	} {
		code, out, errs := mailtee(t, "", c.args...)
		if code != exitOK || errs != "" {
			t.Errorf("%q: exit %d, stderr %q", c.args, code, errs)
		}
		for _, w := range c.want {
			if !strings.Contains(out, w) {
				t.Errorf("%q lacks %q:\n%s", c.args, w, out)
			}
		}
	}
	// postsuper -h is hold, not help.
	if code, out, _ := mailtee(t, "", "postsuper", "-h", "ALL", "-c", t.TempDir()); code == exitOK && strings.Contains(out, "usage") {
		t.Error("postsuper -h printed the usage")
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := mailtee(t, "", "version")
	if code != exitOK || !regexp.MustCompile(`^mailtee \S+ \(go1\.[0-9.]+\S*\)\n$`).MatchString(out) {
		t.Errorf("version: exit %d %q", code, out)
	}
	old := version
	version = "1.2.3"
	defer func() { version = old }()
	if _, out, _ := mailtee(t, "", "version"); !strings.HasPrefix(out, "mailtee 1.2.3 (go1.") {
		t.Errorf("version with -X main.version: %q", out)
	}
}

// mailq, queue list and postsuper on a configuration whose server never
// started create nothing.
func TestNoSpoolCreated(t *testing.T) {
	dir := t.TempDir()
	qdir := filepath.Join(dir, "spool", "queue")
	os.WriteFile(filepath.Join(dir, "main.cf"), []byte("queue_directory = "+qdir+"\n"), 0o644)
	for _, args := range [][]string{{"queue", "list", "-c", dir}, {"mailq", "-c", dir}, {"postqueue", "-c", dir, "-j"}} {
		if code, out, errs := mailtee(t, "", args...); code != exitOK || (args[0] != "postqueue" && out != "Mail queue is empty\n") {
			t.Errorf("%q: exit %d %q %q", args, code, out, errs)
		}
	}
	if os.Getuid() == 0 {
		if code, _, errs := mailtee(t, "", "postsuper", "-c", dir, "-d", "ALL"); code != exitOK || !strings.Contains(errs, "Deleted: 0 messages") {
			t.Errorf("postsuper -d ALL: exit %d %q", code, errs)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "spool")); !os.IsNotExist(err) {
		t.Errorf("the spool was created: %v", err)
	}
}

// postsuper on a spool whose lock another process holds (an edit in
// progress, a server starting) waits for a server to answer, and then
// fails naming the holder rather than editing under it.
func TestPostsuperLockHeld(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("postsuper is root's")
	}
	dir := t.TempDir()
	qdir := filepath.Join(dir, "queue")
	os.WriteFile(filepath.Join(dir, "main.cf"), []byte("queue_directory = "+qdir+"\n"), 0o644)
	l, err := queuelock.Acquire(qdir, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	old := master.EditWait
	master.EditWait = time.Second
	defer func() { master.EditWait = old }()
	code, _, errs := mailtee(t, "", "postsuper", "-c", dir, "-h", "ALL")
	if code != exitRuntime || !strings.Contains(errs, "locked by process") || !strings.Contains(errs, "no server answers") {
		t.Errorf("postsuper with the lock held: exit %d %q", code, errs)
	}
	if _, err := os.Stat(filepath.Join(qdir, "queue")); !os.IsNotExist(err) {
		t.Errorf("postsuper opened the spool under another's lock: %v", err)
	}
}

// sendmail -bs speaks SMTP on standard input and output and drops each
// message as sendmail does; sequence errors get Postfix's replies.
func TestSendmailBS(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "main.cf"), []byte("myhostname = mx.test.example\nqueue_directory = "+dir+"/queue\nmessage_size_limit = 2000\nsmtpd_recipient_limit = 2\n"), 0o644)
	in := "HELO x\nRCPT TO:<a@example.org>\nDATA\nMAIL FROM:<me@example.org> SIZE=100\nMAIL FROM:<x@y>\nRCPT TO:<a@example.org>\nRCPT TO:b@example.org\nRCPT TO:<c@example.org>\nDATA\n" +
		"Subject: one\n\n..dot\n.\n" +
		"MAIL FROM:<> SIZE=99999\nMAIL FROM:<>\nRCPT TO:<a@example.org>\nDATA\n" + strings.Repeat("0123456789\n", 300) + ".\nBOGUS\n" + strings.Repeat("x", 5000) + "\nNOOP\nQUIT\nNOOP\n"
	var out, errb bytes.Buffer
	if code := runSendmail([]string{"-bs", "-c", dir}, strings.NewReader(in), &out, &errb); code != exitOK {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	want := []string{"220 mx.test.example ESMTP", "250 mx.test.example", "503 5.5.1 Error: need MAIL command", "503 5.5.1 Error: need MAIL command",
		"250 2.1.0 Ok", "503 5.5.1 Error: nested MAIL command", "250 2.1.5 Ok", "250 2.1.5 Ok", "452 4.5.3 Error: too many recipients",
		"354 End data with <CR><LF>.<CR><LF>", "250 2.0.0 Ok: queued",
		"552 5.3.4 Message size exceeds fixed limit", "250 2.1.0 Ok", "250 2.1.5 Ok", "354 End data with <CR><LF>.<CR><LF>", "552 5.3.4 Error: message file too big",
		"502 5.5.2 Error: command not recognized", "500 5.5.2 Error: line too long", "250 2.0.0 Ok", "221 2.0.0 Bye", ""}
	got := strings.Split(out.String(), "\r\n")
	if len(got) != len(want) {
		t.Fatalf("replies:\n%s", out.String())
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("reply %d: %q, want %q", i, got[i], want[i])
		}
	}
	drops, _ := os.ReadDir(filepath.Join(dir, "queue", "maildrop"))
	if len(drops) != 1 {
		t.Fatalf("%d files in maildrop, want 1", len(drops))
	}
	b, _ := os.ReadFile(filepath.Join(dir, "queue", "maildrop", drops[0].Name()))
	if !bytes.Contains(b, []byte("\r\n.dot\r\n")) || !bytes.Contains(b, []byte("b@example.org")) || !bytes.Contains(b, []byte("me@example.org")) {
		t.Errorf("the dropped file:\n%q", b)
	}
}

// FuzzParseSendmail: any command line is parsed or refused, never a
// panic, and a flush or a mode without enqueue never carries recipients.
func FuzzParseSendmail(f *testing.F) {
	for _, s := range []string{"-t -i", "-bs", "-q", "-qRx", "-oA", "-ti -fa -- b", "-b", "-q1h x", "-C/x/main.cf"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		o, err := parseSendmail("sendmail", strings.Fields(line))
		if err == nil && o.mode != smEnqueue && o.mode != smIgnore && len(o.rcpts) > 0 {
			t.Fatalf("%q: mode %s with recipients %q", line, o.mode, o.rcpts)
		}
	})
}

// postsuper on a stopped server's spool: IDs from standard input, ALL
// restricted to a queue, in command-line order; the spool keeps the
// result for the next server.
func TestPostsuperOffline(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("postsuper is root's")
	}
	dir := t.TempDir()
	qdir := filepath.Join(dir, "queue")
	os.WriteFile(filepath.Join(dir, "main.cf"), []byte("queue_directory = "+qdir+"\n"), 0o644)
	var ids []string
	for i := 0; i < 3; i++ {
		env := &envelope.Envelope{From: "s@example.org", Rcpts: []envelope.Rcpt{{Addr: fmt.Sprintf("r%d@example.org", i)}}, Arrival: time.Now()}
		id, err := queue.Put(qdir, env, strings.NewReader("Subject: x\r\n\r\nx\r\n"))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	var out, errb bytes.Buffer
	if code := runPostsuper([]string{"-c", dir, "-h", "-"}, strings.NewReader(ids[0]+"\n"+ids[1]+"\nnot/an/id\n"), &out, &errb); code != exitOK ||
		!strings.Contains(errb.String(), "Placed on hold: 2 messages") || !strings.Contains(errb.String(), "invalid mail queue id: not/an/id") {
		t.Fatalf("postsuper -h -: exit %d %q", code, errb.String())
	}
	errb.Reset()
	// Release one, then delete the held: the released one stays.
	if code := runPostsuper([]string{"-c", dir, "-H", ids[0], "-d", "ALL", "hold"}, strings.NewReader(""), &out, &errb); code != exitOK ||
		!strings.Contains(errb.String(), "Deleted: 1 message\n") || !strings.Contains(errb.String(), "Released from hold: 1 message\n") {
		t.Fatalf("postsuper -H ID -d ALL hold: exit %d %q", code, errb.String())
	}
	list, err := queue.ListDir(qdir)
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, m := range list {
		if m.Hold {
			t.Errorf("%s is still held", m.ID)
		}
		left = append(left, m.ID)
	}
	slices.Sort(left)
	want := []string{ids[0], ids[2]}
	slices.Sort(want)
	if !reflect.DeepEqual(left, want) {
		t.Errorf("left in the queue: %v, want %v", left, want)
	}
	for _, args := range [][]string{{"-r", "ALL"}, {"-e", ids[0]}, {"-d", "ALL", "maildrop"}, {"-d", "ALL", "nosuchqueue"}} {
		errb.Reset()
		if code := runPostsuper(append([]string{"-c", dir}, args...), strings.NewReader(""), &out, &errb); code != exitBadData || !strings.Contains(errb.String(), "fatal:") {
			t.Errorf("postsuper %q: exit %d %q; want refused", args, code, errb.String())
		}
	}
}

// A server that answers on the control socket owns the spool even when
// it holds no lock (one started before the lock existed): postsuper
// asks it, and does not open the spool.
func TestPostsuperAsksLocklessServer(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("postsuper is root's")
	}
	dir := t.TempDir()
	qdir := filepath.Join(dir, "queue")
	os.MkdirAll(qdir, 0o700)
	os.WriteFile(filepath.Join(dir, "main.cf"), []byte("queue_directory = "+qdir+"\n"), 0o644)
	l, err := net.Listen("unix", filepath.Join(qdir, "control"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	got := make(chan string, 10)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			line, _ := bufio.NewReader(c).ReadString('\n')
			if line == "" {
				c.Close() // a probe: is anyone there?
				continue
			}
			got <- strings.TrimSpace(line)
			if strings.HasPrefix(line, "list") {
				fmt.Fprintln(c, `{"ok":true,"list":[{"ID":"ABCDEF0123","From":"a@b","Rcpts":[{"Addr":"c@d","Status":"deferred"}]}]}`)
			} else {
				fmt.Fprintln(c, `{"ok":true}`)
			}
			c.Close()
		}
	}()
	code, _, errs := mailtee(t, "", "postsuper", "-c", dir, "-h", "ABCDEF0123")
	if code != exitOK || !strings.Contains(errs, "Placed on hold: 1 message") {
		t.Fatalf("postsuper -h: exit %d %q", code, errs)
	}
	if a, b := <-got, <-got; a != "list" || b != "hold ABCDEF0123" {
		t.Errorf("the server was asked %q, %q; want list, hold ABCDEF0123", a, b)
	}
	if _, err := os.Stat(filepath.Join(qdir, "queue")); !os.IsNotExist(err) {
		t.Errorf("postsuper opened the spool of a running server: %v", err)
	}
}
