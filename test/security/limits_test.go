package security

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// limitsSetup is a mailtee with small limits, its clients on 127.0.0.1
// outside mynetworks (127.0.0.2/32), so that the per-client limits
// apply to them.
func limitsSetup(t *testing.T, extra string) *instance {
	in := newInstance(t, `mynetworks = 127.0.0.2/32
message_size_limit = 100000
smtpd_recipient_limit = 5
smtpd_hard_error_limit = 5
smtpd_client_connection_count_limit = 3
smtpd_timeout = 2s
`+tlsMainCf(t)+extra, nil)
	in.Start()
	return in
}

// replies reads n replies (ending early at EOF) from r and returns their
// last lines.
func (r *rawSMTP) replies(n int) []string {
	var out []string
	for i := 0; i < n; i++ {
		got := r.Reply()
		out = append(out, got)
		if strings.HasPrefix(got, "EOF") {
			break
		}
	}
	return out
}

// A command line longer than RFC 5321's 512 octets, than go-smtp's
// default 2000 and than Postfix's line_length_limit (2048) is either
// refused (Postfix: "500 5.5.2 Error: command too long") or carried out
// whole; its tail must never run as a command of its own (a server that
// cuts a long line in two would run "MAIL FROM:<injected...>"). A line
// over mailtee's 1 MiB bound ends the session with a 500.
func TestLongCommandLine(t *testing.T) {
	for _, k := range sessionKinds {
		t.Run(k.name, func(t *testing.T) { testLongCommandLine(t, k.tls) })
	}
}

func testLongCommandLine(t *testing.T, useTLS bool) {
	in := limitsSetup(t, "smtpd_timeout = 30s\n")
	for _, n := range []int{512, 1000, 1024, 2000, 2048, 2049, 4096, 8192, 65536, 512 << 10} {
		c := dialSession(t, in.Addr(), "127.0.0.1", useTLS)
		c.must("EHLO client.outside.example", "250 ")
		pad := strings.Repeat("x", n-len("NOOP "))
		c.send("NOOP " + pad + "MAIL FROM:<injected@outside.example>\r\nRSET\r\n")
		got := c.replies(2)
		if len(got) != 2 {
			t.Fatalf("%d-byte NOOP: replies %q", n, got)
		}
		t.Logf("%d-byte NOOP: %q", n, got[0])
		if !strings.HasPrefix(got[0], "250 ") && !strings.HasPrefix(got[0], "500 ") {
			t.Errorf("%d-byte NOOP: %q, want 250 or 500 (command too long)", n, got[0])
		}
		if !strings.HasPrefix(got[1], "250 ") || got[1] == "250 2.1.0 Ok" {
			t.Errorf("%d-byte NOOP: the reply after it is %q, want RSET's 250: the tail of the line ran as a command", n, got[1])
		}
		// No transaction was opened by the tail.
		c.must("MAIL FROM:<s@outside.example>", "250 ")
		// A long address: refused or accepted, but answered, once.
		local := strings.Repeat("a", n)
		if r := c.cmd("RCPT TO:<" + local + "@test.example>"); !strings.HasPrefix(r, "250 ") && !strings.HasPrefix(r, "5") {
			t.Errorf("RCPT with a %d-byte local part: %q", n, r)
		}
		c.must("NOOP", "250 ")
		c.cmd("QUIT")
	}

	// Over the bound: refused and the session ended, not a buffer
	// growing without end.
	c := dialSession(t, in.Addr(), "127.0.0.1", useTLS)
	c.must("EHLO client.outside.example", "250 ")
	go func() {
		// The server may close while this is still writing.
		io.WriteString(c.Conn, "NOOP "+strings.Repeat("x", 2<<20)+"\r\n")
	}()
	if r := c.Reply(); !strings.HasPrefix(r, "500 ") {
		t.Errorf("2 MiB command line: %q, want 500", r)
	}
	if _, ok := c.closed(slow(10 * time.Second)); !ok {
		t.Errorf("the session goes on after a 2 MiB command line")
	}
	in.alive("longcmd")
}

