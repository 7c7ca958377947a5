package command

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/deliver"
	"github.com/mailtee/mailtee/internal/mailcopy"
)

// The test binary doubles as a program for commands: with this first
// argument it replaces itself by env(1) with its output in a file, so
// that the test sees exactly the environment a command gets.
const envToArg = "command-test-env-to"

func TestMain(m *testing.M) {
	if len(os.Args) == 3 && os.Args[1] == envToArg {
		f, err := os.Create(os.Args[2])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(70)
		}
		syscall.Dup2(int(f.Fd()), 1)
		err = syscall.Exec("/usr/bin/env", []string{"env"}, os.Environ())
		fmt.Fprintln(os.Stderr, err)
		os.Exit(70)
	}
	allowRoot = true // the tests run commands as whoever runs them
	os.Exit(m.Run())
}

func message(content string) *deliver.Message {
	return &deliver.Message{ID: "TESTID", Size: int64(len(content)), Open: func() (io.ReadCloser, error) {
		return io.NopCloser(strings.NewReader(content)), nil
	}}
}

var when = time.Date(2026, 12, 6, 9, 5, 3, 0, time.Local)

func spec(cmd string) Spec {
	return Spec{Command: cmd, Env: []string{"PATH=" + DefaultPath}, TimeLimit: 10 * time.Second,
		Envelope: mailcopy.Envelope{Sender: "s@x.example", OrigRcpt: "list@y.example", DeliveredTo: "u@y.example", Time: when}}
}

func TestStdinIsMailCopy(t *testing.T) {
	out := filepath.Join(t.TempDir(), "got")
	content := "Subject: hi\r\n\r\nFrom the start\r\nbody\r\n"
	if err := Run(context.Background(), spec("cat > "+out), message(content)); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(out)
	want := "From s@x.example  Sun Dec  6 09:05:03 2026\n" +
		"Return-Path: <s@x.example>\nX-Original-To: list@y.example\nDelivered-To: u@y.example\n" +
		"Subject: hi\n\nFrom the start\nbody\n"
	if string(got) != want {
		t.Errorf("command read\n%q\nwant\n%q", got, want)
	}
}

func TestEnvironmentIsPostfixs(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("TZ", "Europe/Paris")
	t.Setenv("LANG", "C.UTF-8")
	t.Setenv("MAIL_CONFIG", "")
	os.Unsetenv("MAIL_CONFIG") // named in export_environment, but unset
	t.Setenv("SECRET", "not exported")
	a := Attrs{
		Home: "/home/u", Shell: "/bin/bash", User: "u",
		Sender:    "evil$(reboot)`x`@x.example",
		Recipient: "u+ext@y.example", OrigRecipient: "list@y.example",
		Local: "u+ext", Extension: "ext;rm -rf", Domain: "y.example",
		ClientName: "mx.x.example", ClientAddr: "192.0.2.1", ClientHelo: "helo\nname", ClientProtocol: "ESMTP",
	}
	filter := "1234567890!@%-_=+:,./abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	s := spec("")
	s.Env = Env(a, []string{"TZ", "MAIL_CONFIG", "LANG", "HOME=/from/export", " GREETING = hello world "}, filter)
	file := filepath.Join(t.TempDir(), "env")
	s.Command = exe + " " + envToArg + " " + file
	if err := Run(context.Background(), s, message("A: b\r\n")); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(file)
	want := strings.Join([]string{
		"TZ=Europe/Paris", "LANG=C.UTF-8",
		"HOME=/home/u", // setenv() keeps the exported variable's place
		"GREETING=hello world",
		"PATH=/usr/bin:/bin",
		"LOGNAME=u", "USER=u",
		"SENDER=evil__reboot__x_@x.example",
		"RECIPIENT=u+ext@y.example", "LOCAL=u+ext",
		"SHELL=/bin/bash", "DOMAIN=y.example", "EXTENSION=ext_rm_-rf",
		"ORIGINAL_RECIPIENT=list@y.example",
		"CLIENT_HOSTNAME=mx.x.example", "CLIENT_ADDRESS=192.0.2.1",
		"CLIENT_HELO=helo_name", "CLIENT_PROTOCOL=ESMTP",
	}, "\n") + "\n"
	if string(got) != want {
		t.Errorf("env printed\n%s\nwant\n%s", got, want)
	}
}

