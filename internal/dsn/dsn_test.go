package dsn

import (
	"bufio"
	"bytes"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"net/textproto"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

var (
	ist     = time.FixedZone("IST", 5*3600+1800)
	now     = time.Date(2025, 11, 25, 12, 0, 0, 0, ist)
	arrival = now.Add(-5 * 24 * time.Hour)
)

const origMsg = "Received: from client.example.org (client.example.org [192.0.2.9])\n" +
	"\tby students.iiit.ac.in (mailtee) with ESMTP id 4F9D1\n" +
	"From: Alice <alice@example.org>\n" +
	"To: user1@students.iiit.ac.in\n" +
	"Subject: exam schedule\n" +
	"Message-ID: <abc.123@example.org>\n" +
	"Date: Thu, 20 Nov 2025 11:59:00 +0530\n" +
	"\n" +
	"See you on Monday.\n"

// bounce is the report mailtee sends when the relay refuses a copy.
func bounce() *Report {
	return &Report{
		ReportingMTA: "students.iiit.ac.in",
		QueueID:      "4F9D1",
		To:           "alice@example.org",
		Sender:       "alice@example.org",
		Arrival:      arrival,
		Recipients: []Recipient{
			{
				Final: "user1@relay.students.iiit.ac.in", Original: "user1@students.iiit.ac.in",
				Status: "5.1.1", RemoteMTA: "relay.students.iiit.ac.in",
				Diagnostic:  "smtp; 550 5.1.1 <user1@relay.students.iiit.ac.in>: Recipient address rejected: User unknown",
				LastAttempt: now.Add(-time.Minute),
			},
			{
				Final: "user2@gmail.com", Status: "4.4.7",
				Diagnostic: "delivery temporarily suspended: connect to gmail-smtp-in.l.google.com[142.250.4.27]:25: Connection timed out",
			},
		},
		Original: strings.NewReader(origMsg),
	}
}

// parsed is a notification taken apart with the standard library.
type parsed struct {
	msg    *mail.Message
	parts  []*multipart.Part
	bodies [][]byte
}

func parse(t *testing.T, raw []byte) *parsed {
	t.Helper()
	if bytes.Contains(bytes.ReplaceAll(raw, []byte("\r\n"), nil), []byte("\n")) {
		t.Fatal("output has a bare LF")
	}
	if bytes.Contains(bytes.ReplaceAll(raw, []byte("\r\n"), nil), []byte("\r")) {
		t.Fatal("output has a bare CR")
	}
	for _, l := range strings.Split(string(raw), "\r\n") {
		if len(l) > 998 {
			t.Fatalf("line longer than RFC 5322 allows: %q", l)
		}
	}
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/report" || params["report-type"] != "delivery-status" {
		t.Fatalf("Content-Type %q: %v %v", msg.Header.Get("Content-Type"), mt, params)
	}
	p := &parsed{msg: msg}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for {
		part, err := mr.NextRawPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(part)
		if err != nil {
			t.Fatal(err)
		}
		p.parts = append(p.parts, part)
		p.bodies = append(p.bodies, body)
	}
	return p
}

// fields splits a message/delivery-status body into its groups of fields:
// the per-message group, then one per recipient.
func fields(t *testing.T, body []byte) []textproto.MIMEHeader {
	t.Helper()
	var groups []textproto.MIMEHeader
	for _, g := range strings.Split(strings.TrimRight(string(body), "\r\n"), "\r\n\r\n") {
		h, err := textproto.NewReader(bufio.NewReader(strings.NewReader(g + "\r\n\r\n"))).ReadMIMEHeader()
		if err != nil {
			t.Fatalf("group %q: %v", g, err)
		}
		groups = append(groups, h)
	}
	return groups
}

