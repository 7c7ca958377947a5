package e2e

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

// The seed in one box (issue 18): one mailtee does both seed servers'
// jobs. It delivers students.iiit.ac.in to its local Maildirs and sends
// each mailbox's copy, whose address is in its own local domain
// (user1 -> user1@students.iiit.ac.in), straight to the provider by
// copy_transport = google:[aspmx.l.google.com], master.cf's "google"
// smtp service, from the source address the provider would allow-list
// (127.0.0.7: google_bind_address in main.cf, or -o smtp_bind_address
// on the service). The same mail sent through the seed's two servers
// must end the same: the same messages in each mailbox, the same
// (Message-ID, recipient) pairs at the provider, each once.

const oneBoxSource = "127.0.0.7" // the copy transport's source address

// oneBoxMsgs are the scenario's messages: a list (user1 and user2) and
// user1 reached twice in one message, a user with no copy (user4).
var oneBoxMsgs = [][]string{
	{"user1"},
	{"list"},
	{"list", "user1"},
	{"user2"},
	{"user4"},
	{"user1", "user2", "user4"},
	{"user3", "user1"},
}

func oneBoxMessageID(i int) string { return fmt.Sprintf("<onebox-%d@outside.example>", i+1) }

func oneBoxBody(i int, to []string) string {
	return fmt.Sprintf("From: sender@outside.example\r\nTo: %s\r\nSubject: one box %d\r\nMessage-ID: %s\r\n\r\nMessage %d.\r\n",
		strings.Join(to, ", "), i+1, oneBoxMessageID(i), i+1)
}

// oneBoxResult is where the scenario's mail ended: each mailbox's
// Message-IDs (sorted, repeated if a message is there twice) and the
// count of each "Message-ID recipient" at the provider.
type oneBoxResult struct {
	mailboxes map[string][]string
	provider  map[string]int
}

// sendOneBoxMsgs sends the scenario to addr.
func sendOneBoxMsgs(t *testing.T, addr string) {
	t.Helper()
	for i, to := range oneBoxMsgs {
		var rcpts []string
		for _, u := range to {
			rcpts = append(rcpts, u+"@"+seedDomain)
		}
		if err := send(addr, "sender@outside.example", rcpts, oneBoxBody(i, rcpts)); err != nil {
			t.Fatalf("sending message %d: %v", i+1, err)
		}
	}
}

// collect waits until the queues of ins are empty and the provider holds
// want copies, then a little longer for any that should not come, and
// reads the mailboxes of primary and what the provider got.
func collectOneBox(t *testing.T, primary *instance, google *sink, want int, ins ...*instance) oneBoxResult {
	t.Helper()
	waitUntil(t, "the queues empty and every copy at the provider", 60*time.Second, func() bool {
		for _, in := range ins {
			if !queueEmpty(in) {
				return false
			}
		}
		n := 0
		for _, c := range google.Counts() {
			n += c
		}
		return n >= want
	})
	settle()
	r := oneBoxResult{mailboxes: map[string][]string{}, provider: map[string]int{}}
	for _, u := range []string{"user1", "user2", "user3", "user4", "alice"} {
		for _, m := range primary.MaildirMessages(u) {
			if sm := messageIDHeader.FindStringSubmatch(m); sm != nil {
				r.mailboxes[u] = append(r.mailboxes[u], sm[1])
			}
		}
		sort.Strings(r.mailboxes[u])
	}
	for _, m := range google.Messages() {
		sm := messageIDHeader.FindStringSubmatch(m.Data)
		if sm == nil {
			t.Errorf("a message at the provider without Message-ID, to %v", m.To)
			continue
		}
		for _, rc := range m.To {
			r.provider[sm[1]+" "+strings.ToLower(rc)]++
		}
	}
	return r
}

// expectedOneBox is the end state the scenario must reach: every
// mailbox gets each of its messages once; the provider gets one copy per
// message and copied user (user1..user3 are in the copy map): per
// mailbox (mailbox_bcc_maps, which sees the list's members), or per
// original recipient (recipient_bcc_maps, which does not).
func expectedOneBox(mailboxBCC bool) oneBoxResult {
	r := oneBoxResult{mailboxes: map[string][]string{}, provider: map[string]int{}}
	copied := map[string]bool{"user1": true, "user2": true, "user3": true}
	for i, to := range oneBoxMsgs {
		var boxes, keys []string
		for _, u := range to {
			members := []string{u}
			if u == "list" {
				members = []string{"user1", "user2"}
			}
			for _, m := range members {
				if !slices.Contains(boxes, m) {
					boxes = append(boxes, m)
				}
			}
			if !slices.Contains(keys, u) {
				keys = append(keys, u)
			}
		}
		if mailboxBCC {
			keys = boxes
		}
		for _, b := range boxes {
			r.mailboxes[b] = append(r.mailboxes[b], oneBoxMessageID(i))
		}
		for _, k := range keys {
			if copied[k] {
				r.provider[oneBoxMessageID(i)+" "+k+"@"+seedDomain]++
			}
		}
	}
	for u := range r.mailboxes {
		sort.Strings(r.mailboxes[u])
	}
	return r
}

