package security

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// malformedMessages are contents that break the rules of RFC 5322 and
// RFC 2045-2049 without breaking SMTP (CRLF line ends, no bare CR or
// LF). Postfix accepts every one of them as it is (cleanup does not
// refuse MIME errors by default, nor NUL or 8-bit bytes); mailtee must
// accept them and deliver them unchanged (but for a header field over
// header_size_limit, which both cut: cutByPostfix), and go on serving.
var malformedMessages = []struct{ name, content string }{
	{"empty", ""},
	{"only an empty line", "\r\n"},
	{"no header", "just a body line\r\nand another\r\n"},
	{"header without body or separator", "Subject: no body\r\nFrom: a@b.example\r\n"},
	{"no From Date Message-ID", "Subject: bare\r\n\r\nbody\r\n"},
	{"first line not a header", "This is not a header\r\nSubject: x\r\n\r\nbody\r\n"},
	{"continuation first", " folded first\r\nSubject: x\r\n\r\nbody\r\n"},
	{"header name with space", "Bad Header: x\r\n: no name\r\nSubject:\r\n\r\nbody\r\n"},
	{"8-bit header", "Subject: caf\xc3\xa9 \xe9\xe8\xff\xfe\r\nFrom: J\xf6rg <j@b.example>\r\n\r\nbody\r\n"},
	{"8-bit header name", "X-\xff\xfe: value\r\n\r\nbody\r\n"},
	{"control characters in header", "Subject: a\x01\x02\x1b[31mred\x7f\r\n\r\nbody\r\n"},
	{"NUL in header", "Subject: a\x00b\r\nX-\x00: v\r\n\r\nbody\r\n"},
	{"NUL in body", "Subject: nul\r\n\r\na\x00b\r\n\x00\x00\x00\r\n\x00.\r\n"},
	{"8-bit body without BODY=8BITMIME", "Subject: 8bit\r\n\r\n\x80\x81\xfe\xff\r\n"},
	{"broken encoded words", "Subject: =?utf-8?B?####?= =?bogus?Q?=ZZ?= =?utf-8?q?\r\n\r\nbody\r\n"},
	{"garbage Date and Message-ID", "Date: yesterday-ish\r\nMessage-ID: <<<>>>@@\r\n\r\nbody\r\n"},
	{"address header garbage", "From: <<<a@@b>>>, \"unterminated, (comment\r\nTo: ,,,,;;;:::\r\nCc: @@@\r\n\r\nbody\r\n"},
	{"deeply nested comments", "From: " + strings.Repeat("(", 20000) + "a@b.example" + strings.Repeat(")", 20000) + "\r\n\r\nbody\r\n"},
	{"unbalanced comments and quotes", "From: " + strings.Repeat("(\"", 5000) + "a@b.example\r\nTo: " + strings.Repeat(")\"<", 5000) + "\r\n\r\nbody\r\n"},
	{"10000 recipients in To", "To: " + strings.Repeat("someone@elsewhere.example,\r\n ", 10000) + "last@elsewhere.example\r\n\r\nbody\r\n"},
	{"multipart without boundary", "MIME-Version: 1.0\r\nContent-Type: multipart/mixed\r\n\r\n--\r\nx\r\n--\r\n"},
	{"multipart never closed", "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\npart\r\n"},
	{"boundary of 5000 characters", "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"" + strings.Repeat("b", 5000) + "\"\r\n\r\n--" + strings.Repeat("b", 5000) + "\r\n\r\npart\r\n--" + strings.Repeat("b", 5000) + "--\r\n"},
	{"MIME nested 200 deep", nestedMIME(200)},
	{"20000 empty parts", "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=p\r\n\r\n" + strings.Repeat("--p\r\n\r\n", 20000) + "--p--\r\n"},
	{"bad base64 and unknown encoding", "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=p\r\n\r\n--p\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!! not base64 ====\r\n--p\r\nContent-Transfer-Encoding: x-unknown\r\nContent-Type: text/plain; charset=\"\r\n\r\nx\r\n--p--\r\n"},
	{"message/rfc822 loop", "MIME-Version: 1.0\r\nContent-Type: message/rfc822\r\n\r\nContent-Type: message/rfc822\r\n\r\nContent-Type: message/rfc822\r\n\r\n"},
	{"Content-Type parameter soup", "MIME-Version: 1.0\r\nContent-Type: text/plain; ;;; =; a=\"; b*0*=''%ZZ; " + strings.Repeat("x=y; ", 5000) + "\r\n\r\nbody\r\n"},
	{"lines of dots", "Subject: dots\r\n\r\n.\r\n..\r\n...\r\n. .\r\n"},
}

