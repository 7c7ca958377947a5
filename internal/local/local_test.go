package local

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"

	"github.com/mailtee/mailtee/internal/address"
	"github.com/mailtee/mailtee/internal/deliver"
	"github.com/mailtee/mailtee/internal/envelope"
	"github.com/mailtee/mailtee/internal/maps"
)

type forwarded struct {
	from  string
	rcpts []string
}

func setup(t *testing.T, aliases string) (*Local, string, *[]forwarded) {
	t.Helper()
	dir := t.TempDir()
	p := filepath.Join(dir, "aliases")
	os.WriteFile(p, []byte(aliases), 0o644)
	tb, _, err := maps.OpenAlias("hash:" + p)
	if err != nil {
		t.Fatal(err)
	}
	var fw []forwarded
	l := New(Options{
		Aliases:   []AliasTable{{Table: tb}},
		Myorigin:  "example.org",
		Delimiter: "+",
		IsLocal:   func(d string) bool { return d == "example.org" || d == "relay.example.org" },
		SpoolDir:  filepath.Join(dir, "mail") + "/",
		Forward: func(ctx context.Context, from string, rcpts []envelope.Rcpt, msg *deliver.Message, dt string) error {
			f := forwarded{from: from}
			for _, r := range rcpts {
				f.rcpts = append(f.rcpts, r.Addr)
			}
			fw = append(fw, f)
			return nil
		},
	})
	return l, filepath.Join(dir, "mail"), &fw
}

func msg(body string) *deliver.Message {
	return &deliver.Message{ID: "Q1", From: "sender@outside.example", Size: int64(len(body)),
		Open: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(body)), nil }}
}

func mailboxes(t *testing.T, spool string) map[string]int {
	out := map[string]int{}
	users, _ := os.ReadDir(spool)
	for _, u := range users {
		n, _ := os.ReadDir(filepath.Join(spool, u.Name(), "new"))
		out[u.Name()] = len(n)
	}
	return out
}

// aliases(5) and local(8): recursive expansion, an alias naming itself
// delivers to its own mailbox, duplicates are delivered once, a loop
// ends, remote targets are forwarded, owner-NAME takes the errors.
func TestAliasExpansion(t *testing.T) {
	l, spool, fw := setup(t, `list: alice, bob, sub
sub: carol, alice, list
self: self, dave
owner-list: admin
remote: someone@far.example, erin
user1@relay.example.org user1@example.org
`)
	for _, rcpt := range []string{"list@example.org", "self@example.org", "remote@example.org", "user1@relay.example.org", "frank+tag@example.org"} {
		if err := deliverOne(l, msg("Subject: x\r\n\r\nhi\r\n"), rcpt); err != nil {
			t.Fatalf("%s: %v", rcpt, err)
		}
	}
	got := mailboxes(t, spool)
	want := map[string]int{"alice": 1, "bob": 1, "carol": 1, "self": 1, "dave": 1, "erin": 1, "user1": 1, "frank": 1}
	if len(got) != len(want) {
		t.Errorf("mailboxes %v, want %v", got, want)
	}
	for u, n := range want {
		if got[u] != n {
			t.Errorf("%s has %d messages, want %d (all: %v)", u, got[u], n, got)
		}
	}
	if len(*fw) != 1 || (*fw)[0].rcpts[0] != "someone@far.example" || (*fw)[0].from != "sender@outside.example" {
		t.Errorf("forwards = %+v", *fw)
	}
}

func TestOwnerAliasTakesForwardErrors(t *testing.T) {
	l, _, fw := setup(t, "staff: x@far.example\nowner-staff: admin\n")
	if err := deliverOne(l, msg("\r\n"), "staff@example.org"); err != nil {
		t.Fatal(err)
	}
	if len(*fw) != 1 || (*fw)[0].from != "owner-staff@example.org" {
		t.Errorf("forward sender = %+v, want owner-staff@example.org", *fw)
	}
}

func TestDeliveredToLoop(t *testing.T) {
	l, _, _ := setup(t, "")
	err := deliverOne(l, msg("Delivered-To: alice@example.org\r\nSubject: x\r\n\r\n"), "alice@example.org")
	var de *deliver.Error
	if !errors.As(err, &de) || !de.Permanent || !strings.Contains(de.Text, "loop") {
		t.Errorf("want a permanent loop error, got %v", err)
	}
}

