package local

import (
	"context"
	"errors"
	"reflect"
	"sort"
	"testing"

	"github.com/mailtee/mailtee/internal/envelope"
	"github.com/mailtee/mailtee/internal/maps"
	"github.com/mailtee/mailtee/internal/migration"
)

// Each message is delivered under the migration settings it was
// accepted with (deliver.Message.Settings): its mailbox_bcc_maps and
// the phase of each mailbox that has a copy. dual: the mailbox and a
// copy; off: the mailbox only; forward: no mailbox, the mail sent on to
// the copy's address as a delivery of its own. A mailbox without a copy
// is never affected. Mailboxes are reached through a list, as
// mailbox_bcc_maps sees them.
func TestPhasesPerMessage(t *testing.T) {
	table := func(spec string) maps.Table {
		tb, _, err := maps.Open(spec)
		if err != nil {
			t.Fatal(err)
		}
		return tb
	}
	settings := map[string]*migration.Tables{
		"A": {ID: "A", Settings: &migration.Settings{Phase: migration.Dual},
			PhaseMaps:  table("inline:{ bob=forward, dave@example.org=off }"),
			MailboxBCC: table("inline:{ alice=alice@g.example, bob=bob@g.example, dave=dave@g.example }")},
		"B": {ID: "B", Settings: &migration.Settings{Phase: migration.Forward},
			MailboxBCC: table("inline:{ alice=alice@g.example }")},
	}
	for _, tc := range []struct {
		settings string
		boxes    map[string]int
		add      []string
	}{
		{"A", map[string]int{"alice": 1, "carol": 1, "dave": 1}, []string{"alice@g.example copy true", "bob@g.example forward false"}},
		{"B", map[string]int{"bob": 1, "carol": 1, "dave": 1}, []string{"alice@g.example forward false"}},
	} {
		l, spool, fw := setup(t, "team: alice, bob\n")
		l.o.Migration = func(id string) (*migration.Tables, error) { return settings[id], nil }
		m := msg("Subject: x\r\n\r\n")
		m.Settings = tc.settings
		res := l.Deliver(context.Background(), m, []Rcpt{{Addr: "team@example.org"}, {Addr: "carol@example.org"}, {Addr: "dave@example.org"}})
		var add []string
		for i, r := range res {
			if r.Err != nil {
				t.Fatalf("%s: rcpt %d: %v", tc.settings, i, r.Err)
			}
			for _, a := range r.Add {
				add = append(add, a.Addr+" "+a.Migration+" "+map[bool]string{true: "true", false: "false"}[a.Copy])
			}
		}
		sort.Strings(add)
		if got := mailboxes(t, spool); !reflect.DeepEqual(got, tc.boxes) {
			t.Errorf("settings %s: mailboxes %v, want %v", tc.settings, got, tc.boxes)
		}
		if !reflect.DeepEqual(add, tc.add) {
			t.Errorf("settings %s: added %q, want %q", tc.settings, add, tc.add)
		}
		if len(*fw) != 0 {
			t.Errorf("settings %s: re-injected %+v", tc.settings, *fw)
		}
	}
}

// The forward phase of a recipient that is itself a copy (on a relay,
// dual_delivery_relay) keeps it a copy: its failures still go to
// postmaster.
func TestForwardOfACopyStaysACopy(t *testing.T) {
	l, _, _ := setup(t, "")
	tb, _, _ := maps.Open("inline:{ alice=alice@g.example }")
	l.o.Migration = func(string) (*migration.Tables, error) {
		return &migration.Tables{ID: "F", Settings: &migration.Settings{Phase: migration.Forward}, MailboxBCC: tb}, nil
	}
	res := l.Deliver(context.Background(), msg("Subject: x\r\n\r\n"), []Rcpt{{Addr: "alice@example.org", Copy: true}})
	want := []envelope.Rcpt{{Addr: "alice@g.example", Orig: "alice@example.org", Copy: true, Migration: envelope.MigrationForward}}
	if res[0].Err != nil || !reflect.DeepEqual(res[0].Add, want) {
		t.Errorf("err %v, added %+v, want %+v", res[0].Err, res[0].Add, want)
	}
}