// cutByPostfix is what Postfix delivers of the messages it does not
// keep whole: a header field over header_size_limit (102400) keeps the
// lines that end within it; the next line would start past 90% of the
// limit, so it goes (mime_state.c, cleanup_out.c cleanup_out_header).
// The To: line is 30 bytes, each continuation 27 plus the line break.
var cutByPostfix = map[string]string{
	"10000 recipients in To": "To: someone@elsewhere.example,\r\n" + strings.Repeat(" someone@elsewhere.example,\r\n", (102400-30)/28) + "\r\nbody\r\n",
}

func nestedMIME(depth int) string {
	var b strings.Builder
	b.WriteString("MIME-Version: 1.0\r\n")
	for i := 0; i < depth; i++ {
		fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n", i, i)
	}
	b.WriteString("Content-Type: text/plain\r\n\r\ndeep\r\n")
	for i := depth - 1; i >= 0; i-- {
		fmt.Fprintf(&b, "--b%d--\r\n", i)
	}
	return b.String()
}

// stuff dot-stuffs content for DATA.
func stuff(content string) string {
	lines := strings.SplitAfter(content, "\r\n")
	for i, l := range lines {
		if strings.HasPrefix(l, ".") {
			lines[i] = "." + l
		}
	}
	return strings.Join(lines, "")
}

// TestMalformedMessages sends each malformed message over DATA and BDAT
// from outside mynetworks and from loopback (whose header addresses
// mailtee rewrites, local_header_rewrite_clients), and checks that it is
// accepted and delivered unchanged, and that mailtee still serves.
func TestMalformedMessages(t *testing.T) {
	in := newInstance(t, "mynetworks = 127.0.0.2/32\nsmtpd_timeout = 60s\n", nil)
	in.Start()
	type sent struct{ name, user, content string }
	var all []sent
	for i, tc := range malformedMessages {
		for _, verb := range []string{"DATA", "BDAT"} {
			user := fmt.Sprintf("m%d%s", i, strings.ToLower(verb[:1]))
			c := dialRaw(t, in.Addr(), "127.0.0.1")
			c.must("EHLO client.outside.example", "250 ")
			c.must("MAIL FROM:<s@outside.example> BODY=8BITMIME", "250 ")
			c.must("RCPT TO:<"+user+"@test.example>", "250 ")
			if verb == "DATA" {
				c.must("DATA", "354 ")
				go io.WriteString(c.Conn, stuff(tc.content)+".\r\n")
			} else {
				go io.WriteString(c.Conn, fmt.Sprintf("BDAT %d LAST\r\n%s", len(tc.content), tc.content))
			}
			r := c.Reply()
			if !strings.HasPrefix(r, "250 ") {
				t.Errorf("%s over %s: %q, want 250", tc.name, verb, r)
			} else {
				all = append(all, sent{tc.name + "/" + verb, user, tc.content})
			}
			c.must("NOOP", "250 ")
			c.cmd("QUIT")
			in.running()
		}
	}
	for _, s := range all {
		waitUntil(t, "delivery of "+s.name, slow(60*time.Second), func() bool { return len(in.MaildirMessages(s.user)) >= 1 })
	}
	waitUntil(t, "an empty queue", slow(30*time.Second), in.queueEmpty)
	for _, s := range all {
		msgs := in.MaildirMessages(s.user)
		if len(msgs) != 1 {
			t.Errorf("%s: delivered %d times", s.name, len(msgs))
		}
		got := msgs[0]
		want := s.content
		if cut, ok := cutByPostfix[strings.TrimSuffix(strings.TrimSuffix(s.name, "/DATA"), "/BDAT")]; ok {
			want = cut
		}
		want = strings.ReplaceAll(want, "\r\n", "\n")
		if want != "" && !strings.HasSuffix(want, "\n") {
			want += "\n"
		}
		// What mailtee adds goes first: Return-Path, Delivered-To,
		// Received (ending in the date).
		if !strings.HasSuffix(got, ")\n"+want) {
			t.Errorf("%s: delivered content differs from what was sent:\n got %q\nwant ...%q", s.name, clip(got), clip(want))
		}
	}
	in.alive("malformed")
}

