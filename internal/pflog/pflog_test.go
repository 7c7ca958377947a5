package pflog

import (
	"compress/gzip"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/ledger"
)

var ctx = context.Background()

// loadTest reads a testdata log as at now (UTC stamps).
func loadTest(t *testing.T, name, config string, now time.Time) *Log {
	t.Helper()
	r, err := Load(filepath.Join("testdata", name), config, Options{Now: now, Location: time.UTC})
	if err != nil {
		t.Fatal(err)
	}
	return r.(*Log)
}

// byID returns the messages under id, oldest first.
func byID(t *testing.T, l *Log, id string) []ledger.Message {
	t.Helper()
	var out []ledger.Message
	for _, i := range l.byID[id] {
		out = append(out, l.msgs[i])
	}
	if len(out) == 0 {
		t.Fatalf("no message %s", id)
	}
	return out
}

func delivery(t *testing.T, m ledger.Message, rcpt string) ledger.Delivery {
	t.Helper()
	for _, d := range m.Deliveries {
		if d.Rcpt == rcpt {
			return d
		}
	}
	t.Fatalf("message %s has no delivery to %s: %+v", m.ID, rcpt, m.Deliveries)
	return ledger.Delivery{}
}

func date(y int, mo time.Month, d, h, mi, s int) time.Time {
	return time.Date(y, mo, d, h, mi, s, 0, time.UTC)
}