// Long lines in the content: Postfix takes lines of any length (it cuts
// them into line_length_limit records and joins them at delivery), so
// lines far over 1000 octets are accepted and delivered intact. Over
// mailtee's own 1 MiB bound, a refusal is fine, a truncated delivery is
// not.
func TestLongLineInData(t *testing.T) {
	in := limitsSetup(t, "message_size_limit = 10240000\nsmtpd_timeout = 30s\n")
	for i, n := range []int{998, 999, 1000, 2048, 2049, 10000, 100000, 1 << 20, 2 << 20} {
		user := fmt.Sprintf("long%d", i)
		line := strings.Repeat("0123456789abcdef", n/16+1)[:n]
		c := dialRaw(t, in.Addr(), "127.0.0.1")
		c.must("EHLO client.outside.example", "250 ")
		c.must("MAIL FROM:<s@outside.example>", "250 ")
		c.must("RCPT TO:<"+user+"@test.example>", "250 ")
		c.must("DATA", "354 ")
		go io.WriteString(c.Conn, "Subject: long line\r\n\r\nbefore\r\n"+line+"\r\nafter\r\n.\r\n")
		got := c.Reply()
		switch {
		case strings.HasPrefix(got, "250 "):
			waitUntil(t, fmt.Sprintf("delivery of the %d-byte line", n), slow(30*time.Second), func() bool { return len(in.MaildirMessages(user)) == 1 })
			if m := in.MaildirMessages(user)[0]; !strings.Contains(m, "\nbefore\n"+line+"\nafter\n") {
				t.Errorf("%d-byte line: not delivered intact (%d bytes delivered)", n, len(m))
			}
		case n > 1<<20-100 && (strings.HasPrefix(got, "500 ") || strings.HasPrefix(got, "552 ")):
			t.Logf("%d-byte line refused: %q", n, got)
			time.Sleep(500 * time.Millisecond)
			if len(in.MaildirMessages(user)) != 0 {
				t.Errorf("%d-byte line: refused with %q, yet delivered", n, got)
			}
		default:
			t.Errorf("%d-byte line: %q", n, got)
		}
		c.Conn.Close()
	}
	in.alive("longdata")
}

// header_size_limit: Postfix keeps at most that much of one header and
// accepts the message (cleanup ignores MIME_ERR_TRUNC_HEADER in the
// primary header); the rest of the message is unharmed.
func TestHeaderSizeLimit(t *testing.T) {
	in := limitsSetup(t, "header_size_limit = 4096\nmessage_size_limit = 1000000\nsmtpd_timeout = 30s\n")
	var folded strings.Builder
	folded.WriteString("Subject: start")
	for i := 0; i < 500; i++ {
		fmt.Fprintf(&folded, "\r\n fold %04d %s", i, strings.Repeat("s", 60))
	}
	many := strings.Repeat("X-Filler: "+strings.Repeat("f", 90)+"\r\n", 2000)
	for _, tc := range []struct{ name, header string }{
		{"one folded header of 40 KB", folded.String() + "\r\n"},
		{"one unfolded header of 40 KB", "Subject: " + strings.Repeat("u", 40000) + "\r\n"},
		{"2000 headers, 200 KB", many},
	} {
		t.Run(tc.name, func(t *testing.T) {
			user := strings.ReplaceAll(tc.name, " ", "-")[:12]
			body := "the body\r\nsecond line\r\n"
			msg := "From: s@outside.example\r\n" + tc.header + "X-After: kept\r\n\r\n" + body
			if err := sendFrom("127.0.0.1", in.Addr(), "s@outside.example", []string{user + "@test.example"}, msg); err != nil {
				t.Fatalf("refused: %v", err)
			}
			waitUntil(t, "delivery", slow(30*time.Second), func() bool { return len(in.MaildirMessages(user)) == 1 })
			m := in.MaildirMessages(user)[0]
			if !strings.HasSuffix(m, "\n\nthe body\nsecond line\n") {
				t.Errorf("body not intact; message ends %q", m[max(0, len(m)-200):])
			}
			if !strings.Contains(m, "\nX-After: kept\n") {
				t.Errorf("the header after the big one is lost")
			}
		})
	}
	in.alive("hdr")
}

