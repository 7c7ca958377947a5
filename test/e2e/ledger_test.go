package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mailtee/mailtee/test/internal/harness"
)

// The proof of every copy (issue 17), end to end: the seed's migration on
// loopback — a mailtee primary, a mailtee relay, and a sink answering
// like Google — with the relay down for a while at the start and one
// copy refused by "Google" with 550 5.1.1. Once both queues are empty,
// what the sinks hold (each primary mailbox, each transaction at the
// provider, with the ID the provider gave it) is the truth that
// `mailtee report` on the primary, /metrics on both hosts and the
// dashboard must all tell, message by message.

// ledgerMsg is one message of the scenario and where it must end up.
type ledgerMsg struct {
	n         int
	to        []string // envelope recipients at the primary
	mailboxes []string // the primary's local mailboxes it must reach
	copies    []string // the addresses "Google" must get a copy for
	refused   []string // copies Google refuses (required, never delivered)
}

func (m ledgerMsg) messageID() string { return fmt.Sprintf("<ledger-%d@outside.example>", m.n) }

func (m ledgerMsg) body() string {
	return fmt.Sprintf("From: sender@outside.example\r\nTo: %s\r\nSubject: ledger %d\r\nMessage-ID: %s\r\n\r\nMessage %d of the ledger scenario.\r\n",
		strings.Join(m.to, ", "), m.n, m.messageID(), m.n)
}

// required is the number of the message's required deliveries: one per
// mailbox, one per copy (refused ones included).
func (m ledgerMsg) required() int { return len(m.mailboxes) + len(m.copies) + len(m.refused) }

// ledgerListMembers are the members of list@, the scenario's list: an
// alias (alias_maps) on the mailtee primary, a virtual alias on Postfix.
var ledgerListMembers = []string{"user1", "user2"}

const (
	seedDomain  = "students.iiit.ac.in"
	ledgerToken = "e2e-peer-token-0123456789abcdef"
)

// ledgerNet is the scenario's network: DNS, Google, the primary and the
// relay on their loopback addresses, one SMTP port for all and one HTTP
// port (metrics_listen) for the two mailtee hosts. The primary is a
// mailtee (primary) or a private Postfix (pf, with reportDir the
// configuration `mailtee report --postfix-log` runs with).
type ledgerNet struct {
	t              *testing.T
	port, hport    int
	primary, relay *instance
	google         *gsmtpSink
	common         string // mailtee main.cf lines both mailtee hosts share

	pf        *postfixInstance
	reportDir string
}

// newLedgerHosts starts DNS and Google and writes the relay's
// configuration, leaving the relay down (startRelay): the scenario's
// network without its primary.
func newLedgerHosts(t *testing.T) *ledgerNet {
	t.Helper()
	if _, err := os.Stat("/etc/aliases"); err != nil {
		t.Skip("the seed's relay names hash:/etc/aliases; ./test.sh installs postfix, which creates it")
	}
	n := &ledgerNet{t: t}
	n.port = freePortOn(t, primaryIP, relayIP, googleIP)
	for n.hport = freePortOn(t, primaryIP, relayIP); n.hport == n.port; n.hport = freePortOn(t, primaryIP, relayIP) {
	}
	n.google = newGsmtpSink(t, fmt.Sprintf("%s:%d", googleIP, n.port), "user3@"+seedDomain)
	dns := newDNS(t, map[string]string{
		"relay." + seedDomain: relayIP,
		"aspmx.l.google.com":  googleIP,
		seedDomain:            primaryIP,
	}, nil)
	n.common = loopbackMainCf(n.port, dns.Addr) + `smtp_connect_timeout = 2s
queue_directory = $config_directory/queue
data_directory = $config_directory/data
mail_spool_directory = $config_directory/mail/
ledger_database = ledger.db
ledger_peer_token_file = $config_directory/peer_token
`
	// dual_delivery_relay: what the relay accepts is a copy, whose
	// failure goes to postmaster and the ledger, never the sender.
	rdir := copySeed(t, "relay", n.common+fmt.Sprintf(`inet_interfaces = %s
metrics_listen = %s:%d
dual_delivery_relay = yes
`, relayIP, relayIP, n.hport), map[string]string{"peer_token": ledgerToken + "\n"})
	secretDataDir(rdir)
	n.relay = &instance{T: t, Dir: rdir, Port: n.port, Log: &syncBuffer{}, Host: relayIP}
	t.Cleanup(func() {
		if t.Failed() {
			if n.primary != nil {
				t.Logf("primary log:\n%s", n.primary.Log.String())
			}
			t.Logf("relay log:\n%s", n.relay.Log.String())
		}
	})
	return n
}