// The classic syslog sample: a turn of the year, submission and
// postfix-out syslog_names, a forward, a notice, a deferral then
// delivery, a bounce, an expiry, postsuper, a reused queue ID, a message
// seen without its start, a line that is no syslog.
func TestClassic(t *testing.T) {
	l := loadTest(t, "classic.log", filepath.Join("testdata", "primary"), date(2027, 1, 2, 0, 0, 0))
	st := l.Stats()
	if st.Skipped != 1 || st.Lines != 44 {
		t.Errorf("stats %+v, want 44 lines, 1 skipped", st)
	}
	if len(st.Partial) != 1 || st.Partial[0] != "1A2B3C4D5E" {
		t.Errorf("partial %v, want [1A2B3C4D5E]", st.Partial)
	}

	p := byID(t, l, "1A2B3C4D5E")[0]
	if !p.Arrival.Equal(date(2026, 12, 31, 23, 58, 0)) {
		t.Errorf("partial message's arrival %v: want Dec 31 of the year before Now", p.Arrival)
	}
	if d := delivery(t, p, "old@far.example"); d.RemoteID != "9F9F9F9F9F" || d.Status != ledger.Sent {
		t.Errorf("old@far: %+v", d)
	}
	gaps, _ := l.Gaps(ctx, time.Time{}, time.Time{})
	if len(gaps) != 1 || gaps[0].Messages != 1 || !strings.Contains(gaps[0].Reason, "without their start") {
		t.Errorf("gaps %+v, want one for the message seen without its start", gaps)
	}

	first := byID(t, l, "3C9A21B04F")
	if len(first) != 2 {
		t.Fatalf("3C9A21B04F: %d messages, want 2 (the queue ID was reused)", len(first))
	}
	m := first[0]
	if m.Client != "client.example[192.0.2.1]" || m.MessageID != "<m1@client.example>" || m.From != "alice@client.example" || m.Size != 1234 ||
		!m.Arrival.Equal(date(2026, 12, 31, 23, 59, 59)) || !m.Finished.Equal(date(2027, 1, 1, 0, 0, 1)) || m.Node != "mx1" {
		t.Errorf("3C9A21B04F: %+v", m)
	}
	if strings.Join(m.Rcpts, ",") != "user1@students.example" {
		t.Errorf("3C9A21B04F rcpts %q", m.Rcpts)
	}
	if d := delivery(t, m, "user1@students.example"); d.Copy || d.Status != ledger.Sent || d.Transport != "virtual" || d.Relay != "virtual" {
		t.Errorf("user1: %+v", d)
	}
	if d := delivery(t, m, "user1@relay.students.example"); !d.Copy || d.Orig != "user1@students.example" || d.RemoteID != "66119793DCC5B001" ||
		d.DSN != "2.0.0" || d.Relay != "relay.students.example[127.0.0.11]:2525" || d.Reply != "250 2.0.0 Ok: queued as 66119793DCC5B001" || d.Attempts != 1 {
		t.Errorf("user1's copy: %+v", d)
	}

	m = byID(t, l, "4D0E11A2B3")[0]
	if m.Client != "laptop.example[192.0.2.7]" || len(m.Deliveries) != 4 {
		t.Errorf("4D0E11A2B3: %+v", m)
	}
	if strings.Join(m.Rcpts, ",") != "carol@far.example,user2@students.example,team@students.example" {
		t.Errorf("4D0E11A2B3 rcpts %q", m.Rcpts)
	}
	if d := delivery(t, m, "carol@far.example"); d.Attempts != 2 || d.Status != ledger.Sent || d.Transport != "smtp" ||
		d.RemoteID != "d2e1a72fcca58-4c3bd0c0b5bsi1234567a.55" || !d.At.Equal(date(2027, 1, 1, 0, 11, 1)) {
		t.Errorf("carol: %+v", d)
	}
	if d := delivery(t, m, "user2@relay.students.example"); !d.Copy || d.Status != ledger.Bounced || d.DSN != "5.1.1" ||
		!strings.HasPrefix(d.Reply, "host relay.students.example[127.0.0.11] said: 550 5.1.1") || !strings.HasSuffix(d.Reply, "(in reply to RCPT TO command)") {
		t.Errorf("user2's copy: %+v", d)
	}
	// The alias's two forwarded targets are one delivery, to the alias,
	// as mailtee records it; the forward's deliveries come from it.
	if d := delivery(t, m, "team@students.example"); d.Copy || d.Orig != "" || d.Status != ledger.Sent || d.RemoteID != "" || d.Attempts != 1 {
		t.Errorf("team: %+v", d)
	}
	kids, _ := l.Children(ctx, "mx1", "4D0E11A2B3")
	if len(kids) != 2 {
		t.Fatalf("children of 4D0E11A2B3: %+v", kids)
	}
	for _, k := range kids {
		switch k.ID {
		case "5E1F2A3B4C":
			if d := delivery(t, k, "dave@far.example"); k.Notice || k.Parent != "4D0E11A2B3" || d.RemoteID != "ABCDEF123" || d.Orig != "team@students.example" {
				t.Errorf("forward: %+v", k)
			}
		case "6F00AA11BB":
			if !k.Notice || k.From != "" || delivery(t, k, "bob@students.example").Status != ledger.Sent {
				t.Errorf("notice: %+v", k)
			}
		default:
			t.Errorf("unexpected child %+v", k)
		}
	}

	m = byID(t, l, "7A7A7A7A7A")[0]
	if m.Client != "local" || m.From != "root@students.example" || delivery(t, m, "nobody@nowhere.example").Status != ledger.Deleted {
		t.Errorf("postsuper: %+v", m)
	}

	m = first[1]
	if m.MessageID != "<m4@client.example>" {
		t.Errorf("reused ID: %+v", m)
	}
	if d := delivery(t, m, `"odd, name"@far.example`); d.Status != ledger.Expired || !strings.Contains(d.Reply, "451 4.2.0 try later") {
		t.Errorf("expired: %+v", d)
	}

	m = byID(t, l, "8B8B8B8B8B")[0]
	if len(m.Deliveries) != 1 || m.Deliveries[0].Status != ledger.Pending || m.Deliveries[0].Rcpt != "" {
		t.Errorf("message still queued: %+v", m.Deliveries)
	}

	// The Reader: Message finds the newest under a reused ID; filters.
	got, ok, _ := l.Message(ctx, "", "3C9A21B04F")
	if !ok || got.MessageID != "<m4@client.example>" {
		t.Errorf("Message(3C9A21B04F) = %+v, %v", got, ok)
	}
	if _, ok, _ := l.Message(ctx, "other", "3C9A21B04F"); ok {
		t.Error("Message on another node found one")
	}
	ms, _ := l.Messages(ctx, ledger.Filter{User: "user2"})
	if len(ms) != 1 || ms[0].ID != "4D0E11A2B3" {
		t.Errorf("Messages(user2) = %d messages", len(ms))
	}
	ms, _ = l.Messages(ctx, ledger.Filter{Since: date(2027, 1, 1, 0, 0, 0)})
	if len(ms) != 6 {
		t.Errorf("Messages(since Jan 1) = %d, want 6", len(ms))
	}
	ms, _ = l.Messages(ctx, ledger.Filter{Limit: 2})
	if len(ms) != 2 || ms[0].ID != "8B8B8B8B8B" {
		t.Errorf("Messages(limit 2) = %+v", ms)
	}
}

