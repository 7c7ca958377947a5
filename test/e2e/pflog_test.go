package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/mailtee/mailtee/internal/ledger"
	"github.com/mailtee/mailtee/internal/pflog"
	"github.com/mailtee/mailtee/internal/report"
	"github.com/mailtee/mailtee/test/internal/harness"
)

// A real Postfix primary's log, read by pflog.Load with the primary's
// main.cf and tables, must give the records of what its next hops got:
// which deliveries are copies, their states, and the queue IDs the next
// hop named ("250 2.0.0 Ok: queued as ID").

// idSink is an SMTP next hop on loopback that answers each message with
// "250 2.0.0 Ok: queued as SINKnnnnnn", refuses the recipients in reject
// with 550, and records what it accepted under that ID. It speaks plain
// SMTP line by line (no library) so that its replies are exactly these.
type idSink struct {
	t      *testing.T
	l      net.Listener
	reject map[string]bool // lower-cased addresses answered 550 at RCPT

	mu   sync.Mutex
	n    int
	msgs map[string]sunkMsg // by the queue ID it answered
}

type sunkMsg struct {
	From string
	To   []string
	Data string
}

func newIDSink(t *testing.T, addr string, reject ...string) *idSink {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s := &idSink{t: t, l: l, reject: map[string]bool{}, msgs: map[string]sunkMsg{}}
	for _, r := range reject {
		s.reject[strings.ToLower(r)] = true
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go s.serve(c)
		}
	}()
	return s
}

func (s *idSink) addr() (string, int) {
	a := s.l.Addr().(*net.TCPAddr)
	return a.IP.String(), a.Port
}

func (s *idSink) serve(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	r := bufio.NewReader(c)
	say := func(line string) { fmt.Fprintf(c, "%s\r\n", line) }
	say("220 sink.test ESMTP")
	var from string
	var to []string
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		verb := strings.ToUpper(strings.SplitN(line, " ", 2)[0])
		arg := func(prefix string) string {
			v := line[min(len(prefix), len(line)):]
			v = strings.TrimSpace(v)
			if i := strings.IndexByte(v, '>'); i >= 0 {
				v = v[:i]
			}
			return strings.TrimPrefix(v, "<")
		}
		switch verb {
		case "EHLO", "HELO":
			say("250 sink.test")
		case "MAIL":
			from, to = arg("MAIL FROM:"), nil
			say("250 2.1.0 Ok")
		case "RCPT":
			a := arg("RCPT TO:")
			if s.reject[strings.ToLower(a)] {
				say("550 5.1.1 <" + a + ">: Recipient address rejected: User unknown in virtual mailbox table")
				continue
			}
			to = append(to, a)
			say("250 2.1.5 Ok")
		case "DATA":
			if len(to) == 0 {
				say("554 5.5.1 Error: no valid recipients")
				continue
			}
			say("354 End data with <CR><LF>.<CR><LF>")
			var data strings.Builder
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" || l == ".\n" {
					break
				}
				data.WriteString(l)
			}
			s.mu.Lock()
			s.n++
			id := fmt.Sprintf("SINK%06d", s.n)
			s.msgs[id] = sunkMsg{From: from, To: to, Data: data.String()}
			s.mu.Unlock()
			say("250 2.0.0 Ok: queued as " + id)
			from, to = "", nil
		case "RSET":
			from, to = "", nil
			say("250 2.0.0 Ok")
		case "NOOP":
			say("250 2.0.0 Ok")
		case "QUIT":
			say("221 2.0.0 Bye")
			return
		default:
			say("502 5.5.2 Error: command not recognized")
		}
	}
}

// received returns a copy of what the sink accepted, by queue ID.
func (s *idSink) received() map[string]sunkMsg {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]sunkMsg, len(s.msgs))
	for k, v := range s.msgs {
		out[k] = v
	}
	return out
}

