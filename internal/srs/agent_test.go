package srs

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/bounce"
	"github.com/mailtee/mailtee/internal/deliver"
	"github.com/mailtee/mailtee/internal/envelope"
	"github.com/mailtee/mailtee/internal/ledger"
	"github.com/mailtee/mailtee/internal/maillog"
)

// googleDSN is a bounce as Google sends one, to the SRS address to.
func googleDSN(to, finalRcpt, msgID string) string {
	return "From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>\r\nTo: " + to + "\r\n" +
		"Subject: Delivery Status Notification (Failure)\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/report; boundary=\"000\"; report-type=delivery-status\r\n\r\n" +
		"--000\r\nContent-Type: text/plain; charset=\"UTF-8\"\r\n\r\nAddress not found\r\n\r\n" +
		"--000\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; googlemail.com\r\nArrival-Date: Mon, 07 Dec 2026 04:00:00 -0800 (PST)\r\n\r\n" +
		"Final-Recipient: rfc822; " + finalRcpt + "\r\nAction: failed\r\nStatus: 5.1.1\r\n" +
		"Diagnostic-Code: smtp; The email account that you tried to reach does not exist.\r\n Please try double-checking the recipient's email address\r\n" +
		"Last-Attempt-Date: Mon, 07 Dec 2026 04:00:01 -0800 (PST)\r\n\r\n" +
		"--000\r\nContent-Type: message/rfc822\r\n\r\nFrom: a@sender.example\r\nMessage-ID: " + msgID + "\r\nSubject: hi\r\n\r\nbody\r\n" +
		"--000--\r\n"
}

func TestParseReport(t *testing.T) {
	rep := ParseReport(strings.NewReader(googleDSN("x", "user1@students.example", "<m1@sender.example>")))
	if !rep.DSN || rep.MessageID != "<m1@sender.example>" || len(rep.Recipients) != 1 {
		t.Fatalf("ParseReport = %+v", rep)
	}
	r := rep.Recipients[0]
	if r.Final != "user1@students.example" || r.Action != "failed" || r.Status != "5.1.1" ||
		r.Diagnostic != "The email account that you tried to reach does not exist. Please try double-checking the recipient's email address" {
		t.Errorf("recipient = %+v", r)
	}
	// Not a DSN: nothing, and no panic.
	if rep := ParseReport(strings.NewReader("Subject: your mail\r\n\r\nUser unknown\r\n")); rep.DSN || len(rep.Recipients) != 0 {
		t.Errorf("plain bounce = %+v", rep)
	}
}

func FuzzParseReport(f *testing.F) {
	f.Add(googleDSN("x", "u@example", "<m@x>"))
	f.Add("Content-Type: multipart/report; boundary=a\r\n\r\n--a\r\nContent-Type: message/delivery-status\r\n\r\nFinal-Recipient: rfc822;x\r\n\r\n--a--")
	f.Add("Content-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: <x>\r\n--b--\r\n--a--")
	f.Fuzz(func(t *testing.T, s string) {
		rep := ParseReport(strings.NewReader(s))
		if len(rep.Recipients) > 1000 {
			t.Fatalf("%d recipients", len(rep.Recipients))
		}
	})
}

type fakeQueue struct {
	n    int
	envs []*envelope.Envelope
	data [][]byte
}

func (q *fakeQueue) NewID() string { q.n++; return "N" + string(rune('0'+q.n)) }
func (q *fakeQueue) Inject(ctx context.Context, id string, env *envelope.Envelope, body io.Reader) error {
	b, _ := io.ReadAll(body)
	q.envs, q.data = append(q.envs, env), append(q.data, b)
	return nil
}

type fakeLedger struct {
	msgs    []ledger.Message
	amended []ledger.Delivery
	ids     []string
}

func (l *fakeLedger) Messages(ctx context.Context, f ledger.Filter) ([]ledger.Message, error) {
	var out []ledger.Message
	for _, m := range l.msgs {
		if f.MatchesMessage(m) {
			out = append(out, m)
		}
	}
	return out, nil
}
func (l *fakeLedger) Amend(node, id string, d ledger.Delivery) {
	l.ids, l.amended = append(l.ids, node+"/"+id), append(l.amended, d)
}
func (l *fakeLedger) Stats() ledger.Stats { return ledger.Stats{} }

