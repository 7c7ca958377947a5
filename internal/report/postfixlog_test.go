package report

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/ledger"
	"github.com/mailtee/mailtee/internal/pflog"
)

// A Postfix 3.7 primary's own lines (test/e2e's
// TestLedgerSeedMigrationPostfixPrimary, message 6) for a message to a
// virtual alias list@ → user1@, user2@ and to user1@: virtual(8) writes
// user1's mailbox twice (to=<user1@...> with and without orig_to), and
// recipient_bcc_maps made one copy, for user1. Read by --postfix-log,
// the report counts user1's mailbox once: 3 required deliveries.
const postfixListAndMember = `Dec 07 12:08:21 students postfix/smtpd[23427]: CC7AC9BA74B: client=unknown[127.0.0.1]
Dec 07 12:08:21 students postfix/cleanup[23429]: CC7AC9BA74B: message-id=<ledger-6@outside.example>
Dec 07 12:08:21 students postfix/qmgr[23424]: CC7AC9BA74B: from=<sender@outside.example>, size=388, nrcpt=4 (queue active)
Dec 07 12:08:21 students postfix/virtual[23432]: CC7AC9BA74B: to=<user1@students.iiit.ac.in>, orig_to=<list@students.iiit.ac.in>, relay=virtual, delay=0.01, delays=0/0/0/0, dsn=2.0.0, status=sent (delivered to maildir)
Dec 07 12:08:21 students postfix/virtual[23432]: CC7AC9BA74B: to=<user1@students.iiit.ac.in>, relay=virtual, delay=0.01, delays=0/0/0/0, dsn=2.0.0, status=sent (delivered to maildir)
Dec 07 12:08:21 students postfix/virtual[23432]: CC7AC9BA74B: to=<user2@students.iiit.ac.in>, orig_to=<list@students.iiit.ac.in>, relay=virtual, delay=0.01, delays=0/0/0/0, dsn=2.0.0, status=sent (delivered to maildir)
Dec 07 12:08:21 students postfix/error[23437]: CC7AC9BA74B: to=<user1@relay.students.iiit.ac.in>, relay=none, delay=0.02, delays=0/0.01/0/0, dsn=4.4.1, status=deferred (delivery temporarily suspended: connect to 127.0.0.11[127.0.0.11]:37255: Connection refused)
Dec 07 12:08:22 students postfix/qmgr[23424]: CC7AC9BA74B: from=<sender@outside.example>, size=388, nrcpt=4 (queue active)
Dec 07 12:08:22 students postfix/smtp[23431]: CC7AC9BA74B: to=<user1@relay.students.iiit.ac.in>, relay=127.0.0.11[127.0.0.11]:37255, delay=1, delays=1/0/0/0, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as 6620A15108768B8E002)
Dec 07 12:08:22 students postfix/qmgr[23424]: CC7AC9BA74B: removed
`

func TestPostfixLogListAndMember(t *testing.T) {
	dir := t.TempDir()
	logf := filepath.Join(dir, "maillog")
	cf := filepath.Join(dir, "etc")
	os.Mkdir(cf, 0o755)
	os.WriteFile(logf, []byte(postfixListAndMember), 0o644)
	os.WriteFile(filepath.Join(cf, "main.cf"), []byte(`myhostname = students.iiit.ac.in
myorigin = students.iiit.ac.in
mydestination =
recipient_bcc_maps = inline:{ user1=user1@relay.students.iiit.ac.in, user2=user2@relay.students.iiit.ac.in }
`), 0o644)
	l, err := pflog.Load(logf, cf, pflog.Options{Now: time.Date(2026, 12, 7, 13, 0, 0, 0, time.UTC), Location: time.UTC})
	if err != nil {
		t.Fatal(err)
	}
	r := build(t, Sources{Local: l}, ledger.Filter{})
	if len(r.Messages) != 1 {
		t.Fatalf("%d messages, want 1: %+v", len(r.Messages), r.Messages)
	}
	var boxes, copies []string
	for _, q := range r.Messages[0].Required {
		if q.Copy {
			copies = append(copies, q.Rcpt)
		} else {
			boxes = append(boxes, q.Rcpt)
		}
		if q.State != Delivered {
			t.Errorf("%s: %s, want delivered", q.Rcpt, q.State)
		}
	}
	if len(boxes) != 2 || len(copies) != 1 || copies[0] != "user1@relay.students.iiit.ac.in" {
		t.Errorf("mailboxes %q and copies %q, want user1's and user2's mailboxes and user1's copy", boxes, copies)
	}
	if rc := r.Reconciliation; rc.Required != 3 || rc.Delivered != 3 {
		t.Errorf("reconciliation %+v, want 3 of 3", rc)
	}
	if s := r.Summary; s.Deliveries != (Counts{Delivered: 3}) || s.Copies != (Counts{Delivered: 1}) {
		t.Errorf("summary %+v", s)
	}
}