// pflogMessage is a message with a Message-ID of its own, to find it in
// the records.
func pflogMessage(n int) string {
	return fmt.Sprintf("From: someone@outside.example\r\nTo: users\r\nSubject: pflog %d\r\nMessage-ID: <pflog%d@outside.example>\r\n\r\nHello.\r\n", n, n)
}

// The Postfix primary of the seed, run the way that works on Postfix
// (interop_test.go's (A)): students.example is a virtual mailbox domain
// (virtual(8) delivers as the postfix user: Postfix's local(8) needs real
// Unix users), recipient_bcc_maps copies user1..user3 to
// userN@relay.example, which transport_maps sends to a sink on
// loopback. The sink refuses user3's copy with 550; user4 has no copy.
func startPflogPrimary(t *testing.T, relayHop string) *postfixInstance {
	t.Helper()
	port := freePortOn(t, primaryIP)
	pf := newPostfix(t, primaryIP, port)
	pf.start(fmt.Sprintf(`myhostname = mx.students.example
mydomain = students.example
myorigin = students.example
mydestination = lists.example
alias_maps = hash:$config_directory/aliases
alias_database = hash:$config_directory/aliases
virtual_mailbox_domains = students.example
virtual_mailbox_base = %[1]s
virtual_mailbox_maps = hash:$config_directory/vmailbox
virtual_uid_maps = static:%[2]d
virtual_gid_maps = static:%[3]d
virtual_minimum_uid = %[2]d
recipient_bcc_maps = hash:$config_directory/bcc
transport_maps = hash:$config_directory/transport
`, pf.path("vmail"), pf.uid, pf.gid), map[string]string{
		// local(8) forwards the list to a mailbox and an outside address.
		"aliases":  "team user4@students.example, ext@relay.example\n",
		"vmailbox": "user1@students.example user1/\nuser2@students.example user2/\nuser3@students.example user3/\nuser4@students.example user4/\n",
		// A bare key (myorigin's domain) and full addresses.
		"bcc":       "user1 user1@relay.example\nuser2@students.example user2@relay.example\nuser3@students.example user3@relay.example\n",
		"transport": "relay.example smtp:" + relayHop + "\n",
	})
	return pf
}

// sendPostfix submits a message to the Postfix primary, bounded: once
// a CI run hung 7 minutes in a session Postfix's smtpd never answered.
// A session that failed before DATA's 250 queued nothing and is tried
// again (at most 3 times).
func sendPostfix(t *testing.T, addr, from string, to []string, body string) error {
	t.Helper()
	var err error
	for try := 1; try <= 3; try++ {
		err = harness.Client{DialTimeout: 10 * time.Second, Deadline: time.Minute, IgnoreQuit: true}.Send(addr, from, to, body)
		if err == nil {
			return nil
		}
		t.Logf("sending to the Postfix primary, try %d: %v", try, err)
	}
	return err
}

