package security

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mailtee/mailtee/internal/envelope"
	"github.com/mailtee/mailtee/internal/queue"
)

// The low-severity findings of issue 12, each attack as it was made.

// A next hop's reply reaches `mailtee queue list`: escape sequences
// (window title, screen clear, colours), NUL and CR in it must not reach
// the administrator's terminal, as they do not reach the log.
func TestQueueListEscapes(t *testing.T) {
	sk := newSink(t)
	in := newInstance(t, fmt.Sprintf("relay_domains = far.example\ntransport_maps = inline:{ far.example=smtp:[127.0.0.1]:%d }\n", sk.Port()), nil)
	in.Start()
	sk.SetRcptErr("victim@far.example", &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0},
		Message: "\x1b]0;owned\x07\x1b[2J\x1b[31mred\x1b[0m nul\x00 cr\r csi\u009b2J end"})
	if err := send(in.Addr(), "s@outside.example", []string{"victim@far.example"}, testMessage("escapes")); err != nil {
		t.Fatal(err)
	}
	var out string
	waitUntil(t, "the deferral reason in the queue listing", slow(30*time.Second), func() bool {
		out, _ = in.Run("", "queue", "list")
		return strings.Contains(out, " end (in reply to RCPT TO command)")
	})
	for i, r := range out {
		if r < ' ' && r != '\n' || r == 0x7f || r >= 0x80 && r < 0xa0 {
			t.Fatalf("control character %U at %d of the listing:\n%q", r, i, out)
		}
	}
	if !strings.Contains(out, "?]0;owned??[2J?[31mred?[0m nul? cr? csi?2J end") {
		t.Errorf("reason not shown masked:\n%s", out)
	}
}

// The EHLO reply, and any multi-line reply, comes in one segment: nmap's
// smtp-open-relay read the first of eight as the whole reply and took
// the others for the answers to its next commands, reporting an open
// relay where nothing was relayed (TestNmapOpenRelay).
func TestEHLOOneSegment(t *testing.T) {
	in := newInstance(t, "", nil)
	in.Start()
	c, err := net.DialTimeout("tcp", in.Addr(), slow(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(slow(30 * time.Second)))
	buf := make([]byte, 64<<10)
	// readOnce is one read: what one segment (one write) carried.
	readOnce := func() string {
		n, err := c.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		return string(buf[:n])
	}
	if g := readOnce(); !strings.HasPrefix(g, "220 ") || !strings.HasSuffix(g, "\r\n") {
		t.Fatalf("greeting %q", g)
	}
	fmt.Fprintf(c, "EHLO client.outside.example\r\n")
	got := readOnce()
	lines := strings.Split(strings.TrimSuffix(got, "\r\n"), "\r\n")
	if len(lines) < 5 || !strings.HasPrefix(lines[len(lines)-1], "250 ") || !strings.HasSuffix(got, "\r\n") {
		t.Fatalf("one read of the EHLO reply: %q, want all of it", got)
	}
	// Pipelined commands get their replies together.
	fmt.Fprintf(c, "MAIL FROM:<s@outside.example>\r\nRCPT TO:<alice@test.example>\r\nRCPT TO:<bob@test.example>\r\nRSET\r\n")
	if got := readOnce(); strings.Count(got, "\r\n") != 4 {
		t.Errorf("one read after four pipelined commands: %q, want four replies", got)
	}
}

// hopcount_limit (50) counts "Received :" (a blank before the colon),
// which Postfix's is_header() takes for a Received: header, and refuses
// at hops >= limit, mailtee's own Received: included, as Postfix does.
func TestHopCountBlankBeforeColon(t *testing.T) {
	in := newInstance(t, "mynetworks = 127.0.0.2/32\n", nil)
	in.Start()
	for _, tc := range []struct {
		name, field string
		n           int
		want        string
	}{
		{"Received : x49", "Received :", 49, "554 5.4.6 "},
		{"RECEIVED\\t: x49", "RECEIVED\t:", 49, "554 5.4.6 "},
		{"Received: x49", "Received:", 49, "554 5.4.6 "},
		{"Received: x48", "Received:", 48, "250 "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialRaw(t, in.Addr(), "127.0.0.1")
			c.must("EHLO client.outside.example", "250 ")
			c.must("MAIL FROM:<s@outside.example>", "250 ")
			c.must("RCPT TO:<hops@test.example>", "250 ")
			c.must("DATA", "354 ")
			c.send(strings.Repeat(tc.field+" from a.example by b.example; Mon, 1 Jan 2024 00:00:00 +0000\r\n", tc.n) + "Subject: loop\r\n\r\nbody\r\n.\r\n")
			if r := c.Reply(); !strings.HasPrefix(r, tc.want) {
				t.Errorf("%d %q headers and mailtee's own: %q, want %q", tc.n, tc.field, r, tc.want)
			}
		})
	}
	waitUntil(t, "the one message under the limit", slow(30*time.Second), func() bool { return len(in.MaildirMessages("hops")) >= 1 })
	time.Sleep(500 * time.Millisecond)
	if n := len(in.MaildirMessages("hops")); n != 1 {
		t.Errorf("%d messages delivered, want the one under the limit", n)
	}
}