// Loop detection reads the whole primary header, as Postfix's
// delivered_hdr does (a Delivered-To: after 2 MB of other fields still
// counts; the first line that is no header field ends it), keeping one
// field at a time: a 5 MB folded field costs it no more than
// header_size_limit.
func TestDeliveredToLargeHeader(t *testing.T) {
	filler := strings.Repeat("X-Filler: "+strings.Repeat("f", 90)+"\r\n", 20000)
	folded := "X-Folded: x" + strings.Repeat("\r\n\t"+strings.Repeat("g", 70), 5<<20/72) + "\r\n"
	for name, hdr := range map[string]string{"after 2 MB of fields": filler, "after a 5 MB field": folded} {
		m := msg(hdr + "Delivered-To: Alice@Example.org\r\n\r\nbody\r\n")
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		loops, err := deliveredTo(m)
		runtime.ReadMemStats(&after)
		if err != nil || !loops["alice@example.org"] {
			t.Errorf("%s: Delivered-To not seen (%v, %v)", name, loops, err)
		}
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 1<<20 {
			t.Errorf("%s: reading the header allocated %d KB", name, alloc>>10)
		}
	}
	loops, _ := deliveredTo(msg("Subject: x\r\nnot a header\r\nDelivered-To: alice@example.org\r\n\r\n"))
	if len(loops) != 0 {
		t.Errorf("a Delivered-To: in the body counted: %v", loops)
	}
}

func deliverOne(l *Local, m *deliver.Message, rcpt string) error {
	return l.Deliver(context.Background(), m, []Rcpt{{Addr: rcpt}})[0].Err
}

// One message to a list and to one of its members directly: each mailbox
// gets it once, and mailbox_bcc_maps makes one copy per mailbox, marked
// as a copy (issue: the seed's per-user BCC never sees list mail).
func TestMailboxOnceAndMailboxBCC(t *testing.T) {
	l, spool, fw := setup(t, "list: user1, user2\n")
	bcc := filepath.Join(t.TempDir(), "mbcc")
	os.WriteFile(bcc, []byte("user1 user1@relay.example.org\nuser2@example.org user2@relay.example.org, archive@far.example\n"), 0o644)
	tb, _, err := maps.Open("hash:" + bcc)
	if err != nil {
		t.Fatal(err)
	}
	l.o.MailboxBCC = tb
	res := l.Deliver(context.Background(), msg("Subject: x\r\n\r\n"), []Rcpt{{Addr: "list@example.org"}, {Addr: "user1@example.org"}})
	for i, r := range res {
		if r.Err != nil {
			t.Fatalf("rcpt %d: %v", i, r.Err)
		}
	}
	if got := mailboxes(t, spool); got["user1"] != 1 || got["user2"] != 1 {
		t.Errorf("mailboxes %v, want one message each", got)
	}
	if !strings.Contains(res[1].Done, "duplicate of user1@example.org") {
		t.Errorf("second recipient: %q", res[1].Done)
	}
	if len(*fw) != 0 {
		t.Errorf("mailbox copies re-injected as new messages: %+v", *fw)
	}
	var copies []string
	for _, r := range res {
		for _, c := range r.Add {
			if !c.Copy {
				t.Errorf("mailbox BCC copy not marked as a copy: %+v", c)
			}
			copies = append(copies, c.Addr+"<"+c.Orig)
		}
	}
	sort.Strings(copies)
	if strings.Join(copies, ",") != "archive@far.example<user2@example.org,user1@relay.example.org<user1@example.org,user2@relay.example.org<user2@example.org" {
		t.Errorf("copies = %v", copies)
	}
}

// One mailbox under several spellings in one message (another
// mydestination domain, case, an extension, through an alias) gets the
// message once and makes one mailbox_bcc_maps copy: mailboxes are told
// apart by user, as Postfix's local(8) does.
func TestMailboxOnceUnderEverySpelling(t *testing.T) {
	l, spool, fw := setup(t, "team: ALICE@relay.example.org, bob\n")
	bcc := filepath.Join(t.TempDir(), "mbcc")
	os.WriteFile(bcc, []byte("alice alice@google.example\n"), 0o644)
	tb, _, err := maps.Open("hash:" + bcc)
	if err != nil {
		t.Fatal(err)
	}
	l.o.MailboxBCC = tb
	isLocal := l.o.IsLocal
	l.o.IsLocal = func(d string) bool { return isLocal(address.NormalizeDomain(d)) } // as mydestination matches
	spellings := []Rcpt{{Addr: "alice@example.org"}, {Addr: "alice@relay.example.org"}, {Addr: "Alice@Example.ORG"},
		{Addr: "alice+tag@example.org"}, {Addr: "team@example.org"}, {Addr: "aLiCe@relay.example.org."}}
	res := l.Deliver(context.Background(), msg("Subject: x\r\n\r\n"), spellings)
	for i, r := range res {
		if r.Err != nil {
			t.Fatalf("%s: %v", spellings[i].Addr, r.Err)
		}
	}
	if got := mailboxes(t, spool); got["alice"] != 1 || got["bob"] != 1 || len(got) != 2 {
		t.Errorf("mailboxes %v, want alice and bob once each", got)
	}
	n := 0
	for _, r := range res {
		for _, c := range r.Add {
			if c.Addr == "alice@google.example" {
				n++
			}
		}
	}
	if n != 1 || len(*fw) != 0 {
		t.Errorf("%d mailbox_bcc_maps copies for alice, want 1: %+v %+v", n, res, *fw)
	}
}

