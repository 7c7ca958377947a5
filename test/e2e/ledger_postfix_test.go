package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/report"
	"github.com/mailtee/mailtee/test/internal/harness"
)

// Issue 17's done criterion, its second half: "the same run with a
// Postfix primary and --postfix-log gives the same figures". The seed
// migration of ledger_test.go — the same 8 messages, the same mailtee
// relay (down while the mail arrives), the same Google refusing user3's
// copy with 550 — with a private Postfix as the primary, and `mailtee
// report --postfix-log` on a configuration of its own whose
// ledger_peers names the relay.

// newLedgerNetPostfix is newLedgerNet with a Postfix primary, configured
// the way that works on Postfix (interop_test.go, (A)):
//   - students.iiit.ac.in is a virtual mailbox domain: Postfix's
//     local(8) needs real Unix users; virtual(8) delivers to
//     BASE/vmail/userN/ as the postfix user.
//   - the list is a virtual alias, list@ → user1@, user2@
//     (virtual_alias_maps), where the mailtee primary has an alias in
//     alias_maps: local(8) is not in the path here. Postfix's cleanup(8)
//     looks recipient_bcc_maps up with the recipient as canonical
//     mapping left it, not with what virtual aliases expand it to
//     (cleanup_addr_recipient: the lookup follows cleanup_out_recipient,
//     which expands), so, as on the mailtee primary with
//     recipient_bcc_maps, a copy is made for an original recipient
//     only: none for the list's members.
//     One delivery differs, and it is Postfix's doing: message 6, to
//     list and user1, is written to user1's mailbox twice. With
//     enable_original_recipient = yes, Postfix's default,
//     cleanup_out_recipient eliminates duplicates on (DSN original
//     recipient, NOTIFY, original recipient, recipient), so list→user1
//     and user1 stay two recipients ("the recipient will use our
//     original recipient message header to figure things out") and
//     virtual(8) delivers each; mailtee's local(8) delivers the mailbox
//     once ("duplicate of ..., delivered once").
//     enable_original_recipient = no would deliver it once, but then
//     the log no longer shows that user1 was an original recipient
//     (only to=<user1>, orig_to=<list>), and the copy made for user1 is
//     not known as one: the default is what sites run, so it is kept
//     and wantInMailbox says what each mailbox holds. Either way the
//     mailbox is one required delivery (report.withoutDuplicateMailboxes),
//     so the figures are the same.
//   - recipient_bcc_maps is the seed's map minus the colons
//     (seedBCCMapForPostfix); its bare keys match as myorigin is the
//     domain.
//   - the copies reach the relay by transport_maps, [127.0.0.11]:port:
//     Postfix's smtp client cannot be pointed at the test's resolver.
//
// The relay is left down (startRelay).
func newLedgerNetPostfix(t *testing.T) *ledgerNet {
	t.Helper()
	requirePostfix(t)
	n := newLedgerHosts(t)
	n.pf = newPostfix(t, primaryIP, n.port)
	n.pf.start(fmt.Sprintf(`myhostname = %[4]s
myorigin = %[4]s
mydestination =
virtual_mailbox_domains = %[4]s
virtual_mailbox_base = %[1]s
virtual_mailbox_maps = hash:$config_directory/vmailbox
virtual_alias_maps = hash:$config_directory/virtual
virtual_uid_maps = static:%[2]d
virtual_gid_maps = static:%[3]d
virtual_minimum_uid = %[2]d
recipient_bcc_maps = hash:$config_directory/bcc_map_to_relay
# test-only: Postfix's smtp client has no resolver option
transport_maps = hash:$config_directory/transport
`, n.pf.path("vmail"), n.pf.uid, n.pf.gid, seedDomain), map[string]string{
		"vmailbox":         fmt.Sprintf("user1@%[1]s user1/\nuser2@%[1]s user2/\nuser3@%[1]s user3/\nuser4@%[1]s user4/\n", seedDomain),
		"virtual":          fmt.Sprintf("list@%s %s@%s\n", seedDomain, strings.Join(ledgerListMembers, "@"+seedDomain+", "), seedDomain),
		"bcc_map_to_relay": seedBCCMapForPostfix(t),
		"transport":        fmt.Sprintf("relay.%s smtp:[%s]:%d\n", seedDomain, relayIP, n.port),
	})
	// The report's own configuration, where the Postfix primary is: no
	// ledger of its own, the relay's as its peer.
	n.reportDir = harness.TempDir(t)
	os.WriteFile(filepath.Join(n.reportDir, "peer_token"), []byte(ledgerToken+"\n"), 0o600)
	os.WriteFile(filepath.Join(n.reportDir, "main.cf"), []byte(fmt.Sprintf("ledger_database =\nledger_peers = http://%s:%d\nledger_peer_token_file = $config_directory/peer_token\n", relayIP, n.hport)), 0o644)
	return n
}