func clip(s string) string {
	if len(s) > 600 {
		return s[:300] + " ... " + s[len(s)-300:]
	}
	return s
}

// hopcount_limit (50): a message with more Received: headers is refused,
// "554 5.4.6 too many hops", wherever they are in the header: Postfix's
// cleanup counts every primary header line, header_size_limit only
// truncates a single long header.
func TestHopCount(t *testing.T) {
	in := newInstance(t, "mynetworks = 127.0.0.2/32\nheader_size_limit = 4096\nsmtpd_timeout = 60s\n", nil)
	in.Start()
	received := strings.Repeat("Received: from a.example by b.example; Mon, 1 Jan 2024 00:00:00 +0000\r\n", 60)
	for _, tc := range []struct{ name, header string }{
		{"at the top", received + "Subject: loop\r\n"},
		{"after a big header", "Subject: " + strings.Repeat("x", 8000) + "\r\n" + received},
		{"after many small headers", strings.Repeat("X-Filler: 0123456789012345678901234567890123456789\r\n", 200) + received},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialRaw(t, in.Addr(), "127.0.0.1")
			c.must("EHLO client.outside.example", "250 ")
			c.must("MAIL FROM:<s@outside.example>", "250 ")
			c.must("RCPT TO:<hops@test.example>", "250 ")
			c.must("DATA", "354 ")
			c.send(tc.header + "\r\nbody\r\n.\r\n")
			if r := c.Reply(); !strings.HasPrefix(r, "554 5.4.6 ") {
				t.Errorf("60 Received: headers %s: %q, want 554 5.4.6 too many hops", tc.name, r)
			}
		})
	}
	time.Sleep(500 * time.Millisecond)
	if n := len(in.MaildirMessages("hops")); n != 0 {
		t.Errorf("%d looping messages delivered", n)
	}
	in.alive("hops")
}

// A session that sends malformed commands of every kind, then a good
// message: nothing it sent may stop the server.
func TestMalformedCommands(t *testing.T) {
	in := newInstance(t, "mynetworks = 127.0.0.2/32\nsmtpd_timeout = 60s\nsmtpd_hard_error_limit = 1000\nsmtpd_soft_error_limit = 1000\n", nil)
	in.Start()
	lines := []string{
		"EHLO", "HELO", "EHLO \x00\x01\xff", "EHLO " + strings.Repeat("h", 10000), "EHLO [999.1.1.1]", "EHLO [IPv6:zz]",
		"MAIL FROM:", "MAIL FROM:<", "MAIL FROM:<>>", "MAIL FROM:<<>>", "MAIL FROM:<a@b> SIZE=", "MAIL FROM:<a@b> BODY=BINARYMIME",
		"MAIL FROM:<a@b> SMTPUTF8", "MAIL FROM:<\xff@\xfe>", "MAIL FROM:<a@b> " + strings.Repeat("X=Y ", 2000), "MAIL FROM:<a@b> AUTH=<>",
		"MAIL FROM:<\"unterminated@b>", "MAIL FROM:<a\\@b>", "MAIL FROM:<a@[>", "MAIL FROM:<a@[IPv6:::1>",
		"RCPT TO:", "RCPT TO:<>", "RCPT TO:<@>", "RCPT TO:<@:>", "RCPT TO:<@a,@:b@c>", "RCPT TO:<" + strings.Repeat("@a,", 3000) + "@a:b@test.example>",
		"RCPT TO:<a@test.example> ORCPT=rfc822;" + strings.Repeat("x", 5000), "RCPT TO:<\x00@test.example>",
		"BDAT", "BDAT -1", "BDAT x LAST", "BDAT 99999999999999999999 LAST", "DATA x",
		"STARTTLS", "AUTH PLAIN", "AUTH LOGIN", "AUTH PLAIN ====", "VRFY root", "EXPN root", "HELP", "TURN", "ETRN x", "XCLIENT ADDR=127.0.0.2",
		"\x00", "\xff\xfe", " ", "\t", "MAIL", "RCPT", "NOOP \x00",
	}
	c := dialRaw(t, in.Addr(), "127.0.0.1")
	for _, l := range lines {
		r := c.try(l)
		if strings.HasPrefix(r, "EOF") {
			// go-smtp ends a session after a few unknown commands;
			// carry on in a new one.
			in.running()
			c = dialRaw(t, in.Addr(), "127.0.0.1")
			continue
		}
		if strings.HasPrefix(r, "354") {
			c.send("x\r\n.\r\n")
			c.Reply()
		}
	}
	in.alive("commands")
}