func TestEnvMinimal(t *testing.T) {
	got := strings.Join(Env(Attrs{User: "u", Recipient: "u@h", Local: "u"}, nil, "x"), " ")
	// Always there, even empty (a null sender), as command.c adds them.
	if want := "PATH=/usr/bin:/bin LOGNAME=_ USER=_ SENDER= RECIPIENT=___ LOCAL=_"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestExitStatus(t *testing.T) {
	for _, c := range []struct {
		cmd       string
		permanent bool
		status    string
		text      string // nil error when ""
	}{
		{"exit 0", false, "", ""},
		{"echo 5.7.1 ignored; exit 0", false, "", ""},
		{"exit 75", false, "4.3.0", "temporary failure"},
		{"echo try later; exit 75", false, "4.3.0", "temporary failure. Command output: try later "},
		{"echo no such user >&2; exit 67", true, "5.1.1", "user unknown. Command output: no such user "},
		{"exit 78", true, "5.3.5", "local configuration error"},
		{"echo 5.7.1 no way; exit 1", true, "5.7.1", "no way "},
		{"echo 4.2.2 mailbox full; exit 67", false, "4.2.2", "mailbox full "},
		{"printf '5.2.2'; exit 1", true, "5.2.2", ""},
		{"echo 5.7.1x not a code; exit 67", true, "5.1.1", "user unknown. Command output: 5.7.1x not a code "},
		{"echo ' 5.7.1 leading blank'; exit 67", true, "5.1.1", "user unknown. Command output:  5.7.1 leading blank "},
		{"exit 1", true, "5.3.0", `Command died with status 1: "exit 1"`},
		{"printf 'a\\tb\\001c\\303\\251'; exit 3", true, "5.3.0", `Command died with status 3: "printf 'a\tb\001c\303\251'; exit 3". Command output: a b_cé`},
		{"kill -9 $$", false, "4.3.0", `Command died with signal 9: "kill -9 $$"`},
		{"no-such-command-here", true, "5.3.0", `Command died with status 127: "no-such-command-here". Command output: /bin/sh: 1: no-such-command-here: not found `},
		{"/no/such/program arg", false, "4.3.0", "temporary failure. Command output: fatal: execvp /no/such/program: No such file or directory"},
	} {
		err := Run(context.Background(), spec(c.cmd), message("A: b\r\n\r\nbody\r\n"))
		if c.text == "" && c.status == "" {
			if err != nil {
				t.Errorf("%s: %v, want success", c.cmd, err)
			}
			continue
		}
		var de *deliver.Error
		if !errors.As(err, &de) {
			t.Errorf("%s: %v, want a *deliver.Error", c.cmd, err)
			continue
		}
		if de.Permanent != c.permanent || de.Enhanced != c.status || de.Text != c.text {
			t.Errorf("%s:\n got permanent=%v %s %q\nwant permanent=%v %s %q", c.cmd, de.Permanent, de.Enhanced, de.Text, c.permanent, c.status, c.text)
		}
	}
}

func TestWorkingDirectory(t *testing.T) {
	dir := t.TempDir()
	s := spec("pwd > " + filepath.Join(dir, "pwd"))
	s.Dir = dir
	if err := Run(context.Background(), s, message("A: b\r\n")); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "pwd")); string(got) != dir+"\n" {
		t.Errorf("ran in %q, want %q", got, dir)
	}
	s.Dir = filepath.Join(dir, "missing")
	err := Run(context.Background(), s, message("A: b\r\n"))
	var de *deliver.Error
	if !errors.As(err, &de) || de.Permanent || !strings.Contains(de.Text, `cannot change directory to "`+s.Dir+`"`) {
		t.Errorf("missing directory: %v, want a deferral that names it", err)
	}
}