func TestAgent(t *testing.T) {
	c := vecCodec()
	srsFrom, _ := c.Forward("alice@sender.example")
	lg := &fakeLedger{msgs: []ledger.Message{
		{Node: "mx", ID: "Q1", MessageID: "<m1@sender.example>", From: "alice@sender.example", Arrival: vecNow.Add(-time.Hour),
			Deliveries: []ledger.Delivery{{Index: 0, Rcpt: "user1@students.example", Status: ledger.Sent},
				{Index: 1, Rcpt: "user1@students.example", Copy: true, Status: ledger.Sent, Attempts: 1, At: vecNow.Add(-time.Hour)}}},
		{Node: "mx", ID: "Q0", MessageID: "<other@sender.example>", From: "alice@sender.example", Arrival: vecNow.Add(-2 * time.Hour),
			Deliveries: []ledger.Delivery{{Index: 1, Rcpt: "user1@students.example", Copy: true, Status: ledger.Sent, At: vecNow.Add(-2 * time.Hour)}}},
	}}
	q := &fakeQueue{}
	var logbuf bytes.Buffer
	a := &Agent{Codec: func() *Codec { return c }, Queue: q, Log: maillog.New(&logbuf, "mx.students.example"),
		Policy: func() bounce.Policy {
			return bounce.Policy{Hostname: "mx.students.example", Myorigin: "students.example"}
		},
		Ledger: func() Ledger { return lg }, Now: func() time.Time { return vecNow }}
	body := googleDSN(srsFrom, "user1@students.example", "<m1@sender.example>")
	msg := &deliver.Message{ID: "B1", Open: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(body)), nil }}
	out := a.Deliver(context.Background(), "srs.example.org", msg, []envelope.Rcpt{{Addr: srsFrom}})
	if out[0].Err != nil || len(q.envs) != 1 {
		t.Fatalf("outcome %+v, %d notices", out[0], len(q.envs))
	}
	if env := q.envs[0]; env.From != "" || len(env.Rcpts) != 1 || env.Rcpts[0].Addr != "postmaster@students.example" || !env.Notification {
		t.Errorf("notice envelope %+v: want from <> to postmaster only", env)
	}
	flat := strings.Join(strings.Fields(string(q.data[0])), " ")
	for _, want := range []string{
		"copy of <alice@sender.example>'s message to <user1@students.example> failed: The email account that you tried to reach does not exist.",
		"recorded in the ledger as mx/Q1 (<m1@sender.example>) bounced",
		"Address not found", // the bounce attached
	} {
		if !strings.Contains(flat, want) {
			t.Errorf("notice lacks %q:\n%s", want, q.data[0])
		}
	}
	if len(lg.amended) != 1 || lg.ids[0] != "mx/Q1" || lg.amended[0].Index != 1 || lg.amended[0].Status != ledger.Bounced ||
		lg.amended[0].DSN != "5.1.1" || !strings.Contains(lg.amended[0].Reply, "does not exist") || !lg.amended[0].At.Equal(vecNow) {
		t.Errorf("ledger amended %v %+v", lg.ids, lg.amended)
	}

	// An address that no longer decodes: still postmaster's, saying
	// so, and not looked up in the ledger (TestAgentForgedLeavesLedger).
	q2, lg2 := &fakeQueue{}, &fakeLedger{msgs: lg.msgs}
	a.Queue, a.Ledger = q2, func() Ledger { return lg2 }
	gone := New("srs.example.org", [][]byte{[]byte("rotated-away")})
	a.Codec = func() *Codec { return gone }
	body = googleDSN(srsFrom, "user1@students.example", "<unknown@sender.example>")
	out = a.Deliver(context.Background(), "srs.example.org", msg, []envelope.Rcpt{{Addr: srsFrom}})
	flat = strings.Join(strings.Fields(string(q2.data[0])), " ")
	if out[0].Err != nil || len(lg2.amended) != 0 || !strings.Contains(flat, "not recorded in the ledger: the SRS address does not verify") ||
		!strings.Contains(flat, "copy of an unknown sender") {
		t.Errorf("unmatched: %+v, amended %v:\n%s", out[0], lg2.amended, flat)
	}
	if q2.envs[0].Rcpts[0].Addr != "postmaster@students.example" {
		t.Errorf("unmatched notice to %v", q2.envs[0].Rcpts)
	}
}