// Without the configuration, no delivery is a copy and the copies count
// as original recipients.
func TestNoConfig(t *testing.T) {
	l := loadTest(t, "classic.log", "", date(2027, 1, 2, 0, 0, 0))
	m := byID(t, l, "3C9A21B04F")[0]
	if d := delivery(t, m, "user1@relay.students.example"); d.Copy {
		t.Errorf("a copy without the configuration: %+v", d)
	}
	if len(m.Rcpts) != 2 {
		t.Errorf("rcpts %q", m.Rcpts)
	}
}

// The same log read in the middle of the year the log ends in, and read
// a year later: the year follows Now.
func TestYear(t *testing.T) {
	l := loadTest(t, "classic.log", "", date(2028, 6, 1, 0, 0, 0))
	if m := byID(t, l, "1A2B3C4D5E")[0]; m.Arrival.Year() != 2027 {
		t.Errorf("Dec 31 read in June 2028: year %d, want 2027", m.Arrival.Year())
	}
	// Read on Dec 31 itself at 23:59 (Jan 1's lines are then from the
	// future): the file is taken to end on Jan 1 of that year.
	l = loadTest(t, "classic.log", "", date(2026, 12, 31, 23, 59, 0))
	if m := byID(t, l, "8B8B8B8B8B")[0]; m.Arrival.Year() != 2026 || m.Arrival.Month() != 1 {
		t.Errorf("read on Dec 31 2026: %v", m.Arrival)
	}
}

func TestRFC3339(t *testing.T) {
	l := loadTest(t, "rfc3339.log", "", date(2030, 1, 1, 0, 0, 0))
	m := byID(t, l, "4ZxQ1Y2kPNz3Qw1")[0]
	if !m.Arrival.Equal(time.Date(2026, 12, 7, 1, 2, 3, 123456000, time.UTC)) || m.Node != "mx2" {
		t.Errorf("arrival %v", m.Arrival)
	}
	if d := delivery(t, m, "b@x.example"); d.Transport != "lmtp" || d.Status != ledger.Sent || d.Relay != "mail.x.example[private/dovecot-lmtp]" {
		t.Errorf("lmtp: %+v", d)
	}
	m = byID(t, l, "4ZxQ1Y2kPNz3Qw9")[0]
	if !m.Arrival.Equal(date(2026, 12, 7, 1, 2, 3)) || delivery(t, m, "c@x.example").Transport != "pipe" {
		t.Errorf("journal-style stamp: %+v", m)
	}
}

func TestMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.log"), "", Options{})
	if err == nil || !strings.Contains(err.Error(), "nope.log") {
		t.Errorf("err = %v, want one naming the file", err)
	}
	_, err = Load(filepath.Join("testdata", "classic.log"), t.TempDir(), Options{})
	if err == nil || !strings.Contains(err.Error(), "main.cf") {
		t.Errorf("err = %v, want one naming main.cf", err)
	}
}

func TestGzip(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "classic.log"))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "mail.log.1.gz")
	f, _ := os.Create(p)
	z := gzip.NewWriter(f)
	z.Write(b)
	z.Close()
	f.Close()
	r, err := Load(p, "", Options{Now: date(2027, 1, 2, 0, 0, 0), Location: time.UTC})
	if err != nil {
		t.Fatal(err)
	}
	if n := r.(*Log).Stats().Messages; n != 8 {
		t.Errorf("%d messages from the gzip file, want 8", n)
	}
}