func (r oneBoxResult) copies() int {
	n := 0
	for _, c := range r.provider {
		n += c
	}
	return n
}

// diffOneBox says how got differs from want ("" when it does not).
func diffOneBox(got, want oneBoxResult) string {
	var out []string
	for _, u := range []string{"user1", "user2", "user3", "user4", "alice"} {
		if !slices.Equal(got.mailboxes[u], want.mailboxes[u]) {
			out = append(out, fmt.Sprintf("mailbox %s: %v, want %v", u, got.mailboxes[u], want.mailboxes[u]))
		}
	}
	var keys []string
	for k := range got.provider {
		keys = append(keys, k)
	}
	for k := range want.provider {
		if _, ok := got.provider[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		if got.provider[k] != want.provider[k] {
			out = append(out, fmt.Sprintf("provider %s: %d, want %d", k, got.provider[k], want.provider[k]))
		}
	}
	return strings.Join(out, "\n")
}

// oneBoxMasterCF is the one box's master.cf: Debian's delivery services
// and "google", the copies' own smtp service; bind is its -o lines.
func oneBoxMasterCF(bind string) string {
	return `smtp      inet  n       -       y       -       -       smtpd
smtp      unix  -       -       y       -       -       smtp
relay     unix  -       -       y       -       -       smtp
local     unix  -       n       n       -       -       local
google    unix  -       -       n       -       -       smtp
` + bind
}

// runOneBox runs the scenario on one mailtee; bccParam is the copy
// map's parameter and bind the way the copy's source address is set
// ("main.cf" or "-o").
func runOneBox(t *testing.T, bccParam, bind string) oneBoxResult {
	t.Helper()
	port := freePortOn(t, primaryIP, googleIP)
	google := newGoogleSink(t, fmt.Sprintf("%s:%d", googleIP, port))
	dns := newDNS(t, map[string]string{"aspmx.l.google.com": googleIP, seedDomain: primaryIP}, nil)
	extra, mo := "", ""
	if bind == "main.cf" {
		extra = "google_bind_address = " + oneBoxSource + "\n"
	} else {
		mo = "  -o smtp_bind_address=" + oneBoxSource + "\n"
	}
	// The seed's primary, with its copy map now naming the mailboxes'
	// own addresses, and the copies' transport.
	main := loopbackMainCf(port, dns.Addr) + fmt.Sprintf(`smtp_connect_timeout = 2s
inet_interfaces = %s
mynetworks = 127.0.0.0/8
queue_directory = $config_directory/queue
mail_spool_directory = $config_directory/mail/
alias_maps = hash:$config_directory/aliases
local_recipient_maps = hash:$config_directory/users $alias_maps
recipient_bcc_maps =
%s = hash:$config_directory/bcc_one_box
copy_transport = google:[aspmx.l.google.com]
%s`, primaryIP, bccParam, extra)
	dir := copySeed(t, "primary", main, map[string]string{
		"users":       "user1 x\nuser2 x\nuser3 x\nuser4 x\nalice x\nlist x\npostmaster x\n",
		"aliases":     "postmaster: alice\nlist: user1, user2\n",
		"bcc_one_box": "user1:  user1@students.iiit.ac.in\nuser2:  user2@students.iiit.ac.in\nuser3:  user3@students.iiit.ac.in\n",
		"master.cf":   oneBoxMasterCF(mo),
	})
	box := &instance{T: t, Dir: dir, Port: port, Log: &syncBuffer{}, Host: primaryIP}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("one box's log:\n%s", box.Log.String())
		}
	})
	// check is quiet about the copy map: copy_transport routes it away.
	if out, err := box.Run("", "check"); err != nil || strings.Contains(out, "copy_transport is empty") {
		t.Fatalf("check: %v\n%s", err, out)
	}
	box.Start()
	sendOneBoxMsgs(t, box.Addr())
	r := collectOneBox(t, box, google, expectedOneBox(bccParam == "mailbox_bcc_maps").copies(), box)
	for _, m := range google.Messages() {
		if host, _, _ := net.SplitHostPort(m.Local); host != oneBoxSource {
			t.Errorf("a copy for %v came from %s, want %s (the google service's bind address)", m.To, m.Local, oneBoxSource)
		}
	}
	if tls := google.TLS(); slices.Contains(tls, false) {
		t.Errorf("copies over TLS: %v, want all (the google profile requires it)", tls)
	}
	// The copies left by the google service, never by local delivery.
	box.WaitLog("to=<user1@students.iiit.ac.in>, relay=aspmx.l.google.com[" + googleIP + "]")
	if strings.Contains(box.Log.String(), "status=deferred") {
		t.Errorf("a delivery was deferred:\n%s", box.Log.String())
	}
	return r
}