func TestBuild(t *testing.T) {
	raw, err := Build(bounce(), now, "<20251125063000.4F9D1@students.iiit.ac.in>")
	if err != nil {
		t.Fatal(err)
	}
	p := parse(t, raw)

	h := p.msg.Header
	from, err := mail.ParseAddress(h.Get("From"))
	if err != nil || from.Name != "Mail Delivery System" || from.Address != "MAILER-DAEMON@students.iiit.ac.in" {
		t.Errorf("From %q: %+v %v", h.Get("From"), from, err)
	}
	if to, err := mail.ParseAddress(h.Get("To")); err != nil || to.Address != "alice@example.org" {
		t.Errorf("To %q: %v", h.Get("To"), err)
	}
	if s := h.Get("Subject"); s != "Undelivered Mail Returned to Sender" {
		t.Errorf("Subject %q", s)
	}
	if d, err := h.Date(); err != nil || !d.Equal(now) {
		t.Errorf("Date %q: %v %v", h.Get("Date"), d, err)
	}
	if id := h.Get("Message-Id"); id != "<20251125063000.4F9D1@students.iiit.ac.in>" {
		t.Errorf("Message-Id %q", id)
	}
	if _, ok := h["In-Reply-To"]; ok {
		t.Error("threaded, while Postfix's enable_threaded_bounces defaults to no")
	}
	if h.Get("MIME-Version") != "1.0" || h.Get("Auto-Submitted") != "auto-replied" {
		t.Errorf("MIME-Version %q Auto-Submitted %q", h.Get("MIME-Version"), h.Get("Auto-Submitted"))
	}

	if len(p.parts) != 3 {
		t.Fatalf("%d parts, want 3", len(p.parts))
	}

	// 1. The human-readable part.
	if ct := p.parts[0].Header.Get("Content-Type"); ct != "text/plain; charset=us-ascii" {
		t.Errorf("part 1 Content-Type %q", ct)
	}
	text := string(p.bodies[0])
	for _, want := range []string{
		"This is the mail system at host students.iiit.ac.in.\r\n\r\nI'm sorry to have to inform you that your message could not\r\nbe delivered to one or more recipients. It's attached below.\r\n",
		"\r\n<user1@relay.students.iiit.ac.in> (expanded from <user1@students.iiit.ac.in>):\r\n    host relay.students.iiit.ac.in said: 550 5.1.1\r\n    <user1@relay.students.iiit.ac.in>: Recipient address rejected: User unknown\r\n",
		"\r\n<user2@gmail.com>: delivery temporarily suspended: connect to\r\n    gmail-smtp-in.l.google.com[142.250.4.27]:25: Connection timed out\r\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("text part lacks %q:\n%s", want, text)
		}
	}

	// 2. The machine-readable part.
	if ct := p.parts[1].Header.Get("Content-Type"); ct != "message/delivery-status" {
		t.Errorf("part 2 Content-Type %q", ct)
	}
	g := fields(t, p.bodies[1])
	if len(g) != 3 {
		t.Fatalf("%d field groups, want 3", len(g))
	}
	check := func(h textproto.MIMEHeader, name, want string) {
		t.Helper()
		if got := h.Get(name); got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
	check(g[0], "Reporting-MTA", "dns; students.iiit.ac.in")
	check(g[0], "X-mailtee-Queue-ID", "4F9D1")
	check(g[0], "X-mailtee-Sender", "rfc822; alice@example.org")
	check(g[0], "Arrival-Date", "Thu, 20 Nov 2025 12:00:00 +0530 (IST)")
	check(g[1], "Final-Recipient", "rfc822; user1@relay.students.iiit.ac.in")
	check(g[1], "Original-Recipient", "rfc822; user1@students.iiit.ac.in")
	check(g[1], "Action", "failed")
	check(g[1], "Status", "5.1.1")
	check(g[1], "Remote-MTA", "dns; relay.students.iiit.ac.in")
	// Folded, as Postfix folds it; the unfolded value is the diagnostic.
	check(g[1], "Diagnostic-Code", "smtp; 550 5.1.1 <user1@relay.students.iiit.ac.in>: Recipient address rejected: User unknown")
	check(g[1], "Last-Attempt-Date", "Tue, 25 Nov 2025 11:59:00 +0530 (IST)")
	check(g[2], "Final-Recipient", "rfc822; user2@gmail.com")
	check(g[2], "Action", "failed")
	check(g[2], "Status", "4.4.7")
	check(g[2], "Diagnostic-Code", "X-mailtee; delivery temporarily suspended: connect to gmail-smtp-in.l.google.com[142.250.4.27]:25: Connection timed out")
	for _, absent := range []string{"Original-Recipient", "Remote-MTA", "Last-Attempt-Date", "Will-Retry-Until"} {
		if _, ok := g[2][absent]; ok {
			t.Errorf("%s present for the second recipient", absent)
		}
	}

	// 3. The returned message, whole, with CRLF line endings and the
	// envelope sender as Return-Path.
	if ct := p.parts[2].Header.Get("Content-Type"); ct != "message/rfc822" {
		t.Errorf("part 3 Content-Type %q", ct)
	}
	if d := p.parts[2].Header.Get("Content-Description"); d != "Undelivered Message" {
		t.Errorf("part 3 Content-Description %q", d)
	}
	orig, err := mail.ReadMessage(bytes.NewReader(p.bodies[2]))
	if err != nil {
		t.Fatal(err)
	}
	if orig.Header.Get("Return-Path") != "<alice@example.org>" || orig.Header.Get("Subject") != "exam schedule" {
		t.Errorf("returned headers %v", orig.Header)
	}
	if body, _ := io.ReadAll(orig.Body); string(body) != "See you on Monday.\r\n" {
		t.Errorf("returned body %q", body)
	}
}