// message_size_limit, announced in EHLO, checked at SIZE= and while the
// content streams in: "552 5.3.4 Message size exceeds fixed limit", the
// session goes on, nothing is delivered.
func TestMessageSizeLimit(t *testing.T) {
	// Eight refused SIZE= values would reach a hard error limit of 5,
	// which Postfix (and mailtee) enforce: this test is about sizes.
	in := limitsSetup(t, "smtpd_timeout = 30s\nsmtpd_hard_error_limit = 50\n")
	c := dialRaw(t, in.Addr(), "127.0.0.1")
	c.send("EHLO client.outside.example\r\n")
	var ehlo []string
	for {
		line, err := c.R.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		ehlo = append(ehlo, strings.TrimRight(line, "\r\n"))
		if line[3] == ' ' {
			break
		}
	}
	if !strings.Contains(strings.Join(ehlo, "\n"), "SIZE 100000") {
		t.Errorf("EHLO does not announce SIZE 100000: %q", ehlo)
	}
	for _, size := range []string{"100001", "99999999999", "18446744073709551616", "99999999999999999999999999"} {
		if r := c.cmd("MAIL FROM:<s@outside.example> SIZE=" + size); !strings.HasPrefix(r, "552 ") && !strings.HasPrefix(r, "501 ") {
			t.Errorf("SIZE=%s: %q, want 552 (or 501 for a number that does not parse)", size, r)
		}
	}
	for _, size := range []string{"-1", "abc", "", "1e9"} {
		if r := c.cmd("MAIL FROM:<s@outside.example> SIZE=" + size); !strings.HasPrefix(r, "5") {
			t.Errorf("SIZE=%q: %q, want a 5xx", size, r)
		}
	}
	// SIZE= within the limit, content over it.
	c.must("MAIL FROM:<s@outside.example> SIZE=1000", "250 ")
	c.must("RCPT TO:<big@test.example>", "250 ")
	c.must("DATA", "354 ")
	go io.WriteString(c.Conn, "Subject: big\r\n\r\n"+strings.Repeat(strings.Repeat("y", 98)+"\r\n", 2000)+".\r\n")
	if r := c.Reply(); r != "552 5.3.4 Message size exceeds fixed limit" {
		t.Errorf("oversized DATA: %q", r)
	}
	c.must("NOOP", "250 ")
	// BDAT, over the limit in one chunk and in several.
	c.must("MAIL FROM:<s@outside.example>", "250 ")
	c.must("RCPT TO:<big@test.example>", "250 ")
	chunk := strings.Repeat("z", 60000)
	c.send(fmt.Sprintf("BDAT %d\r\n%s", len(chunk), chunk))
	r1 := c.Reply()
	c.send(fmt.Sprintf("BDAT %d LAST\r\n%s", len(chunk), chunk))
	r2 := c.Reply()
	if !strings.HasPrefix(r1, "552 ") && !strings.HasPrefix(r2, "552 ") {
		t.Errorf("120000 bytes in two BDAT chunks: %q, %q; want a 552", r1, r2)
	}
	c.cmd("RSET")
	c.must("NOOP", "250 ")
	// The session is still good for a message within the limit.
	c.must("MAIL FROM:<s@outside.example> SIZE=100", "250 ")
	c.must("RCPT TO:<small@test.example>", "250 ")
	c.must("DATA", "354 ")
	c.send("Subject: small\r\n\r\nsmall\r\n.\r\n")
	if r := c.Reply(); !strings.HasPrefix(r, "250 ") {
		t.Errorf("message within the limit after oversized ones: %q", r)
	}
	waitUntil(t, "the small message", slow(30*time.Second), func() bool { return len(in.MaildirMessages("small")) == 1 })
	waitUntil(t, "an empty queue", slow(30*time.Second), in.queueEmpty)
	if n := len(in.MaildirMessages("big")); n != 0 {
		t.Errorf("%d oversized messages delivered", n)
	}
	in.alive("size")
}