func TestParseLine(t *testing.T) {
	cases := []struct {
		in               string
		ok               bool
		host, prog, id   string
		daemon, text     string
		yearless         bool
		month            time.Month
		day, hour, min_s int
	}{
		{"Dec  7 01:02:03 host postfix/smtp[123]: 3F1A2B4C5D: to=<a@b>", true, "host", "postfix/smtp", "3F1A2B4C5D", "smtp", "to=<a@b>", true, 12, 7, 1, 2},
		// Postfix's own maillog_file (postlogd, 3.4+) pads the day with 0.
		{"Dec 07 01:15:40 mx postfix/qmgr[1467]: 924419B485B: removed", true, "mx", "postfix/qmgr", "924419B485B", "qmgr", "removed", true, 12, 7, 1, 15},
		{"Dec 17 01:02:03.123456 host postfix/submission/smtpd[1]: connect from x[1.2.3.4]", true, "host", "postfix/submission/smtpd", "", "smtpd", "connect from x[1.2.3.4]", true, 12, 17, 1, 2},
		{"<22>Jan  1 00:00:00 h postfix-out/smtp[9]: 3dLPZj5rHHz5Ys: removed", true, "h", "postfix-out/smtp", "3dLPZj5rHHz5Ys", "smtp", "removed", true, 1, 1, 0, 0},
		{"2026-12-07T01:02:03.5+01:00 h postfix/qmgr[1]: ABCDE12345: removed", true, "h", "postfix/qmgr", "ABCDE12345", "qmgr", "removed", false, 12, 7, 1, 2},
		{"Dec  7 01:02:03 host postfix/smtpd[1]: NOQUEUE: reject: RCPT", true, "host", "postfix/smtpd", "", "smtpd", "NOQUEUE: reject: RCPT", true, 12, 7, 1, 2},
		{"Dec  7 01:02:03 host postfix/smtpd[1]: warning: hostname x does not resolve", true, "host", "postfix/smtpd", "", "smtpd", "warning: hostname x does not resolve", true, 12, 7, 1, 2},
		{"Dec  7 01:02:03 host postfix/qmgr: 3F1A2B4C5D:", true, "host", "postfix/qmgr", "3F1A2B4C5D", "qmgr", "", true, 12, 7, 1, 2},
		{"Foo  7 01:02:03 host postfix/smtp[123]: x", false, "", "", "", "", "", false, 0, 0, 0, 0},
		{"Dec 32 01:02:03 host postfix/smtp[123]: x", false, "", "", "", "", "", false, 0, 0, 0, 0},
		{"Dec  7 25:02:03 host postfix/smtp[123]: x", false, "", "", "", "", "", false, 0, 0, 0, 0},
		{"Dec  7 01:02:03 host", false, "", "", "", "", "", false, 0, 0, 0, 0},
		{"2026-13-07T01:02:03Z h p[1]: x", false, "", "", "", "", "", false, 0, 0, 0, 0},
	}
	for _, c := range cases {
		l, ok := ParseLine(c.in, time.UTC)
		if ok != c.ok {
			t.Errorf("ParseLine(%q) ok = %v", c.in, ok)
			continue
		}
		if !ok {
			continue
		}
		tm := l.Time
		if l.Host != c.host || l.Program != c.prog || l.QueueID != c.id || l.Daemon != c.daemon || l.Text != c.text || l.Yearless != c.yearless ||
			tm.Month() != c.month || tm.Day() != c.day || tm.Hour() != c.hour || tm.Minute() != c.min_s {
			t.Errorf("ParseLine(%q) = %+v", c.in, l)
		}
	}
}

func TestFields(t *testing.T) {
	f, reply := Fields(`to=<"a, b"@x.example>, orig_to=<c@x>, relay=x[1.2.3.4]:25, conn_use=2, delay=1.5, delays=1/0/0/0.5, dsn=2.0.0, status=sent (250 2.0.0 Ok (id=1): queued as ABC)`)
	if f["to"] != `<"a, b"@x.example>` || f["orig_to"] != "<c@x>" || f["relay"] != "x[1.2.3.4]:25" || f["dsn"] != "2.0.0" || f["status"] != "sent" ||
		reply != "250 2.0.0 Ok (id=1): queued as ABC" {
		t.Errorf("fields %q, reply %q", f, reply)
	}
	f, _ = Fields("from=<a@b>, size=312, nrcpt=1 (queue active)")
	if f["from"] != "<a@b>" || f["size"] != "312" || firstWord(f["nrcpt"]) != "1" {
		t.Errorf("qmgr fields %q", f)
	}
	f, reply = Fields("from=<a@b>, status=expired, returned to sender")
	if f["status"] != "expired" || reply != "returned to sender" {
		t.Errorf("expired: %q %q", f, reply)
	}
	f, _ = Fields("client=x[1.2.3.4], sasl_method=PLAIN, sasl_username=u")
	if f["client"] != "x[1.2.3.4]" || f["sasl_username"] != "u" {
		t.Errorf("client: %q", f)
	}
}

