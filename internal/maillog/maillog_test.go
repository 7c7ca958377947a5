package maillog

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
	"time"
)

// newTest returns a Logger writing to a buffer, with a fixed host and PID.
func newTest() (*Logger, *bytes.Buffer) {
	var buf bytes.Buffer
	h := NewHandler(&buf, &Options{Host: "mail", PID: 4242, Location: time.UTC})
	return NewWithHandler(h), &buf
}

// syslogLine splits "Mmm dd hh:mm:ss HOST PROGRAM/COMPONENT[PID]: TEXT".
var syslogLine = regexp.MustCompile(`^([A-Z][a-z]{2} [ 0-9][0-9] [0-9]{2}:[0-9]{2}:[0-9]{2}) (\S+) ([^/\s]+)/([^\[\s]+)\[([0-9]+)\]: (.*)$`)

type parsed struct{ program, component, text string }

func parse(t *testing.T, line string) parsed {
	t.Helper()
	m := syslogLine.FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("not a syslog line: %q", line)
	}
	return parsed{m[3], m[4], m[6]}
}

// lines returns the lines written so far and resets buf.
func lines(t *testing.T, buf *bytes.Buffer) []string {
	t.Helper()
	s := buf.String()
	buf.Reset()
	if !strings.HasSuffix(s, "\n") {
		t.Fatalf("output does not end in a newline: %q", s)
	}
	return strings.Split(strings.TrimSuffix(s, "\n"), "\n")
}