func TestPflogPostfixPrimary(t *testing.T) {
	requirePostfix(t)
	sinkAddr := "127.0.0.1:0"
	sk := newIDSink(t, sinkAddr, "user3@relay.example")
	ip, port := sk.addr()
	pf := startPflogPrimary(t, fmt.Sprintf("[%s]:%d", ip, port))

	sends := [][]string{
		{"user1@students.example"},
		{"user1@students.example", "user2@students.example"},
		{"user3@students.example"},
		{"user4@students.example"},
	}
	for i, to := range sends {
		if err := sendPostfix(t, pf.addr(), "someone@outside.example", to, pflogMessage(i+1)); err != nil {
			t.Fatalf("sending message %d to the Postfix primary: %v", i+1, err)
		}
	}
	// Message 5, to an alias: local(8) forwards it as a new message.
	team := len(sends) + 1
	if err := sendPostfix(t, pf.addr(), "someone@outside.example", []string{"team@lists.example"}, pflogMessage(team)); err != nil {
		t.Fatalf("sending message %d to the Postfix primary: %v", team, err)
	}
	// Each message is done when qmgr removed it (the forward too).
	waitUntil(t, "Postfix to finish the messages", 30*time.Second, func() bool {
		return strings.Count(pf.maillog(), ": removed") >= len(sends)+2
	})
	// The notice bounce(8) begins for the refused copy, and cancels.
	pf.waitLog("postfix/cleanup", "@mx.students.example>")

	r, err := pflog.Load(pf.path("maillog"), pf.etc, pflog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	lg := r.(*pflog.Log)
	if st := lg.Stats(); st.Skipped != 0 || len(st.Partial) != 0 {
		t.Errorf("stats %+v: Postfix's own maillog should read whole", st)
	}
	msgs, err := r.Messages(t.Context(), ledger.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	byMsgID := map[string]ledger.Message{}
	for _, m := range msgs {
		if m.Parent == "" { // a forward has its parent's Message-ID
			byMsgID[m.MessageID] = m
		}
	}
	got := sk.received()
	seenIDs := map[string]bool{}
	for i, to := range sends {
		m, ok := byMsgID[fmt.Sprintf("<pflog%d@outside.example>", i+1)]
		if !ok {
			t.Fatalf("message %d not found in the records: %+v", i+1, msgs)
		}
		if m.From != "someone@outside.example" || !strings.Contains(m.Client, "[127.0.0.1]") || m.Node == "" || m.Parent != "" || m.Finished.IsZero() {
			t.Errorf("message %d: %+v", i+1, m)
		}
		rcpts := slices.Sorted(slices.Values(m.Rcpts))
		if !slices.Equal(rcpts, to) {
			t.Errorf("message %d: original recipients %q, want %q", i+1, m.Rcpts, to)
		}
		var locals, copies []string
		for _, d := range m.Deliveries {
			if !d.Copy {
				locals = append(locals, d.Rcpt)
				if d.Status != ledger.Sent || d.Transport != "virtual" {
					t.Errorf("message %d: local delivery %+v", i+1, d)
				}
				continue
			}
			copies = append(copies, d.Rcpt)
			local, _, _ := strings.Cut(d.Rcpt, "@")
			if d.Orig != local+"@students.example" {
				t.Errorf("message %d: copy %s has Orig %q", i+1, d.Rcpt, d.Orig)
			}
			if d.Rcpt == "user3@relay.example" {
				if d.Status != ledger.Bounced || d.DSN != "5.1.1" || !strings.Contains(d.Reply, "550 5.1.1 <user3@relay.example>: Recipient address rejected") || d.RemoteID != "" {
					t.Errorf("message %d: refused copy %+v", i+1, d)
				}
				continue
			}
			sm, ok := got[d.RemoteID]
			if d.Status != ledger.Sent || !ok {
				t.Errorf("message %d: copy %+v: the sink has no message %q", i+1, d, d.RemoteID)
				continue
			}
			seenIDs[d.RemoteID] = true
			if !slices.Contains(sm.To, d.Rcpt) || !strings.Contains(sm.Data, fmt.Sprintf("<pflog%d@outside.example>", i+1)) {
				t.Errorf("message %d: copy %s, RemoteID %s: the sink got %+v", i+1, d.Rcpt, d.RemoteID, sm)
			}
		}
		slices.Sort(locals)
		if !slices.Equal(locals, to) {
			t.Errorf("message %d: local deliveries %q, want %q", i+1, locals, to)
		}
		var want []string
		for _, a := range to {
			if l, _, _ := strings.Cut(a, "@"); l != "user4" {
				want = append(want, l+"@relay.example")
			}
		}
		slices.Sort(copies)
		if !slices.Equal(copies, want) {
			t.Errorf("message %d: copies %q, want %q", i+1, copies, want)
		}
		if i == 2 {
			// No notice for the refused copy: Postfix gives automatic
			// BCC recipients DSN NOTIFY=NEVER (cleanup_addr_bcc);
			// bounce(8) begins the notice (cleanup logs its
			// message-id) and cancels it, which is not a message.
			if kids, _ := r.Children(t.Context(), m.Node, m.ID); len(kids) != 0 {
				t.Errorf("message 3: children %+v, want none", kids)
			}
		}
	}
	// The alias: one delivery, to it, and the forward's two.
	m := byMsgID[fmt.Sprintf("<pflog%d@outside.example>", team)]
	if len(m.Deliveries) != 1 || m.Deliveries[0].Rcpt != "team@lists.example" || m.Deliveries[0].Status != ledger.Sent ||
		m.Deliveries[0].Transport != "local" || !strings.HasPrefix(m.Deliveries[0].Reply, "forwarded as ") || !slices.Equal(m.Rcpts, []string{"team@lists.example"}) {
		t.Errorf("message %d: %+v", team, m)
	}
	kids, _ := r.Children(t.Context(), m.Node, m.ID)
	if len(kids) != 1 || kids[0].Notice || kids[0].Parent != m.ID || len(kids[0].Deliveries) != 2 {
		t.Fatalf("message %d: forwards %+v", team, kids)
	}
	for _, d := range kids[0].Deliveries {
		if d.Orig != "team@lists.example" || d.Status != ledger.Sent || d.Copy {
			t.Errorf("the forward's delivery %+v", d)
		}
		if d.Rcpt == "ext@relay.example" {
			if sm, ok := got[d.RemoteID]; !ok || !slices.Equal(sm.To, []string{"ext@relay.example"}) {
				t.Errorf("the forward's delivery %+v: the sink has %+v", d, sm)
			}
			seenIDs[d.RemoteID] = true
		}
	}
	if len(msgs) != len(sends)+2 {
		t.Errorf("%d messages in the records, want %d: %+v", len(msgs), len(sends)+2, msgs)
	}
	if st := lg.Stats(); st.NotQueued != 1 {
		t.Errorf("stats %+v: want the cancelled notice counted as not queued", st)
	}
	// Every message the sink accepted is one of the records' copies.
	for id, sm := range got {
		if !seenIDs[id] {
			t.Errorf("the sink accepted %s (%+v), which no record names", id, sm)
		}
	}
	if len(got) != 3 {
		t.Errorf("the sink accepted %d messages, want 3", len(got))
	}
	if t.Failed() {
		b, _ := os.ReadFile(pf.path("maillog"))
		t.Logf("maillog:\n%s", b)
	}
}

// pflogSeed is the whole path with a Postfix primary: Postfix (the
// seed's primary, configured the way that works on Postfix) → a mailtee
// relay running the seed's relay files with its ledger on (and
// relayExtra) → "Google", a sink that refuses user2's copy with 550. It
// sends one message each to user1, user2 and user4 (who has no copy)
// and waits until the mail has gone as far as it will.
type pflogSeed struct {
	n     *interopNet
	relay *instance
	rdir  string
	pf    *postfixInstance
	users []string
}

func newPflogSeed(t *testing.T, relayExtra string, relayFiles map[string]string) *pflogSeed {
	t.Helper()
	n := newInteropNet(t)
	n.google.SetRcptErr("user2@students.iiit.ac.in", &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "The email account that you tried to reach does not exist"})

	rdir := copySeed(t, "relay", n.common+fmt.Sprintf("inet_interfaces = %s\nqueue_directory = $config_directory/queue\ndata_directory = $config_directory/data\nmail_spool_directory = $config_directory/mail/\n", relayIP)+relayExtra, relayFiles)
	relay := &instance{T: t, Dir: rdir, Port: n.port, Log: &syncBuffer{}, Host: relayIP}
	logOnFailure(t, "relay", relay)
	relay.Start()

	pf := newPostfix(t, primaryIP, n.port)
	pf.start(fmt.Sprintf(`myhostname = students.iiit.ac.in
myorigin = students.iiit.ac.in
mydestination =
virtual_mailbox_domains = students.iiit.ac.in
virtual_mailbox_base = %[1]s
virtual_mailbox_maps = hash:$config_directory/vmailbox
virtual_uid_maps = static:%[2]d
virtual_gid_maps = static:%[3]d
virtual_minimum_uid = %[2]d
recipient_bcc_maps = hash:$config_directory/bcc_map_to_relay
# test-only: Postfix's smtp client has no resolver option
transport_maps = hash:$config_directory/transport
`, pf.path("vmail"), pf.uid, pf.gid), map[string]string{
		"vmailbox":         "user1@students.iiit.ac.in user1/\nuser2@students.iiit.ac.in user2/\nuser3@students.iiit.ac.in user3/\nuser4@students.iiit.ac.in user4/\n",
		"bcc_map_to_relay": seedBCCMapForPostfix(t),
		"transport":        fmt.Sprintf("relay.students.iiit.ac.in smtp:[%s]:%d\n", relayIP, n.port),
	})

	s := &pflogSeed{n: n, relay: relay, rdir: rdir, pf: pf, users: []string{"user1", "user2", "user4"}}
	for i, u := range s.users {
		if err := sendPostfix(t, pf.addr(), "someone@outside.example", []string{u + "@students.iiit.ac.in"}, pflogMessage(i+1)); err != nil {
			t.Fatalf("sending to the Postfix primary: %v", err)
		}
	}
	waitUntil(t, "Postfix to finish the messages", 30*time.Second, func() bool {
		return strings.Count(pf.maillog(), ": removed") >= len(s.users)
	})
	waitUntil(t, "Google's copy for user1", 30*time.Second, func() bool { return n.google.Count("user1@students.iiit.ac.in") >= 1 })
	waitUntil(t, "the relay to bounce user2's copy", 30*time.Second, func() bool {
		for _, l := range strings.Split(relay.Log.String(), "\n") {
			if strings.Contains(l, "to=<user2@students.iiit.ac.in>") && strings.Contains(l, "status=bounced") {
				return true
			}
		}
		return false
	})
	return s
}

// report runs `mailtee report -c dir --postfix-log ... --format json`
// until every copy has been followed into the relay's ledger (written in
// batches off the mail path; until then the report counts a copy by the
// primary's state: "not followed: no peer has queue ID") and returns it
// with the exit status.
func (s *pflogSeed) report(t *testing.T, dir string) (report.Report, int) {
	t.Helper()
	var rep report.Report
	var out, errOut string
	code := -1
	waitUntil(t, "a report with every delivery final", 30*time.Second, func() bool {
		cmd := exec.Command(harness.Bin, "report", "-c", dir, "--postfix-log", s.pf.path("maillog"), "--postfix-config", s.pf.etc, "--format", "json")
		var so, se strings.Builder
		cmd.Stdout, cmd.Stderr = &so, &se
		err := cmd.Run()
		out, errOut, code = so.String(), se.String(), cmd.ProcessState.ExitCode()
		if err != nil && code != 1 {
			return false
		}
		rep = report.Report{}
		if json.Unmarshal([]byte(out), &rep) != nil {
			return false
		}
		for _, m := range rep.Messages {
			for _, r := range m.Required {
				if r.Note != "" {
					return false
				}
			}
		}
		return rep.Summary.Deliveries.Pending == 0 && rep.Summary.Deliveries.Total() == 5
	})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("report (exit %d):\n%s\nstderr:\n%s", code, out, errOut)
		}
	})
	return rep, code
}

