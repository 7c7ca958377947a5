package e2e

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/mailtee/mailtee/internal/report"
	"github.com/mailtee/mailtee/test/internal/harness"
)

// Phase switches end to end (issue 18, DESIGN.md "Phases"): the seed's
// two servers, a mailtee primary and a mailtee relay, with "Google" a
// sink that counts each Message-ID per recipient, and the primary's
// mailboxes in an LMTP store (Dovecot's place: mailbox_transport) that
// the test can make defer, so that local delivery waits in the queue
// across a switch. The promise under test: a message is finished under
// the phase and copy settings it was accepted with, so a switch — of
// dual_delivery_phase, of the copy maps, by reload or by restart — never
// loses a delivery and never makes one twice.

// phaseNet is one scenario's network.
type phaseNet struct {
	t              *testing.T
	primary, relay *instance
	google         *gsmtpSink // nil while down (oneBox)
	googleAddr     string
	store          *sink // the primary's mailboxes, over LMTP
}

// phaseOpts says how newPhaseNet builds the network.
type phaseOpts struct {
	primary   string            // the primary's main.cf additions
	files     map[string]string // the primary's extra files
	relayDown bool              // leave the relay stopped
	// oneBox: no relay; the primary's copies and forwards go straight
	// to "Google" by copy_transport, to the very addresses delivered
	// here (user1 -> user1@students.iiit.ac.in), and "Google" is down
	// until startGoogle.
	oneBox bool
	relay  string // the relay's main.cf additions
}

// phaseUsers are the primary's local users: user1..user3 are in the
// seed's copy map, user4 is not; user5 and user6 are added to it by the
// tests that need them (user6 unknown at the relay).
const phaseUsers = "user1 x\nuser2 x\nuser3 x\nuser4 x\nuser5 x\nuser6 x\nalice x\npostmaster x\n"

// phaseBCC is the seed's copy map with user5 and user6 added.
const phaseBCC = "user1:  user1@relay.students.iiit.ac.in\nuser2:  user2@relay.students.iiit.ac.in\nuser3:  user3@relay.students.iiit.ac.in\nuser5:  user5@relay.students.iiit.ac.in\nuser6:  user6@relay.students.iiit.ac.in\n"

func newPhaseNet(t *testing.T, o phaseOpts) *phaseNet {
	t.Helper()
	if _, err := os.Stat("/etc/aliases"); err != nil {
		t.Skip("the seed's relay names hash:/etc/aliases; ./test.sh installs postfix, which creates it")
	}
	n := &phaseNet{t: t}
	port := freePortOn(t, primaryIP, relayIP, googleIP)
	n.googleAddr = fmt.Sprintf("%s:%d", googleIP, port)
	if !o.oneBox {
		n.startGoogle()
	}
	// Dovecot's LMTP stand-in: it answers per message (go-smtp's LMTP
	// mode without per-recipient replies), and SetRcptErr defers one
	// mailbox.
	n.store = newSink(t, "127.0.0.1:0", nil, func(s *smtp.Server) { s.LMTP = true })
	dns := newDNS(t, map[string]string{
		"relay." + seedDomain: relayIP,
		"aspmx.l.google.com":  googleIP,
		seedDomain:            primaryIP,
	}, nil)
	common := fmt.Sprintf(`smtpd_port = %d
smtp_tcp_port = %d
dns_servers = %s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
queue_run_delay = 1s
smtp_connect_timeout = 2s
queue_directory = $config_directory/queue
mail_spool_directory = $config_directory/mail/
`, port, port, dns.Addr)
	bcc := phaseBCC
	if o.oneBox {
		bcc = strings.ReplaceAll(bcc, "@relay.", "@")
		// The provider's own profile would pace each mailbox at
		// Google's per-minute rate.
		o.primary = "copy_transport = smtp:[aspmx.l.google.com]\ndefault_destination_profile = none\n" + o.primary
		o.relayDown = true
	}
	files := mergeFiles(map[string]string{"users": phaseUsers, "aliases": "postmaster: alice\nlist: user1, user3\n", "bcc_map_to_relay": bcc}, o.files)
	pdir := copySeed(t, "primary", common+fmt.Sprintf(`inet_interfaces = %s
mynetworks = 127.0.0.0/8
alias_maps = hash:$config_directory/aliases
local_recipient_maps = hash:$config_directory/users $alias_maps
mailbox_transport = lmtp:inet:%s
%s`, primaryIP, n.store.Addr, o.primary), files)
	// The relay knows user1..user5, not user6: a copy to user6 is
	// refused at RCPT.
	// The relay paces nothing: Google's profile (chosen by the MX name)
	// spreads a mailbox's mail at Google's per-minute rate, and the
	// load test sends a hundred messages per mailbox.
	rdir := copySeed(t, "relay", common+fmt.Sprintf("inet_interfaces = %s\ndefault_destination_profile = none\n%s", relayIP, o.relay), map[string]string{
		"user_maps": "user1@relay.students.iiit.ac.in    user1@students.iiit.ac.in\nuser2@relay.students.iiit.ac.in    user2@students.iiit.ac.in\nuser3@relay.students.iiit.ac.in    user3@students.iiit.ac.in\nuser4@relay.students.iiit.ac.in    user4@students.iiit.ac.in\nuser5@relay.students.iiit.ac.in    user5@students.iiit.ac.in\n",
	})
	for _, d := range []string{pdir, rdir} {
		os.MkdirAll(filepath.Join(d, "data"), 0o755)
	}
	n.primary = &instance{T: t, Dir: pdir, Port: port, Log: &syncBuffer{}, Host: primaryIP, MarkStarts: true}
	n.relay = &instance{T: t, Dir: rdir, Port: port, Log: &syncBuffer{}, Host: relayIP, MarkStarts: true}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("primary log:\n%s\nrelay log:\n%s", n.primary.Log.String(), n.relay.Log.String())
		}
	})
	if !o.relayDown {
		n.relay.Start()
	}
	n.primary.Start()
	return n
}