// Each case logs an event with the fields of a real Postfix log line and
// expects the same line, with "postfix/" replaced by "mailtee/" (time
// stamp, host and PID aside). The reference lines are quoted verbatim from
// where they were posted; some were redacted there (YY.YY.YY.YY,
// <redirect@***.***l>), which does not matter as we log what we are given.
func TestGolden(t *testing.T) {
	ms := time.Millisecond
	cases := []struct {
		name string
		ref  []string // real Postfix lines
		src  string   // where they come from
		log  func(l *Logger)
	}{
		{
			name: "a whole delivery, from connect to removed",
			src:  "https://github.com/E-F-A/v4/issues/193 (Postfix on a MailScanner gateway)",
			ref: []string{
				"Sep  6 12:22:21 smailer postfix/smtpd[664]: connect from unknown[10.13.37.100]",
				"Sep  6 12:22:21 smailer postfix/smtpd[664]: 4BknXY2FBwz9vf1j: client=unknown[10.13.37.100]",
				"Sep  6 12:22:21 smailer postfix/cleanup[670]: 4BknXY2FBwz9vf1j: message-id=<kcEE.7d2CDS8PS3yQUzLPYm3ZDQ.gCzZmjeE1gE@dmail.sb.warp.local>",
				"Sep  6 12:22:21 smailer postfix/qmgr[647]: 4BknXY2FBwz9vf1j: from=<sender_user@sender.tld>, size=1858, nrcpt=1 (queue active)",
				"Sep  6 12:22:21 smailer postfix/smtpd[664]: disconnect from unknown[10.13.37.100] ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5",
				"Sep  6 12:22:21 smailer postfix/smtp[673]: 4BknXY2FBwz9vf1j: to=<recipient_user@recipient.tld>, relay=mx1.recipient.tld[YY.YY.YY.YY]:25, delay=0.66, delays=0.09/0.02/0.18/0.37, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as CD16E400B5)",
				"Sep  6 12:22:21 smailer postfix/qmgr[647]: 4BknXY2FBwz9vf1j: removed",
			},
			log: func(l *Logger) {
				client := NameAddr("", "10.13.37.100")
				// smtpd and cleanup lines as internal/smtpd and the
				// cleanup stage write them, through Printf.
				l.Printf("smtpd", "connect from %s", client)
				l.Printf("smtpd", "%s: client=%s", "4BknXY2FBwz9vf1j", client)
				l.Printf("cleanup", "%s: message-id=%s", "4BknXY2FBwz9vf1j", "<kcEE.7d2CDS8PS3yQUzLPYm3ZDQ.gCzZmjeE1gE@dmail.sb.warp.local>")
				l.Queued("4BknXY2FBwz9vf1j", "sender_user@sender.tld", 1858, 1)
				l.Printf("smtpd", "disconnect from %s ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5", client)
				l.Delivery(Delivery{
					ID: "4BknXY2FBwz9vf1j", To: "recipient_user@recipient.tld",
					Relay: "mx1.recipient.tld[YY.YY.YY.YY]:25", Transport: "smtp",
					Delay:  660 * ms,
					Delays: [4]time.Duration{90 * ms, 20 * ms, 180 * ms, 370 * ms},
					DSN:    "2.0.0", Status: "sent", Reason: "250 2.0.0 Ok: queued as CD16E400B5",
				})
				l.Removed("4BknXY2FBwz9vf1j")
			},
		},
		{
			name: "deferred, with orig_to and a large delay",
			src:  "https://github.com/docker-mailserver/docker-mailserver/issues/374",
			ref: []string{
				"Nov  3 18:05:55 mail postfix/qmgr[1434]: 81571C2D: from=<root@mail.mydomain.com>, size=642, nrcpt=1 (queue active)",
				"Nov  3 18:06:25 mail postfix/smtp[1436]: 81571C2D: to=<root@mail.mydomain.com>, orig_to=<root>, relay=none, delay=50784, delays=50754/0.01/30/0, dsn=4.4.1, status=deferred (connect to mail.mydomain.com[123.456.789.123]:25: Connection timed out)",
				"Nov  3 18:11:25 mail postfix/smtp[1449]: AA16BBDD: to=<root@mail.mydomain.com>, relay=none, delay=309063, delays=309033/0.01/30/0, dsn=4.4.1, status=deferred (connect to mail.mydomain.com[123.456.789.123]:25: Connection timed out)",
			},
			log: func(l *Logger) {
				l.Queued("81571C2D", "root@mail.mydomain.com", 642, 1)
				l.Delivery(Delivery{
					ID: "81571C2D", To: "root@mail.mydomain.com", OrigTo: "root",
					Delay:  50784*time.Second + 300*ms,
					Delays: [4]time.Duration{50754*time.Second + 240*ms, 12 * ms, 30*time.Second + 30*ms, 0},
					DSN:    "4.4.1", Status: "deferred",
					Reason: "connect to mail.mydomain.com[123.456.789.123]:25: Connection timed out",
				})
				l.Delivery(Delivery{
					ID: "AA16BBDD", To: "root@mail.mydomain.com", OrigTo: "root@mail.mydomain.com",
					Relay: "none", Transport: "smtp",
					Delay:  309063 * time.Second,
					Delays: [4]time.Duration{309033 * time.Second, 10 * ms, 30 * time.Second, 0},
					DSN:    "4.4.1", Status: "deferred",
					Reason: "connect to mail.mydomain.com[123.456.789.123]:25: Connection timed out",
				})
			},
		},
		{
			name: "LMTP bounce",
			src:  "https://github.com/Mailu/Mailu/issues/1614",
			ref: []string{
				"Sep 07 13:35:40 mail postfix/cleanup[26537]: 81EE0980F16: message-id=<00b7479e-5c0c-985f-1076-e6b833f9d66d@example.com>",
				"Sep 07 13:35:41 mail postfix/lmtp[26538]: 81EE0980F16: to=<doesnotexist@example.com>, relay=172.19.0.7[172.19.0.7]:2525, delay=0.72, delays=0.54/0.09/0.05/0.04, dsn=5.1.1, status=bounced (host 172.19.0.7[172.19.0.7] said: 550 5.1.1 <doesnotexist@example.com> User doesn't exist: doesnotexist@example.com (in reply to RCPT TO command))",
			},
			log: func(l *Logger) {
				l.Printf("cleanup", "%s: message-id=<%s>", "81EE0980F16", "00b7479e-5c0c-985f-1076-e6b833f9d66d@example.com")
				l.Delivery(Delivery{
					ID: "81EE0980F16", To: "doesnotexist@example.com",
					Relay: "172.19.0.7[172.19.0.7]:2525", Transport: "lmtp",
					Delay:  723 * ms,
					Delays: [4]time.Duration{538 * ms, 91 * ms, 47 * ms, 44 * ms},
					DSN:    "5.1.1", Status: "bounced",
					Reason: "host 172.19.0.7[172.19.0.7] said: 550 5.1.1 <doesnotexist@example.com> User doesn't exist: doesnotexist@example.com (in reply to RCPT TO command)",
				})
			},
		},
		{
			name: "bounce, then the non-delivery notification",
			src:  "https://github.com/NethServer/dev/issues/5378",
			ref: []string{
				"Dec 20 14:37:50 vm5 postfix/smtp[3650]: 48B0148045E: to=<second.user@primary.tld>, orig_to=<two@lsecondary.tld>, relay=none, delay=0.21, delays=0.01/0.01/0.19/0, dsn=5.4.4, status=bounced (Host or domain name not found. Name service error for name=fail.example.com type=AAAA: Host not found)",
				"Dec 20 14:37:50 vm5 postfix/bounce[3651]: 48B0148045E: sender non-delivery notification: 7D870480468",
			},
			log: func(l *Logger) {
				l.Delivery(Delivery{
					ID: "48B0148045E", To: "second.user@primary.tld", OrigTo: "two@lsecondary.tld",
					Delay:  205 * ms,
					Delays: [4]time.Duration{8 * ms, 6 * ms, 191 * ms, 4 * ms},
					DSN:    "5.4.4", Status: "bounced",
					Reason: "Host or domain name not found. Name service error for name=fail.example.com type=AAAA: Host not found",
				})
				l.Bounce("48B0148045E", "7D870480468")
			},
		},
		{
			name: "local delivery",
			src:  "https://github.com/mailwatch/MailWatch/issues/941",
			ref: []string{
				"Sep  1 09:34:52 mailscanner postfix/local[4443]: BDB76412A2FE: to=<root@mailscanner.snjlaw.local>, relay=local, delay=0.03, delays=0/0.03/0/0, dsn=2.0.0, status=sent (delivered to mailbox)",
				"Sep  1 09:34:42 mailscanner postfix/smtp[4431]: 3xkMFn2qvMz55kY: to=<quintin@dictation.snj.ca>, relay=mail.snj.ca[192.168.0.4]:25, delay=23, delays=18/0.01/0.35/5, dsn=5.7.1, status=bounced (host mail.snj.ca[192.168.0.4] said: 550 5.7.1 Unable to relay (in reply to RCPT TO command))",
			},
			log: func(l *Logger) {
				l.Delivery(Delivery{
					ID: "BDB76412A2FE", To: "root@mailscanner.snjlaw.local",
					Relay: "local", Transport: "local",
					Delay:  31 * ms,
					Delays: [4]time.Duration{4 * ms, 27 * ms, 0, 200 * time.Microsecond},
					DSN:    "2.0.0", Status: "sent", Reason: "delivered to mailbox",
				})
				l.Delivery(Delivery{
					ID: "3xkMFn2qvMz55kY", To: "quintin@dictation.snj.ca",
					Relay: "mail.snj.ca[192.168.0.4]:25", Transport: "smtp",
					Delay:  23*time.Second + 400*ms,
					Delays: [4]time.Duration{18*time.Second + 100*ms, 10 * ms, 350 * ms, 4*time.Second + 960*ms},
					DSN:    "5.7.1", Status: "bounced",
					Reason: "host mail.snj.ca[192.168.0.4] said: 550 5.7.1 Unable to relay (in reply to RCPT TO command)",
				})
			},
		},
		{
			name: "connection reuse",
			src:  "Postfix README_FILES/CONNECTION_CACHE_README (the example there is wrapped over three lines)",
			ref: []string{
				"Nov  3 16:04:31 myname postfix/smtp[30840]: 19B6B2900FE: to=<wietse@test.example.com>, orig_to=<wietse@test>, relay=mail.example.com[1.2.3.4], conn_use=2, delay=0.22, delays=0.04/0.01/0.05/0.1, dsn=2.0.0, status=sent (250 2.0.0 Ok)",
			},
			log: func(l *Logger) {
				l.Delivery(Delivery{
					ID: "19B6B2900FE", To: "wietse@test.example.com", OrigTo: "wietse@test",
					Relay: "mail.example.com[1.2.3.4]", ConnUse: 2,
					Delay:  220 * ms,
					Delays: [4]time.Duration{40 * ms, 10 * ms, 50 * ms, 100 * ms},
					DSN:    "2.0.0", Status: "sent", Reason: "250 2.0.0 Ok",
				})
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l, buf := newTest()
			c.log(l)
			got := lines(t, buf)
			if len(got) != len(c.ref) {
				t.Fatalf("%d lines, want %d:\n%s", len(got), len(c.ref), strings.Join(got, "\n"))
			}
			for i := range got {
				g, w := parse(t, got[i]), parse(t, c.ref[i])
				if g.program != "mailtee" || w.program != "postfix" {
					t.Errorf("program %q, reference %q", g.program, w.program)
				}
				if g.component != w.component || g.text != w.text {
					t.Errorf("line %d:\n got %s: %s\nwant %s: %s  (%s)",
						i, g.component, g.text, w.component, w.text, c.src)
				}
			}
		})
	}
}

