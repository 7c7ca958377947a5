package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// buildDB makes source.db as Postfix does, with Postfix's postmap when it
// is installed (test.sh installs postfix), else a stand-in file: mailtee
// only looks at its name and time.
func buildDB(t *testing.T, source string, alias bool) {
	t.Helper()
	tool := "postmap"
	if alias {
		tool = "postalias"
	}
	if path, err := exec.LookPath(tool); err == nil {
		if out, err := exec.Command(path, "hash:"+source).CombinedOutput(); err != nil {
			t.Fatalf("%s hash:%s: %v\n%s", tool, source, err, out)
		}
		return
	}
	if err := os.WriteFile(source+".db", []byte("not a real db"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// Issue 15: a table present only as name.db said "no such file"; check
// now says that mailtee reads the source, and how to get it back. A
// source changed after its .db was built (what Postfix would still be
// using) is a warning naming both files and their times.
func TestCheckTableOnlyDBAndStaleDB(t *testing.T) {
	dir := t.TempDir()
	virtual := filepath.Join(dir, "virtual")
	aliases := filepath.Join(dir, "aliases")
	os.WriteFile(virtual, []byte("a@example.com b@example.com\n"), 0o644)
	os.WriteFile(aliases, []byte("postmaster: root\n"), 0o644)
	buildDB(t, virtual, false)
	buildDB(t, aliases, true)
	os.WriteFile(filepath.Join(dir, "main.cf"), []byte("myhostname = h.example.com\nalias_maps = hash:"+aliases+
		"\nvirtual_alias_maps = hash:"+virtual+"\n"), 0o644)

	// The .db files are older than their sources: nothing to say.
	old := time.Now().Add(-time.Hour)
	for _, f := range []string{virtual, aliases} {
		os.Chtimes(f, old, old)
	}
	code, out, _ := mailtee(t, "", "check", "-c", dir)
	if strings.Contains(out, ".db") {
		t.Errorf("check speaks of a .db that is up to date (exit %d):\n%s", code, out)
	}

	// Edited after postmap ran.
	now := time.Now()
	os.Chtimes(virtual, now, now)
	os.Chtimes(aliases, now, now)
	_, out, _ = mailtee(t, "", "check", "-c", dir)
	for _, want := range []string{
		"warning: " + virtual + ": changed at " + now.Format("2006-01-02 15:04:05") + ", after " + virtual + ".db was built from it at",
		"until `postmap hash:" + virtual + "` is run",
		"until `postalias hash:" + aliases + "` is run",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("check does not say %q:\n%s", want, out)
		}
	}

	// Only the .db is left.
	os.Remove(virtual)
	code, out, _ = mailtee(t, "", "check", "-c", dir)
	want := "source file " + virtual + " not found, only " + virtual + ".db, which postmap built from it: mailtee reads the source text, not the .db file; restore the source, for example with `postmap -s hash:" + virtual + " > " + virtual + "`"
	if code != exitBadData || !strings.Contains(out, want) {
		t.Errorf("exit %d; want 1 and %q:\n%s", code, want, out)
	}

	// Named by its .db, written out in full: the source is read, not the
	// binary file beside it.
	code, out, errs := mailtee(t, "", "postalias", "-q", "postmaster", "hash:"+aliases+".db")
	if code != exitOK || out != "root\n" {
		t.Errorf("postalias -q postmaster hash:%s.db: exit %d %q %s; want root", aliases, code, out, errs)
	}
}
