// Package postfixeq checks that mailtee's postconf, postmap and postalias
// print what Postfix's own tools print, on the same files.
//
// The cases are in testdata/cases.txt (its format is described at its top).
// Each case writes its files into a fresh directory that is also the
// configuration directory (-c DIR) of both programs, so the machine's
// /etc/postfix plays no part; runs Postfix's tool and then mailtee's; and
// compares standard output and exit status. Standard error is shown on
// failure but not compared: the two word their warnings differently.
//
// Cases marked as a deviation pin both outputs instead: mailtee must print
// what DESIGN.md says it reads differently, and Postfix must still print
// what it does, so that a deviation that stops being one fails the test.
//
// Postfix is only used for its command-line tools; the system Postfix is
// never started.
package postfixeq

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// mailteeBin is the mailtee binary built once by TestMain; empty when the
// build failed (buildErr says why) or Postfix is unavailable (skipReason).
var (
	mailteeBin string
	buildErr   error
	skipReason string
	// caseRoot holds the case directories. Not t.TempDir: that names
	// them after the test, and a '$' or '{' from a case name in the
	// configuration directory's path would be expanded by postconf.
	caseRoot string
)

func TestMain(m *testing.M) {
	tmp, err := os.MkdirTemp("", "postfixeq-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "postfixeq:", err)
		os.Exit(2)
	}
	caseRoot = filepath.Join(tmp, "cases")
	os.Mkdir(caseRoot, 0o755)
	skipReason = ensurePostfix()
	if skipReason == "" {
		mailteeBin = filepath.Join(tmp, "mailtee")
		cmd := exec.Command("go", "build", "-o", mailteeBin, "github.com/mailtee/mailtee/cmd/mailtee")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	}
	code := m.Run()
	os.RemoveAll(tmp)
	os.Exit(code)
}

// ensurePostfix makes Postfix's postmap, postalias and postconf available,
// installing Debian's packages when we are root, and returns why the tests
// must be skipped otherwise. It never starts Postfix: the package is
// preseeded with "No configuration", which leaves the service unconfigured.
func ensurePostfix() string {
	havePostfix := func() bool {
		for _, tool := range []string{"postmap", "postalias", "postconf"} {
			if _, err := exec.LookPath(tool); err != nil {
				return false
			}
		}
		return true
	}
	// Debian installs the tools in /usr/sbin, which a non-login root shell
	// may not have in PATH.
	if !havePostfix() {
		os.Setenv("PATH", os.Getenv("PATH")+":/usr/sbin:/sbin")
	}
	root := os.Geteuid() == 0
	if !havePostfix() {
		if !root {
			return "Postfix's postmap/postalias/postconf are not installed and we are not root to install Debian's postfix package (run ./test.sh as root)"
		}
		if err := aptInstall("postfix", "postfix-pcre"); err != nil {
			return "installing Debian's postfix package failed: " + err.Error()
		}
		if !havePostfix() {
			return "Debian's postfix package is installed but postmap/postalias/postconf are not in PATH"
		}
	}
	if root {
		// postfix-pcre may be missing on a machine that had postfix
		// already; the pcre cases then fail with Postfix's own message.
		if exec.Command("dpkg", "-s", "postfix-pcre").Run() != nil {
			aptInstall("postfix-pcre")
		}
		// Postfix's tools refuse to start without /etc/postfix/main.cf
		// even with -c; the Debian package installed with "No
		// configuration" does not write one.
		if _, err := os.Stat("/etc/postfix/main.cf"); errors.Is(err, os.ErrNotExist) {
			if data, err := os.ReadFile("/usr/share/postfix/main.cf.debian"); err == nil {
				os.WriteFile("/etc/postfix/main.cf", data, 0o644)
			}
		}
	}
	return ""
}

func aptInstall(pkgs ...string) error {
	if _, err := exec.LookPath("apt-get"); err != nil {
		return errors.New("apt-get not found: this is not a Debian system")
	}
	run := func(stdin string, name string, args ...string) error {
		cmd := exec.Command(name, args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		cmd.Stdin = strings.NewReader(stdin)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %v\n%s", strings.Join(append([]string{name}, args...), " "), err, out)
		}
		return nil
	}
	if err := run("postfix postfix/main_mailer_type select No configuration\n", "debconf-set-selections"); err != nil {
		return err
	}
	if err := run("", "apt-get", "update", "-qq"); err != nil {
		return err
	}
	return run("", "apt-get", append([]string{"install", "-y", "-qq"}, pkgs...)...)
}

