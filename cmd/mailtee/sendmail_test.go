package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A sender with CR or LF (or any control character) is refused at
// submission: queued, it broke the envelope, and the bounce to it was
// retried for ever.
func TestSendmailBadSender(t *testing.T) {
	dir := t.TempDir()
	mainCf := "myhostname = mx.test.example\nmydomain = test.example\nqueue_directory = " + dir + "/queue\n" +
		"alias_maps =\nlocal_recipient_maps =\n"
	if err := os.WriteFile(filepath.Join(dir, "main.cf"), []byte(mainCf), 0o644); err != nil {
		t.Fatal(err)
	}
	queued := func() int {
		entries, _ := os.ReadDir(filepath.Join(dir, "queue", "queue"))
		return len(entries)
	}
	for _, from := range []string{"a@example.org\r\nRCPT TO:<x@example.com>", "a@example.org\n", "a\rb@example.org", "a\x00@example.org", "<a@example.org"} {
		var out, errOut strings.Builder
		code := runSendmail([]string{"-c", dir, "-f", from, "bob@example.com"}, strings.NewReader("Subject: x\n\nbody\n"), &out, &errOut)
		if code != exitBadData || !strings.Contains(errOut.String(), "bad sender address in -f") {
			t.Errorf("-f %q: exit %d, %q; want exit %d, bad sender", from, code, errOut.String(), exitBadData)
		}
	}
	if n := queued(); n != 0 {
		t.Fatalf("%d messages queued with a bad sender", n)
	}
	for _, from := range []string{"alice", "<alice@example.org>", "", "<>"} {
		var out, errOut strings.Builder
		if code := runSendmail([]string{"-c", dir, "-f", from, "bob@example.com"}, strings.NewReader("Subject: x\n\nbody\n"), &out, &errOut); code != exitOK {
			t.Errorf("-f %q: exit %d: %s", from, code, errOut.String())
		}
	}
	if n := queued(); n != 4 {
		t.Errorf("%d messages queued, want 4", n)
	}
}