// loadText reads log text written to a temporary file.
func loadText(t *testing.T, text string, now time.Time) *Log {
	t.Helper()
	p := filepath.Join(t.TempDir(), "mail.log")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := Load(p, "", Options{Now: now, Location: time.UTC})
	if err != nil {
		t.Fatal(err)
	}
	return r.(*Log)
}

func TestEdgeCases(t *testing.T) {
	l := loadText(t, `Mar  1 10:00:00 h postfix/smtpd[1]: AAAA000001: client=a[192.0.2.1]
Mar  1 10:00:00 h postfix/cleanup[2]: AAAA000001: milter-reject: END-OF-MESSAGE from a[192.0.2.1]: 5.7.1 spam; from=<x@a> to=<y@b> proto=ESMTP helo=<a>
Mar  1 10:01:00 h postfix/cleanup[2]: AAAA000002: message-id=<probe@h>
Mar  1 10:01:00 h postfix/qmgr[3]: AAAA000002: from=<double-bounce@h>, size=200, nrcpt=1 (queue active)
Mar  1 10:01:01 h postfix/smtp[4]: AAAA000002: to=<y@b>, relay=b[192.0.2.2]:25, delay=1, delays=0/0/0/1, dsn=2.1.5, status=deliverable (250 2.1.5 Ok)
Mar  1 10:02:00 h postfix/smtpd[1]: AAAA000003: client=a[192.0.2.1]
Mar  1 10:02:00 h postfix/cleanup[2]: AAAA000003: message-id=<soft@a>
Mar  1 10:02:00 h postfix/qmgr[3]: AAAA000003: from=<x@a>, size=200, nrcpt=1 (queue active)
Mar  1 10:02:01 h postfix/smtp[4]: AAAA000003: to=<y@b>, relay=b[192.0.2.2]:25, delay=1, delays=0/0/0/1, dsn=5.1.1, status=SOFTBOUNCE (host b said: 550 5.1.1 no such user (in reply to RCPT TO command))
Mar  1 10:03:00 h postfix/qmgr[3]: AAAA000003: to=<y@b>, relay=none, delay=60, delays=60/0/0/0, dsn=4.3.0, status=deferred (delivery temporarily suspended: host b said: 421 try later)
Mar  1 10:04:00 h postfix/qmgr[3]: AAAA000004: removed
Mar  1 10:05:00 h postfix/cleanup[2]: AAAA000004: message-id=<new@h>
Mar  1 10:05:00 h postfix/bounce[5]: AAAA000003: sender delay notification: AAAA000004
Mar  1 10:05:00 h postfix/qmgr[3]: AAAA000004: from=<>, size=300, nrcpt=1 (queue active)
Mar  2 11:00:00 other postfix/qmgr[3]: AAAA000003: removed
`, date(2026, 6, 1, 0, 0, 0))
	if _, ok, _ := l.Message(ctx, "", "AAAA000001"); ok {
		t.Error("a message cleanup rejected was kept")
	}
	if _, ok, _ := l.Message(ctx, "", "AAAA000002"); ok {
		t.Error("an address probe was kept")
	}
	m, ok, _ := l.Message(ctx, "h", "AAAA000003")
	if !ok || len(m.Deliveries) != 1 {
		t.Fatalf("AAAA000003: %+v", m)
	}
	// SOFTBOUNCE is a deferral; qmgr's own line keeps the transport.
	if d := m.Deliveries[0]; d.Status != ledger.Pending || d.Attempts != 2 || d.Transport != "smtp" || !strings.Contains(d.Reply, "temporarily suspended") {
		t.Errorf("soft bounce: %+v", d)
	}
	if !m.Finished.IsZero() {
		t.Error("another host's removed line finished the message")
	}
	// The partial message under AAAA000004 ("removed" seen without its
	// start) and the notice made later under the same ID are two.
	if n := len(l.byID["AAAA000004"]); n != 2 {
		t.Fatalf("AAAA000004: %d messages, want 2", n)
	}
	kids, _ := l.Children(ctx, "h", "AAAA000003")
	if len(kids) != 1 || !kids[0].Notice || kids[0].MessageID != "<new@h>" {
		t.Errorf("the delay notice: %+v", kids)
	}
	st := l.Stats()
	if len(st.Partial) != 2 { // AAAA000004's first, and "other"'s AAAA000003
		t.Errorf("partial %v", st.Partial)
	}
	gaps, _ := l.Gaps(ctx, date(2026, 3, 2, 0, 0, 0), time.Time{})
	if len(gaps) != 1 || !gaps[0].Since.Equal(date(2026, 3, 1, 10, 4, 0)) || !gaps[0].Until.After(date(2026, 3, 2, 11, 0, 0)) {
		t.Errorf("gaps after Mar 2: %+v", gaps)
	}
	if gaps, _ := l.Gaps(ctx, time.Time{}, date(2026, 3, 1, 0, 0, 0)); len(gaps) != 0 {
		t.Errorf("gaps before Mar 1: %+v", gaps)
	}
}