// A command that exits at once without reading a large message has
// delivered it: the broken pipe is not an error (Postfix ignores EPIPE).
func TestUnreadInputIsSuccess(t *testing.T) {
	big := "Subject: big\r\n\r\n" + strings.Repeat(strings.Repeat("x", 998)+"\r\n", 10<<20/1000)
	for _, cmd := range []string{"true", "exit 0", "head -c 10 >/dev/null"} {
		start := time.Now()
		if err := Run(context.Background(), spec(cmd), message(big)); err != nil {
			t.Errorf("%s: %v", cmd, err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%s took %v", cmd, d)
		}
	}
	// The same message read whole arrives whole.
	out := filepath.Join(t.TempDir(), "big")
	if err := Run(context.Background(), spec("cat > "+out), message(big)); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(out); err != nil || st.Size() < int64(len(big))-10<<20/1000 {
		t.Errorf("large message: %v %v", st, err)
	}
}

func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// "pid (comm) S ...": a zombie is dead, waiting for init.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	return len(f) > 0 && f[0] != "Z"
}

// waitGone reports whether pid ends within d.
func waitGone(pid int, d time.Duration) bool {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if !alive(pid) {
			return true
		}
	}
	return false
}

func readPid(t *testing.T, file string) int {
	t.Helper()
	b, err := os.ReadFile(file)
	pid, err2 := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || err2 != nil {
		t.Fatalf("no pid in %s: %v %v", file, err, err2)
	}
	return pid
}

// The time limit kills the command and what it started, and bounces.
func TestTimeLimitKillsTheGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	s := spec("sleep 1000 & echo $! > " + pidFile + "; echo waiting; sleep 1000")
	s.TimeLimit = time.Second
	start := time.Now()
	err := Run(context.Background(), s, message("A: b\r\n"))
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("killed after %v, limit 1s", d)
	}
	var de *deliver.Error
	if !errors.As(err, &de) || !de.Permanent || de.Enhanced != "5.3.0" ||
		de.Text != `Command time limit exceeded: "`+s.Command+`". Command output: waiting ` {
		t.Errorf("got %#v", err)
	}
	if pid := readPid(t, pidFile); !waitGone(pid, 3*time.Second) {
		syscall.Kill(pid, syscall.SIGKILL)
		t.Errorf("grandchild %d survived the time limit", pid)
	}
}

// A command that never reads its input while its output pipe is held
// open by a child is still stopped at the limit.
func TestTimeLimitWithBlockedInput(t *testing.T) {
	s := spec("sleep 1000")
	s.TimeLimit = 500 * time.Millisecond
	big := strings.Repeat("x\r\n", 1<<20)
	start := time.Now()
	err := Run(context.Background(), s, message(big))
	var de *deliver.Error
	if !errors.As(err, &de) || !strings.HasPrefix(de.Text, "Command time limit exceeded") || time.Since(start) > 5*time.Second {
		t.Errorf("got %v after %v", err, time.Since(start))
	}
}

// When the server stops, the command is killed and the delivery deferred.
func TestContextEndKills(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err := Run(ctx, spec("sleep 1000 & echo $! > "+pidFile+"; wait"), message("A: b\r\n"))
	var de *deliver.Error
	if !errors.As(err, &de) || de.Permanent || !strings.HasPrefix(de.Text, "Command interrupted") {
		t.Errorf("got %v", err)
	}
	if pid := readPid(t, pidFile); !waitGone(pid, 3*time.Second) {
		syscall.Kill(pid, syscall.SIGKILL)
		t.Errorf("grandchild %d survived", pid)
	}
}