// smtpd_recipient_limit: past it, "452 4.5.3 Error: too many recipients",
// and the message goes to the first ones only.
func TestRecipientLimit(t *testing.T) {
	in := limitsSetup(t, "")
	c := dialRaw(t, in.Addr(), "127.0.0.1")
	c.must("EHLO client.outside.example", "250 ")
	c.must("MAIL FROM:<s@outside.example>", "250 ")
	for i := 0; i < 12; i++ {
		want := "250 "
		if i >= 5 {
			want = "452 4.5.3 Error: too many recipients"
		}
		c.must(fmt.Sprintf("RCPT TO:<r%d@test.example>", i), want)
	}
	c.must("DATA", "354 ")
	c.send("Subject: many\r\n\r\nx\r\n.\r\n")
	if r := c.Reply(); !strings.HasPrefix(r, "250 ") {
		t.Fatalf("DATA: %q", r)
	}
	waitUntil(t, "delivery to the first five", slow(30*time.Second), func() bool {
		for i := 0; i < 5; i++ {
			if len(in.MaildirMessages(fmt.Sprintf("r%d", i))) != 1 {
				return false
			}
		}
		return true
	})
	waitUntil(t, "an empty queue", slow(30*time.Second), in.queueEmpty)
	for i := 5; i < 12; i++ {
		if n := len(in.MaildirMessages(fmt.Sprintf("r%d", i))); n != 0 {
			t.Errorf("r%d, over the limit, got %d messages", i, n)
		}
	}
}

// smtpd_hard_error_limit (5 here): once a session has made that many
// errors, the next command is answered "421 4.7.0 ... Error: too many
// errors" and the connection is closed. Postfix counts every error reply
// to a client command: refused recipients, bad syntax, commands out of
// order, unknown commands.
func TestHardErrorLimit(t *testing.T) {
	for _, k := range sessionKinds {
		t.Run(k.name, func(t *testing.T) { testHardErrorLimit(t, k.tls) })
	}
}

func testHardErrorLimit(t *testing.T, useTLS bool) {
	in := limitsSetup(t, "smtpd_timeout = 30s\n")
	for _, tc := range []struct {
		name  string
		setup []string // commands before the errors
		bad   string   // an erroneous command
	}{
		{"relay refused", []string{"MAIL FROM:<s@outside.example>"}, "RCPT TO:<x@elsewhere.example>"},
		{"bad recipient syntax", []string{"MAIL FROM:<s@outside.example>"}, "RCPT TO:<a@b..c>"},
		{"bad sender syntax", nil, "MAIL FROM:<a@b..c>"},
		{"MAIL without brackets", nil, "MAIL FROM:junk junk"},
		{"RCPT before MAIL", nil, "RCPT TO:<alice@test.example>"},
		{"DATA before RCPT", []string{"MAIL FROM:<s@outside.example>"}, "DATA"},
		{"unknown command", nil, "XYZZY"},
		{"not implemented", nil, "EXPN staff"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialSession(t, in.Addr(), "127.0.0.1", useTLS)
			c.must("EHLO client.outside.example", "250 ")
			for _, s := range tc.setup {
				c.must(s, "250 ")
			}
			var got []string
			closed := false
			for i := 0; i < 30 && !closed; i++ {
				r := c.try(tc.bad)
				got = append(got, r)
				if strings.HasPrefix(r, "2") || strings.HasPrefix(r, "3") {
					t.Fatalf("%q accepted: %q", tc.bad, r)
				}
				if strings.HasPrefix(r, "421 ") || strings.HasPrefix(r, "EOF") {
					closed = true
				}
			}
			if !closed {
				t.Errorf("30 errors (%q, answered %q) and the session goes on; Postfix hangs up after smtpd_hard_error_limit (5)", tc.bad, got[0])
				return
			}
			if _, ok := c.closed(slow(10 * time.Second)); !ok {
				t.Errorf("not closed after %q", got[len(got)-1])
			}
			if len(got) > 8 {
				t.Errorf("closed only after %d errors (%q ...)", len(got), got[0])
			}
		})
	}
	in.alive("errors")
}