// startGoogle brings "Google" up.
func (n *phaseNet) startGoogle() { n.google = newGsmtpSink(n.t, n.googleAddr) }

// setParams rewrites the primary's main.cf: each name's lines are
// removed and "name = value" appended, as an administrator edits it.
func (n *phaseNet) setParams(kv ...string) {
	n.t.Helper()
	cf := filepath.Join(n.primary.Dir, "main.cf")
	b, err := os.ReadFile(cf)
	if err != nil {
		n.t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	for i := 0; i+1 < len(kv); i += 2 {
		re := regexp.MustCompile(`^` + regexp.QuoteMeta(kv[i]) + `\s*=`)
		var keep []string
		for _, l := range lines {
			if !re.MatchString(l) {
				keep = append(keep, l)
			}
		}
		lines = append(keep, kv[i]+" = "+kv[i+1])
	}
	n.primary.WriteFile("main.cf", strings.Join(lines, "\n")+"\n")
}

// reload runs `mailtee reload` on the primary, which answers once the
// new configuration is in force.
func (n *phaseNet) reload() {
	n.t.Helper()
	if out, err := n.primary.Run("", "reload"); err != nil {
		n.t.Fatalf("mailtee reload: %v\n%s", err, out)
	}
}

// phaseMsg is one message the test sent, and when.
type phaseMsg struct {
	tag  string
	n    int
	from string
	to   []string // local parts at students.iiit.ac.in
	// reach are the mailboxes the message is for, when not to (a list)
	reach []string
	// start is before the connection, end after the 250 to DATA; err
	// is the failure of the last try (nil: accepted).
	start, end time.Time
	err        error
}

func (m *phaseMsg) messageID() string {
	return fmt.Sprintf("<phase-%s-%d@outside.example>", m.tag, m.n)
}

func (m *phaseMsg) reached() []string {
	if m.reach != nil {
		return m.reach
	}
	return m.to
}

func (m *phaseMsg) rcpts() []string {
	out := make([]string, len(m.to))
	for i, u := range m.to {
		out[i] = u + "@" + seedDomain
	}
	return out
}

func (m *phaseMsg) body() string {
	return fmt.Sprintf("From: %s\r\nTo: %s\r\nSubject: phase %s %d\r\nMessage-ID: %s\r\n\r\nMessage %d.\r\n",
		m.from, strings.Join(m.rcpts(), ", "), m.tag, m.n, m.messageID(), m.n)
}

// send submits m to the primary, trying again (for up to 30 s) while it
// cannot have been accepted (no connection, or cut before the end of
// DATA), as a client waits out a restart. A failure after the end of
// DATA leaves the message's fate unknown: no retry then.
func (n *phaseNet) send(m *phaseMsg) {
	if m.from == "" {
		m.from = "sender@outside.example"
	}
	m.start = time.Now()
	for {
		var sentAll bool
		sentAll, m.err = sendOnce(n.primary.Addr(), m.from, m.rcpts(), m.body())
		if m.err == nil || sentAll || time.Since(m.start) > 30*time.Second {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	m.end = time.Now()
}

// sendOnce is one SMTP transaction; sentAll says the end of DATA was
// sent, after which the server may have taken the message whatever
// the error.
func sendOnce(addr, from string, to []string, body string) (sentAll bool, err error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return false, err
	}
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	c := smtp.NewClient(conn)
	defer c.Close()
	if err := c.Hello("client.test.example"); err != nil {
		return false, err
	}
	if err := c.Mail(from, nil); err != nil {
		return false, err
	}
	for _, r := range to {
		if err := c.Rcpt(r, nil); err != nil {
			return false, err
		}
	}
	w, err := c.Data()
	if err != nil {
		return false, err
	}
	if _, err := io.WriteString(w, body); err != nil {
		return false, err
	}
	// Close writes the end of DATA and reads the reply.
	if err := w.Close(); err != nil {
		return true, err
	}
	c.Quit()
	return true, nil
}

// mustSend is send, failing the test when the message was not accepted.
func (n *phaseNet) mustSend(m *phaseMsg) {
	n.t.Helper()
	n.send(m)
	if m.err != nil {
		n.t.Fatalf("sending %s: %v", m.messageID(), m.err)
	}
}

// inStore counts the transactions that put message id into user's
// mailbox (user+extension is user's).
func (n *phaseNet) inStore(user, id string) int {
	c := 0
	for _, m := range n.store.Messages() {
		if msgID(m.Data) != id {
			continue
		}
		for _, r := range m.To {
			local, domain, _ := strings.Cut(r, "@")
			local, _, _ = strings.Cut(local, "+")
			if strings.EqualFold(local, user) && strings.EqualFold(domain, seedDomain) {
				c++
			}
		}
	}
	return c
}

// atGoogle counts the transactions that gave "Google" message id for
// user.
func (n *phaseNet) atGoogle(user, id string) int {
	if n.google == nil {
		return 0
	}
	return len(n.google.Find(id, user+"@"+seedDomain))
}

func msgID(data string) string {
	if sm := messageIDHeader.FindStringSubmatch(data); sm != nil {
		return sm[1]
	}
	return ""
}

// drain brings everything queued to its end: it flushes both queues
// every second until both are empty (bounded).
func (n *phaseNet) drain(timeout time.Duration) {
	n.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		n.primary.Run("", "queue", "flush")
		if n.relay.Running() {
			n.relay.Run("", "queue", "flush")
		}
		if queueEmpty(n.primary) && (!n.relay.Running() || queueEmpty(n.relay)) {
			return
		}
		if time.Now().After(deadline) {
			out, _ := n.primary.Run("", "queue", "list")
			rout, _ := n.relay.Run("", "queue", "list")
			n.t.Fatalf("queues not empty after %v:\nprimary:\n%s\nrelay:\n%s", timeout, out, rout)
		}
		time.Sleep(time.Second)
	}
}

// placement is where a message must be for one user: in the mailbox (store),
// at the provider (google); -1 is "0 or 1" (a message accepted while
// the switch happened, which either phase may finish).
type placement struct{ store, google int }

func (n *phaseNet) check(m *phaseMsg, user string, w placement) {
	n.t.Helper()
	s, g := n.inStore(user, m.messageID()), n.atGoogle(user, m.messageID())
	ok := func(got, want int) bool { return got == want || want == -1 && (got == 0 || got == 1) }
	if !ok(s, w.store) || !ok(g, w.google) {
		n.t.Errorf("%s to %s (sent %s..%s): %d in the mailbox, %d at the provider; want %s and %s",
			m.messageID(), user, m.start.Format("15:04:05.000"), m.end.Format("15:04:05.000"), s, g, wantText(w.store), wantText(w.google))
	}
}

func wantText(n int) string {
	if n == -1 {
		return "0 or 1"
	}
	return fmt.Sprint(n)
}

// noStrays fails the test when "Google" or the store got a transaction
// for a Message-ID the test did not send to it (a notice, a bounce), or
// when the provider got more transactions than expected.
func (n *phaseNet) noStrays(msgs []*phaseMsg, googleWant int) {
	n.t.Helper()
	ids := map[string]bool{}
	for _, m := range msgs {
		ids[m.messageID()] = true
	}
	var stray []string
	for _, m := range n.google.Messages() {
		if !ids[m.MessageID] {
			stray = append(stray, fmt.Sprintf("google: %s to %v", m.MessageID, m.To))
		}
	}
	for _, m := range n.store.Messages() {
		if id := msgID(m.Data); !ids[id] {
			stray = append(stray, fmt.Sprintf("mailbox: %s to %v", id, m.To))
		}
	}
	if len(stray) > 0 {
		n.t.Errorf("%d transactions the test did not send:\n%s", len(stray), strings.Join(stray, "\n"))
	}
	if googleWant >= 0 {
		if got := len(n.google.Messages()); got != googleWant {
			n.t.Errorf("the provider got %d transactions, want %d", got, googleWant)
		}
	}
}

// 1. dual -> forward under load. The primary copies with
// mailbox_bcc_maps; the relay, the copies' next hop, is down, so every
// copy and every forward waits in the primary's queue; user1's mailbox
// defers too, so user1's mail accepted in dual is delivered locally only
// after the switch. 300 messages go in from four clients at once; half
// way, main.cf says dual_delivery_phase = forward and the primary is
// reloaded (or restarted). Then the relay comes back and the queues
// drain. A message acknowledged before the switch began must be in its
// mailbox and once at the provider (dual); one sent after the switch was
// acknowledged only at the provider (forward); one in flight either way;
// none twice at the provider, none nowhere. user4, not in the copy map,
// is never affected.
//
// With recipient_bcc_maps (reloaded) as well: there the phase is applied
// when the message is accepted. And back (forward -> dual, a rollback):
// what was accepted in forward stays forwarded, with no mailbox.
func TestPhaseSwitchUnderLoad(t *testing.T) {
	for _, c := range []loadCase{
		{bcc: "mailbox_bcc_maps", from: "dual", to: "forward"},
		{bcc: "mailbox_bcc_maps", from: "dual", to: "forward", restart: true},
		{bcc: "recipient_bcc_maps", from: "dual", to: "forward"},
		{bcc: "mailbox_bcc_maps", from: "forward", to: "dual"},
	} {
		t.Run(c.name(), func(t *testing.T) { phaseSwitchUnderLoad(t, c) })
	}
}

// loadCase is one switch under load.
type loadCase struct {
	bcc      string // the copy map: recipient_bcc_maps or mailbox_bcc_maps
	from, to string // dual_delivery_phase before and after
	restart  bool   // stop and start rather than reload
	oneBox   bool   // phaseOpts.oneBox
}

func (c loadCase) name() string {
	how := "reload"
	if c.restart {
		how = "restart"
	}
	n := c.bcc + "/" + c.from + "_to_" + c.to + "/" + how
	if c.oneBox {
		n = "onebox/" + n
	}
	return n
}

// phaseWant is where a user's mail goes in each phase.
var phaseWant = map[string]placement{"off": {1, 0}, "dual": {1, 1}, "forward": {0, 1}}

// either is what a message accepted during a switch from a to b may
// show: what both phases agree on, else 0 or 1.
func either(a, b placement) placement {
	w := a
	if a.store != b.store {
		w.store = -1
	}
	if a.google != b.google {
		w.google = -1
	}
	return w
}

func phaseSwitchUnderLoad(t *testing.T, c loadCase) {
	bcc, restart, oneBox := c.bcc, c.restart, c.oneBox
	other := "recipient_bcc_maps"
	if bcc == other {
		other = "mailbox_bcc_maps"
	}
	n := newPhaseNet(t, phaseOpts{relayDown: true, oneBox: oneBox,
		primary: fmt.Sprintf("%s =\n%s = hash:$config_directory/bcc_map_to_relay\ndual_delivery_phase = %s\n", other, bcc, c.from)})
	n.store.SetRcptErr("user1@"+seedDomain, &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 2, 2}, Message: "Mailbox is full, try again later"})

	const total, clients = 300, 4
	users := []string{"user1", "user2", "user3", "user4"}
	tag := "load-" + bcc + "-" + c.from
	if restart {
		tag = "restart-" + bcc + "-" + c.from
	}
	if oneBox {
		tag = "onebox-" + tag
	}
	msgs := make([]*phaseMsg, total)
	for i := range msgs {
		msgs[i] = &phaseMsg{tag: tag, n: i, to: []string{users[i%len(users)]}}
	}
	var next atomic.Int64
	half := make(chan struct{})
	var wg sync.WaitGroup
	// At most 100 messages a second, so that a switch slowed down by a
	// busy machine still has the second half of the load after it.
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				<-tick.C
				i := int(next.Add(1)) - 1
				if i >= total {
					return
				}
				if i == total/2 {
					close(half)
				}
				n.send(msgs[i])
			}
		}()
	}
	<-half
	switchStart := time.Now()
	n.setParams("dual_delivery_phase", c.to)
	if restart {
		n.primary.Stop()
		n.primary.Start()
	} else {
		n.reload()
	}
	switchEnd := time.Now()
	wg.Wait()
	t.Logf("switch (%s) from %s to %s; sends from %s to %s", tag, switchStart.Format("15:04:05.000"), switchEnd.Format("15:04:05.000"),
		msgs[0].start.Format("15:04:05.000"), msgs[total-1].end.Format("15:04:05.000"))

	var before, after, during, unknown int
	for _, m := range msgs {
		switch {
		case m.err != nil:
			unknown++
			t.Logf("%s: not acknowledged: %v", m.messageID(), m.err)
		case m.end.Before(switchStart):
			before++
		case m.start.After(switchEnd):
			after++
		default:
			during++
		}
	}
	t.Logf("%d messages acknowledged before the switch, %d sent after it, %d in flight, %d not acknowledged", before, after, during, unknown)
	if before < total/6 || after < total/6 {
		t.Fatalf("the switch was not in the middle of the load: %d before, %d after", before, after)
	}
	if unknown > total/10 {
		t.Errorf("%d of %d messages were not acknowledged", unknown, total)
	}

	// Everything for the provider waits on the primary now; user1's
	// dual mail waits for its mailbox.
	n.store.SetRcptErr("user1@"+seedDomain, nil)
	if oneBox {
		n.startGoogle()
	} else {
		n.relay.Start()
	}
	t0 := time.Now()
	n.drain(90 * time.Second)
	t.Logf("queues drained in %v", time.Since(t0).Round(time.Millisecond))
	settle()

	googleWant := 0
	for _, m := range msgs {
		u := m.to[0]
		var w placement
		switch {
		case u == "user4":
			w = placement{1, 0}
			if m.err != nil {
				w = placement{-1, 0}
			}
		case m.err != nil:
			w = placement{-1, -1}
		case m.end.Before(switchStart):
			w = phaseWant[c.from]
		case m.start.After(switchEnd):
			w = phaseWant[c.to]
		default:
			w = either(phaseWant[c.from], phaseWant[c.to])
		}
		if w.google == -1 || googleWant == -1 {
			googleWant = -1
		} else {
			googleWant += w.google
		}
		n.check(m, u, w)
		// Never nowhere: a message accepted for a user in the map is in
		// the mailbox or at the provider, whatever the phase.
		if m.err == nil && n.inStore(u, m.messageID())+n.atGoogle(u, m.messageID()) == 0 {
			t.Errorf("%s to %s was lost", m.messageID(), u)
		}
	}
	n.noStrays(msgs, googleWant)
	if t.Failed() {
		return
	}
	checkLedgerPhases(t, n, msgs, c, switchStart, switchEnd)
}