func TestAnswerAndRoute(t *testing.T) {
	c := vecCodec()
	good, _ := c.Forward("alice@sender.example")
	local := strings.TrimSuffix(good, "@srs.example.org")
	for _, x := range []struct {
		local, domain string
		ours          bool
		mine, ok      bool
	}{
		{local, "srs.example.org", false, true, true},
		{strings.Replace(local, "alice", "mallory", 1), "srs.example.org", false, true, false},
		{"postmaster", "srs.example.org", false, true, false},
		{"postmaster", "srs.example.org", true, false, true},
		{local, "other.example", false, false, true},
	} {
		mine, err := c.Answer(x.local, x.domain, x.ours)
		if mine != x.mine || (err == nil) != x.ok {
			t.Errorf("Answer(%q, %q, %v) = %v, %v", x.local, x.domain, x.ours, mine, err)
		}
	}
	if hop, ok := Route(c, good); !ok || hop.Transport != Transport {
		t.Errorf("Route(%q) = %v, %v", good, hop, ok)
	}
	if _, ok := Route(c, "alice@srs.example.org"); ok {
		t.Error("a non-SRS address at srs_domain routed to the srs agent")
	}
	if _, ok := Route(nil, good); ok {
		t.Error("routed with SRS off")
	}
}

func TestCopySender(t *testing.T) {
	c := vecCodec()
	for _, x := range []struct {
		from string
		r    envelope.Rcpt
		want string
	}{
		{"alice@sender.example", envelope.Rcpt{Addr: "u@p.example", Copy: true, Migration: envelope.MigrationCopy}, "SRS0=7Cba=J2=sender.example=alice@srs.example.org"},
		{"alice@sender.example", envelope.Rcpt{Addr: "u@p.example"}, "alice@sender.example"},
		{"alice@sender.example", envelope.Rcpt{Addr: "u@p.example", Migration: envelope.MigrationForward}, "alice@sender.example"},
		{"alice@sender.example", envelope.Rcpt{Addr: "u@p.example", Copy: true}, "alice@sender.example"}, // always_bcc, sender_bcc_maps
		{"", envelope.Rcpt{Addr: "u@p.example", Copy: true, Migration: envelope.MigrationCopy}, ""},
	} {
		if got, err := c.CopySender(x.from, x.r); got != x.want || err != nil {
			t.Errorf("CopySender(%q, %+v) = %q, %v; want %q", x.from, x.r, got, err, x.want)
		}
	}
	var off *Codec
	if got, _ := off.CopySender("a@b.example", envelope.Rcpt{Migration: envelope.MigrationCopy}); got != "a@b.example" {
		t.Errorf("SRS off: %q", got)
	}
	if _, err := c.CopySender(`""@b.example`, envelope.Rcpt{Migration: envelope.MigrationCopy}); err == nil {
		t.Error("an empty local part was rewritten")
	}
}

// TestMatchRelayRewrite: the seed's relay turned the copy's address
// user1@relay.example into user1@example, which the provider's bounce
// names; the Message-ID ties them.
func TestMatchRelayRewrite(t *testing.T) {
	msgs := []ledger.Message{{Node: "p", ID: "Q1", MessageID: "<m1@x>", From: "a@x.example",
		Deliveries: []ledger.Delivery{{Index: 0, Rcpt: "user1@example"}, {Index: 1, Rcpt: "user1@relay.example", Copy: true}}}}
	if m, i, ok := Match(msgs, "a@x.example", "user1@example", "", "<m1@x>"); !ok || m.ID != "Q1" || i != 1 {
		t.Errorf("Match = %v %d %v", m.ID, i, ok)
	}
	if _, _, ok := Match(msgs, "a@x.example", "user1@example", "", ""); ok {
		t.Error("matched by local part without a Message-ID")
	}
	if _, _, ok := Match(msgs, "b@x.example", "user1@relay.example", "", "<m1@x>"); ok {
		t.Error("matched another sender's message")
	}
}