// smtpd_client_connection_count_limit (3 here) for a client outside
// mynetworks: the 4th connection gets "421 4.7.0 ... Error: too many
// connections from 127.0.0.1" instead of the greeting; other clients,
// and mynetworks, are not held back by it; a closed connection frees its
// place.
func TestConnectionLimits(t *testing.T) {
	in := limitsSetup(t, "smtpd_timeout = 60s\n")
	var open []*rawSMTP
	for i := 0; i < 3; i++ {
		open = append(open, dialRaw(t, in.Addr(), "127.0.0.1"))
	}
	over := dialRawNoGreeting(t, in.Addr(), "127.0.0.1")
	if r := over.Reply(); r != "421 4.7.0 mx.test.example Error: too many connections from 127.0.0.1" {
		t.Errorf("4th connection from 127.0.0.1: %q", r)
	}
	if _, ok := over.closed(slow(10 * time.Second)); !ok {
		t.Errorf("the refused connection stays open")
	}
	// Another client, and a client in mynetworks beyond the limit.
	other := dialRaw(t, in.Addr(), "127.0.0.3")
	other.must("EHLO other.example", "250 ")
	for i := 0; i < 5; i++ {
		dialRaw(t, in.Addr(), "127.0.0.2").must("NOOP", "250 ")
	}
	// A place frees up when a session ends.
	open[0].must("QUIT", "221 ")
	open[0].closed(slow(10 * time.Second))
	waitUntil(t, "a new connection from 127.0.0.1 to be welcome", slow(10*time.Second), func() bool {
		c := dialRawNoGreeting(t, in.Addr(), "127.0.0.1")
		defer c.Conn.Close()
		return strings.HasPrefix(c.Reply(), "220 ")
	})
	in.WaitLog("warning: Connection concurrency limit exceeded: 4 from localhost[127.0.0.1] for service smtp")
	for _, c := range open {
		c.Conn.Close()
	}
	waitUntil(t, "the sessions to end", slow(10*time.Second), func() bool {
		return strings.Count(in.Log.String(), "disconnect from localhost[127.0.0.1]") >= 5
	})
	in.alive("conns")
}

// All sessions: 100 from 100 addresses (default_process_limit), then the
// 101st waits without a greeting, as in Postfix's listen queue, until a
// session ends.
func TestTotalConnectionLimit(t *testing.T) {
	in := limitsSetup(t, "smtpd_timeout = 60s\n")
	var conns []*rawSMTP
	for i := 0; i < 100; i++ {
		conns = append(conns, dialRaw(t, in.Addr(), fmt.Sprintf("127.0.1.%d", i+1)))
	}
	extra := dialRawNoGreeting(t, in.Addr(), "127.0.2.1")
	extra.Conn.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := extra.R.ReadByte(); err == nil {
		t.Errorf("101st session greeted")
	}
	in.WaitLog(`has reached its process limit "100"`)
	conns[0].Conn.Close()
	extra.Conn.SetReadDeadline(time.Now().Add(slow(10 * time.Second)))
	if r := extra.Reply(); !strings.HasPrefix(r, "220 ") {
		t.Errorf("101st session, once a place is free: %q", r)
	}
	for _, c := range conns {
		c.Conn.Close()
	}
	waitUntil(t, "sessions to be welcome again", slow(10*time.Second), func() bool {
		c := dialRawNoGreeting(t, in.Addr(), "127.0.2.2")
		defer c.Conn.Close()
		return strings.HasPrefix(c.Reply(), "220 ")
	})
	in.alive("conns")
}