// 4. The ledger records with each message the settings it was accepted
// with: `mailtee report --format json` gives each message's phase field,
// the phase before the switch for those acknowledged before it, the
// phase after it for those sent after it, and a restart does not
// relabel them.
func checkLedgerPhases(t *testing.T, n *phaseNet, msgs []*phaseMsg, c loadCase, switchStart, switchEnd time.Time) {
	t.Helper()
	needLedger(t, n.primary)
	byID := map[string]string{}
	var r *report.Report
	waitUntil(t, "every message in the primary's ledger, every delivery done", 30*time.Second, func() bool {
		r = reportJSON(t, n.primary)
		for _, m := range r.Messages {
			byID[m.MessageID] = m.Phase
		}
		for _, m := range msgs {
			if _, ok := byID[m.messageID()]; m.err == nil && !ok {
				return false
			}
		}
		return r.Reconciliation.Delivered == r.Reconciliation.Required
	})
	// Every mailbox delivery, copy and forward the test counted is one
	// the ledger required: a forward is a delivery of its own.
	want := 0
	for _, m := range msgs {
		if m.err != nil {
			continue
		}
		for _, u := range m.to {
			want += n.inStore(u, m.messageID()) + n.atGoogle(u, m.messageID())
		}
	}
	if r.Reconciliation.Required != want || len(r.Misses) != 0 {
		t.Errorf("the ledger requires %d deliveries (%d delivered, %d misses); the mailboxes and the provider hold %d",
			r.Reconciliation.Required, r.Reconciliation.Delivered, len(r.Misses), want)
	}
	for _, m := range msgs {
		if m.err != nil {
			continue
		}
		got := phaseOf(byID[m.messageID()])
		var w string
		switch {
		case m.end.Before(switchStart):
			w = c.from
		case m.start.After(switchEnd):
			w = c.to
		default:
			if got != c.from && got != c.to {
				t.Errorf("%s: phase field %q, want %s or %s", m.messageID(), byID[m.messageID()], c.from, c.to)
			}
			continue
		}
		if got != w {
			t.Errorf("%s: ledger phase field %q names phase %q, want %q", m.messageID(), byID[m.messageID()], got, w)
		}
	}
}

