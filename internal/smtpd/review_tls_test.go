package smtpd

import (
	"strconv"
	"strings"
	"testing"
)

// A BDAT line longer than the watcher kept (white space between BDAT and
// its size) is still a BDAT to go-smtp, which reads its chunk as content:
// a STARTTLS line in that chunk is content, queued as such, and never
// starts TLS.
func TestStartTLSNotInPaddedBDATChunk(t *testing.T) {
	tlsOn, _ := withCert(t)
	for _, pad := range []string{strings.Repeat(" ", 1100), strings.Repeat("\u00a0", 600)} {
		ts := start(t, tlsOn)
		c := ts.session(t)
		c.must("MAIL FROM:<s@remote.example>", "250 ")
		c.must("RCPT TO:<alice@example.com>", "250 ")
		chunk := "Subject: x\r\n\r\nSTARTTLS\r\n"
		c.send("BDAT " + pad + " " + strconv.Itoa(len(chunk)) + " LAST\r\n" + chunk)
		if got := c.reply(); !strings.HasPrefix(got, "250 2.0.0 Ok: queued as ") {
			t.Fatalf("BDAT with %d bytes of padding: %q", len(pad), got)
		}
		if m := ts.q.all(); len(m) != 1 || !strings.HasSuffix(m[0].body, "\r\nSTARTTLS\r\n") {
			t.Errorf("queued %+v", m)
		}
		c.must("NOOP", "250 2.0.0 Ok")
	}
}

// A DATA line that go-smtp takes, however long its trailing white space
// (U+00A0 is white space to go-smtp's strings.TrimSpace) and whatever
// precedes it in the same read, puts the watcher in content too: a
// STARTTLS line in the message is content, queued as such.
func TestStartTLSNotInPaddedDATA(t *testing.T) {
	tlsOn, _ := withCert(t)
	for _, pre := range []string{"", "NOOP\r\n"} {
		for _, pad := range []string{strings.Repeat(" ", 1100), strings.Repeat("\u00a0", 600)} {
			ts := start(t, tlsOn)
			c := ts.session(t)
			c.must("MAIL FROM:<s@remote.example>", "250 ")
			c.must("RCPT TO:<alice@example.com>", "250 ")
			c.send(pre + "DATA " + pad + "\r\nSubject: x\r\n\r\nSTARTTLS\r\n.\r\n")
			if pre != "" {
				c.expect("250 2.0.0 Ok")
			}
			c.expect("354 ")
			if got := c.reply(); !strings.HasPrefix(got, "250 2.0.0 Ok: queued as ") {
				t.Fatalf("DATA after %q with %d bytes of padding: %q", pre, len(pad), got)
			}
			if m := ts.q.all(); len(m) != 1 || !strings.HasSuffix(m[0].body, "\r\nSTARTTLS\r\n") {
				t.Errorf("queued %+v", m)
			}
			c.must("NOOP", "250 2.0.0 Ok")
		}
	}
}