// One box without copy_transport: a forward-phase mailbox whose copy's
// address is in a local domain (alice -> alice@relay.example.org) would
// have its mail sent to an address delivered here, whose mailbox is
// again in the forward phase: the queue adds an address once, so the
// mail reached no mailbox at all. The mailbox is kept (as in dual) and
// a warning says why; with copy_transport (CopiesApart) the forward goes.
func TestForwardToLocalAddressWithoutCopyTransport(t *testing.T) {
	for _, apart := range []bool{false, true} {
		l, spool, _ := setup(t, "")
		var warned []string
		l.o.Warn = func(s string) { warned = append(warned, s) }
		l.o.CopiesApart = apart
		tb, _, _ := maps.Open("inline:{ alice=alice@relay.example.org }")
		l.o.Migration = func(string) (*migration.Tables, error) {
			return &migration.Tables{ID: "F", Settings: &migration.Settings{Phase: migration.Forward}, MailboxBCC: tb}, nil
		}
		res := l.Deliver(context.Background(), msg("Subject: x\r\n\r\n"), []Rcpt{{Addr: "alice@relay.example.org"}})
		if res[0].Err != nil {
			t.Fatalf("copy_transport %v: %v", apart, res[0].Err)
		}
		boxes := mailboxes(t, spool)
		if apart {
			if boxes["alice"] != 0 || len(res[0].Add) != 1 || res[0].Add[0].Migration != envelope.MigrationForward {
				t.Errorf("copy_transport: mailboxes %v, added %+v; want the forward only", boxes, res[0].Add)
			}
			continue
		}
		if boxes["alice"] != 1 || len(res[0].Add) != 0 || len(warned) == 0 {
			t.Errorf("no copy_transport: mailboxes %v, added %+v, warnings %q; want alice's mailbox, nothing added, a warning", boxes, res[0].Add, warned)
		}
	}
}

// A forward-phase mailbox reached through a list with an owner- alias:
// the mail sent on is the list's delivery, as a member's remote address
// is, so its failure goes to the list's owner (NotifyOwner), not to the
// original sender, like the list's other forwards (re-injected from the
// owner).
func TestForwardPhaseThroughListNotifiesOwner(t *testing.T) {
	l, _, fw := setup(t, "team: alice, carol@remote.example\nowner-team: boss\n")
	tb, _, _ := maps.Open("inline:{ alice=alice@g.example }")
	l.o.Migration = func(string) (*migration.Tables, error) {
		return &migration.Tables{ID: "F", Settings: &migration.Settings{Phase: migration.Forward}, MailboxBCC: tb}, nil
	}
	res := l.Deliver(context.Background(), msg("Subject: x\r\n\r\n"), []Rcpt{{Addr: "team@example.org"}})
	if res[0].Err != nil || len(res[0].Add) != 1 || len(*fw) != 1 {
		t.Fatalf("err %v, added %+v, re-injected %+v", res[0].Err, res[0].Add, *fw)
	}
	owner := (*fw)[0].from
	if owner == "sender@outside.example" {
		t.Fatalf("the list's remote member re-injected from the sender: the test's setup is wrong")
	}
	if got := res[0].Add[0].NotifyOwner; got != owner {
		t.Errorf("forward phase NotifyOwner %q, want the list owner %q (as the list's remote member)", got, owner)
	}
}

// The migration settings a message was accepted with that cannot be
// read now defer its local delivery: nothing written, no copy decided.
func TestMigrationSettingsUnreadableDefers(t *testing.T) {
	l, spool, _ := setup(t, "")
	l.o.Migration = func(string) (*migration.Tables, error) { return nil, errors.New("too many open files") }
	res := l.Deliver(context.Background(), msg("Subject: x\r\n\r\n"), []Rcpt{{Addr: "alice@example.org"}})
	if res[0].Err == nil || isPermanent(res[0].Err) || len(mailboxes(t, spool)) != 0 {
		t.Errorf("err %v, mailboxes %v; want a temporary error and nothing written", res[0].Err, mailboxes(t, spool))
	}
}
