package maildrop

import (
	"errors"
	"io/fs"
	"regexp"
	"strings"
	"testing"
)

type smtpDrop struct {
	from  string
	rcpts []string
	body  string
}

func session(t *testing.T, in string, o SMTPSession) (replies []string, got []smtpDrop) {
	t.Helper()
	if o.Drop == nil {
		o.Drop = func(from string, rcpts []string, body []byte) error {
			got = append(got, smtpDrop{from, rcpts, string(body)})
			return nil
		}
	}
	var out strings.Builder
	ServeSMTP(strings.NewReader(in), &out, o)
	r := strings.Split(out.String(), "\r\n")
	return r[:len(r)-1], got
}

// A session as mail(1) or a PHP mailer holds it: Postfix's replies, dot
// stuffing undone, CRLF line ends, each message dropped with its envelope.
func TestServeSMTP(t *testing.T) {
	o := SMTPSession{Hostname: "mx.example.org", Banner: "mx.example.org ESMTP mailtee", SizeLimit: 200, MaxRcpt: 2}
	replies, got := session(t, "EHLO client\nMAIL FROM:<a@example.org> SIZE=10\nRCPT TO:<b@example.org>\nRCPT TO:c@example.org\nRCPT TO:<d@example.org>\nDATA\nSubject: x\n\n..dot\n.\nMAIL FROM:<a@example.org> SIZE=999\nDATA\nVRFY root\nQUIT\n", o)
	want := []string{
		"220 mx.example.org ESMTP mailtee",
		"250-mx.example.org", "250-PIPELINING", "250-SIZE 200", "250-ENHANCEDSTATUSCODES", "250-8BITMIME", "250 DSN",
		"250 2.1.0 Ok", "250 2.1.5 Ok", "250 2.1.5 Ok", "452 4.5.3 Error: too many recipients",
		"354 End data with <CR><LF>.<CR><LF>", "250 2.0.0 Ok: queued",
		"552 5.3.4 Message size exceeds fixed limit", "503 5.5.1 Error: need MAIL command",
		"502 5.5.1 VRFY command is disabled", "221 2.0.0 Bye",
	}
	if strings.Join(replies, "\n") != strings.Join(want, "\n") {
		t.Errorf("replies:\n%s\nwant:\n%s", strings.Join(replies, "\n"), strings.Join(want, "\n"))
	}
	if len(got) != 1 || got[0].from != "a@example.org" || strings.Join(got[0].rcpts, ",") != "b@example.org,c@example.org" || got[0].body != "Subject: x\r\n\r\n.dot\r\n" {
		t.Errorf("dropped %+v", got)
	}
}

// A drop that fails is a 451 that says what to look at when maildrop is
// not writable, and the reason goes to Warn.
func TestServeSMTPDropFails(t *testing.T) {
	var warned error
	o := SMTPSession{Hostname: "h", Banner: "h ESMTP mailtee",
		Drop: func(string, []string, []byte) error { return fs.ErrPermission },
		Warn: func(err error) { warned = err }}
	replies, _ := session(t, "HELO c\nMAIL FROM:<>\nRCPT TO:<b@example.org>\nDATA\nx\n.\n", o)
	if last := replies[len(replies)-1]; !strings.HasPrefix(last, "451 4.3.0 Error: queue file write error (maildrop not writable") || !errors.Is(warned, fs.ErrPermission) {
		t.Errorf("replies %q, warned %v", replies, warned)
	}
}

// Whatever the input, every reply is one well-formed line, and the
// session ends.
func FuzzServeSMTP(f *testing.F) {
	f.Add("EHLO x\nMAIL FROM:<a@b>\nRCPT TO:<c@d>\nDATA\nx\n.\nQUIT\n")
	f.Add("MAIL FROM:\nRCPT TO:<\nDATA\n")
	reply := regexp.MustCompile(`^[2-5][0-9][0-9][ -]`)
	f.Fuzz(func(t *testing.T, in string) {
		var out strings.Builder
		ServeSMTP(strings.NewReader(in), &out, SMTPSession{Hostname: "h", Banner: "h ESMTP mailtee", SizeLimit: 500,
			Drop: func(string, []string, []byte) error { return nil }})
		lines := strings.Split(out.String(), "\r\n")
		for _, l := range lines[:len(lines)-1] {
			if !reply.MatchString(l) || strings.ContainsAny(l, "\r\n") {
				t.Fatalf("reply %q to %q", l, in)
			}
		}
	})
}