func TestBuildThreaded(t *testing.T) {
	r := bounce()
	r.Threaded = true
	raw, err := Build(r, now, "id@x")
	if err != nil {
		t.Fatal(err)
	}
	h := parse(t, raw).msg.Header
	if h.Get("In-Reply-To") != "<abc.123@example.org>" || h.Get("References") != "<abc.123@example.org>" {
		t.Errorf("In-Reply-To %q References %q", h.Get("In-Reply-To"), h.Get("References"))
	}
}

func TestBuildHeadersOnlyWhenLarge(t *testing.T) {
	r := bounce()
	r.Original = strings.NewReader(origMsg + strings.Repeat("x", 200) + "\n")
	r.MaxOriginal = int64(len(origMsg)) // the message is larger
	raw, err := Build(r, now, "id@x")
	if err != nil {
		t.Fatal(err)
	}
	p := parse(t, raw)
	if ct := p.parts[2].Header.Get("Content-Type"); ct != "text/rfc822-headers" {
		t.Errorf("Content-Type %q", ct)
	}
	if d := p.parts[2].Header.Get("Content-Description"); d != "Undelivered Message Headers" {
		t.Errorf("Content-Description %q", d)
	}
	body := string(p.bodies[2])
	if !strings.HasPrefix(body, "Return-Path: <alice@example.org>\r\nReceived: ") ||
		!strings.HasSuffix(body, "Date: Thu, 20 Nov 2025 11:59:00 +0530\r\n") || strings.Contains(body, "Monday") {
		t.Errorf("headers part %q", body)
	}

	// Exactly at the limit: returned whole.
	r = bounce()
	r.MaxOriginal = int64(len(origMsg))
	raw, _ = Build(r, now, "id@x")
	if ct := parse(t, raw).parts[2].Header.Get("Content-Type"); ct != "message/rfc822" {
		t.Errorf("at the limit: %q", ct)
	}

	// Only the headers were supplied.
	r = bounce()
	r.Original = nil
	r.Headers = []byte(origMsg)
	raw, _ = Build(r, now, "id@x")
	if body := string(parse(t, raw).bodies[2]); strings.Contains(body, "Monday") || !strings.Contains(body, "Subject: exam schedule\r\n") {
		t.Errorf("headers part %q", body)
	}

	// Nothing supplied: two parts.
	r.Headers = nil
	raw, _ = Build(r, now, "id@x")
	if n := len(parse(t, raw).parts); n != 2 {
		t.Errorf("%d parts", n)
	}
}