// A late December line after January's (syslog from two hosts, out of
// order) keeps its year; the turn of the year is counted once.
func TestYearOutOfOrder(t *testing.T) {
	l := loadText(t, `Dec 31 23:59:58 h postfix/smtpd[1]: BBBB000001: client=a[192.0.2.1]
Jan  1 00:00:01 h postfix/smtpd[1]: BBBB000002: client=a[192.0.2.1]
Dec 31 23:59:59 h postfix/smtpd[1]: BBBB000003: client=a[192.0.2.1]
Jan  1 00:00:02 h postfix/smtpd[1]: BBBB000004: client=a[192.0.2.1]
`, date(2027, 1, 1, 12, 0, 0))
	want := map[string]int{"BBBB000001": 2026, "BBBB000002": 2027, "BBBB000003": 2026, "BBBB000004": 2027}
	for id, y := range want {
		if m, _, _ := l.Message(ctx, "", id); m.Arrival.Year() != y {
			t.Errorf("%s: %v, want year %d", id, m.Arrival, y)
		}
	}
}

// A notice bounce(8) began and cancelled (cleanup logged its
// message-id, nothing more: Postfix 3.7 does this for a failed BCC
// copy, whose DSN NOTIFY is NEVER) and a message whose client left in
// DATA are not mail; one accepted in the log's last minutes is pending.
func TestNotQueued(t *testing.T) {
	l := loadText(t, `Mar  1 10:00:00 h postfix/cleanup[2]: CCCC000001: message-id=<20260301100000.CCCC000001@h>
Mar  1 10:00:01 h postfix/smtpd[1]: CCCC000002: client=a[192.0.2.1]
Mar  1 10:00:01 h postfix/cleanup[2]: CCCC000002: message-id=<gone@a>
Mar  1 10:10:00 h postfix/smtpd[1]: CCCC000003: client=a[192.0.2.1]
Mar  1 10:10:00 h postfix/cleanup[2]: CCCC000003: message-id=<late@a>
Mar  1 10:10:01 h postfix/smtpd[1]: CCCC000004: client=a[192.0.2.1]
Mar  1 10:10:01 h postfix/cleanup[2]: CCCC000004: hold: header Subject: x from a[192.0.2.1]; from=<x@a> to=<y@h> proto=ESMTP helo=<a>: held
Mar  1 10:10:01 h postfix/cleanup[2]: CCCC000004: message-id=<held@a>
`, date(2026, 6, 1, 0, 0, 0))
	st := l.Stats()
	if st.NotQueued != 2 || st.Messages != 2 {
		t.Errorf("stats %+v, want 2 not queued, 2 messages", st)
	}
	for _, id := range []string{"CCCC000003", "CCCC000004"} {
		if m, ok, _ := l.Message(ctx, "", id); !ok || len(m.Deliveries) != 1 || m.Deliveries[0].Status != ledger.Pending {
			t.Errorf("%s: %+v", id, m)
		}
	}
}