// check compares the report with the mailboxes and Google's sink.
func (s *pflogSeed) check(t *testing.T, rep report.Report, code int) {
	t.Helper()
	if code != 1 {
		t.Errorf("report exit status %d, want 1 (a miss)", code)
	}
	// 3 messages; 5 required deliveries (3 mailboxes, 2 copies); 4
	// delivered; user2's copy failed at Google.
	sm := rep.Summary
	if sm.Accepted != 3 || sm.Deliveries != (report.Counts{Delivered: 4, Failed: 1}) || sm.Copies != (report.Counts{Delivered: 1, Failed: 1}) {
		t.Errorf("summary %+v", sm)
	}
	if rc := rep.Reconciliation; rc.Required != 5 || rc.Delivered != 4 || !rc.Complete {
		t.Errorf("reconciliation %+v", rc)
	}
	if len(rep.Misses) != 1 || !rep.Misses[0].Copy || !strings.Contains(rep.Misses[0].Reply, "550") ||
		!strings.Contains(rep.Misses[0].Reply, "The email account that you tried to reach does not exist") {
		t.Errorf("misses %+v, want user2's copy with Google's 550", rep.Misses)
	}
	for i, u := range s.users {
		var m *report.Message
		for j := range rep.Messages {
			if rep.Messages[j].MessageID == fmt.Sprintf("<pflog%d@outside.example>", i+1) {
				m = &rep.Messages[j]
			}
		}
		if m == nil {
			t.Errorf("message %d (to %s) is not in the report", i+1, u)
			continue
		}
		if c := s.pf.vmailMessages(u); c != 1 {
			t.Errorf("%s's mailbox on the Postfix primary has %d messages, want 1", u, c)
		}
		var local, cp int
		for _, r := range m.Required {
			if !r.Copy {
				local++
				if r.Rcpt != u+"@students.iiit.ac.in" || r.State != report.Delivered {
					t.Errorf("message %d: mailbox delivery %+v", i+1, r)
				}
				continue
			}
			cp++
			gotAtGoogle := s.n.google.Count(u+"@students.iiit.ac.in") == 1
			want := report.Failed
			if gotAtGoogle {
				want = report.Delivered
			}
			if r.State != want || len(r.Chain) < 2 {
				t.Errorf("message %d: copy %+v, want %s (Google got it: %v) followed into the relay", i+1, r, want, gotAtGoogle)
			}
		}
		wantCopies := 1
		if u == "user4" {
			wantCopies = 0
		}
		if local != 1 || cp != wantCopies {
			t.Errorf("message %d: %d mailbox and %d copy deliveries, want 1 and %d", i+1, local, cp, wantCopies)
		}
	}
	if c := s.n.google.Count("user2@students.iiit.ac.in"); c != 0 {
		t.Errorf("Google accepted user2's copy %d times; it was to refuse it", c)
	}
}