// A testCase is one block of testdata/cases.txt.
type testCase struct {
	name  string
	line  int      // of the "===" line
	args  []string // tool and arguments, with {file} placeholders
	files []file   // written to the case directory
	stdin string   // for "-q -"
	// A deviation has a reason and pins both outputs.
	deviation string
	postfix   *result
	mailtee   *result
}

type file struct{ name, text string }

type result struct {
	out    string
	status int
	errs   string // standard error, shown on failure only
}

func TestPostfixEquivalence(t *testing.T) {
	if skipReason != "" {
		t.Skip(skipReason)
	}
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	cases, err := readCases("testdata/cases.txt")
	if err != nil {
		t.Fatal(err)
	}
	if len(cases) < 60 {
		t.Errorf("the corpus has %d cases; keep it at 60 or more", len(cases))
	}
	seen := map[string]int{}
	for _, c := range cases {
		if prev, dup := seen[c.name]; dup {
			t.Errorf("cases.txt:%d: case %q repeats the name of line %d", c.line, c.name, prev)
		}
		seen[c.name] = c.line
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			runCase(t, c)
		})
	}
}

func runCase(t *testing.T, c testCase) {
	dir, err := os.MkdirTemp(caseRoot, "case")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	paths := map[string]string{"dir": dir}
	files := slices.Clone(c.files)
	if !slices.ContainsFunc(files, func(f file) bool { return f.name == "main.cf" }) {
		// Plain defaults; Postfix needs the file to exist.
		files = append(files, file{"main.cf", ""})
	}
	// Without master.cf postconf warns on every run; an empty one is
	// Postfix's "no services", which changes no main.cf parameter.
	files = append(files, file{"master.cf", ""})
	// Postfix rereads a configuration or table file modified less than a
	// second ago until it is that old, 300ms at a time; backdating the
	// files keeps each run at a few milliseconds.
	old := time.Now().Add(-time.Hour)
	for _, f := range files {
		p := filepath.Join(dir, f.name)
		if err := os.WriteFile(p, []byte(f.text), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
		paths[f.name] = p
	}

	args := make([]string, len(c.args))
	for i, a := range c.args {
		args[i] = expand(a, paths)
	}
	tool := args[0]
	// Both programs get the case directory as their configuration.
	args = slices.Insert(args, 1, "-c", dir)

	// Postfix's postmap/postalias read hash and btree tables from the .db
	// that the same tool builds from the source; mailtee reads the source.
	if querying(args) {
		for _, a := range tableArgs(args) {
			typ, _, typed := strings.Cut(a, ":")
			if typed && typ != "hash" && typ != "btree" {
				continue
			}
			// Untyped: default_database_type, hash or btree here.
			if r := runTool(t, tool, []string{"-c", dir, a}, ""); r.status != 0 {
				t.Fatalf("%s -c %s %s (building the .db) exited %d:\n%s", tool, dir, a, r.status, r.errs)
			}
		}
	}

	pf := runTool(t, tool, args[1:], c.stdin)
	mt := runTool(t, mailteeBin, args, c.stdin)
	if slices.Contains(args, "-s") {
		// Postfix lists a hash table in hash order.
		pf.out, mt.out = sortLines(pf.out), sortLines(mt.out)
	}
	cmdline := strings.Join(c.args, " ")

	if c.deviation == "" {
		if pf.out != mt.out || pf.status != mt.status {
			t.Errorf("cases.txt:%d: %s\nmailtee differs from Postfix:\n%s", c.line, cmdline, sideBySide(pf, mt))
			return
		}
		// With -v, show what was agreed on: a case where both fail for
		// the same wrong reason is easy to miss otherwise.
		t.Logf("cases.txt:%d: both exit %d, output %q", c.line, pf.status, pf.out)
		return
	}
	wantPF, wantMT := *c.postfix, *c.mailtee
	wantPF.out, wantMT.out = expand(wantPF.out, paths), expand(wantMT.out, paths)
	if pf.out != wantPF.out || pf.status != wantPF.status {
		t.Errorf("cases.txt:%d: %s\ndocumented deviation (%s): Postfix no longer prints what the corpus says it does.\n%s",
			c.line, cmdline, c.deviation, sideBySide(wantPF, pf, "expected Postfix", "actual Postfix"))
	}
	if mt.out != wantMT.out || mt.status != wantMT.status {
		t.Errorf("cases.txt:%d: %s\ndocumented deviation (%s): mailtee does not print what the corpus says it should.\n%s",
			c.line, cmdline, c.deviation, sideBySide(wantMT, mt, "expected mailtee", "actual mailtee"))
	}
	if t.Failed() {
		t.Logf("actual outputs:\n%s", sideBySide(pf, mt))
	}
}

// querying reports whether a postmap/postalias command reads a table
// (-q or -s) rather than building it.
func querying(args []string) bool {
	if args[0] != "postmap" && args[0] != "postalias" {
		return false
	}
	return slices.Contains(args, "-s") || slices.Contains(args, "-q")
}

// tableArgs returns the table operands of a postmap/postalias command.
func tableArgs(args []string) []string {
	var tables []string
	for i := 1; i < len(args); i++ {
		switch a := args[i]; {
		case a == "-c" || a == "-q":
			i++ // the option's value
		case strings.HasPrefix(a, "-"):
		default:
			tables = append(tables, a)
		}
	}
	return tables
}

func runTool(t *testing.T, name string, args []string, stdin string) result {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = args[slices.Index(args, "-c")+1]
	cmd.Stdin = strings.NewReader(stdin)
	// MAIL_CONFIG would override nothing given -c, but keep the
	// environment free of it anyway.
	cmd.Env = slices.DeleteFunc(os.Environ(), func(s string) bool { return strings.HasPrefix(s, "MAIL_CONFIG=") })
	var out, errs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errs
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("%s %s: still running after 20s", name, strings.Join(args, " "))
	}
	r := result{out: out.String(), errs: errs.String()}
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		r.status = exit.ExitCode()
	default:
		t.Fatalf("%s: %v", name, err)
	}
	return r
}