// smtpd_timeout (2s here): an idle client is told 421 and disconnected,
// whether it is silent before EHLO, in a transaction, or in the middle
// of the content.
func TestIdleTimeout(t *testing.T) {
	for _, k := range sessionKinds {
		t.Run(k.name, func(t *testing.T) { testIdleTimeout(t, k.tls) })
	}
}

func testIdleTimeout(t *testing.T, useTLS bool) {
	in := limitsSetup(t, "")
	for _, tc := range []struct {
		name  string
		setup []string
		raw   string
	}{
		{"after the greeting", nil, ""},
		{"after EHLO", []string{"EHLO client.outside.example"}, ""},
		{"in a transaction", []string{"EHLO client.outside.example", "MAIL FROM:<s@outside.example>", "RCPT TO:<idle@test.example>"}, ""},
		{"in DATA", []string{"EHLO client.outside.example", "MAIL FROM:<s@outside.example>", "RCPT TO:<idle@test.example>", "DATA"}, "Subject: idle\r\n\r\nhalf a mess"},
		{"in a command line", []string{"EHLO client.outside.example"}, "MAIL FROM:<s@outs"},
		{"in a BDAT chunk", []string{"EHLO client.outside.example", "MAIL FROM:<s@outside.example>", "RCPT TO:<idle@test.example>"}, "BDAT 1000 LAST\r\nSubject: idle\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := dialSession(t, in.Addr(), "127.0.0.1", useTLS)
			for _, s := range tc.setup {
				if r := c.cmd(s); !strings.HasPrefix(r, "2") && !strings.HasPrefix(r, "3") {
					t.Fatalf("%q: %q", s, r)
				}
			}
			c.send(tc.raw)
			start := time.Now()
			rest, ok := c.closed(slow(20 * time.Second))
			took := time.Since(start)
			if !ok {
				t.Fatalf("not disconnected after %v idle (smtpd_timeout = 2s)", took)
			}
			if took < 1500*time.Millisecond {
				t.Errorf("disconnected after %v, before smtpd_timeout (2s)", took)
			}
			// The last thing said is a 421 (before it, go-smtp may
			// answer what it had read of an unfinished command).
			lines := strings.Split(strings.TrimRight(rest, "\r\n"), "\r\n")
			if !strings.HasPrefix(lines[len(lines)-1], "421 ") {
				t.Errorf("disconnected with %q, want a 421 last", rest)
			}
			t.Logf("disconnected after %v with %q", took, rest)
		})
	}
	t.Cleanup(func() {
		if len(in.MaildirMessages("idle")) != 0 {
			t.Errorf("a half-sent message was delivered")
		}
	})
}

// flood writes data in a goroutine and reads replies; it returns the
// replies once the server stops answering (EOF) or n were read.
func flood(t *testing.T, c *rawSMTP, data string, n int) []string {
	go func() {
		c.Conn.SetWriteDeadline(time.Now().Add(slow(60 * time.Second)))
		io.WriteString(c.Conn, data)
	}()
	c.Conn.SetReadDeadline(time.Now().Add(slow(60 * time.Second)))
	return c.replies(n)
}