// phaseLine picks dual_delivery_phase's value out of the ledger's phase
// field ("phase=dual; mailbox_bcc_maps=...; settings=ID": the settings
// a message was accepted with).
var phaseLine = regexp.MustCompile(`(?:^|;\s*)(?:dual_delivery_)?phase\s*=\s*(off|dual|forward)\b`)

func phaseOf(field string) string {
	if sm := phaseLine.FindStringSubmatch(field); sm != nil {
		return sm[1]
	}
	return ""
}

// 2. A switch of the copy maps with messages queued. The mailboxes defer
// (the store answers 4xx), so every message waits for local delivery;
// then main.cf moves from recipient_bcc_maps to mailbox_bcc_maps (the
// issue's bug: Postfix sent the provider the same message twice, once
// for the queued recipient_bcc_maps copy and once from local delivery
// under the new mailbox_bcc_maps) or back (where local delivery under
// the new settings would make no copy at all), the primary is reloaded,
// and the mailboxes come back. Each message is once in its mailbox and
// once at the provider; so is one sent after the switch.
func TestPhaseCopyMapSwitchQueued(t *testing.T) {
	const rbcc, mbcc = "recipient_bcc_maps", "mailbox_bcc_maps"
	for _, c := range []struct{ from, to string }{{rbcc, mbcc}, {mbcc, rbcc}} {
		t.Run(c.from+"_to_"+c.to, func(t *testing.T) {
			n := newPhaseNet(t, phaseOpts{primary: fmt.Sprintf("%s =\n%s = hash:$config_directory/bcc_map_to_relay\n", c.to, c.from)})
			n.store.SetDataErr(&smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Temporary failure, try again later"})
			var msgs []*phaseMsg
			users := []string{"user1", "user2", "user3", "user4"}
			for i := 0; i < 12; i++ {
				m := &phaseMsg{tag: c.from, n: i, to: []string{users[i%len(users)]}}
				if i%4 == 3 {
					// One message to three users in the map at once.
					m.to = []string{"user1", "user2", "user3"}
				}
				n.mustSend(m)
				msgs = append(msgs, m)
			}
			// Every message has tried its mailbox once (and failed).
			waitUntil(t, "the mailboxes' deferrals", 30*time.Second, func() bool {
				return strings.Count(n.primary.Log.String(), "status=deferred (") >= len(msgs)
			})
			if c.from == rbcc {
				// recipient_bcc_maps copies leave at once: they are at
				// the provider before the switch.
				waitUntil(t, "the recipient_bcc_maps copies", 30*time.Second, func() bool {
					for _, m := range msgs {
						for _, u := range m.to {
							if u != "user4" && n.atGoogle(u, m.messageID()) != 1 {
								return false
							}
						}
					}
					return true
				})
			}
			n.setParams(c.from, "", c.to, "hash:$config_directory/bcc_map_to_relay")
			n.reload()
			after := &phaseMsg{tag: c.from, n: 100, to: []string{"user1", "user4"}}
			n.mustSend(after)
			msgs = append(msgs, after)
			n.store.SetDataErr(nil)
			n.drain(60 * time.Second)
			settle()
			googleWant := 0
			for _, m := range msgs {
				for _, u := range m.to {
					if u == "user4" {
						n.check(m, u, placement{1, 0})
						continue
					}
					googleWant++
					n.check(m, u, placement{1, 1})
				}
			}
			n.noStrays(msgs, googleWant)
		})
	}
}

// 2b. The tables edited with mail queued: the promise holds for the
// tables' contents, not only for main.cf's lines. With mailbox_bcc_maps
// and the mailboxes deferring, the cohort file moves user1 to forward
// and user2 back to dual, and user3 leaves the copy map. Mail accepted
// before is finished as it was accepted (user1 in the mailbox and at
// the provider, user2 only at the provider, user3 in both), mail
// accepted after follows the new tables.
func TestPhaseTablesEditedQueued(t *testing.T) {
	n := newPhaseNet(t, phaseOpts{
		primary: "recipient_bcc_maps =\nmailbox_bcc_maps = hash:$config_directory/bcc_map_to_relay\ndual_delivery_phase_maps = hash:$config_directory/phases\n",
		files:   map[string]string{"phases": "user2 forward\n"},
	})
	n.store.SetDataErr(&smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Temporary failure, try again later"})
	batch := func(tag string) []*phaseMsg {
		var out []*phaseMsg
		for i, to := range [][]string{{"user1"}, {"user2"}, {"user3"}, {"user1", "user2", "user3"}} {
			m := &phaseMsg{tag: tag, n: i, to: to}
			n.mustSend(m)
			out = append(out, m)
		}
		return out
	}
	before := batch("edit-before")
	waitUntil(t, "the mailboxes' deferrals and user2's forwards", 30*time.Second, func() bool {
		return strings.Count(n.primary.Log.String(), "status=deferred (") >= 4 &&
			n.atGoogle("user2", before[1].messageID()) == 1 && n.atGoogle("user2", before[3].messageID()) == 1
	})
	n.primary.WriteFile("phases", "user1 forward\nuser2 dual\n")
	n.primary.WriteFile("bcc_map_to_relay", strings.Replace(phaseBCC, "user3:  user3@relay.students.iiit.ac.in\n", "", 1))
	n.reload()
	after := batch("edit-after")
	n.store.SetDataErr(nil)
	n.drain(60 * time.Second)
	settle()
	googleWant := 0
	for _, c := range []struct {
		msgs  []*phaseMsg
		wants map[string]placement
	}{
		{before, map[string]placement{"user1": {1, 1}, "user2": {0, 1}, "user3": {1, 1}}},
		{after, map[string]placement{"user1": {0, 1}, "user2": {1, 1}, "user3": {1, 0}}},
	} {
		for _, m := range c.msgs {
			for _, u := range m.to {
				n.check(m, u, c.wants[u])
				googleWant += c.wants[u].google
			}
		}
	}
	n.noStrays(append(before, after...), googleWant)
}

// 2c. A held message across a switch and a restart: held in dual
// (`mailtee queue hold`), the phase switched to forward, the primary
// restarted (which removes the settings records no queued message
// uses), then released. It is finished in dual: once in the mailbox,
// once at the provider.
func TestPhaseHeldAcrossSwitchAndRestart(t *testing.T) {
	n := newPhaseNet(t, phaseOpts{primary: "recipient_bcc_maps =\nmailbox_bcc_maps = hash:$config_directory/bcc_map_to_relay\ndual_delivery_phase = dual\n"})
	n.store.SetDataErr(&smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Temporary failure, try again later"})
	m := &phaseMsg{tag: "held", n: 1, to: []string{"user1"}}
	n.mustSend(m)
	n.primary.WaitLog("status=deferred (")
	out, err := n.primary.Run("", "queue", "list")
	ids := harness.QueueIDs(out)
	if err != nil || len(ids) != 1 {
		t.Fatalf("queue list: %v\n%s", err, out)
	}
	if out, err := n.primary.Run("", "queue", "hold", ids[0]); err != nil {
		t.Fatalf("queue hold: %v\n%s", err, out)
	}
	n.setParams("dual_delivery_phase", "forward")
	n.primary.Stop()
	n.primary.Start()
	n.store.SetDataErr(nil)
	if out, err := n.primary.Run("", "queue", "release", ids[0]); err != nil {
		t.Fatalf("queue release: %v\n%s", err, out)
	}
	after := &phaseMsg{tag: "held", n: 2, to: []string{"user1"}}
	n.mustSend(after)
	n.drain(30 * time.Second)
	settle()
	n.check(m, "user1", placement{1, 1})
	n.check(after, "user1", placement{0, 1})
	n.noStrays([]*phaseMsg{m, after}, 2)
}

// 3. A pilot cohort: dual_delivery_phase = dual for everyone, and
// dual_delivery_phase_maps moves user1 (keyed by its local part) and
// user2 (by its full address) to forward and rolls user5 back to off.
// user1 and user2 get their mail only at the provider, user3 in the
// mailbox and at the provider, user4 (not in the copy map) only in the
// mailbox, user5 only in the mailbox. For each copy map, and for one
// message to all of them at once as well as one each.
//
// Who hears of a failure follows the phase: user6 is in the copy map
// but unknown at the relay, which refuses its address. In dual the
// refused copy is reported to postmaster (alice), never to the sender;
// in forward it is the user's mail, and the sender gets the bounce.
func TestPhasePilotCohort(t *testing.T) {
	for _, bcc := range []string{"recipient_bcc_maps", "mailbox_bcc_maps"} {
		t.Run(bcc, func(t *testing.T) {
			other := "mailbox_bcc_maps"
			if bcc == other {
				other = "recipient_bcc_maps"
			}
			n := newPhaseNet(t, phaseOpts{
				primary: fmt.Sprintf("%s =\n%s = hash:$config_directory/bcc_map_to_relay\ndual_delivery_phase = dual\ndual_delivery_phase_maps = hash:$config_directory/phases\nrecipient_delimiter = +\n", other, bcc),
				files:   map[string]string{"phases": "user1 forward\nuser2@students.iiit.ac.in forward\nuser5 off\n"},
			})
			all := []string{"user1", "user2", "user3", "user4", "user5"}
			var msgs []*phaseMsg
			for i, u := range all {
				m := &phaseMsg{tag: "pilot-" + bcc, n: i, to: []string{u}}
				n.mustSend(m)
				msgs = append(msgs, m)
			}
			together := &phaseMsg{tag: "pilot-" + bcc, n: 10, to: all}
			n.mustSend(together)
			msgs = append(msgs, together)
			if bcc == "mailbox_bcc_maps" {
				// A list and one of its members: mailbox_bcc_maps sees
				// the members, each once. (recipient_bcc_maps sees only
				// the list's address, so the members' phases do not
				// apply to list mail; README says so.)
				list := &phaseMsg{tag: "pilot-" + bcc, n: 11, to: []string{"list", "user1"}, reach: []string{"user1", "user3"}}
				n.mustSend(list)
				msgs = append(msgs, list)
			}
			// Addresses as senders write them: upper case, with an
			// extension; the cohort table and the copy map are looked
			// up as Postfix looks addresses up.
			odd := &phaseMsg{tag: "pilot-" + bcc, n: 12, to: []string{"USER2", "user1+news", "user3+news"}, reach: []string{"user2", "user1", "user3"}}
			n.mustSend(odd)
			msgs = append(msgs, odd)
			wants := map[string]placement{"user1": {0, 1}, "user2": {0, 1}, "user3": {1, 1}, "user4": {1, 0}, "user5": {1, 0}}
			waitUntil(t, "the cohort's deliveries", 30*time.Second, func() bool {
				for _, m := range msgs {
					for _, u := range m.reached() {
						if wants[u].store > n.inStore(u, m.messageID()) || wants[u].google > n.atGoogle(u, m.messageID()) {
							return false
						}
					}
				}
				return true
			})
			n.drain(30 * time.Second)
			settle()
			googleWant := 0
			for _, m := range msgs {
				for _, u := range m.reached() {
					n.check(m, u, wants[u])
					googleWant += wants[u].google
				}
			}
			n.noStrays(msgs, googleWant)

			// user6 refused at the relay: in dual, postmaster is told;
			// in forward (the cohort file changed, reloaded), the
			// sender, a local user here (user4), gets the bounce.
			dual := &phaseMsg{tag: "refused-" + bcc, n: 1, from: "user4@" + seedDomain, to: []string{"user6"}}
			n.mustSend(dual)
			waitUntil(t, "the notice of the refused copy to postmaster", 30*time.Second, func() bool {
				return len(n.notices("alice", dual.messageID())) == 1
			})
			n.primary.WriteFile("phases", "user1 forward\nuser2@students.iiit.ac.in forward\nuser5 off\nuser6 forward\n")
			n.reload()
			fwd := &phaseMsg{tag: "refused-" + bcc, n: 2, from: "user4@" + seedDomain, to: []string{"user6"}}
			n.mustSend(fwd)
			waitUntil(t, "the bounce of the refused forward to the sender", 30*time.Second, func() bool {
				return len(n.notices("user4", fwd.messageID())) == 1
			})
			n.drain(30 * time.Second)
			settle()
			if got := n.notices("user4", dual.messageID()); len(got) != 0 {
				t.Errorf("the sender was told of a refused copy (dual): %d notices", len(got))
			}
			if got := n.notices("alice", fwd.messageID()); len(got) != 0 {
				t.Errorf("postmaster, not the sender, was told of a refused forward: %d notices", len(got))
			}
			if got := n.notices("alice", dual.messageID()); len(got) != 1 {
				t.Errorf("postmaster got %d notices of the refused copy, want 1", len(got))
			}
			if got := n.notices("user4", fwd.messageID()); len(got) != 1 {
				t.Errorf("the sender got %d bounces of the refused forward, want 1", len(got))
			}
			if c := n.inStore("user6", dual.messageID()); c != 1 {
				t.Errorf("user6's dual mail: %d in the mailbox, want 1", c)
			}
			if c := n.inStore("user6", fwd.messageID()); c != 0 {
				t.Errorf("user6's forward mail: %d in the mailbox, want 0", c)
			}
		})
	}
}

// notices returns the store's messages to user that report on message
// id: delivery status notifications quote the original's headers.
func (n *phaseNet) notices(user, id string) []string {
	var out []string
	for _, m := range n.store.Messages() {
		if msgID(m.Data) == id || !strings.Contains(m.Data, id) {
			continue
		}
		for _, r := range m.To {
			if strings.EqualFold(r, user+"@"+seedDomain) {
				out = append(out, m.Data)
			}
		}
	}
	sort.Strings(out)
	return out
}
