package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// mailtee runs a subcommand in-process, from dir, and returns its exit
// code, standard output and standard error.
func mailtee(t *testing.T, dir string, args ...string) (int, string, string) {
	t.Helper()
	if dir != "" {
		t.Chdir(dir)
	}
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

// examplesDir is resolved before any test changes directory.
var examplesDir, _ = filepath.Abs(filepath.Join("..", "..", "examples"))

func seedDir(t *testing.T, role string) string {
	t.Helper()
	return filepath.Join(examplesDir, "seed", role)
}

// needAliases: the seed's relay names hash:/etc/aliases, which Debian's
// postfix package creates (test.sh installs it).
func needAliases(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/etc/aliases"); err != nil {
		if os.Getuid() == 0 {
			t.Fatalf("/etc/aliases is missing; run ./test.sh, which installs postfix: %v", err)
		}
		t.Skip("/etc/aliases is missing and we are not root to install postfix")
	}
}

// The "done when": the seed's files pass check with warnings and
// no errors, and the three lookups print what the seed means.
func TestSeedDoneCriteria(t *testing.T) {
	needAliases(t)
	for _, role := range []string{"primary", "relay"} {
		code, out, errs := mailtee(t, "", "check", "-c", seedDir(t, role))
		if code != exitOK || !strings.Contains(out, "0 error(s)") || strings.Contains(out, "error:") {
			t.Errorf("check %s: exit %d\n%s%s", role, code, out, errs)
		}
		if !strings.Contains(out, "warning:") {
			t.Errorf("check %s must warn about the seed's pitfalls:\n%s", role, out)
		}
	}
	_, out, _ := mailtee(t, "", "check", "-c", seedDir(t, "primary"))
	for _, want := range []string{"bcc_map_to_relay, line 1: key \"user1:\" ends in ':'", "Postfix's postmap keeps the colon"} {
		if !strings.Contains(out, want) {
			t.Errorf("primary check output lacks %q:\n%s", want, out)
		}
	}
	_, out, _ = mailtee(t, "", "check", "-c", seedDir(t, "relay"))
	for _, want := range []string{"user_maps, line 1: no ':' after the name", "is a full address", "your_interface_ip"} {
		if !strings.Contains(out, want) {
			t.Errorf("relay check output lacks %q:\n%s", want, out)
		}
	}

	queries := []struct {
		role string
		args []string
		want string
	}{
		{"primary", []string{"postmap", "-q", "user1", "hash:bcc_map_to_relay"}, "user1@relay.students.iiit.ac.in\n"},
		{"relay", []string{"postalias", "-q", "user1@relay.students.iiit.ac.in", "user_maps"}, "user1@students.iiit.ac.in\n"},
		{"relay", []string{"postmap", "-q", "students.iiit.ac.in", "hash:transport"}, "smtp:aspmx.l.google.com\n"},
	}
	for _, q := range queries {
		code, out, errs := mailtee(t, seedDir(t, q.role), q.args...)
		if code != exitOK || out != q.want {
			t.Errorf("%v in %s: exit %d, out %q, err %q; want %q", q.args, q.role, code, out, errs, q.want)
		}
	}
}

func TestCheckErrors(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "main.cf"), []byte("mydestinaton = x\ntransport_maps = hash:"+dir+"/missing\nvirtual_alias_maps = regexp:"+dir+"/re\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "re"), []byte("/(?=x)/ y\n"), 0o644)
	code, out, _ := mailtee(t, "", "check", "-c", dir)
	if code != exitBadData {
		t.Errorf("check with errors must exit 1, got %d", code)
	}
	for _, want := range []string{
		"main.cf, line 1: mydestinaton: unknown parameter; did you mean mydestination?",
		"main.cf, line 2: transport_maps:",
		"re, line 1:",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("check output lacks %q:\n%s", want, out)
		}
	}
}

func TestPostmapValidateAndList(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "t")
	os.WriteFile(p, []byte("b 2\na 1\nkeyonly\n"), 0o644)
	code, _, errs := mailtee(t, "", "postmap", "-c", dir, p)
	if code != exitOK || !strings.Contains(errs, "t, line 3: expected format") {
		t.Errorf("validate: exit %d, stderr %q", code, errs)
	}
	code, out, _ := mailtee(t, "", "postmap", "-c", dir, "-s", "texthash:"+p)
	if code != exitOK || out != "a\t1\nb\t2\n" {
		t.Errorf("-s: exit %d, out %q", code, out)
	}
	if code, out, _ := mailtee(t, "", "postmap", "-c", dir, "-q", "zz", p); code != exitBadData || out != "" {
		t.Errorf("absent key must exit 1 with no output, got %d %q", code, out)
	}
	os.WriteFile(p, []byte("/(/ bad\n"), 0o644)
	if code, _, errs := mailtee(t, "", "postmap", "-c", dir, "regexp:"+p); code != exitBadData || !strings.Contains(errs, "line 1") {
		t.Errorf("bad regexp: exit %d, stderr %q", code, errs)
	}
}

func TestPostconf(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "main.cf"), []byte("myhostname = h.example.com\nmydestination = $myhostname, localhost\n"), 0o644)
	_, out, _ := mailtee(t, "", "postconf", "-c", dir, "-n")
	if out != "mydestination = $myhostname, localhost\nmyhostname = h.example.com\n" {
		t.Errorf("-n = %q", out)
	}
	_, out, _ = mailtee(t, "", "postconf", "-c", dir, "-x", "-h", "mydestination", "mydomain")
	if out != "h.example.com, localhost\nexample.com\n" {
		t.Errorf("-x -h = %q", out)
	}
	_, out, _ = mailtee(t, "", "postconf", "-c", dir, "-d", "mydestination")
	if out != "mydestination = $myhostname, localhost.$mydomain, localhost\n" {
		t.Errorf("-d = %q", out)
	}
	_, _, errs := mailtee(t, "", "postconf", "-c", dir, "mydestinaton")
	if !strings.Contains(errs, "did you mean mydestination?") {
		t.Errorf("unknown name: stderr %q", errs)
	}
}
