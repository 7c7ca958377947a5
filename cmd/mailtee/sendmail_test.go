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
		entries, _ := os.ReadDir(filepath.Join(dir, "queue", "maildrop"))
		return len(entries)
	}
	for _, from := range []string{"a@example.org\r\nRCPT TO:<x@example.com>", "a@example.org\n", "a\rb@example.org", "a\x00@example.org", "<a@example.org"} {
		var out, errOut strings.Builder
		code := runSendmail([]string{"-c", dir, "-f", from, "bob@example.com"}, strings.NewReader("Subject: x\n\nbody\n"), &out, &errOut)
		if code != exDataErr || !strings.Contains(errOut.String(), "bad sender address in -f") {
			t.Errorf("-f %q: exit %d, %q; want exit %d (EX_DATAERR), bad sender", from, code, errOut.String(), exDataErr)
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

// sendmail opens no table (issue 13, defect 3): with every table of
// main.cf missing or unreadable it still drops the message, where it
// used to open them all (1-1.5 s and 249 MB for a 1,000,000-entry
// virtual_alias_maps) and fail on a missing one.
func TestSendmailOpensNoTable(t *testing.T) {
	dir := t.TempDir()
	locked := filepath.Join(dir, "locked")
	os.WriteFile(locked, []byte("a b\n"), 0o000)
	mainCf := "myhostname = mx.test.example\nmydomain = test.example\nqueue_directory = " + dir + "/queue\n" +
		"alias_maps = hash:" + dir + "/absent-aliases\nlocal_recipient_maps =\n" +
		"virtual_alias_maps = hash:" + dir + "/absent-virtual, texthash:" + locked + "\n" +
		"canonical_maps = texthash:" + dir + "/absent-canonical\nrecipient_bcc_maps = hash:" + dir + "/absent-bcc\n" +
		"transport_maps = hash:" + dir + "/absent-transport\n"
	if err := os.WriteFile(filepath.Join(dir, "main.cf"), []byte(mainCf), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errOut strings.Builder
	if code := runSendmail([]string{"-c", dir, "-f", "cron", "bob"}, strings.NewReader("Subject: x\n\nbody\n"), &out, &errOut); code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if errOut.Len() != 0 {
		t.Errorf("sendmail said %q with no server running; want nothing, as Postfix's", errOut.String())
	}
	files, _ := os.ReadDir(filepath.Join(dir, "queue", "maildrop"))
	if len(files) != 1 {
		t.Fatalf("%d files in maildrop, want 1", len(files))
	}
}

// A message over message_size_limit is refused by sendmail itself, as
// by Postfix's.
func TestSendmailSizeLimit(t *testing.T) {
	dir := t.TempDir()
	mainCf := "queue_directory = " + dir + "/queue\nmessage_size_limit = 1000\n"
	os.WriteFile(filepath.Join(dir, "main.cf"), []byte(mainCf), 0o644)
	var out, errOut strings.Builder
	big := "Subject: x\n\n" + strings.Repeat("0123456789\n", 200)
	if code := runSendmail([]string{"-c", dir, "bob"}, strings.NewReader(big), &out, &errOut); code != exDataErr || !strings.Contains(errOut.String(), "too big") {
		t.Errorf("exit %d, %q; want %d (EX_DATAERR), too big", code, errOut.String(), exDataErr)
	}
}