// settledReport waits until the report on the primary has every
// required delivery final and every copy followed: the relay writes its
// ledger in batches off the mail path, so for a moment after the queues
// empty a copy may still read "not followed: no peer has queue ID".
func (n *ledgerNet) settledReport(t *testing.T, msgs []ledgerMsg) {
	t.Helper()
	want, _ := ledgerFigures(msgs)
	waitUntil(t, "a report with every delivery final and followed", 30*time.Second, func() bool {
		r := n.reportJSON(t)
		for _, m := range r.Messages {
			for _, q := range m.Required {
				if q.Note != "" {
					return false
				}
			}
		}
		return r.Summary.Deliveries.Pending == 0 && r.Summary.Accepted == want.Accepted
	})
}

// TestLedgerSeedMigrationPostfixPrimary runs the seed migration of
// TestLedgerSeedMigration (the seed's recipient_bcc_maps) twice, with a
// mailtee primary and with a Postfix primary, each held against its
// sinks by checkSinks and checkReport, and then the two reports against
// each other: the same summary and reconciliation, field by field, the
// same miss, and message by message (by Message-ID) the same required
// deliveries in the same states.
func TestLedgerSeedMigrationPostfixPrimary(t *testing.T) {
	msgs := ledgerScenario(false)
	reports := map[string]*report.Report{}
	for _, primary := range []string{"mailtee", "postfix"} {
		t.Run(primary, func(t *testing.T) {
			var n *ledgerNet
			if primary == "postfix" {
				n = newLedgerNetPostfix(t)
			} else {
				n = newLedgerNet(t, "", "")
				needLedger(t, n.primary)
			}
			runLedgerScenario(t, n, msgs)
			n.settledReport(t, msgs)
			reports[primary] = checkReport(t, n, msgs)
		})
	}
	m, p := reports["mailtee"], reports["postfix"]
	if m == nil || p == nil {
		if !t.Failed() {
			t.Skip("a primary's run was skipped: nothing to compare")
		}
		return
	}
	t.Logf("both primaries: summary %+v, reconciliation %+v", p.Summary, p.Reconciliation)
	if m.Summary != p.Summary {
		t.Errorf("summaries differ:\nmailtee primary %+v\nPostfix primary %+v", m.Summary, p.Summary)
	}
	if !sameReconciliation(m.Reconciliation, p.Reconciliation) {
		t.Errorf("reconciliations differ:\nmailtee primary %+v\nPostfix primary %+v", m.Reconciliation, p.Reconciliation)
	}
	if a, b := missKeys(m), missKeys(p); !slices.Equal(a, b) {
		t.Errorf("misses differ:\nmailtee primary %q\nPostfix primary %q", a, b)
	}
	mm, pm := requiredByMessage(m), requiredByMessage(p)
	for _, msg := range msgs {
		id := msg.messageID()
		if !slices.Equal(mm[id], pm[id]) {
			t.Errorf("message %d (%s): required deliveries differ:\nmailtee primary %q\nPostfix primary %q", msg.n, id, mm[id], pm[id])
		}
	}
	if len(mm) != len(pm) {
		t.Errorf("%d messages in the mailtee primary's report, %d in the Postfix primary's", len(mm), len(pm))
	}
}

func sameReconciliation(a, b report.Reconciliation) bool {
	return a.Required == b.Required && a.Delivered == b.Delivered && a.Ratio == b.Ratio &&
		a.Complete == b.Complete && slices.Equal(a.Incomplete, b.Incomplete)
}

// missKeys are a report's misses as "Message-ID rcpt copy state reply",
// sorted.
func missKeys(r *report.Report) []string {
	var out []string
	for _, ms := range r.Misses {
		out = append(out, fmt.Sprintf("%s %s copy=%v %s %s", ms.MessageID, strings.ToLower(ms.Rcpt), ms.Copy, ms.State, ms.Reply))
	}
	slices.Sort(out)
	return out
}

// requiredByMessage lists, by Message-ID, the message's state and each of
// its required deliveries as "rcpt copy state" (and, for a copy, the
// address it ended at), sorted: what both primaries must agree on.
func requiredByMessage(r *report.Report) map[string][]string {
	out := map[string][]string{}
	for _, m := range r.Messages {
		keys := []string{"message " + string(m.State)}
		for _, q := range m.Required {
			k := fmt.Sprintf("%s copy=%v %s", strings.ToLower(q.Rcpt), q.Copy, q.State)
			if q.Copy && len(q.Chain) > 0 {
				k += " at " + strings.ToLower(q.Chain[len(q.Chain)-1].Rcpt)
			}
			keys = append(keys, k)
		}
		slices.Sort(keys)
		out[m.MessageID] = append(out[m.MessageID], keys...)
	}
	return out
}