// "<CR><CR><LF>.<CR><LF>" ends the data at once, as for Postfix (which
// reads lines up to LF); the message is refused for its bare CR and the
// session goes on in step. It hung until smtpd_timeout.
func TestCRCRLFEndsData(t *testing.T) {
	in := newInstance(t, "mynetworks = 127.0.0.2/32\nsmtpd_timeout = 300s\n", nil)
	in.Start()
	for _, content := range []string{
		"Subject: x\r\n\r\nbody\r\r\n.\r\n",
		"Subject: x\r\n\r\nbody\r\r\r\r\n.\r\n",
		"\r\r\n.\r\n",
	} {
		c := dialRaw(t, in.Addr(), "127.0.0.1")
		c.Conn.SetDeadline(time.Now().Add(slow(20 * time.Second))) // far below smtpd_timeout
		c.must("EHLO client.outside.example", "250 ")
		c.must("MAIL FROM:<s@outside.example>", "250 ")
		c.must("RCPT TO:<crcrlf@test.example>", "250 ")
		c.must("DATA", "354 ")
		start := time.Now()
		c.send(content)
		if r := c.Reply(); r != "550 5.5.2 mx.test.example Error: bare <CR> received" {
			t.Fatalf("%q then the end of data: %q after %v, want 550 5.5.2 bare <CR> at once", content, r, time.Since(start).Round(time.Millisecond))
		}
		c.must("NOOP", "250 ")
		c.must("QUIT", "221 ")
	}
	if n := len(in.MaildirMessages("crcrlf")); n != 0 {
		t.Errorf("%d messages with a bare CR delivered", n)
	}
	in.alive("crcrlf")
}

// One message to alice under several spellings of her address (other
// mydestination names, case, a trailing dot, an extension) is one
// Maildir file and one mailbox_bcc_maps copy: a copy per mailbox.
func TestMailboxOncePerSpelling(t *testing.T) {
	sk := newSink(t)
	in := newInstance(t, fmt.Sprintf(`mailbox_bcc_maps = inline:{ alice=alice@far.example }
relay_domains = far.example
transport_maps = inline:{ far.example=smtp:[127.0.0.1]:%d }
recipient_delimiter = +
`, sk.Port()), nil)
	in.Start()
	spellings := []string{"alice@test.example", "alice@mx.test.example", "alice@localhost", "ALICE@Test.Example", "alice@test.example.", "alice+news@test.example"}
	if err := send(in.Addr(), "s@outside.example", spellings, testMessage("spellings")); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "delivery to alice and her copy", slow(30*time.Second), func() bool {
		return len(in.MaildirMessages("alice")) >= 1 && sk.Count("alice@far.example") >= 1
	})
	waitUntil(t, "an empty queue", slow(30*time.Second), in.queueEmpty)
	if n := len(in.MaildirMessages("alice")); n != 1 {
		t.Errorf("%d messages in alice's Maildir for %d spellings, want 1", n, len(spellings))
	}
	if n := sk.Count("alice@far.example"); n != 1 {
		t.Errorf("%d mailbox_bcc_maps copies, want 1", n)
	}
}

