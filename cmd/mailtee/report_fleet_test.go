package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailtee/mailtee/internal/envelope"
	"github.com/mailtee/mailtee/internal/queue"
	"github.com/mailtee/mailtee/internal/report"
	"github.com/mailtee/mailtee/internal/testdb"
)

// A fleet's ledger in PostgreSQL: two nodes record their messages, and
// `mailtee report` on either covers both (one main.cf, the same URL);
// status reads it too. check takes the URL with a password file, refuses
// one with a password (naming the line and what to do), and only warns
// when the database does not answer.
func TestReportFleetLedger(t *testing.T) {
	pg := testdb.Postgres(t)
	pg.CreateDB("fleet")
	dir := t.TempDir()
	_, url := pg.PassFile(dir, "fleet")
	const mx1, mx2 = "mx1.example.org", "mx2.example.org"
	rcpt := func(a string) envelope.Rcpt { return envelope.Rcpt{Addr: a} }
	record(t, url, mx1, []*queue.Message{qmsg("4dA1", "", rcpt("user1@example.com")), qmsg("4dA2", "", rcpt("user2@example.com"))},
		[][]outcome{{{"sent", "250 2.0.0 Ok: queued as X1", "mx.example.com[127.0.0.1]:25", "smtp"}},
			{{"bounced", "host mx.example.com[127.0.0.1] said: 550 5.1.1 no such user", "mx.example.com[127.0.0.1]:25", "smtp"}}})
	record(t, url, mx2, []*queue.Message{qmsg("4dB1", "", rcpt("user3@example.com"))},
		[][]outcome{{{"sent", "250 2.0.0 Ok: queued as X3", "mx.example.com[127.0.0.1]:25", "smtp"}}})

	cf := "myhostname = " + mx1 + "\nalias_maps =\ndata_directory = " + filepath.Join(dir, "data") +
		"\nqueue_directory = " + filepath.Join(dir, "spool") + "\nledger_database = " + url + "\n"
	os.WriteFile(filepath.Join(dir, "main.cf"), []byte(cf), 0o644)
	code, out, errs := mailtee(t, "", "report", "-c", dir, "--format", "json")
	var r report.Report
	if code != reportMisses || json.Unmarshal([]byte(out), &r) != nil {
		t.Fatalf("report: exit %d %q\n%s", code, errs, out)
	}
	if r.Reconciliation.Required != 3 || r.Reconciliation.Delivered != 2 || len(r.Misses) != 1 || r.Misses[0].Node != mx1 {
		t.Fatalf("reconciliation %+v, misses %+v: want both nodes' three deliveries", r.Reconciliation, r.Misses)
	}
	if code, out, errs = mailtee(t, "", "status", "-c", dir); code != exitOK {
		t.Errorf("status: exit %d %q\n%s", code, errs, out)
	}
	if code, out, _ = mailtee(t, "", "check", "-c", dir); code != exitOK || strings.Contains(out, "ledger_database") {
		t.Errorf("check: exit %d\n%s", code, out)
	}

	// A password in main.cf: an error on its line, saying what to do.
	withPW := strings.Replace(url, "postgres@", "postgres:"+pg.Password+"@", 1)
	os.WriteFile(filepath.Join(dir, "main.cf"), []byte(strings.Replace(cf, url, withPW, 1)), 0o644)
	code, out, _ = mailtee(t, "", "check", "-c", dir)
	if code != exitBadData || !strings.Contains(out, "main.cf, line 5: ledger_database:") || !strings.Contains(out, "passfile=") || strings.Contains(out, pg.Password) {
		t.Errorf("check with a password: exit %d\n%s", code, out)
	}

	// The database down: a warning, never an error.
	os.WriteFile(filepath.Join(dir, "main.cf"), []byte(cf), 0o644)
	pg.Stop()
	code, out, _ = mailtee(t, "", "check", "-c", dir)
	if code != exitOK || !strings.Contains(out, "warning: "+dir+"/main.cf, line 5: ledger_database:") || !strings.Contains(out, "does not answer") {
		t.Errorf("check with the database down: exit %d\n%s", code, out)
	}
}
