package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/mailtee/mailtee/test/internal/harness"
)

// The seed scenario (shared/seed/dual-delivery-setup-for-postfix.md) on
// two mailtee processes with the seed's own files, byte for byte; the
// test only appends what it needs (addresses, ports, queue, resolver,
// mailboxes, local users) to each main.cf. A resolver started here
// answers for relay.students.iiit.ac.in and aspmx.l.google.com with
// 127.0.0.x, and "Google" is an SMTP sink recording envelopes.
type seedNet struct {
	t              *testing.T
	port           int
	dns            *dnsServer
	primary, relay *instance
	google         *sink
	archive        *sink
}

const (
	primaryIP = "127.0.0.10"
	relayIP   = "127.0.0.11"
	googleIP  = "127.0.0.12"
	archiveIP = "127.0.0.13"
)

// copySeed copies examples/seed/ROLE into a new directory, appending
// extra to its main.cf, and returns the directory.
func copySeed(t *testing.T, role, extra string, files map[string]string) string {
	t.Helper()
	src := filepath.Join("..", "..", "examples", "seed", role)
	dst := harness.TempDir(t)
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if e.Name() == "main.cf" {
			// data_directory last: tests name main.cf's lines by number.
			b = append(b, []byte("\n# --- added by the test ---\n"+extra+"\ndata_directory = $config_directory/data\n")...)
		}
		os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644)
	}
	for name, text := range files {
		os.WriteFile(filepath.Join(dst, name), []byte(text), 0o644)
	}
	return dst
}

// newGoogleSink stands in for aspmx.l.google.com: like Google, it offers
// STARTTLS, which mailtee's google profile (chosen by the MX name)
// requires.
func newGoogleSink(t *testing.T, addr string) *sink {
	_, _, cfg := testCert(t, t.TempDir(), "aspmx.l.google.com")
	return newSink(t, addr, cfg)
}

// newSeedNet starts DNS and the sinks; primaryExtra/relayExtra are the
// scenario's own main.cf additions.
func newSeedNet(t *testing.T, primaryExtra, relayExtra string, primaryFiles map[string]string) *seedNet {
	t.Helper()
	if _, err := os.Stat("/etc/aliases"); err != nil {
		t.Skip("the seed's relay names hash:/etc/aliases; ./test.sh installs postfix, which creates it")
	}
	n := &seedNet{t: t}
	// One port for every role, on different loopback addresses, as real
	// servers all listen on 25.
	n.port = freePortOn(t, primaryIP, relayIP, googleIP, archiveIP)
	n.google = newGoogleSink(t, fmt.Sprintf("%s:%d", googleIP, n.port))
	n.archive = newSink(t, fmt.Sprintf("%s:%d", archiveIP, n.port), nil)
	n.dns = newDNS(t, map[string]string{
		"relay.students.iiit.ac.in": relayIP,
		"aspmx.l.google.com":        googleIP,
		"mx.archive.example":        archiveIP,
		"students.iiit.ac.in":       primaryIP,
	}, map[string][]string{"archive.example": {"10 mx.archive.example"}})
	common := fmt.Sprintf("smtpd_port = %d\nsmtp_tcp_port = %d\ndns_servers = %s\nminimal_backoff_time = 1s\nmaximal_backoff_time = 2s\nqueue_run_delay = 1s\nsmtp_connect_timeout = 2s\n", n.port, n.port, n.dns.Addr)
	users := "user1 x\nuser2 x\nuser3 x\nuser4 x\nalice x\nlist x\npostmaster x\n"
	// The primary listens on 127.0.0.10, which is no interface's address:
	// like Postfix, mailtee cannot derive mynetworks from it, so it is set.
	pdir := copySeed(t, "primary", common+fmt.Sprintf("inet_interfaces = %s\nmynetworks = 127.0.0.0/8\nqueue_directory = $config_directory/queue\nmail_spool_directory = $config_directory/mail/\nalias_maps = hash:$config_directory/aliases\nlocal_recipient_maps = hash:$config_directory/users $alias_maps\n", primaryIP)+primaryExtra,
		mergeFiles(map[string]string{"users": users, "aliases": "postmaster: alice\nlist: user1, user2\n"}, primaryFiles))
	rdir := copySeed(t, "relay", common+fmt.Sprintf("inet_interfaces = %s\nqueue_directory = $config_directory/queue\nmail_spool_directory = $config_directory/mail/\n", relayIP)+relayExtra, nil)
	n.primary = &instance{T: t, Dir: pdir, Port: n.port, Log: &syncBuffer{}, Host: primaryIP}
	n.relay = &instance{T: t, Dir: rdir, Port: n.port, Log: &syncBuffer{}, Host: relayIP}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("primary log:\n%s\nrelay log:\n%s", n.primary.Log.String(), n.relay.Log.String())
		}
	})
	n.relay.Start()
	n.primary.Start()
	return n
}