// secretDataDir readies a mailtee host's directory d: the token is a
// secret, not world-readable, as check wants; the ledger goes in data/.
func secretDataDir(d string) {
	os.Chmod(filepath.Join(d, "peer_token"), 0o600)
	os.MkdirAll(filepath.Join(d, "data"), 0o755)
}

// newLedgerNet writes both configurations and starts DNS, Google and the
// primary, a mailtee; the relay is left down (startRelay). bcc is the
// primary's copy parameter line (recipient_bcc_maps or
// mailbox_bcc_maps); extra is added to the primary's main.cf last.
func newLedgerNet(t *testing.T, bcc, extra string) *ledgerNet {
	t.Helper()
	n := newLedgerHosts(t)
	users := "user1 x\nuser2 x\nuser3 x\nuser4 x\nalice x\nlist x\npostmaster x\n"
	files := map[string]string{"users": users, "aliases": "postmaster: alice\nlist: " + strings.Join(ledgerListMembers, ", ") + "\n", "peer_token": ledgerToken + "\n"}
	pdir := copySeed(t, "primary", n.common+fmt.Sprintf(`inet_interfaces = %s
mynetworks = 127.0.0.0/8
alias_maps = hash:$config_directory/aliases
local_recipient_maps = hash:$config_directory/users $alias_maps
metrics_listen = %s:%d
ledger_peers = http://%s:%d
%s
%s`, primaryIP, primaryIP, n.hport, relayIP, n.hport, bcc, extra), files)
	secretDataDir(pdir)
	n.primary = &instance{T: t, Dir: pdir, Port: n.port, Log: &syncBuffer{}, Host: primaryIP}
	n.primary.Start()
	return n
}

func (n *ledgerNet) startRelay() { n.relay.Start() }

func (n *ledgerNet) send(m ledgerMsg) {
	n.t.Helper()
	var err error
	if n.pf != nil {
		err = sendPostfix(n.t, n.pf.addr(), "sender@outside.example", m.to, m.body())
	} else {
		err = send(n.primary.Addr(), "sender@outside.example", m.to, m.body())
	}
	if err != nil {
		n.t.Fatalf("sending message %d to the primary: %v", m.n, err)
	}
}

// queueEmpty reports whether in's queue holds nothing.
func queueEmpty(in *instance) bool {
	out, err := in.Run("", "queue", "list")
	return err == nil && strings.Contains(out, "Mail queue is empty")
}

// primaryQueueEmpty reports whether the primary's queue holds nothing.
func (n *ledgerNet) primaryQueueEmpty() bool {
	if n.pf != nil {
		return n.pf.queueEmpty()
	}
	return queueEmpty(n.primary)
}

// wantInMailbox is how many times message m must be in user's mailbox
// on the primary: once if it is one of its mailboxes, except that a
// Postfix primary writes a mailbox once per original recipient that
// reaches it (list and user1: twice; newLedgerNetPostfix says why).
func (n *ledgerNet) wantInMailbox(m ledgerMsg, user string) int {
	if !slices.Contains(m.mailboxes, user) {
		return 0
	}
	if n.pf == nil {
		return 1
	}
	c := 0
	for _, r := range m.to {
		l := localPart(r)
		if l == user || l == "list" && slices.Contains(ledgerListMembers, user) {
			c++
		}
	}
	return c
}

// inMailbox counts the primary's messages in user's mailbox with the
// Message-ID id.
func (n *ledgerNet) inMailbox(user, id string) int {
	msgs := func() []string {
		if n.pf != nil {
			return n.pf.vmailTexts(user)
		}
		return n.primary.MaildirMessages(user)
	}
	c := 0
	for _, m := range msgs() {
		if sm := messageIDHeader.FindStringSubmatch(m); sm != nil && sm[1] == id {
			c++
		}
	}
	return c
}