// runTwoServers runs the scenario on the seed's two servers.
func runTwoServers(t *testing.T, bccParam string) oneBoxResult {
	t.Helper()
	extra := ""
	if bccParam == "mailbox_bcc_maps" {
		extra = "recipient_bcc_maps =\nmailbox_bcc_maps = hash:$config_directory/bcc_map_to_relay\n"
	}
	n := newSeedNet(t, extra, "", map[string]string{"bcc_map_to_relay": "user1:  user1@relay.students.iiit.ac.in\nuser2:  user2@relay.students.iiit.ac.in\nuser3:  user3@relay.students.iiit.ac.in\n"})
	sendOneBoxMsgs(t, n.primary.Addr())
	return collectOneBox(t, n.primary, n.google, expectedOneBox(bccParam == "mailbox_bcc_maps").copies(), n.primary, n.relay)
}

func TestOneBoxSameAsTwoServers(t *testing.T) {
	for _, c := range []struct{ bcc, bind string }{
		{"mailbox_bcc_maps", "main.cf"},
		{"recipient_bcc_maps", "-o"},
	} {
		t.Run(c.bcc, func(t *testing.T) {
			want := expectedOneBox(c.bcc == "mailbox_bcc_maps")
			var two, one oneBoxResult
			t.Run("two servers", func(t *testing.T) { two = runTwoServers(t, c.bcc) })
			t.Run("one box", func(t *testing.T) { one = runOneBox(t, c.bcc, c.bind) })
			if t.Failed() {
				return
			}
			if d := diffOneBox(two, want); d != "" {
				t.Errorf("the seed's two servers:\n%s", d)
			}
			if d := diffOneBox(one, two); d != "" {
				t.Errorf("the one box differs from the two servers:\n%s", d)
			}
		})
	}
}

// One box without copy_transport: a copy to an address of its own
// domain would be delivered here, into the mailbox that has the message
// already. check warns at the copy map's line; serve defers the copy,
// saying to set copy_transport, and delivers the mailbox once; once
// copy_transport is set and reloaded, the waiting copy reaches the
// provider, once.
func TestOneBoxCopyWaitsForCopyTransport(t *testing.T) {
	port := freePortOn(t, primaryIP, googleIP)
	google := newGoogleSink(t, fmt.Sprintf("%s:%d", googleIP, port))
	dns := newDNS(t, map[string]string{"aspmx.l.google.com": googleIP}, nil)
	main := loopbackMainCf(port, dns.Addr) + fmt.Sprintf(`inet_interfaces = %s
mynetworks = 127.0.0.0/8
queue_directory = $config_directory/queue
mail_spool_directory = $config_directory/mail/
alias_maps = hash:$config_directory/aliases
local_recipient_maps = hash:$config_directory/users $alias_maps
recipient_bcc_maps =
mailbox_bcc_maps = hash:$config_directory/bcc_one_box
`, primaryIP)
	dir := copySeed(t, "primary", main, map[string]string{
		"users":       "user1 x\nalice x\npostmaster x\n",
		"aliases":     "postmaster: alice\n",
		"bcc_one_box": "user1:  user1@students.iiit.ac.in\n",
	})
	box := &instance{T: t, Dir: dir, Port: port, Log: &syncBuffer{}, Host: primaryIP}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("one box's log:\n%s", box.Log.String())
		}
	})
	out, err := box.Run("", "check")
	if err != nil || !strings.Contains(out, "bcc_one_box, line 1: mailbox_bcc_maps") || !strings.Contains(out, "set copy_transport") {
		t.Errorf("check: %v\n%s\nwant a warning at bcc_one_box, line 1", err, out)
	}
	box.Start()
	if err := send(box.Addr(), "sender@outside.example", []string{"user1@" + seedDomain}, oneBoxBody(0, []string{"user1@" + seedDomain})); err != nil {
		t.Fatal(err)
	}
	box.WaitLog("to=<user1@students.iiit.ac.in>, relay=none")
	box.WaitLog("set copy_transport")
	box.WaitLog("status=deferred")
	settle()
	if n := len(box.MaildirMessages("user1")); n != 1 || google.Total() != 0 {
		t.Fatalf("before copy_transport: %d in user1's mailbox, %d at the provider; want 1 and 0", n, google.Total())
	}
	f, err := os.OpenFile(filepath.Join(dir, "main.cf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("copy_transport = smtp:[aspmx.l.google.com]\n")
	f.Close()
	if out, err := box.Run("", "reload"); err != nil {
		t.Fatalf("reload: %v\n%s", err, out)
	}
	waitUntil(t, "the copy at the provider", 20*time.Second, func() bool { return google.Count("user1@"+seedDomain) == 1 })
	waitUntil(t, "the queue empty", 20*time.Second, func() bool { return queueEmpty(box) })
	settle()
	if n, c := len(box.MaildirMessages("user1")), google.Count("user1@"+seedDomain); n != 1 || c != 1 {
		t.Errorf("after copy_transport: %d in user1's mailbox, %d at the provider; want 1 and 1", n, c)
	}
}
