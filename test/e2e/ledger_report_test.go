package e2e

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/ledger"
	"github.com/mailtee/mailtee/internal/report"
	"github.com/mailtee/mailtee/test/internal/harness"
)

// The report's side of the ledger scenario: `mailtee report` on the
// primary, read against what the sinks hold.

// ledgerMissing says why in's ledger, the file db, cannot be reported
// on: no `mailtee report`, or no ledger written by serve; "" when it can.
func ledgerMissing(in *instance, db string) string {
	out, _ := in.Run("", "report", "--help")
	if strings.Contains(out, `unknown command "report"`) {
		return "this mailtee has no report command"
	}
	if _, err := os.Stat(db); err != nil {
		return fmt.Sprintf("serve wrote no ledger (ledger_database): %v", err)
	}
	return ""
}

// needLedger stops the test when in's ledger (in its data directory)
// cannot be reported on.
func needLedger(t *testing.T, in *instance) {
	t.Helper()
	if why := ledgerMissing(in, filepath.Join(in.Dir, "data", "ledger.db")); why != "" {
		t.Fatal(why)
	}
}

// runReport runs `mailtee report` on in with args and returns its output;
// exit status 0 (all delivered) and 1 (misses) are answers, anything
// else fails the test.
func runReport(t *testing.T, in *instance, args ...string) string {
	t.Helper()
	out, err := in.Run("", append([]string{"report"}, args...)...)
	var ee *exec.ExitError
	if err != nil && !(errors.As(err, &ee) && ee.ExitCode() == 1) {
		t.Fatalf("mailtee report %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// reportJSON is `mailtee report --format json` on in, decoded.
func reportJSON(t *testing.T, in *instance, args ...string) *report.Report {
	t.Helper()
	out := runReport(t, in, append([]string{"--format", "json"}, args...)...)
	var r report.Report
	dec := json.NewDecoder(strings.NewReader(out))
	if err := dec.Decode(&r); err != nil {
		t.Fatalf("mailtee report --format json: %v\n%s", err, out)
	}
	return &r
}

// runReport runs `mailtee report` on the scenario's primary: on the
// mailtee primary's own configuration, or, for a Postfix primary, with
// --postfix-log and --postfix-config from n.reportDir (which names the
// relay in ledger_peers).
func (n *ledgerNet) runReport(t *testing.T, args ...string) string {
	t.Helper()
	if n.pf == nil {
		return runReport(t, n.primary, args...)
	}
	full := append([]string{"report", "-c", n.reportDir, "--postfix-log", n.pf.path("maillog"), "--postfix-config", n.pf.etc}, args...)
	cmd := exec.Command(harness.Bin, full...)
	// Standard error has what reading the log found ("89 lines, 0
	// skipped") and a warning that there is no local ledger: not the
	// report.
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("mailtee %s: no answer in 60s\n%s%s", strings.Join(full, " "), out.String(), errOut.String())
	}
	var ee *exec.ExitError
	if err != nil && !(errors.As(err, &ee) && ee.ExitCode() == 1) {
		t.Fatalf("mailtee %s: %v\n%s%s", strings.Join(full, " "), err, out.String(), errOut.String())
	}
	return out.String()
}

// reportJSON is `mailtee report --format json` on the scenario's
// primary, decoded.
func (n *ledgerNet) reportJSON(t *testing.T, args ...string) *report.Report {
	t.Helper()
	out := n.runReport(t, append([]string{"--format", "json"}, args...)...)
	var r report.Report
	if err := json.NewDecoder(strings.NewReader(out)).Decode(&r); err != nil {
		t.Fatalf("mailtee report --format json: %v\n%s", err, out)
	}
	return &r
}

// maildirOf picks the mailboxes a local delivery's reply names
// ("delivered to maildir of user1@dom; delivered to maildir of
// user2@dom" for an alias, "delivered to maildir" for the recipient's
// own mailbox).
var maildirOf = regexp.MustCompile(`delivered to maildir of ([^;\s)]+)`)

// localMailboxes returns the primary's mailboxes (local parts) that a
// local required delivery put the message in: the recipient's own, or
// those its reply names when one delivery reached several.
func localMailboxes(q report.Required) []string {
	var boxes []string
	for _, m := range maildirOf.FindAllStringSubmatch(q.Reply, -1) {
		boxes = append(boxes, localPart(m[1]))
	}
	if len(boxes) == 0 {
		boxes = []string{localPart(q.Rcpt)}
	}
	return boxes
}

func localPart(addr string) string {
	l, _, _ := strings.Cut(addr, "@")
	return strings.ToLower(l)
}

// lastHop is the end of a required delivery's chain.
func lastHop(t *testing.T, q report.Required) report.Hop {
	t.Helper()
	if len(q.Chain) == 0 {
		t.Fatalf("required delivery to %s has no chain", q.Rcpt)
	}
	return q.Chain[len(q.Chain)-1]
}

// sinkFigures are the reconciliation's numbers from the sinks alone:
// the required deliveries, as the issue counts them ("each local
// mailbox; each copy"), and of those the ones found there. A mailbox
// counts once per message however many of its recipients reach it (an
// alias and the address itself: mailtee's local(8) delivers it once,
// a Postfix primary twice, wantInMailbox).
func sinkFigures(n *ledgerNet, msgs []ledgerMsg) (required, delivered int) {
	for _, m := range msgs {
		required += m.required()
		for _, u := range m.mailboxes {
			if got := n.inMailbox(u, m.messageID()); got > 0 && got == n.wantInMailbox(m, u) {
				delivered++
			}
		}
		for _, c := range append(append([]string(nil), m.copies...), m.refused...) {
			if len(n.google.Find(m.messageID(), c)) == 1 {
				delivered++
			}
		}
	}
	return required, delivered
}

// checkReport reads `mailtee report` on the primary, in each format, and
// holds it against the sinks, message by message.
func checkReport(t *testing.T, n *ledgerNet, msgs []ledgerMsg) *report.Report {
	t.Helper()
	r := n.reportJSON(t)

	byID := map[string][]report.Message{}
	for _, rm := range r.Messages {
		byID[rm.MessageID] = append(byID[rm.MessageID], rm)
	}
	for _, m := range msgs {
		rms := byID[m.messageID()]
		if len(rms) != 1 {
			t.Errorf("message %d (%s): %d in the report, want 1", m.n, m.messageID(), len(rms))
			continue
		}
		rm := rms[0]
		var boxes, copied, failed []string
		for _, q := range rm.Required {
			if q.Copy {
				checkCopy(t, n, m, q)
				final := strings.ToLower(lastHop(t, q).Rcpt)
				switch q.State {
				case report.Delivered:
					copied = append(copied, final)
				case report.Failed:
					failed = append(failed, final)
				default:
					t.Errorf("message %d: the copy to %s is %s with both queues empty", m.n, q.Rcpt, q.State)
				}
				continue
			}
			for _, u := range localMailboxes(q) {
				got := n.inMailbox(u, m.messageID())
				switch q.State {
				case report.Delivered:
					// A duplicate recipient ("delivered once") names the
					// mailbox another delivery filled: once is right
					// (twice on Postfix, for message 6: wantInMailbox).
					if got != n.wantInMailbox(m, u) {
						t.Errorf("message %d: the report says %s delivered (mailbox %s), the mailbox has it %d times", m.n, q.Rcpt, u, got)
					}
					if !slices.Contains(boxes, u) {
						boxes = append(boxes, u)
					}
				case report.Failed:
					if got != 0 {
						t.Errorf("message %d: the report says %s failed, yet mailbox %s has it", m.n, q.Rcpt, u)
					}
				default:
					t.Errorf("message %d: %s is %s with both queues empty", m.n, q.Rcpt, q.State)
				}
			}
		}
		// Each mailbox is one required delivery, however many of the
		// message's recipients reach it.
		perBox := map[string]int{}
		for _, q := range rm.Required {
			if !q.Copy {
				for _, u := range localMailboxes(q) {
					perBox[u]++
				}
			}
		}
		for u, c := range perBox {
			if c > 1 {
				t.Errorf("message %d: mailbox %s is %d required deliveries in the report; a mailbox is one per message (recipients %v)", m.n, u, c, m.to)
			}
		}
		slices.Sort(boxes)
		slices.Sort(copied)
		want := append([]string(nil), m.mailboxes...)
		slices.Sort(want)
		if !slices.Equal(boxes, want) {
			t.Errorf("message %d: the report has it delivered to mailboxes %v, the sinks say %v", m.n, boxes, want)
		}
		want = append([]string(nil), m.copies...)
		slices.Sort(want)
		if !slices.Equal(copied, want) {
			t.Errorf("message %d: the report has copies delivered to %v, Google has %v", m.n, copied, want)
		}
		if !slices.Equal(failed, m.refused) {
			t.Errorf("message %d: the report has copies failed for %v, Google refused %v", m.n, failed, m.refused)
		}
		wantState := report.Delivered
		if len(m.refused) > 0 {
			wantState = report.Failed
		}
		if rm.State != wantState {
			t.Errorf("message %d: state %s, want %s", m.n, rm.State, wantState)
		}
	}

	// The summary and the one figure: the scenario's, which checkSinks
	// found in the sinks, and which the sinks alone give too.
	want, wantRC := ledgerFigures(msgs)
	if got := r.Summary; got.Accepted != want.Accepted || got.Messages != want.Messages || got.Deliveries != want.Deliveries || got.Copies != want.Copies {
		t.Errorf("summary: %d accepted, messages %+v, required deliveries %+v, copies %+v; want %d, %+v, %+v, %+v (the mail sent, what the mailboxes and Google hold)",
			got.Accepted, got.Messages, got.Deliveries, got.Copies, want.Accepted, want.Messages, want.Deliveries, want.Copies)
	}
	rc := r.Reconciliation
	required, delivered := sinkFigures(n, msgs)
	if rc.Required != required || rc.Delivered != delivered || required != wantRC.Required || delivered != wantRC.Delivered {
		t.Errorf("reconciliation: %d/%d, the sinks hold %d of %d required deliveries (each mailbox once per message, each copy), the scenario %d of %d",
			rc.Delivered, rc.Required, delivered, required, wantRC.Delivered, wantRC.Required)
	}
	if rc.Ratio != wantRC.Ratio {
		t.Errorf("reconciliation ratio %v, the sinks' %v", rc.Ratio, wantRC.Ratio)
	}
	if !rc.Complete || len(r.Gaps) != 0 {
		t.Errorf("the figure is incomplete (%v), gaps %v: nothing was lost", rc.Incomplete, r.Gaps)
	}
	if len(r.Misses) != want.Copies.Failed {
		t.Errorf("%d misses, want the %d refused copies: %+v", len(r.Misses), want.Copies.Failed, r.Misses)
	}
	for _, ms := range r.Misses {
		if ms.State != report.Failed || !strings.Contains(ms.Reply, gsmtpRefusal) {
			t.Errorf("miss %s (%s): %s, reply %q; want failed with Google's %q", ms.Rcpt, ms.MessageID, ms.State, ms.Reply, gsmtpRefusal)
		}
	}
	for _, p := range r.Peers {
		if p.Error != "" || p.Errors != 0 {
			t.Errorf("peer %s: %d errors (%s)", p.URL, p.Errors, p.Error)
		}
	}

	checkReportText(t, n, r)
	checkReportCSV(t, n, r)
	return r
}

// ledgerFigures are the figures a report of the scenario's msgs must
// give once both queues are empty, from the scenario alone: each message
// accepted; a required delivery per mailbox and per copy, delivered but
// for the refused copies, which failed; a message failed when one of
// its copies was refused.
func ledgerFigures(msgs []ledgerMsg) (report.Summary, report.Reconciliation) {
	var s report.Summary
	s.Accepted = len(msgs)
	for _, m := range msgs {
		if len(m.refused) > 0 {
			s.Messages.Failed++
		} else {
			s.Messages.Delivered++
		}
		s.Deliveries.Delivered += len(m.mailboxes) + len(m.copies)
		s.Deliveries.Failed += len(m.refused)
		s.Copies.Delivered += len(m.copies)
		s.Copies.Failed += len(m.refused)
	}
	rc := report.Reconciliation{Required: s.Deliveries.Total(), Delivered: s.Deliveries.Delivered, Ratio: 1, Complete: true}
	if rc.Required > 0 {
		rc.Ratio = float64(rc.Delivered) / float64(rc.Required)
	}
	return s, rc
}

// checkCopy follows one copy's chain: the primary's delivery to the
// relay, whose queue ID the relay's ledger has, then the relay's
// delivery to Google, whose reply names the ID of the very transaction
// in which Google took it.
func checkCopy(t *testing.T, n *ledgerNet, m ledgerMsg, q report.Required) {
	t.Helper()
	if len(q.Chain) < 2 {
		t.Errorf("message %d: the copy to %s was not followed into the relay: chain %+v, note %q", m.n, q.Rcpt, q.Chain, q.Note)
		return
	}
	first, last := q.Chain[0], q.Chain[len(q.Chain)-1]
	if first.RemoteID == "" || !strings.Contains(first.Reply, "queued as "+first.RemoteID) {
		t.Errorf("message %d: the primary's hop to the relay names no queue ID: %+v", m.n, first)
	}
	if !strings.HasPrefix(strings.ToLower(first.Rcpt), localPart(first.Rcpt)+"@relay.") {
		t.Errorf("message %d: the copy's first hop goes to %s, want the relay's address", m.n, first.Rcpt)
	}
	if last.Peer == "" {
		t.Errorf("message %d: the copy's last hop was not read from the relay's ledger: %+v", m.n, last)
	}
	got := n.google.Find(m.messageID(), last.Rcpt)
	switch q.State {
	case report.Delivered:
		if len(got) != 1 {
			t.Errorf("message %d: the report says the copy to %s reached Google, Google has it %d times", m.n, last.Rcpt, len(got))
			return
		}
		if last.RemoteID != got[0].ID || !strings.Contains(last.Reply, got[0].Reply) {
			t.Errorf("message %d: the copy's last hop %+v; Google took it as %s with %q", m.n, last, got[0].ID, got[0].Reply)
		}
	case report.Failed:
		if len(got) != 0 {
			t.Errorf("message %d: the report says the copy to %s failed, Google has it", m.n, last.Rcpt)
		}
		if !strings.Contains(q.Reply, "550") || !strings.Contains(q.Reply, gsmtpRefusal) || q.Status != "bounced" {
			t.Errorf("message %d: the refused copy's status %s, reply %q; want bounced with Google's 550 %q", m.n, q.Status, q.Reply, gsmtpRefusal)
		}
	}
}

// checkReportText: the text format lists the summary, the miss with
// Google's reply, and every message.
func checkReportText(t *testing.T, n *ledgerNet, r *report.Report) {
	t.Helper()
	out := n.runReport(t, "--format", "text")
	if len(r.Misses) > 0 && !strings.Contains(out, gsmtpRefusal) {
		t.Errorf("report (text) lacks the refusal %q:\n%s", gsmtpRefusal, out)
	}
	for _, m := range r.Messages {
		if !strings.Contains(out, m.ID) {
			t.Errorf("report (text) lacks message %s:\n%s", m.ID, out)
		}
	}
}

// checkReportCSV: one row per required delivery, each naming its
// message's queue ID.
func checkReportCSV(t *testing.T, n *ledgerNet, r *report.Report) {
	t.Helper()
	out := n.runReport(t, "--format", "csv")
	rows, err := csv.NewReader(bytes.NewReader([]byte(out))).ReadAll()
	if err != nil {
		t.Fatalf("report (csv): %v\n%s", err, out)
	}
	want := 1 // the header
	for _, m := range r.Messages {
		want += len(m.Required)
	}
	if len(rows) != want {
		t.Errorf("report (csv): %d rows, want a header and one per required delivery (%d):\n%s", len(rows), want, out)
	}
	if len(r.Misses) > 0 && !strings.Contains(out, gsmtpRefusal) {
		t.Errorf("report (csv) lacks the refusal:\n%s", out)
	}
}

// reportIDs returns the queue IDs of the report's messages of a batch of
// TestLedgerDiskFull (by their Message-ID), by Message-ID.
func reportIDs(r *report.Report, batch string) map[string]report.Message {
	out := map[string]report.Message{}
	for _, m := range r.Messages {
		if strings.HasPrefix(m.MessageID, "<"+batch+"-") {
			out[m.MessageID] = m
		}
	}
	return out
}

// checkDiskFullReport: the report's side of TestLedgerDiskFull. The
// messages before and after the disk was full are there, delivered; the
// ones the ledger could not record while it was full are covered by a
// gap whose range takes in the time the disk was full; and the figure
// says it is incomplete.
func checkDiskFullReport(t *testing.T, in *instance, sent []diskFullMsg, fullFrom, fullUntil time.Time) {
	t.Helper()
	r := reportJSON(t, in)
	for _, b := range []string{"before", "after"} {
		got := reportIDs(r, b)
		for _, m := range sent {
			if m.batch != b {
				continue
			}
			rm, ok := got[m.id]
			if !ok {
				t.Errorf("message %s, sent with space on the ledger's disk, is not in the report", m.id)
				continue
			}
			if rm.State != report.Delivered {
				t.Errorf("message %s is %s, want delivered: %+v", m.id, rm.State, rm.Required)
			}
		}
	}
	if len(r.Gaps) == 0 {
		t.Fatalf("no gap in the report after the ledger's disk was full from %s to %s", fullFrom.Format(time.RFC3339Nano), fullUntil.Format(time.RFC3339Nano))
	}
	var gap *ledger.Gap
	for i, g := range r.Gaps {
		// The gap starts once the disk is full and a write fails, and
		// ends at the first write that succeeds again: it overlaps the
		// time the disk was full.
		if g.Since.Before(fullUntil) && g.Until.After(fullFrom) {
			gap = &r.Gaps[i]
		}
	}
	if gap == nil {
		t.Fatalf("no gap overlaps the time the disk was full (%s to %s): %+v", fullFrom.Format(time.RFC3339Nano), fullUntil.Format(time.RFC3339Nano), r.Gaps)
	}
	if gap.Reason == "" || gap.Node == "" {
		t.Errorf("the gap says neither why nor where: %+v", *gap)
	}
	// A message of the full batch the report lacks must have arrived
	// inside the gap: that is what the gap stands for.
	full := reportIDs(r, "full")
	lost := 0
	for _, m := range sent {
		if m.batch != "full" {
			continue
		}
		if _, ok := full[m.id]; !ok {
			lost++
		}
	}
	if gap.Messages != 0 && gap.Messages < lost {
		t.Errorf("the gap counts %d messages lost, the report lacks %d of the full batch", gap.Messages, lost)
	}
	if r.Reconciliation.Complete {
		t.Errorf("the reconciliation figure says it is complete despite the gap: %+v", r.Reconciliation)
	}
	if r.Summary.Accepted < 6 {
		t.Errorf("the report counts %d messages accepted; the 6 sent with space on the disk are recorded", r.Summary.Accepted)
	}
	t.Logf("gap %s to %s (%d messages, %s); %d of the full batch not in the report", gap.Since.Format(time.RFC3339Nano), gap.Until.Format(time.RFC3339Nano), gap.Messages, gap.Reason, lost)
}
