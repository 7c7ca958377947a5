package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailtee/mailtee/internal/report"
)

// mailtee report --postfix-log on the pflog package's recorded sample,
// with no ledger and no peers: the copies are counted by Postfix's
// state, the message seen without its start makes the figure
// incomplete, and stderr says what the log held.
func TestReportPostfixLog(t *testing.T) {
	td := filepath.Join("..", "..", "internal", "pflog", "testdata")
	dir := t.TempDir()
	// This host has no ledger and no peers.
	if err := os.WriteFile(filepath.Join(dir, "main.cf"), []byte("ledger_database =\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	code := runReport([]string{"-c", dir, "--postfix-log", filepath.Join(td, "classic.log"), "--postfix-config", filepath.Join(td, "primary"), "--format", "json"}, &out, &errb)
	if code != reportMisses {
		t.Fatalf("exit %d, want %d (misses); stderr:\n%s", code, reportMisses, errb.String())
	}
	if !strings.Contains(errb.String(), "classic.log: 44 lines, 1 skipped (not syslog lines), 8 messages, 1 seen without their start, 0 never queued") {
		t.Errorf("stderr:\n%s", errb.String())
	}
	var r report.Report
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatal(err)
	}
	if r.Reconciliation.Complete || r.Summary.Copies.Failed != 1 || r.Summary.Copies.Delivered != 1 {
		t.Errorf("reconciliation %+v, copies %+v", r.Reconciliation, r.Summary.Copies)
	}

	errb.Reset()
	code = runReport([]string{"--postfix-log", filepath.Join(t.TempDir(), "none.log"), "--postfix-config", filepath.Join(td, "primary")}, &out, &errb)
	if code != reportError || !strings.Contains(errb.String(), "none.log") {
		t.Errorf("a missing log: exit %d, stderr %q", code, errb.String())
	}
}