// ledgerScenario is the mail of the scenario: copies exist for user1,
// user2 and user3 (the seed's bcc_map_to_relay), user3's is refused by
// Google, user4 has no copy, and list is user1 and user2. With
// mailbox_bcc_maps a list member's mailbox gets its copy; with the
// seed's recipient_bcc_maps only an original recipient does.
func ledgerScenario(mailboxBCC bool) []ledgerMsg {
	copied := map[string]bool{"user1": true, "user2": true}
	var msgs []ledgerMsg
	add := func(to []string, mailboxes []string) {
		m := ledgerMsg{n: len(msgs) + 1, mailboxes: mailboxes}
		for _, r := range to {
			m.to = append(m.to, r+"@"+seedDomain)
		}
		// Which addresses a copy is made for: the mailboxes
		// (mailbox_bcc_maps, after alias expansion) or the original
		// recipients (recipient_bcc_maps).
		keys := to
		if mailboxBCC {
			keys = mailboxes
		}
		for _, k := range keys {
			switch {
			case copied[k]:
				m.copies = append(m.copies, k+"@"+seedDomain)
			case k == "user3":
				m.refused = append(m.refused, k+"@"+seedDomain)
			}
		}
		msgs = append(msgs, m)
	}
	add([]string{"user1"}, []string{"user1"})
	add([]string{"user2"}, []string{"user2"})
	add([]string{"user3"}, []string{"user3"})
	add([]string{"user4"}, []string{"user4"})
	add([]string{"list"}, []string{"user1", "user2"})
	add([]string{"list", "user1"}, []string{"user1", "user2"})
	add([]string{"user1", "user2", "user4"}, []string{"user1", "user2", "user4"})
	add([]string{"user1"}, []string{"user1"})
	return msgs
}

// runLedgerScenario sends the scenario's mail while the relay is down,
// starts the relay, waits until both queues are empty and checks what
// each sink holds: the truth every figure is then compared with.
func runLedgerScenario(t *testing.T, n *ledgerNet, msgs []ledgerMsg) {
	t.Helper()
	for _, m := range msgs {
		n.send(m)
	}
	// The relay is down: the copies wait in the primary's queue.
	if hasCopies(msgs) {
		if n.pf != nil {
			// Every copy deferred (smtp's "connect to ...: Connection
			// refused", or error(8)'s "delivery temporarily suspended"
			// once qmgr holds the relay dead), each on a line of its own.
			want := 0
			for _, m := range msgs {
				want += len(m.copies) + len(m.refused)
			}
			waitUntil(t, "Postfix to defer every copy", 20*time.Second, func() bool {
				return strings.Count(n.pf.maillog(), "@relay."+seedDomain+">, relay=none, ") >= want
			})
		} else {
			n.primary.WaitLog("status=deferred")
		}
	}
	n.startRelay()
	waitUntil(t, "both queues empty", 60*time.Second, func() bool {
		return n.primaryQueueEmpty() && queueEmpty(n.relay)
	})
	checkSinks(t, n, msgs)
}

func hasCopies(msgs []ledgerMsg) bool {
	for _, m := range msgs {
		if len(m.copies)+len(m.refused) > 0 {
			return true
		}
	}
	return false
}

// checkSinks asserts, message by message, that each mailbox and each
// copy is where the scenario says, exactly once, and that the refused
// copy is nowhere: from here on, what the sinks hold is the truth the
// report is held against.
func checkSinks(t *testing.T, n *ledgerNet, msgs []ledgerMsg) {
	t.Helper()
	for _, m := range msgs {
		for _, u := range []string{"user1", "user2", "user3", "user4"} {
			want := n.wantInMailbox(m, u)
			if got := n.inMailbox(u, m.messageID()); got != want {
				t.Errorf("message %d: %d in %s's mailbox, want %d", m.n, got, u, want)
			}
			rcpt := u + "@" + seedDomain
			want = 0
			if slices.Contains(m.copies, rcpt) {
				want = 1
			}
			if got := len(n.google.Find(m.messageID(), rcpt)); got != want {
				t.Errorf("message %d: %d copies for %s at Google, want %d", m.n, got, rcpt, want)
			}
		}
	}
}

