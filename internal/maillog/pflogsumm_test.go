package maillog

import (
	"regexp"
	"testing"
	"time"
)

// The regular expressions pflogsumm.pl uses to read a log (as in the copy
// at github.com/KTamas/pflogsumm), with $syslogName = "mailtee" as
// `pflogsumm --syslog-name=mailtee` sets it. Perl and RE2 agree on these.
var (
	pflogTime   = regexp.MustCompile(`^(...) {1,2}(\d{1,2}) (\d{2}):(\d{2}):(\d{2}) \S+ (.+)$`)
	pflogCmdQid = regexp.MustCompile(`^(?:postfix-?\w*|mailtee)(?:/(?:smtps|submission))?/([^\[:]*).*?: ([^:\s]+)`)
	pflogFrom   = regexp.MustCompile(`from=<([^>]*)>, size=(\d+)`)
	pflogTo     = regexp.MustCompile(`to=<([^>]*)>, (?:orig_to=<[^>]*>, )?relay=([^,]+), (?:conn_use=[^,]+, )?delay=([^,]+), (?:delays=[^,]+, )?(?:dsn=[^,]+, )?status=(\S+)(.*)$`)
	pflogClient = regexp.MustCompile(`\[\d+\]: \w+: client=(.+?)(,|$)`)
	pflogReject = regexp.MustCompile(`\[\d+\]: \w+: (reject(?:_warning)?|hold|discard): `)
	pflogRejDet = regexp.MustCompile(`^.* \b(?:reject(?:_warning)?|hold|discard): (\S+) from (\S+?): (.*)$`)
	pflogDisc   = regexp.MustCompile(`/smtpd\[(\d+)\]: disconnect from (.+)$`)
	pflogBounce = regexp.MustCompile(`, status=bounced \((.+)\)`)
	pflogDefer  = regexp.MustCompile(`, status=deferred \(([^\)]+)`)
)

func TestPflogsumm(t *testing.T) {
	l, buf := newTest()
	client := NameAddr("mx.example.org", "192.0.2.25")
	// smtpd's lines as internal/smtpd writes them, through Printf.
	l.Printf("smtpd", "connect from %s", client)
	l.Printf("smtpd", "%s: client=%s", "4F9D1", client)
	l.Queued("4F9D1", "alice@example.org", 2048, 2)
	l.Printf("smtpd", "disconnect from %s ehlo=1 mail=1 rcpt=2 data=1 quit=1 commands=6", client)
	l.Delivery(Delivery{ID: "4F9D1", To: "user1@students.iiit.ac.in", Relay: "local", Transport: "local",
		Delay: 120 * time.Millisecond, DSN: "2.0.0", Status: "sent", Reason: "delivered to maildir"})
	l.Delivery(Delivery{ID: "4F9D1", To: "user1@students.iiit.ac.in", OrigTo: "user1@relay.students.iiit.ac.in",
		Relay: "aspmx.l.google.com[127.0.0.5]:25", ConnUse: 3, Delay: 2 * time.Second,
		DSN: "4.2.1", Status: "deferred", Reason: "host aspmx.l.google.com[127.0.0.5] said: 421 4.2.1 Try later (in reply to RCPT TO command)"})
	l.Delivery(Delivery{ID: "4F9D1", To: "user1@relay.students.iiit.ac.in", Copy: true,
		Relay: "relay.students.iiit.ac.in[127.0.0.2]:25", DSN: "5.1.1", Status: "bounced",
		Reason: "host relay.students.iiit.ac.in[127.0.0.2] said: 550 5.1.1 User unknown (in reply to RCPT TO command)"})
	l.Printf("smtpd", "NOQUEUE: reject: RCPT from %s: %s; from=<%s> to=<%s> proto=%s helo=<%s>",
		client, "554 5.7.1 <x@elsewhere.example>: Relay access denied", "alice@example.org", "x@elsewhere.example", "ESMTP", "mx.example.org")
	l.Removed("4F9D1")

	got := lines(t, buf)
	type want struct{ cmd, qid, kind string }
	wants := []want{
		{"smtpd", "connect", "connect"},
		{"smtpd", "4F9D1", "client"},
		{"qmgr", "4F9D1", "from"},
		{"smtpd", "disconnect", "disconnect"},
		{"local", "4F9D1", "to"},
		{"smtp", "4F9D1", "to"},
		{"smtp", "4F9D1", "to"},
		{"smtp", "4F9D1", "none"}, // the copy note: a line pflogsumm skips
		{"smtpd", "NOQUEUE", "reject"},
		{"qmgr", "4F9D1", "none"},
	}
	if len(got) != len(wants) {
		t.Fatalf("got %d lines: %q", len(got), got)
	}
	for i, line := range got {
		w := wants[i]
		m := pflogTime.FindStringSubmatch(line)
		if m == nil {
			t.Errorf("time stamp regexp misses %q", line)
			continue
		}
		rest := m[6]
		cq := pflogCmdQid.FindStringSubmatch(rest)
		if cq == nil || cq[1] != w.cmd || cq[2] != w.qid {
			t.Errorf("cmd/qid of %q: %q, want %s %s", line, cq, w.cmd, w.qid)
			continue
		}
		to := pflogTo.FindStringSubmatch(rest)
		switch w.kind {
		case "client":
			if m := pflogClient.FindStringSubmatch(rest); m == nil || m[1] != client {
				t.Errorf("client of %q: %q", line, m)
			}
		case "from":
			if m := pflogFrom.FindStringSubmatch(rest); m == nil || m[1] != "alice@example.org" || m[2] != "2048" {
				t.Errorf("from of %q: %q", line, m)
			}
		case "disconnect":
			if m := pflogDisc.FindStringSubmatch(rest); m == nil || m[2] != client+" ehlo=1 mail=1 rcpt=2 data=1 quit=1 commands=6" {
				t.Errorf("disconnect of %q: %q", line, m)
			}
		case "to":
			if to == nil {
				t.Errorf("delivery regexp misses %q", line)
			}
		case "reject":
			if !pflogReject.MatchString(rest) {
				t.Errorf("reject regexp misses %q", line)
			}
			if m := pflogRejDet.FindStringSubmatch(line); m == nil || m[1] != "RCPT" || m[2] != client {
				t.Errorf("reject detail of %q: %q", line, m)
			}
		case "none":
			if to != nil || pflogFrom.MatchString(rest) {
				t.Errorf("pflogsumm would count %q", line)
			}
		}
	}
	if m := pflogTo.FindStringSubmatch(got[4]); m == nil || m[1] != "user1@students.iiit.ac.in" || m[2] != "local" || m[3] != "0.12" || m[4] != "sent" {
		t.Errorf("local delivery read as %q", m)
	}
	if m := pflogDefer.FindStringSubmatch(got[5]); m == nil || m[1] != "host aspmx.l.google.com[127.0.0.5] said: 421 4.2.1 Try later (in reply to RCPT TO command" {
		t.Errorf("deferral reason read as %q", m)
	}
	if m := pflogBounce.FindStringSubmatch(got[6]); m == nil || m[1] != "host relay.students.iiit.ac.in[127.0.0.2] said: 550 5.1.1 User unknown (in reply to RCPT TO command)" {
		t.Errorf("bounce reason read as %q", m)
	}
}