// A pipelining flood: thousands of commands in one write. Every one is
// answered, in order (or the session is cut at a limit), and the server
// keeps serving.
func TestPipeliningFlood(t *testing.T) {
	in := limitsSetup(t, "smtpd_timeout = 30s\nsmtpd_hard_error_limit = 20\nsmtpd_soft_error_limit = 20\n")

	t.Run("NOOPs", func(t *testing.T) {
		// Junk past smtpd_junk_command_limit (100) counts as errors:
		// 121 answers, then 421 (lost to a reset, perhaps, as below).
		c := dialRaw(t, in.Addr(), "127.0.0.1")
		got := flood(t, c, "EHLO flood.example\r\n"+strings.Repeat("NOOP\r\n", 20000)+"QUIT\r\n", 20002)
		if len(got) > 123 || !strings.HasPrefix(got[len(got)-1], "EOF") {
			t.Errorf("%d replies; the session was not cut at the junk command limit (last %q)", len(got), got[len(got)-1])
		}
		for i, r := range got[1 : len(got)-1] {
			if r != "250 2.0.0 Ok" && !strings.HasPrefix(r, "421 4.7.0 ") {
				t.Fatalf("reply %d: %q (first replies %q)", i+1, r, got[:min(3, len(got))])
			}
		}
		in.WaitLog("too many errors after NOOP from localhost[127.0.0.1]")
	})

	t.Run("RCPTs", func(t *testing.T) {
		c := dialRaw(t, in.Addr(), "127.0.0.1")
		var b strings.Builder
		b.WriteString("EHLO flood.example\r\nMAIL FROM:<s@outside.example>\r\n")
		for i := 0; i < 5000; i++ {
			fmt.Fprintf(&b, "RCPT TO:<flood%d@test.example>\r\n", i)
		}
		b.WriteString("DATA\r\nSubject: flood\r\n\r\nflood\r\n.\r\nQUIT\r\n")
		got := flood(t, c, b.String(), 5006)
		if len(got) != 5006 {
			t.Fatalf("%d replies to 5006 commands; last %q", len(got), got[len(got)-1])
		}
		for i, r := range got[2:5002] {
			want := "250 "
			if i >= 5 {
				want = "452 4.5.3 Error: too many recipients"
			}
			if !strings.HasPrefix(r, want) {
				t.Fatalf("RCPT %d: %q, want %q", i, r, want)
			}
		}
		if !strings.HasPrefix(got[5003], "250 ") {
			t.Errorf("end of DATA: %q", got[5003])
		}
		waitUntil(t, "delivery to the first five", slow(30*time.Second), func() bool { return len(in.MaildirMessages("flood4")) == 1 })
		if len(in.MaildirMessages("flood5")) != 0 {
			t.Errorf("recipient over the limit got mail")
		}
	})

	t.Run("refused RCPTs", func(t *testing.T) {
		c := dialRaw(t, in.Addr(), "127.0.0.1")
		var b strings.Builder
		b.WriteString("EHLO flood.example\r\nMAIL FROM:<s@outside.example>\r\n")
		for i := 0; i < 5000; i++ {
			fmt.Fprintf(&b, "RCPT TO:<flood%d@elsewhere.example>\r\n", i)
		}
		got := flood(t, c, b.String(), 5002)
		// 20 refusals, then 421 and the end of the session. The server
		// closes with unread commands in its buffer, so the client's
		// TCP may see a reset and lose the last replies: the log says
		// why the session ended.
		if len(got) > 30 || !strings.HasPrefix(got[len(got)-1], "EOF") {
			t.Errorf("%d replies; the session was not cut at the hard error limit (last %q)", len(got), got[len(got)-1])
		}
		in.WaitLog("too many errors after RCPT from localhost[127.0.0.1]")
		in.WaitLog("rcpt=0/21 ")
	})

	t.Run("junk", func(t *testing.T) {
		c := dialRaw(t, in.Addr(), "127.0.0.1")
		got := flood(t, c, strings.Repeat("\x00\x01\x02 junk \xff\r\n", 20000), 20000)
		if len(got) > 100 {
			t.Errorf("%d replies to junk lines: the session was not cut", len(got))
		}
	})
	in.alive("flood")
}

// abuser is one hostile connection kept busy until stop is closed.
type abuser struct {
	name string
	run  func(c net.Conn, stop <-chan struct{})
}