// A bounce_size_limit smaller than the header section (bounce_size_limit
// = 100, say) still returns the whole header section, and nothing of the
// body: the limit decides whether the message goes back whole, never where
// it is cut.
func TestBuildHeadersLongerThanLimit(t *testing.T) {
	r := bounce()
	r.Original = strings.NewReader(origMsg)
	r.MaxOriginal = 100
	raw, err := Build(r, now, "id@x")
	if err != nil {
		t.Fatal(err)
	}
	p := parse(t, raw)
	body := string(p.bodies[2])
	if ct := p.parts[2].Header.Get("Content-Type"); ct != "text/rfc822-headers" ||
		!strings.HasSuffix(body, "Date: Thu, 20 Nov 2025 11:59:00 +0530\r\n") || strings.Contains(body, "Monday") {
		t.Errorf("%s: headers part %q", ct, body)
	}
}

func TestBuildPostmaster(t *testing.T) {
	r := bounce()
	r.To = "postmaster@students.iiit.ac.in"
	r.Postmaster = true
	raw, err := Build(r, now, "")
	if err != nil {
		t.Fatal(err)
	}
	h := parse(t, raw).msg.Header
	if s := h.Get("Subject"); s != "Postmaster Copy: Undelivered Mail" {
		t.Errorf("Subject %q", s)
	}
	if a := h.Get("Auto-Submitted"); a != "auto-generated" {
		t.Errorf("Auto-Submitted %q", a)
	}
	if to := h.Get("To"); to != "postmaster@students.iiit.ac.in" {
		t.Errorf("To %q", to)
	}
	if id := h.Get("Message-Id"); !regexp.MustCompile(`^<[0-9]{14}\.4F9D1@students\.iiit\.ac\.in>$`).MatchString(id) {
		t.Errorf("made-up Message-Id %q", id)
	}
}

func TestBuildDelayed(t *testing.T) {
	r := bounce()
	r.Delayed = true
	r.Recipients = r.Recipients[1:]
	r.WarnAfter = 4 * time.Hour
	r.Lifetime = 5 * 24 * time.Hour
	raw, err := Build(r, now, "id@x")
	if err != nil {
		t.Fatal(err)
	}
	p := parse(t, raw)
	if s := p.msg.Header.Get("Subject"); s != "Delayed Mail (still being retried)" {
		t.Errorf("Subject %q", s)
	}
	text := string(p.bodies[0])
	for _, want := range []string{
		"# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #\r\n",
		"\r\nYour message could not be delivered for more than 4 hour(s).\r\nIt will be retried until it is 5 day(s) old.\r\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("text lacks %q:\n%s", want, text)
		}
	}
	g := fields(t, p.bodies[1])
	if a := g[1].Get("Action"); a != "delayed" {
		t.Errorf("Action %q", a)
	}
	if w := g[1].Get("Will-Retry-Until"); w != "Tue, 25 Nov 2025 12:00:00 +0530 (IST)" {
		t.Errorf("Will-Retry-Until %q", w)
	}

	r.Postmaster = true
	r.WarnAfter, r.Lifetime = 30*time.Minute, 12*time.Hour
	raw, _ = Build(r, now, "id@x")
	p = parse(t, raw)
	if s := p.msg.Header.Get("Subject"); s != "Postmaster Warning: Delayed Mail" {
		t.Errorf("Subject %q", s)
	}
	if text := string(p.bodies[0]); !strings.Contains(text, "more than 30 minute(s).\r\nIt will be retried until it is 12 hour(s) old.") {
		t.Errorf("short times: %s", text)
	}
}

