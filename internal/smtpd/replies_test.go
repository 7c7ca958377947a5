package smtpd

import (
	"strings"
	"testing"
)

// Postfix's words (src/smtpd/smtpd.c) for what go-smtp answers itself;
// test/e2e's TestRepliesAsPostfix compares a whole session with a real
// Postfix.
func TestRepliesInPostfixWords(t *testing.T) {
	ts := start(t, nil)
	c := dial(t, ts.addr)
	c.expect("220 " + testHost + " ESMTP mailtee")
	for _, s := range []struct{ cmd, want string }{
		{"EHLO", "501 Syntax: EHLO hostname"},
		{"HELO", "501 Syntax: HELO hostname"},
		{"MAIL FROM:<s@remote.example>", "503 5.5.1 Error: send HELO/EHLO first"},
		{"HELO client.example", "250 " + testHost},
		{"RCPT TO:<alice@example.com>", "503 5.5.1 Error: need MAIL command"},
		{"DATA", "503 5.5.1 Error: need RCPT command"},
		{"NOOP", "250 2.0.0 Ok"},
		{"RSET", "250 2.0.0 Ok"},
		{"MAIL FROM <s@remote.example>", "501 5.5.4 Syntax: MAIL FROM:<address>"},
		{"MAIL FROM:<s@remote.example>", "250 2.1.0 Ok"},
		{"DATA", "554 5.5.1 Error: no valid recipients"},
		{"RCPT <alice@example.com>", "501 5.5.4 Syntax: RCPT TO:<address>"},
		{"RCPT TO:<alice@example.com>", "250 2.1.5 Ok"},
		{"DATA x", "501 5.5.4 Syntax: DATA"},
		{"XYZZY", "500 5.5.2 Error: command not recognized"},
		{"EXPN list", "500 5.5.2 Error: command not recognized"},
		{"XYZZY", "500 5.5.2 Error: command not recognized"},
		{"XYZZY", "500 5.5.2 Error: command not recognized"},
		{"STARTTLS", "502 5.5.1 Error: command not implemented"},
		{"DATA", "354 End data with <CR><LF>.<CR><LF>"},
	} {
		if got := c.cmd(s.cmd); got != s.want {
			t.Errorf("%s: %q, want %q", s.cmd, got, s.want)
		}
	}
	c.send("Subject: x\r\n\r\nx\r\n.\r\n")
	c.expect("250 2.0.0 Ok: queued as ")
	if got := c.cmd("EHLO client.example"); !strings.HasPrefix(got, "250-"+testHost+"\n") {
		t.Errorf("EHLO: %q, want 250-%s first", got, testHost)
	}
	c.must("QUIT", "221 2.0.0 Bye")
}

// smtputf8_enable = no: SMTPUTF8 is neither offered nor taken, in
// Postfix's words.
func TestSMTPUTF8Disabled(t *testing.T) {
	ts := start(t, func(o *Options) { o.SMTPUTF8 = false })
	c := dial(t, ts.addr)
	c.expect("220 ")
	if got := c.cmd("EHLO client.example"); strings.Contains(got, "SMTPUTF8") {
		t.Errorf("EHLO offers SMTPUTF8: %q", got)
	}
	c.must("MAIL FROM:<s@remote.example> SMTPUTF8", "555 5.5.4 Unsupported option: SMTPUTF8")
}

// mail_name names the program in the greeting's default and in
// Received:, as in Postfix (smtpd.c: "by %s (%s) with ...").
func TestMailName(t *testing.T) {
	ts := start(t, func(o *Options) { o.Banner, o.MailName = "", "Example MTA" })
	c := dial(t, ts.addr)
	c.expect("220 " + testHost + " ESMTP Example MTA")
	c.cmd("EHLO client.example")
	c.mail("s@remote.example", []string{"alice@example.com"}, "Subject: x\r\n\r\nx\r\n")
	m := ts.q.all()
	if len(m) != 1 || !strings.Contains(m[0].body, "\tby "+testHost+" (Example MTA) with ESMTP id ") {
		t.Fatalf("queued %+v, want a Received: by %s (Example MTA)", m, testHost)
	}
}

// go-smtp echoes the address into its RCPT reply; one longer than its
// 4 KB buffer reaches conn in several writes, and the whole line must
// become Postfix's one, not its start.
func TestLongReplyRewritten(t *testing.T) {
	ts := start(t, func(o *Options) { o.Policy = testPolicy(t, us) })
	c := ts.session(t)
	c.must("MAIL FROM:<s@remote.example>", "250 2.1.0 Ok")
	long := strings.Repeat("a", 9000)
	if got := c.cmd("RCPT TO:<" + long + "@elsewhere.example>"); got != "250 2.1.5 Ok" {
		t.Errorf("RCPT: %.80q", got)
	}
	if got := c.cmd("NOOP"); got != "250 2.0.0 Ok" {
		t.Errorf("NOOP after it: %.80q", got)
	}
}

// go-smtp hangs up after its fourth unknown command; it says so in
// Postfix's words for a hang-up on errors.
func TestGoSMTPErrorLimitWords(t *testing.T) {
	ts := start(t, nil)
	c := ts.session(t)
	for i := 0; i < 3; i++ {
		c.must("XYZZY", "500 5.5.2 Error: command not recognized")
	}
	c.must("XYZZY", "500 5.5.2 Error: command not recognized")
	c.expect("421 4.7.0 mx.example.com Error: too many errors")
	c.closed()
}

// go-smtp v0.25.1 writes a line longer than its 4 KB buffer in one write
// and its CR LF in the next; a writer that cut lines elsewhere must not
// get the tail of a line (an echoed address) rewritten as a reply, nor
// the tail of a rewritten line sent.
func TestReplyPiecesRewritten(t *testing.T) {
	c := &conn{srv: &Server{o: Options{Hostname: testHost}}}
	var got []byte
	for _, piece := range []string{
		"554 5.7.1 <aaaa", "250 2.0.0 Session reset@x>: Relay access denied", "\r\n", // not rewritten
		"250 2.0.0 I'll make sure <bbb", "250 2.0.0 Session reset", "> gets this\r\n", // rewritten whole
		"250 2.0.0 I have successfully done nothing\r\n",
	} {
		got = append(got, c.postfixReply([]byte(piece), true)...)
	}
	want := "554 5.7.1 <aaaa250 2.0.0 Session reset@x>: Relay access denied\r\n250 2.1.5 Ok\r\n250 2.0.0 Ok\r\n"
	if string(got) != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
