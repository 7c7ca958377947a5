package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Without an operand, import-postfix-queue reads Postfix's queue where
// Postfix would (postfix_queue_directory, which is queue_directory as
// Postfix reads main.cf), never mailtee's own; it refuses mailtee's own
// queue as the source.
func TestImportPostfixQueueDefaultDir(t *testing.T) {
	base := t.TempDir()
	pf := filepath.Join(base, "pf")
	if out, err := exec.Command("cp", "-a", "../../internal/pfqueue/testdata/queue", pf).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	for _, d := range []string{"active", "incoming"} { // empty: git keeps no empty directory
		os.MkdirAll(filepath.Join(pf, d), 0o700)
	}
	mt := filepath.Join(base, "mt")
	cf := "queue_directory = " + mt + "\ndata_directory = " + filepath.Join(base, "data") +
		"\npostfix_queue_directory = " + pf + "\nmaillog_file = " + filepath.Join(base, "maillog") + "\n"
	if err := os.WriteFile(filepath.Join(base, "main.cf"), []byte(cf), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errb strings.Builder
	if code := run([]string{"import-postfix-queue", "-c", base}, &out, &errb); code != exitOK {
		t.Fatalf("exit %d: %s%s", code, out.String(), errb.String())
	}
	if !strings.Contains(out.String(), "imported from "+pf+" into "+mt+": 5 messages, 7 pending recipients, 1 bounce notices owed, 1 held, 2 maildrop files") {
		t.Errorf("summary: %s", out.String())
	}
	log, _ := os.ReadFile(filepath.Join(base, "maillog"))
	if strings.Count(string(log), "mailtee/import[") != 8 {
		t.Errorf("maillog:\n%s", log)
	}
	out.Reset()
	errb.Reset()
	if code := run([]string{"import-postfix-queue", "-c", base, mt}, &out, &errb); code != exitBadData || !strings.Contains(errb.String(), "mailtee's own queue_directory") {
		t.Errorf("own queue as source: exit %d %s", code, errb.String())
	}
}
