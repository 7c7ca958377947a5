package smtpd

import (
	"fmt"
	"strings"
	"testing"
)

// smtpd_forbid_bare_newline = normalize (mailtee's default, Postfix 3.9's):
// a bare LF ends a line and is stored as CR LF; a line "." next to a bare
// LF is dropped, neither content nor the end (smtpd.c, smtpd_data: "Do
// not store or send to proxy filter"); a dot that starts a line after a
// bare LF is removed as from any line.
func TestBareNewlineNormalize(t *testing.T) {
	for _, tc := range []struct{ name, sent, want string }{
		{"LF ends lines", "Subject: x\n\na\nb\r\n", "Subject: x\r\n\r\na\r\nb\r\n"},
		{"LF first", "\nx\r\n", "\r\nx\r\n"},
		{"LF . CRLF dropped", "a\n.\r\nMAIL FROM:<x@y>\r\n", "a\r\nMAIL FROM:<x@y>\r\n"},
		{"LF . LF dropped", "a\n.\nb\r\n", "a\r\nb\r\n"},
		{"dot unstuffed after LF", "a\n..b\n.c\r\n", "a\r\n.b\r\nc\r\n"},
		{"dots after CRLF as before", "a\r\n..b\r\n", "a\r\n.b\r\n"},
		{"LF . then more on the line", "a\n.x\r\n", "a\r\nx\r\n"},
		// go-smtp removed the dot before bodyReader sees it: an empty
		// line stays, where Postfix drops the line (data.go).
		{"CRLF . LF kept as an empty line", "a\r\n.\nb\r\n", "a\r\n\r\nb\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := start(t, nil)
			c := ts.session(t)
			if got := c.mail("s@remote.example", []string{"alice@example.com"}, tc.sent); !strings.HasPrefix(got, "250 2.0.0 Ok: queued as ") {
				t.Fatalf("end of data: %q", got)
			}
			m := ts.q.all()
			if len(m) != 1 {
				t.Fatalf("%d messages", len(m))
			}
			_, body, _ := strings.Cut(m[0].body, m[0].env.Arrival.Format(dateLayout)+"\r\n")
			if body != tc.want {
				t.Errorf("queued %q, want %q", body, tc.want)
			}
			if hasBareNewline(m[0].body) {
				t.Errorf("queued content has a bare newline: %q", m[0].body)
			}
		})
	}
}

// reject: a command line that ends in a bare LF is refused and the
// session ends, as Postfix 3.7.11 does; content with one is refused and
// the session goes on (TestBareNewlines). Clients in
// smtpd_forbid_bare_newline_exclusions are never refused.
func TestBareNewlineRejectCommand(t *testing.T) {
	ts := start(t, func(o *Options) {
		o.BareNewline = BareNewlineReject
		o.BareNewlineCode = 521
	})
	c := ts.session(t)
	c.send("MAIL FROM:<s@remote.example>\n")
	c.expect("521 5.5.2 mx.example.com Error: bare <LF> received")
	c.closed()
	ts.log.waitFor(t, "NOQUEUE: reject: command from localhost[127.0.0.1]: bare <LF> received")

	// The same client in the exclusions: normalize.
	ts = start(t, func(o *Options) {
		o.BareNewline = BareNewlineReject
		o.Policy = testPolicy(t, notUs)
		o.Policy.BareNewlineExclusions = testPolicy(t, us).Mynetworks
	})
	c = ts.session(t)
	c.send("MAIL FROM:<s@remote.example>\n")
	c.expect("250 2.1.0 Ok")
	c.must("RCPT TO:<alice@example.com>", "250 ")
	c.must("DATA", "354 ")
	c.send("a\nb\r\n.\r\n")
	c.expect("250 2.0.0 Ok: queued as ")
	if m := ts.q.all(); len(m) != 1 || !strings.HasSuffix(m[0].body, "\r\na\r\nb\r\n") {
		t.Errorf("queued %+v", m)
	}
	c.must("QUIT", "221 ")

	// normalize: the command is read.
	ts = start(t, nil)
	c = ts.session(t)
	c.send("MAIL FROM:<s@remote.example>\n")
	c.expect("250 2.1.0 Ok")
}

func TestParseBareNewline(t *testing.T) {
	for v, want := range map[string]BareNewline{"normalize": BareNewlineNormalize, "yes": BareNewlineNormalize, "no": BareNewlineNormalize, "reject": BareNewlineReject, "Reject": BareNewlineReject} {
		if got, err := ParseBareNewline(v); err != nil || got != want {
			t.Errorf("%s: %v, %v", v, got, err)
		}
	}
	for _, v := range []string{"", "note", "true"} {
		if _, err := ParseBareNewline(v); err == nil {
			t.Errorf("%q accepted", v)
		}
	}
}

// BDAT content is not dot-stuffed: with normalize only its line ends
// change, and a line "." stays (Postfix's BDAT reader has no dot rules).
func TestBareNewlineNormalizeBDAT(t *testing.T) {
	ts := start(t, nil)
	c := ts.session(t)
	c.must("MAIL FROM:<s@remote.example>", "250 ")
	c.must("RCPT TO:<alice@example.com>", "250 ")
	chunk := "a\n.\r\n..b\nc\r\n"
	c.send("BDAT " + fmt.Sprint(len(chunk)) + " LAST\r\n" + chunk)
	c.expect("250 2.0.0 Ok: queued as ")
	m := ts.q.all()
	if len(m) != 1 || !strings.HasSuffix(m[0].body, "\r\na\r\n.\r\n..b\r\nc\r\n") {
		t.Fatalf("queued %+v", m)
	}
}
