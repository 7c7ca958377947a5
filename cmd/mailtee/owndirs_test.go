package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Issue 14: RHEL's stock main.cf sets queue_directory and data_directory
// to Postfix's. check says, at those lines, that mailtee keeps its own,
// and counts it as neither an error nor a warning; a directory laid out
// as a Postfix queue is treated the same way.
func TestCheckSaysPostfixDirectoriesAreNotMailtees(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "main.cf"), []byte("alias_maps =\nmydestination =\nqueue_directory = /var/spool/postfix\ndata_directory = /var/lib/postfix\n"), 0o644)
	code, out, _ := mailtee(t, "", "check", "-c", dir)
	for _, want := range []string{
		"info: " + dir + "/main.cf, line 3: queue_directory = /var/spool/postfix is Postfix's queue; mailtee keeps its queue in /var/spool/mailtee",
		"info: " + dir + "/main.cf, line 4: data_directory = /var/lib/postfix is Postfix's data directory; mailtee keeps its data in /var/lib/mailtee",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("check output lacks %q:\n%s", want, out)
		}
	}
	if code != exitOK || !strings.Contains(out, "0 error(s)") {
		t.Errorf("exit %d:\n%s", code, out)
	}

	pq := filepath.Join(dir, "pf")
	for _, sub := range []string{"active", "deferred", "maildrop", "pid"} {
		os.MkdirAll(filepath.Join(pq, sub), 0o700)
	}
	os.WriteFile(filepath.Join(dir, "main.cf"), []byte("alias_maps =\nmydestination =\nqueue_directory = "+pq+"\n"), 0o644)
	_, out, _ = mailtee(t, "", "check", "-c", dir)
	if want := "line 3: queue_directory = " + pq + " is laid out as Postfix's queue"; !strings.Contains(out, want) || !strings.Contains(out, "0 warning(s)") {
		t.Errorf("check output lacks %q or has warnings:\n%s", want, out)
	}
}
