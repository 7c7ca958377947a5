package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// phase show lists each copy-map user with its phase and route; phase
// diff names only the users a switch would move (not those with their
// own dual_delivery_phase_maps entry), changes nothing, and refuses a
// phase that is not one.
func TestPhaseShowAndDiff(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("bcc", "user1 user1@relay.example\nuser2 user2@relay.example\nuser3@students.example user3@relay.example\n")
	write("pilot", "user2@students.example forward\n")
	mainCf := "myhostname = students.example\nmydestination = $myhostname\n" +
		"queue_directory = " + dir + "/q\ndata_directory = " + dir + "/d\n" +
		"mailbox_bcc_maps = hash:" + dir + "/bcc\ndual_delivery_phase_maps = hash:" + dir + "/pilot\n" +
		"transport_maps = inline:{ relay.example=relay:[127.0.0.1]:2525 }\n"
	write("main.cf", mainCf)
	var out, errb bytes.Buffer
	if code := run([]string{"phase", "-c", dir, "show"}, &out, &errb); code != 0 {
		t.Fatalf("show: exit %d: %s", code, errb.String())
	}
	flat := strings.Join(strings.Fields(out.String()), " ") // columns are padded
	for _, want := range []string{
		"user1 mailbox_bcc_maps dual mailbox (local:students.example) + copy to user1@relay.example via relay:[127.0.0.1]:2525",
		"user2 mailbox_bcc_maps forward (own) user2@relay.example via relay:[127.0.0.1]:2525 only, no mailbox",
	} {
		if !strings.Contains(flat, want) {
			t.Errorf("show lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	if code := run([]string{"phase", "diff", "forward", "-c", dir}, &out, &errb); code != 0 {
		t.Fatalf("diff: exit %d: %s", code, errb.String())
	}
	s := out.String()
	if !strings.Contains(s, "user1 ") || !strings.Contains(s, "user3@students.example") || strings.Contains(s, "user2 ") {
		t.Errorf("diff should list user1 and user3, not user2:\n%s", s)
	}
	if !strings.Contains(s, "2 of 3 users would change; 1 keep") {
		t.Errorf("diff summary:\n%s", s)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "main.cf")); string(b) != mainCf {
		t.Error("phase diff changed main.cf")
	}
	errb.Reset()
	if code := run([]string{"phase", "-c", dir, "diff", "froward"}, &out, &errb); code != exitBadData {
		t.Errorf("diff froward: exit %d, want %d", code, exitBadData)
	}
	// A typo is named, with what is expected, not only the usage.
	if !strings.Contains(errb.String(), `"froward" is not a phase: expected off, dual or forward`) {
		t.Errorf("diff froward: stderr %q", errb.String())
	}
}

// One box: phase show routes a copy as the queue does, by copy_transport,
// even when its address is in a local domain.
func TestPhaseShowCopyTransport(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "bcc"), []byte("user1 user1@students.example\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "main.cf"), []byte("myhostname = students.example\nmydestination = $myhostname\n"+
		"queue_directory = "+dir+"/q\ndata_directory = "+dir+"/d\n"+
		"mailbox_bcc_maps = hash:"+dir+"/bcc\ncopy_transport = smtp:[127.0.0.1]:2526\n"), 0o644)
	var out, errb bytes.Buffer
	if code := run([]string{"phase", "-c", dir, "show"}, &out, &errb); code != 0 {
		t.Fatalf("show: exit %d: %s", code, errb.String())
	}
	flat := strings.Join(strings.Fields(out.String()), " ")
	if want := "copy to user1@students.example via smtp:[127.0.0.1]:2526"; !strings.Contains(flat, want) {
		t.Errorf("show lacks %q:\n%s", want, out.String())
	}
}