func TestOutputBounded(t *testing.T) {
	err := Run(context.Background(), spec("head -c 1000000 /dev/zero | tr '\\0' y; exit 67"), message("A: b\r\n"))
	var de *deliver.Error
	if !errors.As(err, &de) {
		t.Fatal(err)
	}
	want := "user unknown. Command output: " + strings.Repeat("y", maxOutput)
	if de.Text != want {
		t.Errorf("got %d bytes of text, want %d", len(de.Text), len(want))
	}
}

func TestLocalCommandShell(t *testing.T) {
	// local_command_shell's words, then the command as one argument.
	if got := argvOf("one two", "/bin/sh  -c\tx zero"); strings.Join(got, "|") != "/bin/sh|-c|x|zero|one two" {
		t.Errorf("argv %q", got)
	}
	if _, err := os.Stat("/bin/bash"); err != nil {
		t.Skip("no /bin/bash")
	}
	out := filepath.Join(t.TempDir(), "out")
	s := spec("echo bash $BASH_VERSION > " + out)
	s.Shell = "bash -c" // found as execvp() finds it
	if err := Run(context.Background(), s, message("A: b\r\n")); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(out); !strings.HasPrefix(string(got), "bash ") || len(got) < 8 {
		t.Errorf("ran by %q, want bash", got)
	}
}

func TestArgv(t *testing.T) {
	for cmd, want := range map[string]string{
		"/usr/bin/procmail -a ext":  "/usr/bin/procmail|-a|ext", // no shell
		"cat":                       "/usr/bin/cat",
		"exit 3":                    "/bin/sh|-c|exit 3", // not a program: maybe a built-in
		"procmail -a $EXTENSION":    "/bin/sh|-c|procmail -a $EXTENSION",
		"cat > /tmp/x":              "/bin/sh|-c|cat > /tmp/x",
		"  \t ":                     "/bin/sh|-c|  \t ",
		"/usr/lib/dovecot/deliver ": "/usr/lib/dovecot/deliver",
	} {
		if got := strings.Join(argvOf(cmd, ""), "|"); got != want {
			t.Errorf("%q: argv %q, want %q", cmd, got, want)
		}
	}
}

func TestFilter(t *testing.T) {
	def := "1234567890!@%-_=+:,./abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	for in, want := range map[string]string{
		"user+ext@example.com":  "user+ext@example.com",
		"a b;c|d`e`$(f)'g\"h\n": "a_b_c_d_e___f__g_h_",
		"é":                     "__",
		"a\x00b":                "a_b",
		"":                      "",
	} {
		if got := Filter(in, def); got != want {
			t.Errorf("Filter(%q) = %q, want %q", in, got, want)
		}
	}
	if got := Filter("abc", ""); got != "___" {
		t.Errorf("empty filter: %q", got)
	}
}

// FuzzFilter checks Filter against the C loop in local/command.c:
// strspn over the allowed set, then '_' for the byte that stopped it.
func FuzzFilter(f *testing.F) {
	f.Add("user+ext@example.com", "abcdefghijklmnopqrstuvwxyz@+.")
	f.Add("$(x)`y` é", "1234567890!@%-_=+:,./abc")
	f.Fuzz(func(t *testing.T, s, allowed string) {
		if i := strings.IndexByte(allowed, 0); i >= 0 {
			allowed = allowed[:i] // a C string ends there
		}
		got := Filter(s, allowed)
		b := []byte(s)
		for i := 0; i < len(b); {
			n := 0
			for i+n < len(b) && b[i+n] != 0 && strings.IndexByte(allowed, b[i+n]) >= 0 {
				n++
			}
			i += n
			if i < len(b) {
				b[i] = '_'
				i++
			}
		}
		if got != string(b) {
			t.Fatalf("Filter(%q, %q) = %q, want %q", s, allowed, got, b)
		}
	})
}