func TestDeliveryOrigToDiffersOnlyInCase(t *testing.T) {
	// Postfix compares with strcasecmp_utf8: no orig_to for a case change.
	got := string(AppendDelivery(nil, &Delivery{ID: "A", To: "User@Example.com", OrigTo: "user@example.COM", DSN: "2.0.0", Status: "sent", Reason: "ok"}))
	want := "A: to=<User@Example.com>, relay=none, delay=0, delays=0/0/0/0, dsn=2.0.0, status=sent (ok)"
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func TestCopyNote(t *testing.T) {
	l, buf := newTest()
	d := Delivery{
		ID: "4F9D1", To: "user1@relay.students.iiit.ac.in", Relay: "relay.students.iiit.ac.in[192.0.2.7]:25",
		DSN: "5.1.1", Status: "bounced", Copy: true,
		Reason: "host relay.students.iiit.ac.in[192.0.2.7] said: 550 5.1.1 User unknown (in reply to RCPT TO command)",
	}
	l.Delivery(d)
	got := lines(t, buf)
	if len(got) != 2 {
		t.Fatalf("want the delivery line and the note, got %q", got)
	}
	if p := parse(t, got[1]); p.component != "smtp" ||
		p.text != "4F9D1: to=<user1@relay.students.iiit.ac.in>: automatic copy; failures are reported to postmaster, not to the sender" {
		t.Errorf("note: %+v", p)
	}

	// No note for copies that were delivered or will be retried.
	for _, status := range []string{"sent", "deferred"} {
		d.Status = status
		l.Delivery(d)
		if got := lines(t, buf); len(got) != 1 {
			t.Errorf("status %s: %q", status, got)
		}
	}
}

func TestNotifications(t *testing.T) {
	l, buf := newTest()
	l.PostmasterBounce("482E4404AC8", "47335405A44")
	want := []string{
		// https://github.com/whyscream/postfix-grok-patterns/issues/199
		"482E4404AC8: postmaster non-delivery notification: 47335405A44",
	}
	for i, line := range lines(t, buf) {
		if p := parse(t, line); p.component != "bounce" || p.text != want[i] {
			t.Errorf("got %+v, want bounce: %s", p, want[i])
		}
	}
}

// logcheck's Postfix rules (etc/logcheck/violations.ignore.d/logcheck-postfix
// as shipped by Debian; seen at git.stderr.nl) are how many sites filter
// mail.log. Our lines must match them once "postfix" reads "mailtee".
func TestLogcheckRules(t *testing.T) {
	rules := []string{
		`^\w{3} [ :0-9]{11} [._[:alnum:]-]+ postfix/smtpd\[[0-9]+\]: [[:upper:]0-9]+: reject: RCPT from [^[:space:]]+: [0-9]{3}( [45](\.[[:digit:]]){2})? <[^[:space:]]+>: Relay access denied; from=<[^[:space:]]*> to=<[^[:space:]]+> proto=E?SMTP helo=<[^[:space:]]+>$`,
	}
	l, buf := newTest()
	// internal/smtpd's reject line, through Printf.
	l.Printf("smtpd", "NOQUEUE: reject: RCPT from %s: %s; from=<%s> to=<%s> proto=%s helo=<%s>",
		NameAddr("", "203.0.113.9"), "554 5.7.1 <x@example.net>: Relay access denied",
		"spam@example.org", "x@example.net", "ESMTP", "spam.example.org")
	for i, line := range lines(t, buf) {
		re := regexp.MustCompile(strings.Replace(rules[i], "postfix/", "mailtee/", 1))
		if !re.MatchString(line) {
			t.Errorf("logcheck rule %d does not match %q", i, line)
		}
	}
}

func TestNilLogger(t *testing.T) {
	var l *Logger
	l.Removed("A")
	l.Delivery(Delivery{ID: "A", Copy: true, Status: "bounced"})
	l.Printf("smtpd", "x")
	l.Slog().Info("discarded")
}