// The report on the relay's own configuration: its ledger is the peer
// the copies are followed into.
func TestPflogReport(t *testing.T) {
	s := newPflogSeed(t, "", nil)
	rep, code := s.report(t, s.rdir)
	s.check(t, rep, code)
	if os.Getenv("MAILTEE_SHOW_REPORT") != "" {
		// The text report, for the README's example.
		out, _ := exec.Command(harness.Bin, "report", "-c", s.rdir, "--postfix-log", s.pf.path("maillog"), "--postfix-config", s.pf.etc).CombinedOutput()
		t.Logf("mailtee report --postfix-log:\n%s", out)
	}
}

// The report where the Postfix primary is: a configuration of its own
// with ledger_peers naming the relay's listener and the shared token.
func TestPflogReportPeers(t *testing.T) {
	requirePostfix(t)
	token := "pflog-test-token-0123456789abcdef0123456789"
	mport := freePortOn(t, relayIP)
	s := newPflogSeed(t, fmt.Sprintf("metrics_listen = %s:%d\nledger_peer_token_file = $config_directory/peer_token\n", relayIP, mport),
		map[string]string{"peer_token": token + "\n"})
	req, _ := http.NewRequest("GET", fmt.Sprintf("http://%s:%d/ledger/v1/gaps", relayIP, mport), nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		t.Skipf("the relay's HTTP listener does not answer (%v): metrics_listen and /ledger/v1 (internal/web, internal/ledgerhttp, wired in master) are not in this build", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Skipf("the relay's /ledger/v1/gaps answered %s: the peer ledger endpoint is not in this build", resp.Status)
	}
	dir := harness.TempDir(t)
	os.WriteFile(filepath.Join(dir, "peer_token"), []byte(token+"\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "main.cf"), []byte(fmt.Sprintf("ledger_database =\nledger_peers = http://%s:%d\nledger_peer_token_file = $config_directory/peer_token\n", relayIP, mport)), 0o644)
	rep, code := s.report(t, dir)
	s.check(t, rep, code)
}