// TestLedgerSeedMigration runs the scenario twice: with mailbox_bcc_maps
// (as README advises: a list member's mailbox gets its copy) and with the
// seed's own recipient_bcc_maps (only original recipients get one).
func TestLedgerSeedMigration(t *testing.T) {
	for _, tc := range []struct {
		name       string
		bcc        string
		mailboxBCC bool
	}{
		{"mailbox_bcc_maps", "recipient_bcc_maps =\nmailbox_bcc_maps = hash:$config_directory/bcc_map_to_relay\n", true},
		{"recipient_bcc_maps", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msgs := ledgerScenario(tc.mailboxBCC)
			n := newLedgerNet(t, tc.bcc, "")
			runLedgerScenario(t, n, msgs)
			needLedger(t, n.primary)
			pbase := fmt.Sprintf("http://%s:%d", primaryIP, n.hport)
			rbase := fmt.Sprintf("http://%s:%d", relayIP, n.hport)
			if !listenerUp(rbase + "/ledger/v1/gaps") {
				t.Fatalf("the relay serves no ledger on metrics_listen (%s/ledger/v1/): the report cannot follow the copies", rbase)
			}
			r := checkReport(t, n, msgs)
			if !listenerUp(pbase + "/metrics") {
				t.Errorf("no /metrics on the primary's metrics_listen (%s)", pbase)
			} else {
				checkMetrics(t, n, msgs, pbase, rbase, r)
			}
			if !listenerUp(pbase + "/api/report") {
				t.Fatalf("no dashboard on the primary's metrics_listen (%s/api/report)", pbase)
			}
			checkDashboardAPI(t, n, pbase, r)
			// The browser once: the page is the same whatever the copy
			// map.
			if tc.mailboxBCC {
				checkDashboardPage(t, n, pbase, r)
			}
		})
	}
}

// TestLedgerDiskFull: the ledger's file system fills up. Mail keeps
// flowing (every message delivered, the queue empties), and once space
// is back the ledger records again; the report shows a gap whose time
// range covers what could not be written, and the figures for the rest.
func TestLedgerDiskFull(t *testing.T) {
	mnt := harness.MountTmpfs(t, "1m", 0o755, "the ledger's file system")
	db := filepath.Join(mnt, "ledger.db")
	sk := newSink(t, "", nil)
	in := newInstance(t, fmt.Sprintf(`transport_maps = inline:{ far.example=smtp:[127.0.0.1]:%d }
data_directory = %s
ledger_database = ledger.db
`, sk.Port(), mnt), map[string]string{"aliases": "postmaster: alice\nteam: alice, bob\n"})
	in.Start()

	// Each batch: one message to a local mailbox, one to an alias of
	// two, one to the remote next hop.
	var sent []diskFullMsg
	batch := func(name string) {
		t.Helper()
		for i, to := range [][]string{{"alice@test.example"}, {"team@test.example"}, {"rcpt@far.example"}} {
			id := fmt.Sprintf("<%s-%d@outside.example>", name, i)
			body := fmt.Sprintf("From: sender@outside.example\r\nSubject: %s %d\r\nMessage-ID: %s\r\n\r\nLedger disk full, batch %s.\r\n", name, i, id, name)
			if err := send(in.Addr(), "sender@outside.example", to, body); err != nil {
				t.Fatalf("batch %s, message %d: %v", name, i, err)
			}
			sent = append(sent, diskFullMsg{id, name})
		}
		waitUntil(t, "batch "+name+" delivered", 30*time.Second, func() bool {
			return countID(in.MaildirMessages("alice"), name) == 2 && countID(in.MaildirMessages("bob"), name) == 1 && sinkHas(sk, name)
		})
		waitUntil(t, "the queue empty after batch "+name, 60*time.Second, func() bool { return queueEmpty(in) })
	}

	batch("before")
	if why := ledgerMissing(in, db); why != "" {
		t.Fatal(why)
	}
	// The first batch is in the ledger before the disk fills, so that
	// what the gap holds is the second batch's.
	waitUntil(t, "the first batch in the report", 30*time.Second, func() bool {
		return len(reportIDs(reportJSON(t, in), "before")) == 3
	})
	filled, _ := harness.FillDisk(t, filepath.Join(mnt, "filler"))
	t.Logf("filled the ledger's tmpfs with %d bytes", filled)
	fullFrom := time.Now()
	batch("full")
	fullUntil := time.Now()
	if !in.Running() {
		t.Fatalf("mailtee died with the ledger's disk full:\n%s", in.Log.String())
	}
	if err := os.Remove(filepath.Join(mnt, "filler")); err != nil {
		t.Fatal(err)
	}
	batch("after")
	checkDiskFullReport(t, in, sent, fullFrom, fullUntil)
}

type diskFullMsg struct{ id, batch string }

// countID counts the messages whose Subject names the batch.
func countID(msgs []string, batch string) int {
	c := 0
	for _, m := range msgs {
		if strings.Contains(m, "Subject: "+batch+" ") {
			c++
		}
	}
	return c
}

func sinkHas(sk *sink, batch string) bool {
	for _, m := range sk.Messages() {
		if strings.Contains(m.Data, "Subject: "+batch+" ") {
			return true
		}
	}
	return false
}