// The control socket's pickup takes a queue ID, not a path: given a path
// to a message file outside the spool, it loaded it, delivered it and
// deleted it.
func TestControlPickupOnlyIDs(t *testing.T) {
	in := newInstance(t, "", nil)
	in.Start()
	// A message file in another spool (sendmail no longer writes into
	// a spool: it drops into maildrop).
	other := newInstance(t, "", nil)
	env := &envelope.Envelope{From: "s@test.example", Rcpts: []envelope.Rcpt{{Addr: "pickup-victim@test.example"}}, ClientName: "localhost", Protocol: "local"}
	if _, err := queue.Put(filepath.Join(other.Dir, "queue"), env, strings.NewReader("Subject: outside\r\n\r\nfrom another spool\r\n")); err != nil {
		t.Fatalf("a message into the other spool: %v", err)
	}
	files, _ := filepath.Glob(filepath.Join(other.Dir, "queue", "queue", "[0-9A-F]*"))
	if len(files) != 1 {
		t.Fatalf("message files in the other spool: %v", files)
	}
	rel, err := filepath.Rel(filepath.Join(in.Dir, "queue", "queue"), files[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, arg := range []string{rel, files[0], "../" + filepath.Base(files[0])} {
		c, err := net.DialTimeout("unix", filepath.Join(in.Dir, "queue", "control"), slow(10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(slow(30 * time.Second)))
		fmt.Fprintf(c, "pickup %s\n", arg)
		reply, _ := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if !strings.Contains(reply, `"ok":false`) || !strings.Contains(reply, "not a queue ID") {
			t.Errorf("pickup %s: %s, want an error: not a queue ID", arg, reply)
		}
	}
	time.Sleep(time.Second) // a delivery would be done by now
	if n := len(in.MaildirMessages("pickup-victim")); n != 0 {
		t.Errorf("the message from outside the spool was delivered %d times", n)
	}
	if _, err := os.Stat(files[0]); err != nil {
		t.Errorf("the message file outside the spool: %v", err)
	}
	in.alive("pickup")
}

// sendmail -f with CR or LF in the sender is refused at submission: it
// was queued, and the bounce to that sender retried for ever.
func TestSendmailSenderCRLF(t *testing.T) {
	in := newInstance(t, "", nil)
	in.Start()
	for _, from := range []string{"a@outside.example\r\nRCPT TO:<x@far.example>", "a@outside.example\n", "a\r@outside.example"} {
		out, err := in.Run("Subject: x\n\nbody\n", "sendmail", "-f", from, "nobody-here@far.example")
		if err == nil || !strings.Contains(out, "bad sender address in -f") {
			t.Errorf("sendmail -f %q: %v, %q; want it refused", from, err, out)
		}
	}
	if !in.queueEmpty() {
		out, _ := in.Run("", "queue", "list")
		t.Errorf("queued:\n%s", out)
	}
}

// Source routes follow RFC 5321 Appendix C: the route is stripped and
// the final address alone is judged, from outside mynetworks as from
// inside (as Postfix's trivial-rewrite strips it). A route through this
// host grants no relaying.
func TestSourceRoutes(t *testing.T) {
	sk := newSink(t)
	in := newInstance(t, fmt.Sprintf("mynetworks = 127.0.0.2/32\ntransport_maps = inline:{ far.example=smtp:[127.0.0.1]:%d }\n", sk.Port()), nil)
	in.Start()

	c := dialRaw(t, in.Addr(), "127.0.0.1") // outside mynetworks
	c.must("EHLO client.outside.example", "250 ")
	c.must("MAIL FROM:<@relay.outside.example:s@outside.example>", "250 ")
	c.must("RCPT TO:<@test.example:x@far.example>", "554 5.7.1 ")
	c.must("RCPT TO:<@hop.example,@mx.test.example:x@far.example>", "554 5.7.1 ")
	c.must("RCPT TO:<@hop.example:x%far.example@test.example>", "554 5.7.1 ")
	c.must("RCPT TO:<@hop.example,@far.example:routed@test.example>", "250 ")
	c.data("source route to a local user")
	waitUntil(t, "delivery to routed@test.example", slow(30*time.Second), func() bool { return len(in.MaildirMessages("routed")) == 1 })

	// From mynetworks, the mail goes to the final address, not to the
	// first hop of the route.
	m := dialRaw(t, in.Addr(), "127.0.0.2")
	m.must("EHLO client.inside.example", "250 ")
	m.must("MAIL FROM:<s@test.example>", "250 ")
	m.must("RCPT TO:<@hop.example:x@far.example>", "250 ")
	m.data("source route from mynetworks")
	waitUntil(t, "relay to x@far.example", slow(30*time.Second), func() bool { return sk.Count("x@far.example") == 1 })
	if n := sk.Total(); n != 1 {
		t.Errorf("%d messages at the next hop, want 1: %+v", n, sk.Messages())
	}
}

// data sends a test message with the given subject and fails unless it
// is accepted.
func (r *rawSMTP) data(subject string) {
	r.T.Helper()
	r.must("DATA", "354 ")
	r.send(testMessage(subject) + ".\r\n")
	if got := r.Reply(); !strings.HasPrefix(got, "250 ") {
		r.T.Fatalf("end of DATA: %q", got)
	}
}