// TestWellBehavedClientUnderAbuse: while 20 abusive connections are open
// (silent, half-way through a command, trickling a byte at a time,
// flooding commands without reading a reply, streaming junk content),
// from the same address as the good client and from others, a
// well-behaved client still gets its message accepted and delivered
// within a bounded time.
func TestWellBehavedClientUnderAbuse(t *testing.T) {
	in := newInstance(t, `mynetworks = 127.0.0.2/32
smtpd_timeout = 120s
message_size_limit = 2000000
`, nil)
	in.Start()

	line := func(c net.Conn, s string) bool {
		c.SetWriteDeadline(time.Now().Add(2 * time.Second))
		_, err := io.WriteString(c, s)
		return err == nil
	}
	wait := func(stop <-chan struct{}, d time.Duration) bool {
		select {
		case <-stop:
			return false
		case <-time.After(d):
			return true
		}
	}
	abusers := []abuser{
		{"silent", func(c net.Conn, stop <-chan struct{}) { <-stop }},
		{"half a command", func(c net.Conn, stop <-chan struct{}) {
			line(c, "EHLO half.example\r\nMAIL FROM:<half@outs")
			<-stop
		}},
		{"trickle", func(c net.Conn, stop <-chan struct{}) {
			line(c, "EHLO trickle.example\r\nNOOP ")
			for wait(stop, 200*time.Millisecond) {
				if !line(c, "x") {
					return
				}
			}
		}},
		{"flood without reading", func(c net.Conn, stop <-chan struct{}) {
			chunk := strings.Repeat("NOOP\r\nRCPT TO:<x@test.example>\r\nVRFY root\r\n", 1000)
			for wait(stop, 0) {
				if !line(c, chunk) {
					// The server stopped reading (its replies are
					// not read): keep the connection full.
					if !wait(stop, 100*time.Millisecond) {
						return
					}
				}
			}
		}},
		{"junk content", func(c net.Conn, stop <-chan struct{}) {
			line(c, "EHLO junk.example\r\nMAIL FROM:<junk@outside.example>\r\nRCPT TO:<junk@test.example>\r\nDATA\r\n")
			go io.Copy(io.Discard, c)
			chunk := strings.Repeat("junk \x00\xff line\r\n", 500)
			for wait(stop, 10*time.Millisecond) {
				if !line(c, chunk) {
					if !wait(stop, 100*time.Millisecond) {
						return
					}
				}
			}
		}},
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var conns []net.Conn
	for i := 0; i < 20; i++ {
		a := abusers[i%len(abusers)]
		src := "127.0.0.1"
		if i%2 == 1 {
			src = fmt.Sprintf("127.0.3.%d", i)
		}
		d := net.Dialer{Timeout: slow(10 * time.Second), LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		c, err := d.Dial("tcp", in.Addr())
		if err != nil {
			t.Fatalf("abuser %d (%s): %v", i, a.name, err)
		}
		conns = append(conns, c)
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.run(c, stop)
		}()
	}
	defer func() {
		close(stop)
		for _, c := range conns {
			c.Close()
		}
		wg.Wait()
	}()
	// Let the abuse get going.
	time.Sleep(time.Second)

	for i, src := range []string{"127.0.0.1", "127.0.0.5"} {
		user := fmt.Sprintf("good%d", i)
		start := time.Now()
		if err := sendFrom(src, in.Addr(), "good@outside.example", []string{user + "@test.example"}, testMessage("good")); err != nil {
			t.Fatalf("well-behaved client from %s refused while under abuse: %v", src, err)
		}
		accepted := time.Since(start)
		waitUntil(t, "delivery of the good message", slow(20*time.Second), func() bool { return len(in.MaildirMessages(user)) == 1 })
		total := time.Since(start)
		t.Logf("good client from %s: accepted after %v, delivered after %v", src, accepted, total)
		if accepted > slow(10*time.Second) {
			t.Errorf("good client from %s: the transaction took %v", src, accepted)
		}
	}
	// The abusers are still connected: the test measured what it meant.
	for i, c := range conns {
		if i%len(abusers) != 0 {
			continue
		}
		c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		br := bufio.NewReader(c)
		if _, err := br.ReadString('\n'); err != nil {
			if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
				t.Errorf("silent abuser %d was disconnected early: %v", i, err)
			}
		}
	}
	in.running()
	if len(in.MaildirMessages("junk")) != 0 {
		t.Errorf("junk content was delivered")
	}
}