func mergeFiles(a, b map[string]string) map[string]string {
	for k, v := range b {
		a[k] = v
	}
	return a
}

func (n *seedNet) send(from string, to ...string) {
	n.t.Helper()
	if err := send(n.primary.Addr(), from, to, testMessage("seed "+strings.Join(to, ","))); err != nil {
		n.t.Fatalf("sending to the primary: %v", err)
	}
}

// mailbox counts messages in a primary mailbox.
func (n *seedNet) mailbox(user string) int { return len(n.primary.MaildirMessages(user)) }

// settle waits a little for deliveries that should not happen.
func settle() { time.Sleep(1500 * time.Millisecond) }

func TestSeedUser1ReachesBoth(t *testing.T) {
	n := newSeedNet(t, "", "", nil)
	n.send("someone@outside.example", "user1@students.iiit.ac.in")
	waitUntil(t, "user1's local copy", 20*time.Second, func() bool { return n.mailbox("user1") == 1 })
	waitUntil(t, "Google's copy", 20*time.Second, func() bool { return n.google.Count("user1@students.iiit.ac.in") == 1 })
	settle()
	if c := n.google.Count("user1@students.iiit.ac.in"); c != 1 || len(n.google.Messages()) != 1 {
		t.Errorf("Google got %d copies (%d messages), want exactly one", c, len(n.google.Messages()))
	}
	m := n.google.Messages()[0]
	if m.From != "someone@outside.example" || !strings.Contains(m.Data, "Subject: seed") {
		t.Errorf("Google's copy: from %q\n%s", m.From, m.Data)
	}
	// aspmx.l.google.com is Google's: the relay's default profile
	// (auto) requires TLS there, and the seed's main.cf asks for none.
	if tls := n.google.TLS(); len(tls) != 1 || !tls[0] {
		t.Errorf("Google's copy went over TLS: %v, want [true]", tls)
	}
	n.primary.WaitLog("to=<user1@relay.students.iiit.ac.in>, orig_to=<user1@students.iiit.ac.in>")
	n.relay.WaitLog("to=<user1@relay.students.iiit.ac.in>")
}

func TestSeedUserWithoutBCCGetsLocalOnly(t *testing.T) {
	n := newSeedNet(t, "", "", nil)
	n.send("someone@outside.example", "user4@students.iiit.ac.in")
	waitUntil(t, "user4's local copy", 20*time.Second, func() bool { return n.mailbox("user4") == 1 })
	settle()
	if len(n.google.Messages()) != 0 {
		t.Errorf("user4 has no BCC entry, yet Google got %d messages", len(n.google.Messages()))
	}
}

// A list reaching user1 and user2, plus user1 directly: one local copy
// each, and with mailbox_bcc_maps (the seed's own map, in place of
// recipient_bcc_maps) one copy each at Google.
func TestSeedListWithMailboxBCC(t *testing.T) {
	n := newSeedNet(t, "recipient_bcc_maps =\nmailbox_bcc_maps = hash:$config_directory/bcc_map_to_relay\n", "", nil)
	n.send("someone@outside.example", "list@students.iiit.ac.in", "user1@students.iiit.ac.in")
	waitUntil(t, "local copies", 20*time.Second, func() bool { return n.mailbox("user1") == 1 && n.mailbox("user2") == 1 })
	waitUntil(t, "Google's copies", 20*time.Second, func() bool {
		return n.google.Count("user1@students.iiit.ac.in") == 1 && n.google.Count("user2@students.iiit.ac.in") == 1
	})
	settle()
	if n.mailbox("user1") != 1 || n.google.Count("user1@students.iiit.ac.in") != 1 {
		t.Errorf("user1: %d local, %d at Google; want 1 and 1", n.mailbox("user1"), n.google.Count("user1@students.iiit.ac.in"))
	}
}