// A bounce with control characters and broken UTF-8 in its DSN fields
// still makes a notice (dsn.Build refuses such header text).
func TestAgentHostileDSN(t *testing.T) {
	c := vecCodec()
	srsFrom, _ := c.Forward("alice@sender.example")
	q := &fakeQueue{}
	a := &Agent{Codec: func() *Codec { return c }, Queue: q, Log: maillog.New(io.Discard, "mx"),
		Policy: func() bounce.Policy {
			return bounce.Policy{Hostname: "mx.students.example", Myorigin: "students.example"}
		},
		Now: func() time.Time { return vecNow }}
	body := "Content-Type: multipart/report; boundary=a\r\n\r\n--a\r\nContent-Type: message/delivery-status\r\n\r\n" +
		"Final-Recipient: rfc822; u\x01@\xff\xfe.example\r\nOriginal-Recipient: rfc822;\x7fo@x\r\nAction: failed\r\nStatus: 5.1.1000\r\n" +
		"Remote-MTA: dns; \x00evil\r\nDiagnostic-Code: smtp; 550 \x1b[31mred\r\n\r\n--a--\r\n"
	msg := &deliver.Message{ID: "B2", Open: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(body)), nil }}
	out := a.Deliver(context.Background(), "srs.example.org", msg, []envelope.Rcpt{{Addr: srsFrom}})
	if out[0].Err != nil || len(q.data) != 1 {
		t.Fatalf("outcome %+v, %d notices", out[0], len(q.data))
	}
	// Fields textproto reads, with broken UTF-8 and an escape in them.
	body = "Content-Type: multipart/report; boundary=a\r\n\r\n--a\r\nContent-Type: message/delivery-status\r\n\r\n" +
		"Final-Recipient: rfc822; u@\xff\xfe.example\r\nAction: failed\r\nStatus: 5.1.1000\r\n" +
		"Diagnostic-Code: smtp; 550 \x1b[31mred\r\n\r\n--a--\r\n"
	if rep := ParseReport(strings.NewReader(body)); len(rep.Failed()) != 1 {
		t.Fatalf("the second report: %+v", rep)
	}
	out = a.Deliver(context.Background(), "srs.example.org", msg, []envelope.Rcpt{{Addr: srsFrom}})
	if out[0].Err != nil || len(q.data) != 2 || !strings.Contains(string(q.data[1]), "Status: 5.0.0") {
		t.Fatalf("outcome %+v, %d notices:\n%s", out[0], len(q.data), q.data[len(q.data)-1])
	}
}

// A bounce to an SRS address that does not verify (forged, and sent by
// a way smtpd's RCPT check does not see: sendmail, a .forward; or one
// whose secret is gone) cannot say whose copy it is about: it must not
// amend the ledger row of a copy, delivered or not, whatever recipient
// and Message-ID it names.
func TestAgentForgedLeavesLedger(t *testing.T) {
	c := vecCodec()
	lg := &fakeLedger{msgs: []ledger.Message{
		{Node: "mx", ID: "Q1", MessageID: "<m1@sender.example>", From: "alice@sender.example", Arrival: vecNow.Add(-time.Hour),
			Deliveries: []ledger.Delivery{{Index: 1, Rcpt: "user1@students.example", Copy: true, Status: ledger.Sent, Attempts: 1}}},
	}}
	q := &fakeQueue{}
	a := &Agent{Codec: func() *Codec { return c }, Queue: q, Log: maillog.New(io.Discard, "mx"),
		Policy: func() bounce.Policy {
			return bounce.Policy{Hostname: "mx.students.example", Myorigin: "students.example"}
		},
		Ledger: func() Ledger { return lg }, Now: func() time.Time { return vecNow }}
	forged := "SRS0=xxxx=J2=evil.example=mallory@srs.example.org"
	body := googleDSN(forged, "user1@students.example", "<m1@sender.example>")
	msg := &deliver.Message{ID: "B3", Open: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(body)), nil }}
	out := a.Deliver(context.Background(), "srs.example.org", msg, []envelope.Rcpt{{Addr: forged}})
	if out[0].Err != nil || len(q.envs) != 1 {
		t.Fatalf("outcome %+v, %d notices: the forged bounce still goes to postmaster", out[0], len(q.envs))
	}
	if len(lg.amended) != 0 {
		t.Errorf("a forged SRS address amended the ledger: %v %+v", lg.ids, lg.amended)
	}
}