// A mailbox_bcc_maps copy is returned for the queue to add to the same
// message, only with a delivery that succeeded: a mailbox that cannot be
// written gives no copy (its retry does), and nothing is re-injected
// (issue 13: a copy's failed re-injection had the retry write the
// mailbox again). A copy's own mailbox makes its copies too.
func TestMailboxBCCOnlyWithDelivery(t *testing.T) {
	l, spool, fw := setup(t, "")
	tb, _, err := maps.Open("inline:{ alice=bob@example.org, bob=alice@example.org }")
	if err != nil {
		t.Fatal(err)
	}
	l.o.MailboxBCC = tb
	os.MkdirAll(spool, 0o755)
	os.WriteFile(filepath.Join(spool, "alice"), nil, 0o644) // not a directory: the Maildir cannot be made
	res := l.Deliver(context.Background(), msg("Subject: x\r\n\r\n"), []Rcpt{{Addr: "alice@example.org"}, {Addr: "bob@example.org", Copy: true}})
	if res[0].Err == nil || len(res[0].Add) != 0 {
		t.Errorf("failed mailbox: err %v, copies %+v; want an error and no copy", res[0].Err, res[0].Add)
	}
	if res[1].Err != nil || len(res[1].Add) != 1 || res[1].Add[0] != (envelope.Rcpt{Addr: "alice@example.org", Orig: "bob@example.org", Copy: true, Migration: envelope.MigrationCopy}) {
		t.Errorf("copy's mailbox: err %v, copies %+v", res[1].Err, res[1].Add)
	}
	if len(*fw) != 0 {
		t.Errorf("re-injected: %+v", *fw)
	}
}

// The copies are rewritten as mail mailtee makes itself (they were
// re-injected messages once), and looked up and rewritten before the
// mailbox is written: a table that fails defers with nothing written,
// so the retry writes the mailbox once.
func TestMailboxBCCRewrittenFirst(t *testing.T) {
	l, spool, _ := setup(t, "")
	tb, _, err := maps.Open("inline:{ alice=archive@example.org }")
	if err != nil {
		t.Fatal(err)
	}
	l.o.MailboxBCC = tb
	var fail error
	l.o.Rewrite = func(ctx context.Context, from string, rcpts []envelope.Rcpt) ([]envelope.Rcpt, error) {
		if fail != nil {
			return nil, fail
		}
		out := append([]envelope.Rcpt(nil), rcpts...)
		for i := range out {
			out[i].Addr = strings.Replace(out[i].Addr, "archive@", "archive@vault.", 1)
		}
		return out, nil
	}
	fail = errors.New("virtual_alias_maps: table unavailable")
	res := l.Deliver(context.Background(), msg("Subject: x\r\n\r\n"), []Rcpt{{Addr: "alice@example.org"}})
	var de *deliver.Error
	if !errors.As(res[0].Err, &de) || de.Permanent || mailboxes(t, spool)["alice"] != 0 {
		t.Fatalf("a failed rewrite: %v, mailboxes %v; want a deferral and nothing written", res[0].Err, mailboxes(t, spool))
	}
	fail = nil
	res = l.Deliver(context.Background(), msg("Subject: x\r\n\r\n"), []Rcpt{{Addr: "alice@example.org"}})
	if res[0].Err != nil || len(res[0].Add) != 1 || res[0].Add[0].Addr != "archive@vault.example.org" || mailboxes(t, spool)["alice"] != 1 {
		t.Errorf("got %+v, mailboxes %v", res[0], mailboxes(t, spool))
	}
}