// RFC 3464 section 2 syntax of a message/delivery-status body, checked
// field by field on every report the tests build.
func TestRFC3464Syntax(t *testing.T) {
	atom := `[^\x00-\x20()<>@,;:\\".\[\]\x7f]+`
	typed := regexp.MustCompile(`^` + atom + `; ?\S.*$`) // type ";" value
	date := func(v string) bool { _, err := mail.ParseDate(v); return err == nil }
	status := regexp.MustCompile(`^[245]\.[0-9]{1,3}\.[0-9]{1,3}$`)
	actionRE := regexp.MustCompile(`^(failed|delayed|delivered|relayed|expanded)$`)

	perMessage := map[string]func(string) bool{
		"Original-Envelope-Id": func(string) bool { return true },
		"Reporting-Mta":        typed.MatchString,
		"Dsn-Gateway":          typed.MatchString,
		"Received-From-Mta":    typed.MatchString,
		"Arrival-Date":         date,
	}
	perRecipient := map[string]func(string) bool{
		"Original-Recipient": typed.MatchString,
		"Final-Recipient":    typed.MatchString,
		"Action":             actionRE.MatchString,
		"Status":             status.MatchString,
		"Remote-Mta":         typed.MatchString,
		"Diagnostic-Code":    typed.MatchString,
		"Last-Attempt-Date":  date,
		"Final-Log-Id":       func(string) bool { return true },
		"Will-Retry-Until":   date,
	}

	reports := map[string]*Report{"bounce": bounce()}
	d := bounce()
	d.Delayed, d.Lifetime = true, 5*24*time.Hour
	reports["delayed"] = d
	u := bounce()
	u.Recipients[0].Final = "jöran@bücher.example"
	reports["utf8"] = u

	for name, r := range reports {
		raw, err := Build(r, now, "id@x")
		if err != nil {
			t.Fatal(err)
		}
		p := parse(t, raw)
		groups := fields(t, p.bodies[1])
		if len(groups) != 1+len(r.Recipients) {
			t.Fatalf("%s: %d groups", name, len(groups))
		}
		for i, g := range groups {
			allowed, required := perRecipient, []string{"Final-Recipient", "Action", "Status"}
			if i == 0 {
				allowed, required = perMessage, []string{"Reporting-Mta"}
			}
			for _, f := range required {
				if g.Get(f) == "" {
					t.Errorf("%s: group %d lacks %s", name, i, f)
				}
			}
			for k, vs := range g {
				if len(vs) != 1 {
					t.Errorf("%s: %s appears %d times", name, k, len(vs))
				}
				ok, known := allowed[k]
				switch {
				case strings.HasPrefix(k, "X-"):
				case !known:
					t.Errorf("%s: group %d: field %s not allowed there", name, i, k)
				case !ok(vs[0]):
					t.Errorf("%s: %s: bad value %q", name, k, vs[0])
				}
			}
		}
	}
}

func TestBuildUTF8(t *testing.T) {
	r := bounce()
	r.Recipients[0].Final = "jöran@bücher.example"
	r.Recipients[0].Diagnostic = "smtp; 550 5.1.1 jöran: unknown \x00user"
	raw, err := Build(r, now, "id@x")
	if err != nil {
		t.Fatal(err)
	}
	p := parse(t, raw)
	if cte := p.msg.Header.Get("Content-Transfer-Encoding"); cte != "8bit" {
		t.Errorf("top-level Content-Transfer-Encoding %q", cte)
	}
	if ct := p.parts[0].Header.Get("Content-Type"); ct != "text/plain; charset=utf-8" {
		t.Errorf("part 1 Content-Type %q", ct)
	}
	if ct := p.parts[1].Header.Get("Content-Type"); ct != "message/global-delivery-status" {
		t.Errorf("part 2 Content-Type %q", ct)
	}
	g := fields(t, p.bodies[1])
	if f := g[1].Get("Final-Recipient"); f != "utf-8; jöran@bücher.example" {
		t.Errorf("Final-Recipient %q", f)
	}
	if d := g[1].Get("Diagnostic-Code"); d != "smtp; 550 5.1.1 jöran: unknown ?user" {
		t.Errorf("Diagnostic-Code %q", d)
	}

	// An ASCII report keeps ASCII fields: non-ASCII remote text is masked.
	r = bounce()
	r.Recipients[0].Diagnostic = "smtp; 550 Benutzer unbekannt: Müller"
	raw, _ = Build(r, now, "id@x")
	p = parse(t, raw)
	if d := fields(t, p.bodies[1])[1].Get("Diagnostic-Code"); d != "smtp; 550 Benutzer unbekannt: M?ller" {
		t.Errorf("Diagnostic-Code %q", d)
	}
	if ct := p.parts[1].Header.Get("Content-Type"); ct != "message/delivery-status" {
		t.Errorf("part 2 Content-Type %q", ct)
	}
	// The text part may carry it, in UTF-8.
	if !strings.Contains(string(p.bodies[0]), "Müller") {
		t.Errorf("text part %q", p.bodies[0])
	}
}