// An SRS0 address is valid 21 days for every copy of its sender's
// messages: whoever holds one (the copy's recipient sees it as the
// Return-Path) could name in a forged bounce any other copy of that
// sender's mail, delivered days before, and have it recorded bounced.
// The address's stamp is the day the copy was sent: a copy the ledger
// has as sent on another day is not the one the bounce is about.
func TestAgentStampBindsCopy(t *testing.T) {
	c := vecCodec()
	srsFrom, _ := c.Forward("alice@sender.example") // stamped today (J2)
	old := ledger.Message{Node: "mx", ID: "Q9", MessageID: "<old@sender.example>", From: "alice@sender.example", Arrival: vecNow.Add(-10 * day),
		Deliveries: []ledger.Delivery{{Index: 1, Rcpt: "user7@students.example", Copy: true, Status: ledger.Sent, At: vecNow.Add(-10 * day)}}}
	today := ledger.Message{Node: "mx", ID: "Q1", MessageID: "<m1@sender.example>", From: "alice@sender.example", Arrival: vecNow.Add(-time.Hour),
		Deliveries: []ledger.Delivery{{Index: 1, Rcpt: "user1@students.example", Copy: true, Status: ledger.Sent, At: vecNow.Add(-time.Hour)}}}
	for _, x := range []struct {
		rcpt, msgID string
		want        string // the ledger row amended, "" none
	}{
		{"user7@students.example", "<old@sender.example>", ""},
		{"user7@students.example", "", ""},
		{"user1@students.example", "<m1@sender.example>", "mx/Q1"},
	} {
		lg := &fakeLedger{msgs: []ledger.Message{old, today}}
		a := &Agent{Codec: func() *Codec { return c }, Queue: &fakeQueue{}, Log: maillog.New(io.Discard, "mx"),
			Policy: func() bounce.Policy {
				return bounce.Policy{Hostname: "mx.students.example", Myorigin: "students.example"}
			},
			Ledger: func() Ledger { return lg }, Now: func() time.Time { return vecNow }}
		body := googleDSN(srsFrom, x.rcpt, x.msgID)
		msg := &deliver.Message{ID: "B4", Open: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(body)), nil }}
		a.Deliver(context.Background(), "srs.example.org", msg, []envelope.Rcpt{{Addr: srsFrom}})
		got := strings.Join(lg.ids, ",")
		if got != x.want {
			t.Errorf("bounce naming %s %s: amended %q, want %q", x.rcpt, x.msgID, got, x.want)
		}
	}
}

// One valid SRS address gives many that decode the same ('-' or '+' for
// the first '=', the hash's case, characters after its first four, as
// libsrs2 accepts them): a message sent to a thousand of them must not
// make a thousand notices to postmaster. A bounce has one envelope
// recipient; a message to several SRS addresses is reported once.
func TestAgentOneNoticePerMessage(t *testing.T) {
	c := vecCodec()
	srsFrom, _ := c.Forward("alice@sender.example") // SRS0=7Cba=J2=sender.example=alice@srs.example.org
	var rcpts []envelope.Rcpt
	for _, v := range []string{srsFrom, "SRS0-7Cba=J2=sender.example=alice@srs.example.org", "SRS0+7cbaXYZ=J2=sender.example=alice@srs.example.org"} {
		if _, err := c.Reverse(v); err != nil {
			t.Fatalf("%s: %v", v, err)
		}
		rcpts = append(rcpts, envelope.Rcpt{Addr: v})
	}
	q := &fakeQueue{}
	a := &Agent{Codec: func() *Codec { return c }, Queue: q, Log: maillog.New(io.Discard, "mx"),
		Policy: func() bounce.Policy {
			return bounce.Policy{Hostname: "mx.students.example", Myorigin: "students.example"}
		},
		Now: func() time.Time { return vecNow }}
	body := googleDSN(srsFrom, "user1@students.example", "<m1@sender.example>")
	msg := &deliver.Message{ID: "B5", Open: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(body)), nil }}
	out := a.Deliver(context.Background(), "srs.example.org", msg, rcpts)
	if len(q.envs) != 1 {
		t.Errorf("%d notices for one message to %d SRS addresses, want 1", len(q.envs), len(rcpts))
	}
	for i, o := range out {
		if o.Err != nil {
			t.Errorf("recipient %d: %v (deferred: it would be tried again)", i, o.Err)
		}
	}
}