// The seed's own recipient_bcc_maps sees only original recipients: list
// mail gets no copy. This is the difference README documents.
func TestSeedListWithRecipientBCCMissesMembers(t *testing.T) {
	n := newSeedNet(t, "", "", nil)
	n.send("someone@outside.example", "list@students.iiit.ac.in")
	waitUntil(t, "local copies", 20*time.Second, func() bool { return n.mailbox("user1") == 1 && n.mailbox("user2") == 1 })
	settle()
	if len(n.google.Messages()) != 0 {
		t.Errorf("recipient_bcc_maps should not see list members, yet Google got %v", n.google.Messages())
	}
}

// Google down for a while: local delivery is unaffected, the copy waits
// on the relay and arrives once when Google is back.
func TestSeedGoogleDownThenBack(t *testing.T) {
	n := newSeedNet(t, "", "", nil)
	n.google.Close()
	n.send("someone@outside.example", "user2@students.iiit.ac.in")
	waitUntil(t, "user2's local copy", 20*time.Second, func() bool { return n.mailbox("user2") == 1 })
	n.relay.WaitLog("status=deferred")
	n.google = newGoogleSink(t, fmt.Sprintf("%s:%d", googleIP, n.port))
	waitUntil(t, "the copy after Google returns", 30*time.Second, func() bool { return n.google.Count("user2@students.iiit.ac.in") == 1 })
	settle()
	if c := n.google.Count("user2@students.iiit.ac.in"); c != 1 {
		t.Errorf("Google got %d copies, want one", c)
	}
}

// The last phase: the primary sends the domain straight to the provider
// and keeps no local copy.
func TestSeedForwardOnly(t *testing.T) {
	n := newSeedNet(t, "recipient_bcc_maps =\ntransport_maps = inline:{ students.iiit.ac.in=smtp:aspmx.l.google.com }\n", "", nil)
	n.send("someone@outside.example", "user1@students.iiit.ac.in")
	waitUntil(t, "Google's copy", 20*time.Second, func() bool { return n.google.Count("user1@students.iiit.ac.in") == 1 })
	settle()
	if n.mailbox("user1") != 0 || len(n.google.Messages()) != 1 {
		t.Errorf("forward-only: %d local, %d at Google; want 0 and 1", n.mailbox("user1"), len(n.google.Messages()))
	}
	n.primary.WaitLog("relay=aspmx.l.google.com[" + googleIP + "]")
}

// Three deliveries: a BCC entry with two addresses.
func TestSeedThreeDeliveries(t *testing.T) {
	n := newSeedNet(t, "", "", map[string]string{"bcc_map_to_relay": "user1:  user1@relay.students.iiit.ac.in, user1@archive.example\n"})
	n.send("someone@outside.example", "user1@students.iiit.ac.in")
	waitUntil(t, "three deliveries", 20*time.Second, func() bool {
		return n.mailbox("user1") == 1 && n.google.Count("user1@students.iiit.ac.in") == 1 && n.archive.Count("user1@archive.example") == 1
	})
}

// A copy that the provider rejects is reported to the relay's
// postmaster, never bounced to the outside sender.
func TestSeedRejectedCopyGoesToPostmaster(t *testing.T) {
	n := newSeedNet(t, "", "dual_delivery_relay = yes\n", nil)
	n.google.SetRcptErr("user3@students.iiit.ac.in", &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "The email account that you tried to reach does not exist"})
	n.send("alice@students.iiit.ac.in", "user3@students.iiit.ac.in")
	waitUntil(t, "user3's local copy", 20*time.Second, func() bool { return n.mailbox("user3") == 1 })
	n.relay.WaitLog("status=bounced")
	n.relay.WaitLog("automatic copy; failures are reported to postmaster")
	n.relay.WaitLog("postmaster non-delivery notification")
	settle()
	if n.mailbox("alice") != 0 {
		t.Errorf("the sender got a bounce for a copy:\n%s", n.primary.MaildirMessages("alice"))
	}
	// The relay's postmaster is postmaster@$myorigin: the relay's
	// myorigin is the seed's $mydomain, students.iiit.ac.in, whose mail
	// now goes to Google, as it would with Postfix.
	waitUntil(t, "the postmaster notice", 20*time.Second, func() bool {
		for _, m := range n.google.Messages() {
			if len(m.To) == 1 && m.To[0] == "postmaster@students.iiit.ac.in" && strings.Contains(m.Data, "user3@students.iiit.ac.in") && strings.Contains(m.Data, "does not exist") {
				return true
			}
		}
		return false
	})
	for _, m := range n.google.Messages() {
		if m.From != "" && strings.Contains(m.Data, "Undelivered") {
			t.Errorf("a notification must come from <>, got from=%q", m.From)
		}
	}
}