// An original that contains the would-be boundary must not break the
// structure.
func TestBoundaryClash(t *testing.T) {
	r := bounce()
	clash := "--4F9D1." + strconv.FormatInt(now.Unix(), 10) + "/students.iiit.ac.in"
	r.Original = strings.NewReader(origMsg + clash + "\n" + clash + "--\n")
	raw, err := Build(r, now, "id@x")
	if err != nil {
		t.Fatal(err)
	}
	p := parse(t, raw)
	if len(p.parts) != 3 || !strings.Contains(string(p.bodies[2]), clash+"--\r\n") {
		t.Errorf("%d parts; returned message %q", len(p.parts), p.bodies[len(p.bodies)-1])
	}
}

func TestBuildErrors(t *testing.T) {
	cases := map[string]func(r *Report){
		"no notification recipient": func(r *Report) { r.To = "" },
		"no recipients":             func(r *Report) { r.Recipients = nil },
		"no reporting MTA":          func(r *Report) { r.ReportingMTA = "" },
		"header injection in To":    func(r *Report) { r.To = "alice@example.org\r\nBcc: victim@example.net" },
		"LF in a final recipient":   func(r *Report) { r.Recipients[0].Final = "a@b\nAction: delivered" },
		"bad status class":          func(r *Report) { r.Recipients[0].Status = "3.1.1" },
		"status without detail":     func(r *Report) { r.Recipients[0].Status = "5.1" },
		"status too long":           func(r *Report) { r.Recipients[0].Status = "5.1234.1" },
		"bad action":                func(r *Report) { r.Recipients[0].Action = "bounced" },
		"no final recipient":        func(r *Report) { r.Recipients[1].Final = "" },
		"invalid UTF-8 sender":      func(r *Report) { r.Sender = "\xffa@b" },
	}
	for name, mod := range cases {
		r := bounce()
		mod(r)
		if _, err := Build(r, now, "id@x"); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, io.ErrUnexpectedEOF }

func TestBuildReadError(t *testing.T) {
	r := bounce()
	r.Original = errReader{}
	if _, err := Build(r, now, "id@x"); err == nil || !strings.Contains(err.Error(), "4F9D1") {
		t.Errorf("error %v", err)
	}
}

func TestQuoteAddr(t *testing.T) {
	for in, want := range map[string]string{
		"alice@example.org":      "alice@example.org",
		"first last@example.org": `"first last"@example.org`,
		`a"b@example.org`:        `"a\"b"@example.org`,
		"first..last@docomo.jp":  `"first..last"@docomo.jp`,
		"jöran@bücher.example":   "jöran@bücher.example",
		"postmaster":             "postmaster",
	} {
		if got := quoteAddr(in); got != want {
			t.Errorf("quoteAddr(%q) = %q, want %q", in, got, want)
		}
		if strings.Contains(in, "@") {
			if a, err := mail.ParseAddress(quoteAddr(in)); err != nil || a.Address != in {
				t.Errorf("net/mail reads %q as %v, %v", quoteAddr(in), a, err)
			}
		}
	}
}
