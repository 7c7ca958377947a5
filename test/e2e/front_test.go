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

// mailtee in front of an old server it cannot replace (issue 18): the
// domain's mail is relayed (relay_domains, relay_recipient_maps) to the
// old server (a sink standing in for Exchange) by transport_maps, and
// recipient_bcc_maps copies each migrated user's mail to the provider
// by copy_transport. Every message reaches the old server once, each
// migrated user's copy the provider once; an unknown user is refused at
// RCPT; a copy the provider refuses is reported to postmaster, never
// bounced to the sender; a list the old server expands gets no copies
// (mailtee sees only the list's address: the README's limitation).

const oldIP = "127.0.0.14"

type frontNet struct {
	t          *testing.T
	front      *instance
	old        *sink
	google     *sink
	port       int
	frontAddrs string
}

// newFrontNet writes the front's configuration, extra last in main.cf
// and files beside it, and starts DNS and the sinks.
func newFrontNet(t *testing.T, extra string, more map[string]string) *frontNet {
	t.Helper()
	n := &frontNet{t: t}
	n.port = freePortOn(t, primaryIP, oldIP, googleIP)
	n.old = newSink(t, fmt.Sprintf("%s:%d", oldIP, n.port), nil)
	n.google = newGoogleSink(t, fmt.Sprintf("%s:%d", googleIP, n.port))
	n.google.SetRcptErr("user3@"+seedDomain, &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "The email account that you tried to reach does not exist"})
	dns := newDNS(t, map[string]string{
		"aspmx.l.google.com": googleIP,
		"old." + seedDomain:  oldIP,
		"mx." + seedDomain:   primaryIP,
	}, map[string][]string{seedDomain: {"10 mx." + seedDomain}})
	dir := harness.TempDir(t)
	main := fmt.Sprintf(`# mailtee in front of the old server: the domain's MX
myhostname = mx.students.iiit.ac.in
mydomain = students.iiit.ac.in
myorigin = $mydomain
mydestination = $myhostname, localhost
relay_domains = students.iiit.ac.in
relay_recipient_maps = hash:$config_directory/relay_recipients
transport_maps = hash:$config_directory/transport
recipient_bcc_maps = hash:$config_directory/bcc_migrated
copy_transport = smtp:[aspmx.l.google.com]

# the test's
inet_interfaces = %s
mynetworks = 127.0.0.0/8
smtpd_port = %d
smtp_tcp_port = %d
dns_servers = %s
queue_directory = $config_directory/queue
data_directory = $config_directory/data
mail_spool_directory = $config_directory/mail/
alias_maps = hash:$config_directory/aliases
minimal_backoff_time = 1s
maximal_backoff_time = 2s
queue_run_delay = 1s
smtp_connect_timeout = 2s
`, primaryIP, n.port, n.port, dns.Addr) + extra
	files := map[string]string{
		"main.cf": main,
		// The old server's users: list is a list the old server expands.
		"relay_recipients": "user1@students.iiit.ac.in  OK\nuser2@students.iiit.ac.in  OK\nuser3@students.iiit.ac.in  OK\nuser4@students.iiit.ac.in  OK\nlist@students.iiit.ac.in  OK\npostmaster@students.iiit.ac.in  OK\n",
		"transport":        "students.iiit.ac.in  smtp:[old.students.iiit.ac.in]\n",
		// The migrated users: their copies keep their own addresses.
		"bcc_migrated": "user1@students.iiit.ac.in  user1@students.iiit.ac.in\nuser2@students.iiit.ac.in  user2@students.iiit.ac.in\nuser3@students.iiit.ac.in  user3@students.iiit.ac.in\n",
		"aliases":      "postmaster: root\n",
	}
	for name, text := range more {
		files[name] = text
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	n.front = &instance{T: t, Dir: dir, Port: n.port, Log: &syncBuffer{}, Host: primaryIP}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("front's log:\n%s", n.front.Log.String())
		}
	})
	return n
}

// sunkByID counts, per "Message-ID recipient", what a sink received.
func sunkByID(t *testing.T, s *sink) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, m := range s.Messages() {
		id := "<none>"
		if sm := messageIDHeader.FindStringSubmatch(m.Data); sm != nil {
			id = sm[1]
		}
		for _, r := range m.To {
			out[id+" "+strings.ToLower(r)]++
		}
	}
	return out
}