// expand replaces {name} by the path of the case file name, and {dir} by
// the case directory.
func expand(s string, paths map[string]string) string {
	for name, p := range paths {
		s = strings.ReplaceAll(s, "{"+name+"}", p)
	}
	return s
}

func sortLines(s string) string {
	lines := strings.SplitAfter(s, "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	slices.Sort(lines)
	return strings.Join(lines, "")
}

// sideBySide shows two results in two columns, marking the lines that
// differ with "|" (and "<" or ">" where only one side has a line).
func sideBySide(a, b result, titles ...string) string {
	ta, tb := "Postfix", "mailtee"
	if len(titles) == 2 {
		ta, tb = titles[0], titles[1]
	}
	la, lb := splitLines(a.out), splitLines(b.out)
	width := len(ta) + len(" (exit 0)")
	for _, l := range la {
		width = max(width, len(l))
	}
	width = min(width, 70)
	var sb strings.Builder
	row := func(l, mark, r string) {
		fmt.Fprintf(&sb, "    %-*s %s %s\n", width, l, mark, r)
	}
	row(fmt.Sprintf("%s (exit %d)", ta, a.status), " ", fmt.Sprintf("%s (exit %d)", tb, b.status))
	row(strings.Repeat("-", width), " ", strings.Repeat("-", width))
	for i := 0; i < max(len(la), len(lb)); i++ {
		var l, r string
		mark := " "
		switch {
		case i >= len(la):
			r, mark = lb[i], ">"
		case i >= len(lb):
			l, mark = la[i], "<"
		default:
			l, r = la[i], lb[i]
			if l != r {
				mark = "|"
			}
		}
		row(l, mark, r)
	}
	if len(la) == 0 && len(lb) == 0 {
		row("(no output)", " ", "(no output)")
	}
	for _, e := range []struct {
		title string
		r     result
	}{{ta, a}, {tb, b}} {
		if e.r.errs != "" {
			fmt.Fprintf(&sb, "    %s stderr:\n", e.title)
			for _, l := range splitLines(e.r.errs) {
				fmt.Fprintf(&sb, "        %s\n", l)
			}
		}
	}
	return sb.String()
}

// splitLines shows tabs and a missing final newline, which matter here.
func splitLines(s string) []string {
	if s == "" {
		return nil
	}
	lines := strings.Split(s, "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	} else {
		lines[len(lines)-1] += "[no newline]"
	}
	for i, l := range lines {
		lines[i] = strings.ReplaceAll(l, "\t", "→")
	}
	return lines
}

// readCases parses testdata/cases.txt; see the format at its top.
func readCases(path string) ([]testCase, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var (
		cases   []testCase
		cur     *testCase
		section *strings.Builder // body of the current "---" section
		finish  func(string)     // stores a finished section body
		lineNo  int
	)
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%s:%d: %s", path, lineNo, fmt.Sprintf(format, args...))
	}
	endSection := func() {
		if finish != nil {
			// Blank lines separate cases; they are not content.
			body := strings.TrimRight(section.String(), "\n")
			if body != "" {
				body += "\n"
			}
			finish(body)
		}
		finish, section = nil, nil
	}
	endCase := func() error {
		endSection()
		if cur == nil {
			return nil
		}
		c := cur
		cur = nil
		switch {
		case len(c.args) == 0:
			return fmt.Errorf("%s:%d: case %q has no \"$ command\" line", path, c.line, c.name)
		case c.deviation == "" && (c.postfix != nil || c.mailtee != nil):
			return fmt.Errorf("%s:%d: case %q pins outputs but is not marked as a deviation", path, c.line, c.name)
		case c.deviation != "" && (c.postfix == nil || c.mailtee == nil):
			return fmt.Errorf("%s:%d: deviation %q needs both a \"--- postfix\" and a \"--- mailtee\" section", path, c.line, c.name)
		case c.deviation != "" && *c.postfix == *c.mailtee:
			return fmt.Errorf("%s:%d: deviation %q pins the same output for both programs", path, c.line, c.name)
		}
		cases = append(cases, *c)
		return nil
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lineNo++
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "=== "):
			if err := endCase(); err != nil {
				return nil, err
			}
			cur = &testCase{name: strings.TrimSpace(line[4:]), line: lineNo}
		case strings.HasPrefix(line, "##"):
			// A corpus comment, which also ends a section.
			endSection()
		case strings.HasPrefix(line, "--- "):
			if cur == nil {
				return nil, bad("section outside a case")
			}
			endSection()
			section = new(strings.Builder)
			word, rest, _ := strings.Cut(strings.TrimSpace(line[4:]), " ")
			rest = strings.TrimSpace(rest)
			c := cur
			switch word {
			case "file":
				if rest == "" || strings.ContainsAny(rest, "/{} ") {
					return nil, bad("need \"--- file NAME\" with a plain file name")
				}
				finish = func(s string) { c.files = append(c.files, file{rest, s}) }
			case "stdin":
				finish = func(s string) { c.stdin = s }
			case "deviation":
				if rest == "" {
					return nil, bad("need \"--- deviation REASON\"")
				}
				c.deviation = rest
				section = nil
			case "postfix", "mailtee":
				status := 0
				if rest != "" {
					n, ok := strings.CutPrefix(rest, "exit ")
					if status, err = strconv.Atoi(n); !ok || err != nil {
						return nil, bad("need \"--- %s [exit N]\"", word)
					}
				}
				r := &result{status: status}
				if word == "postfix" {
					c.postfix = r
				} else {
					c.mailtee = r
				}
				finish = func(s string) { r.out = s }
			default:
				return nil, bad("unknown section %q", word)
			}
		case section != nil:
			section.WriteString(line + "\n")
		case cur == nil || strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#"):
			// Commentary between and at the top of cases.
		case strings.HasPrefix(line, "$ "):
			if cur.args != nil {
				return nil, bad("case %q has a second command", cur.name)
			}
			args, err := splitWords(line[2:])
			if err != nil {
				return nil, bad("%v", err)
			}
			if len(args) == 0 || !slices.Contains([]string{"postmap", "postalias", "postconf"}, args[0]) {
				return nil, bad("the command must be postmap, postalias or postconf")
			}
			cur.args = args
		default:
			return nil, bad("unexpected line %q (a case has \"$ command\", then \"--- section\" blocks)", line)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if err := endCase(); err != nil {
		return nil, err
	}
	return cases, nil
}

// splitWords splits a command line at blanks, with '...' and "..." quoting
// as in the shell (no escapes inside single quotes, \" and \\ inside
// double quotes).
func splitWords(s string) ([]string, error) {
	var (
		words []string
		w     strings.Builder
		inW   bool
	)
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == ' ' || c == '\t':
			if inW {
				words = append(words, w.String())
				w.Reset()
				inW = false
			}
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, errors.New("unterminated '")
			}
			w.WriteString(s[i+1 : i+1+j])
			i += j + 1
			inW = true
		case c == '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && (s[i+1] == '"' || s[i+1] == '\\') {
					i++
				}
				w.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, errors.New("unterminated \"")
			}
			inW = true
		default:
			w.WriteByte(c)
			inW = true
		}
	}
	if inW {
		words = append(words, w.String())
	}
	return words, nil
}