// FuzzSplitStatus checks the status code reader against dsn_valid()'s
// grammar written as a loop over the three parts.
func FuzzSplitStatus(f *testing.F) {
	for _, s := range []string{"5.7.1 no", "4.2.2", "2.0.0\tok", "5.1234.1 x", "5.1.1x", "6.1.1 x", "5..1", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, out string) {
		status, rest, ok := SplitStatus(out)
		parts := strings.SplitN(out, ".", 3)
		want := len(parts) == 3 && (parts[0] == "2" || parts[0] == "4" || parts[0] == "5") &&
			len(parts[1]) >= 1 && len(parts[1]) <= 3 && digits(parts[1]) == len(parts[1])
		if want {
			n := digits(parts[2])
			want = n >= 1 && n <= 3 && (n == len(parts[2]) || isCSpace(parts[2][n]))
		}
		if ok != want {
			t.Fatalf("SplitStatus(%q) ok=%v, want %v", out, ok, want)
		}
		if ok && (status+strings.TrimLeft(out[len(status):], cSpace) != status+rest || !strings.HasPrefix(out, status)) {
			t.Fatalf("SplitStatus(%q) = %q %q", out, status, rest)
		}
	})
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("disk read error") }

// A message that cannot be read to its end is deferred, and the command
// never sees the end of its input: it is killed first, so that it does
// not deliver the part it got.
func TestReadErrorKillsBeforeEOF(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "finished")
	msg := &deliver.Message{ID: "Q", Open: func() (io.ReadCloser, error) {
		return io.NopCloser(io.MultiReader(strings.NewReader("Subject: half\r\n\r\n"+strings.Repeat("x", 200000)), failingReader{})), nil
	}}
	err := Run(context.Background(), spec("cat > /dev/null; echo done > "+marker), msg)
	var de *deliver.Error
	if !errors.As(err, &de) || de.Permanent || !strings.Contains(de.Text, "error reading message: disk read error") {
		t.Errorf("got %v, want a deferral for the read error", err)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("the command saw a clean end of a message that was cut short")
	}
}

// As in Postfix, the output is read to its end: a command that leaves a
// child holding its output open runs into the time limit, and the child
// is killed with it.
func TestChildHoldingOutputRunsIntoLimit(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	s := spec("sleep 1000 & echo $! > " + pidFile + "; exit 0")
	s.TimeLimit = 500 * time.Millisecond
	err := Run(context.Background(), s, message("A: b\r\n"))
	var de *deliver.Error
	if !errors.As(err, &de) || !strings.HasPrefix(de.Text, "Command time limit exceeded") {
		t.Errorf("got %v", err)
	}
	if pid := readPid(t, pidFile); !waitGone(pid, 3*time.Second) {
		syscall.Kill(pid, syscall.SIGKILL)
		t.Errorf("child %d survived", pid)
	}
}

func TestCleanEnv(t *testing.T) {
	saved := os.Environ()
	t.Cleanup(func() {
		os.Clearenv()
		for _, kv := range saved {
			k, v, _ := strings.Cut(kv, "=")
			os.Setenv(k, v)
		}
	})
	t.Setenv("TZ", "UTC")
	t.Setenv("LANG", "de_DE.UTF-8")
	t.Setenv("DROPPED", "x")
	if err := CleanEnv([]string{"=x"}); err == nil || os.Getenv("DROPPED") != "x" {
		t.Fatalf("a bad element: %v, environment changed: %v", err, os.Getenv("DROPPED") != "x")
	}
	// Postfix's default import_environment.
	if err := CleanEnv(strings.Fields("MAIL_CONFIG MAIL_DEBUG MAIL_LOGTAG TZ XAUTHORITY DISPLAY LANG=C POSTLOG_SERVICE POSTLOG_HOSTNAME")); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(os.Environ(), " "); got != "TZ=UTC LANG=C" {
		t.Errorf("environment after CleanEnv: %q", got)
	}
	// What export_environment's default then gives a command.
	if got := strings.Join(Env(Attrs{}, strings.Fields("TZ MAIL_CONFIG LANG"), "")[:2], " "); got != "TZ=UTC LANG=C" {
		t.Errorf("exported: %q", got)
	}
}