// Recipients whose local part would make a bad file name: mailtee takes
// the Maildir name from it (mail_spool_directory, no
// local_recipient_maps). Each is refused at RCPT, or accepted and then
// delivered or bounced to the (local) sender; nothing is written outside
// the spool, and nothing stays in the queue.
func TestHostileMailboxNames(t *testing.T) {
	in := newInstance(t, "mynetworks = 127.0.0.2/32\nsmtpd_timeout = 60s\nsmtpd_hard_error_limit = 1000\n", nil)
	in.Start()
	names := []string{
		`"../../escape"`, `".."`, `"."`, `"a/../../b"`, `"/etc/passwd"`, `"..\\.."`,
		`"a b"`, `"-rf"`, `"~root"`, `"$(touch x)"`, `"*"`, `"con"`, `".hidden"`,
		strings.Repeat("a", 255), strings.Repeat("b", 256), strings.Repeat("c", 1000),
	}
	c := dialRaw(t, in.Addr(), "127.0.0.1")
	c.must("EHLO client.outside.example", "250 ")
	accepted := 0
	for _, name := range names {
		c.must("MAIL FROM:<sender@test.example>", "250 ")
		r := c.cmd("RCPT TO:<" + name + "@test.example>")
		t.Logf("RCPT TO:<%s@test.example>: %s", clip(name), r)
		if !strings.HasPrefix(r, "250 ") {
			if !strings.HasPrefix(r, "5") {
				t.Errorf("RCPT TO:<%s@test.example>: %q", clip(name), r)
			}
			c.must("RSET", "250 ")
			continue
		}
		accepted++
		c.must("DATA", "354 ")
		c.send("Subject: path\r\n\r\nbody\r\n.\r\n")
		if r := c.Reply(); !strings.HasPrefix(r, "250 ") {
			t.Errorf("<%s@test.example>: end of DATA: %q", clip(name), r)
		}
	}
	c.cmd("QUIT")
	waitUntil(t, "the queue to drain (each message delivered or bounced)", slow(30*time.Second), in.queueEmpty)
	// Only what mailtee owns is in its directory.
	entries, _ := os.ReadDir(in.Dir)
	for _, e := range entries {
		switch e.Name() {
		case "main.cf", "aliases", "mail", "queue", "data": // data: data_directory, the ledger
		default:
			t.Errorf("unexpected %s in the instance directory", e.Name())
		}
	}
	filepath.WalkDir(filepath.Dir(in.Dir), func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.Contains(d.Name(), "escape") || d != nil && d.Name() == "b" {
			t.Errorf("a mailbox name escaped the spool: %s", p)
		}
		return nil
	})
	in.alive("names")
}

// A command line cut short by the end of the connection (or by
// smtpd_timeout) is not a command: Postfix's smtp_get refuses data
// "truncated because of EOF". A client that half-closes after
// "MAIL FROM:<...>" without CRLF must not have it carried out.
func TestTruncatedCommand(t *testing.T) {
	knownGap(t, "go-smtp executes a command line cut short by EOF or a half-close (bufio returns the partial line without an error); Postfix refuses it")
	in := newInstance(t, "mynetworks = 127.0.0.2/32\nsmtpd_timeout = 2s\n", nil)
	in.Start()
	t.Run("at EOF", func(t *testing.T) {
		c := dialRaw(t, in.Addr(), "127.0.0.1")
		c.must("EHLO client.outside.example", "250 ")
		c.send("MAIL FROM:<cut@outside.example>")
		c.Conn.(*net.TCPConn).CloseWrite()
		rest, ok := c.closed(slow(10 * time.Second))
		if !ok {
			t.Fatalf("the session stays open after EOF")
		}
		if strings.Contains(rest, "250 ") {
			t.Errorf("the unterminated command was carried out: %q", rest)
		}
	})
	t.Run("at the timeout", func(t *testing.T) {
		c := dialRaw(t, in.Addr(), "127.0.0.1")
		c.must("EHLO client.outside.example", "250 ")
		c.send("MAIL FROM:<cut@outside.example>")
		rest, ok := c.closed(slow(20 * time.Second))
		if !ok {
			t.Fatalf("the session stays open after smtpd_timeout")
		}
		if strings.Contains(rest, "250 ") {
			t.Errorf("the unterminated command was carried out: %q", rest)
		}
	})
	in.alive("truncated")
}