func TestFrontOfOldServer(t *testing.T) {
	n := newFrontNet(t, "", nil)
	if out, err := n.front.Run("", "check"); err != nil {
		t.Fatalf("check: %v\n%s", err, out)
	}
	n.front.Start()

	// An unknown user is refused at RCPT, before DATA: no bounce later.
	raw := dialRaw(t, n.front.Addr(), "")
	raw.Cmd("EHLO client.outside.example")
	raw.Cmd("MAIL FROM:<sender@outside.example>")
	if r := raw.Cmd("RCPT TO:<nosuch@students.iiit.ac.in>"); !strings.HasPrefix(r, "550 5.1.1") {
		t.Errorf("RCPT of an unknown user: %q, want 550 5.1.1", r)
	}
	raw.Cmd("QUIT")

	type msg struct {
		to     []string // local parts
		copies []string // migrated users whose copy the provider must get
	}
	msgs := []msg{
		{[]string{"user1"}, []string{"user1"}},
		{[]string{"user4"}, nil},
		{[]string{"user1", "user2", "user4"}, []string{"user1", "user2"}},
		// The old server expands the list: mailtee sees only its address.
		{[]string{"list"}, nil},
		// The provider refuses user3's copy (no account yet).
		{[]string{"user3"}, nil},
	}
	const sender = "alice@students.iiit.ac.in"
	id := func(i int) string { return fmt.Sprintf("<front-%d@students.iiit.ac.in>", i+1) }
	for i, m := range msgs {
		var rcpts []string
		for _, u := range m.to {
			rcpts = append(rcpts, u+"@"+seedDomain)
		}
		body := fmt.Sprintf("From: %s\r\nTo: %s\r\nSubject: front %d\r\nMessage-ID: %s\r\n\r\nMessage %d.\r\n", sender, strings.Join(rcpts, ", "), i+1, id(i), i+1)
		if err := send(n.front.Addr(), sender, rcpts, body); err != nil {
			t.Fatalf("message %d: %v", i+1, err)
		}
	}
	waitUntil(t, "user3's copy refused and the queue empty", 30*time.Second, func() bool {
		return strings.Contains(n.front.Log.String(), "to=<user3@students.iiit.ac.in>, relay=aspmx.l.google.com") && queueEmpty(n.front)
	})
	// The postmaster notice for user3's copy goes to the old server's
	// postmaster (myorigin is the domain).
	waitUntil(t, "the postmaster notice at the old server", 20*time.Second, func() bool {
		for _, m := range n.old.Messages() {
			if m.From == "" && len(m.To) == 1 && m.To[0] == "postmaster@"+seedDomain && strings.Contains(m.Data, "does not exist") {
				return true
			}
		}
		return false
	})
	waitUntil(t, "the queue empty", 20*time.Second, func() bool { return queueEmpty(n.front) })
	settle()

	old, google := sunkByID(t, n.old), sunkByID(t, n.google)
	wantOld, wantGoogle := 0, 0
	for i, m := range msgs {
		for _, u := range m.to {
			k := id(i) + " " + u + "@" + seedDomain
			if old[k] != 1 {
				t.Errorf("message %d: the old server got %s %d times, want once", i+1, k, old[k])
			}
			wantOld++
		}
		for _, u := range m.copies {
			k := id(i) + " " + u + "@" + seedDomain
			if google[k] != 1 {
				t.Errorf("message %d: the provider got %s %d times, want once", i+1, k, google[k])
			}
			wantGoogle++
		}
	}
	// Nothing else: the old server has the messages and the notice, the
	// provider the copies (user3's was refused at RCPT, so not there).
	gotOld, gotGoogle := 0, 0
	for k, c := range old {
		if !strings.HasPrefix(k, "<front-") {
			continue
		}
		gotOld += c
	}
	for _, c := range google {
		gotGoogle += c
	}
	if gotOld != wantOld || gotGoogle != wantGoogle {
		t.Errorf("the old server got %d deliveries (want %d), the provider %d (want %d):\nold %v\nprovider %v", gotOld, wantOld, gotGoogle, wantGoogle, old, google)
	}
	// A failed copy never bounces to the sender.
	for _, m := range append(n.old.Messages(), n.google.Messages()...) {
		for _, r := range m.To {
			if strings.EqualFold(r, sender) {
				t.Errorf("the sender got mail from <%s>:\n%s", m.From, m.Data)
			}
		}
	}
	n.front.WaitLog("automatic copy; failures are reported to postmaster")
	if strings.Contains(n.front.Log.String(), "sender non-delivery notification") {
		t.Errorf("a notification went to the sender:\n%s", n.front.Log.String())
	}
}

// A pilot cohort in front of the old server: user2 is in the forward
// phase (dual_delivery_phase_maps), so its mail goes to the provider
// only, by copy_transport; user1 stays dual, at both.
func TestFrontPilotForward(t *testing.T) {
	n := newFrontNet(t, "dual_delivery_phase_maps = hash:$config_directory/pilot\n", map[string]string{"pilot": "user2@students.iiit.ac.in  forward\n"})
	n.front.Start()
	rcpts := []string{"user1@" + seedDomain, "user2@" + seedDomain}
	body := "From: alice@students.iiit.ac.in\r\nSubject: pilot\r\nMessage-ID: <pilot-1@students.iiit.ac.in>\r\n\r\nHello.\r\n"
	if err := send(n.front.Addr(), "alice@students.iiit.ac.in", rcpts, body); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the queue empty", 20*time.Second, func() bool {
		return n.google.Count("user2@"+seedDomain) == 1 && queueEmpty(n.front)
	})
	settle()
	old, google := sunkByID(t, n.old), sunkByID(t, n.google)
	const id = "<pilot-1@students.iiit.ac.in>"
	for k, want := range map[string]int{
		id + " user1@students.iiit.ac.in": 1, id + " user2@students.iiit.ac.in": 0,
	} {
		if old[k] != want {
			t.Errorf("old server: %s %d times, want %d (%v)", k, old[k], want, old)
		}
	}
	for k, want := range map[string]int{
		id + " user1@students.iiit.ac.in": 1, id + " user2@students.iiit.ac.in": 1,
	} {
		if google[k] != want {
			t.Errorf("provider: %s %d times, want %d (%v)", k, google[k], want, google)
		}
	}
}
