package security

import (
	"fmt"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"
)

// SMTP smuggling (SEC Consult, December 2023; CVE-2023-51764 for
// Postfix): a client hides a second message behind an end-of-data
// sequence that one server in the path takes for "\r\n.\r\n" and another
// does not. The sequences are those of SEC Consult's scanner
// (The-Login/SMTP-Smuggling-Tools, inbound and outbound lists) and of
// hannob/smtpsmug, plus a few more that lenient parsers have accepted
// (trailing white space, NUL after the dot, a dot at the very start of
// the data).
var smugglingSequences = []struct {
	name string
	eod  string
	// atStart puts the sequence at the very start of the content, where
	// the server is at a line start without having seen a CRLF.
	atStart bool
}{
	{name: "LF.LF", eod: "\n.\n"},
	{name: "LF.CRLF", eod: "\n.\r\n"},
	{name: "CR.CR", eod: "\r.\r"},
	{name: "CRLF.CR", eod: "\r\n.\r"},
	{name: "CR.CRLF", eod: "\r.\r\n"},
	{name: "CRLF-NUL.CRLF", eod: "\r\n\x00.\r\n"},
	{name: "CRLF.LF", eod: "\r\n.\n"}, // ".\n" at a line start
	{name: "LF.CR", eod: "\n.\r"},
	{name: "CR.LF", eod: "\r.\n"},
	{name: "CRLF.CRCRLF", eod: "\r\n.\r\r\n"},
	{name: "CRCRLF.CRCRLF", eod: "\r\r\n.\r\r\n"},
	{name: "CRLF.NUL-CRLF", eod: "\r\n.\x00\r\n"},
	{name: "CRLF.SP-CRLF", eod: "\r\n. \r\n"},
	{name: "CRLF.TAB-CRLF", eod: "\r\n.\t\r\n"},
	{name: "LF.LF-at-start", eod: ".\n", atStart: true},
	{name: "CR.CR-at-start", eod: ".\r", atStart: true},
	{name: "CRLF.CRLF-at-start", eod: "\n.\r\n", atStart: true},
}

// smuggleSetup is a mailtee that relays far.example to a sink, and a
// client outside mynetworks (127.0.0.1; mynetworks is 127.0.0.2/32), so
// that both the accepting and the relaying side are exercised: whatever
// mailtee accepts goes on to a real SMTP server over a real connection.
func smuggleSetup(t *testing.T, mainCf ...string) (*instance, *sink) {
	sk := newSink(t)
	in := newInstance(t, fmt.Sprintf(`mynetworks = 127.0.0.2/32
relay_domains = far.example
transport_maps = inline:{ far.example=smtp:[127.0.0.1]:%d }
`, sk.Port())+strings.Join(mainCf, ""), nil)
	in.Start()
	return in, sk
}

// smuggled is the second message hidden in the first: its own envelope
// (a spoofed local sender, a recipient at the relayed domain and a local
// one) and its own content.
func smuggled(n string) string {
	return "MAIL FROM:<ceo@test.example>\r\n" +
		"RCPT TO:<smuggled-" + n + "@far.example>\r\n" +
		"RCPT TO:<smuggled-" + n + "@test.example>\r\n" +
		"DATA\r\n" +
		"From: ceo@test.example\r\n" +
		"To: smuggled-" + n + "@far.example\r\n" +
		"Subject: SMUGGLED-" + n + "\r\n" +
		"\r\n" +
		"SMUGGLED-BODY-" + n + "\r\n"
}

// postfixContent is what Postfix 3.9's smtpd stores of content sent as
// is, with smtpd_forbid_bare_newline = normalize (smtpd.c, smtpd_data):
// lines end at LF, with or without CR; over DATA, a line "." that ends
// with a bare LF or follows one is dropped, and the leading dot of every
// other line is removed. Over BDAT nothing is stuffed. Lines come back
// with CR LF.
func postfixContent(s string, bdat bool) string {
	var b strings.Builder
	prevBare := false
	for _, l := range strings.SplitAfter(s, "\n") {
		if l == "" {
			continue
		}
		bare := strings.HasSuffix(l, "\n") && !strings.HasSuffix(l, "\r\n")
		text := strings.TrimSuffix(strings.TrimSuffix(l, "\n"), "\r")
		if !bdat && strings.HasPrefix(text, ".") {
			if text == "." && (bare || prevBare) {
				prevBare = bare
				continue
			}
			text = text[1:]
		}
		b.WriteString(text + "\r\n")
		prevBare = bare
	}
	return b.String()
}

var lineBreak = regexp.MustCompile("\r\n|\r|\n")

// sameText reports whether got has the text of want line by line, in
// order, whatever bytes end the lines: "delivered intact" for content
// whose line ends had to be made CRLF (a server may not store a bare CR
// or LF, RFC 5322 2.3).
func sameText(got, want string) bool {
	split := func(s string) []string {
		var out []string
		for _, l := range lineBreak.Split(s, -1) {
			if l != "" {
				out = append(out, l)
			}
		}
		return out
	}
	g, w := split(got), split(want)
	i := 0
	for _, l := range g {
		if i < len(w) && l == w[i] {
			i++
		}
	}
	return i == len(w)
}

// smuggleOutcome is what became of one attempt.
type smuggleOutcome struct {
	name     string
	n        string
	accepted bool   // 250: the whole is one message to victim-n
	content  string // what was meant as content of that one message
	reply    string
}

// TestSmuggling sends, for each end-of-data variant, a message whose
// content hides a second transaction and ends with the real
// "\r\n.\r\n", over DATA and over BDAT. mailtee must refuse the first
// message (550 5.5.2, bare LF/CR) or accept it as one message, deliver
// it intact to its one recipient, and never deliver the smuggled one, to
// the next hop or locally.
func TestSmuggling(t *testing.T) {
	for _, v := range []string{"normalize", "reject", "no"} {
		t.Run(v, func(t *testing.T) { testSmuggling(t, v, false) })
	}
	// The same after STARTTLS: mailtee does TLS below go-smtp, and its
	// checks see the session's plaintext.
	for _, v := range []string{"normalize", "reject"} {
		t.Run(v+"/starttls", func(t *testing.T) { testSmuggling(t, v, true) })
	}
}

// testSmuggling is TestSmuggling with smtpd_forbid_bare_newline = value.
// With normalize (and no, which mailtee reads as normalize: it never ends
// DATA at a bare LF) what is accepted must be what Postfix would store
// (postfixContent); with reject, every bare LF is refused. useTLS: each
// session says STARTTLS first.
func testSmuggling(t *testing.T, value string, useTLS bool) {
	in, sk := smuggleSetup(t, "smtpd_forbid_bare_newline = "+value+"\n", tlsMainCf(t))
	var outcomes []smuggleOutcome
	for i, tc := range smugglingSequences {
		for _, verb := range []string{"DATA", "BDAT"} {
			n := fmt.Sprintf("%d%s", i, strings.ToLower(verb[:1]))
			name := tc.name + "/" + verb
			first := "From: mallory@outside.example\r\nTo: victim-" + n + "@far.example\r\nSubject: FIRST-" + n + "\r\n\r\nFIRST-BODY-" + n
			content := first + tc.eod + smuggled(n)
			if tc.atStart {
				content = tc.eod + smuggled(n)
			}
			c := dialSession(t, in.Addr(), "127.0.0.1", useTLS)
			c.must("EHLO client.outside.example", "250 ")
			c.must("MAIL FROM:<mallory@outside.example>", "250 ")
			c.must("RCPT TO:<victim-"+n+"@far.example>", "250 ")
			var got string
			if verb == "DATA" {
				c.must("DATA", "354 ")
				// One write: pipelined, as an attacker sends it.
				c.send(content + ".\r\n")
				got = c.Reply()
				content = postfixContent(content, false)
			} else {
				c.send(fmt.Sprintf("BDAT %d LAST\r\n%s", len(content), content))
				got = c.Reply()
				content = postfixContent(content, true)
			}
			// The smuggled commands were content: the next reply
			// answers our NOOP, not a MAIL, RCPT or DATA of theirs.
			if r := c.cmd("NOOP"); r != "250 2.0.0 Ok" {
				t.Errorf("%s: after the message, NOOP got %q (reply to the message: %q): the server took content for commands", name, r, got)
			}
			c.cmd("QUIT")
			o := smuggleOutcome{name: name, n: n, content: content, reply: got}
			switch {
			case value == "reject" && strings.Contains(tc.eod, "\n") && !strings.Contains(tc.eod, "\r\n") && strings.HasPrefix(got, "250 "):
				t.Errorf("%s: bare LF accepted under reject: %q", name, got)
			case strings.HasPrefix(got, "550 5.5.2 ") && (strings.Contains(got, "bare <LF>") || strings.Contains(got, "bare <CR>")):
			case strings.HasPrefix(got, "250 "):
				o.accepted = true
			default:
				t.Errorf("%s: reply %q, want 550 5.5.2 (bare LF/CR) or 250", name, got)
			}
			outcomes = append(outcomes, o)
		}
	}

	// A canary through a clean session: once it and every accepted
	// message are delivered and the queue is empty, anything smuggled
	// would have been delivered too.
	if err := sendFrom("127.0.0.1", in.Addr(), "friend@outside.example", []string{"canary@far.example"}, testMessage("canary")); err != nil {
		t.Fatalf("canary: %v", err)
	}
	waitUntil(t, "delivery of the accepted messages and the canary", slow(90*time.Second), func() bool {
		if sk.Count("canary@far.example") != 1 {
			return false
		}
		for _, o := range outcomes {
			if o.accepted && sk.Count("victim-"+o.n+"@far.example") == 0 {
				return false
			}
		}
		return true
	})
	waitUntil(t, "an empty queue", slow(30*time.Second), in.queueEmpty)
	in.running()

	accepted := 0
	for _, o := range outcomes {
		if sk.Count("smuggled-"+o.n+"@far.example") != 0 {
			t.Errorf("%s: the smuggled message reached the next hop", o.name)
		}
		if msgs := in.MaildirMessages("smuggled-" + o.n); len(msgs) != 0 {
			t.Errorf("%s: the smuggled message was delivered locally: %q", o.name, msgs)
		}
		if strings.Contains(in.Log.String(), "to=<smuggled-"+o.n+"@") {
			t.Errorf("%s: the log shows a delivery attempt to the smuggled recipient", o.name)
		}
		victim := "victim-" + o.n + "@far.example"
		if !o.accepted {
			if sk.Count(victim) != 0 {
				t.Errorf("%s: refused with %q, yet delivered", o.name, o.reply)
			}
			continue
		}
		accepted++
		if n := sk.Count(victim); n != 1 {
			t.Errorf("%s: %d copies at the next hop, want 1", o.name, n)
		}
		for _, m := range sk.Messages() {
			if len(m.To) == 0 || !strings.EqualFold(m.To[0], victim) {
				continue
			}
			if len(m.To) != 1 || m.From != "mallory@outside.example" {
				t.Errorf("%s: envelope from=<%s> to=%v, want from=<mallory@outside.example> to=[%s]", o.name, m.From, m.To, victim)
			}
			if hasBareNewline(m.Data) {
				t.Errorf("%s: relayed content has a bare CR or LF: %q", o.name, m.Data)
			}
			if !sameText(m.Data, o.content) {
				t.Errorf("%s: relayed content is not the content sent, as one message:\n got %q\nwant %q", o.name, m.Data, o.content)
			}
		}
	}
	if want := accepted + 1; len(sk.Messages()) != want {
		t.Errorf("the next hop got %d messages, want %d (accepted ones and the canary)", len(sk.Messages()), want)
	}
	for _, o := range outcomes {
		t.Logf("%-22s %s", o.name, o.reply)
	}
	in.alive("smuggling")
}

// TestSmugglingThroughStuffing is the relaying side: content that holds
// a line "." (sent dot-stuffed over DATA) or a raw "\r\n.\r\n" (sent in
// a BDAT chunk, where nothing is stuffed) followed by a whole second
// transaction is accepted, being valid, and must reach the next hop as
// one message: mailtee must dot-stuff what it relays.
func TestSmugglingThroughStuffing(t *testing.T) {
	in, sk := smuggleSetup(t)
	for _, tc := range []struct{ name, send, content string }{
		{"DATA dot-stuffed", "..\r\n" + smuggled("stuffed") + ".\r\n", ".\r\n" + smuggled("stuffed")},
		{"DATA dot-stuffed twice", "...\r\n" + smuggled("stuffed2") + ".\r\n", "..\r\n" + smuggled("stuffed2")},
		{"BDAT raw", "", "\r\n.\r\n" + smuggled("bdat")},
		{"BDAT two chunks", "", ".\r\n" + smuggled("bdat2")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := strings.ReplaceAll(tc.name, " ", "-")
			head := "From: mallory@outside.example\r\nSubject: " + id + "\r\n\r\nbody\r\n"
			c := dialRaw(t, in.Addr(), "127.0.0.1")
			c.must("EHLO client.outside.example", "250 ")
			c.must("MAIL FROM:<mallory@outside.example>", "250 ")
			c.must("RCPT TO:<victim-"+id+"@far.example>", "250 ")
			switch {
			case strings.HasPrefix(tc.name, "DATA"):
				c.must("DATA", "354 ")
				c.send(head + tc.send)
			case tc.name == "BDAT two chunks":
				// The chunk boundary falls between CRLF and ".".
				c.send(fmt.Sprintf("BDAT %d\r\n%s", len(head), head))
				if r := c.Reply(); !strings.HasPrefix(r, "250 ") {
					t.Fatalf("first chunk: %q", r)
				}
				c.send(fmt.Sprintf("BDAT %d LAST\r\n%s", len(tc.content), tc.content))
			default:
				c.send(fmt.Sprintf("BDAT %d LAST\r\n%s%s", len(head)+len(tc.content), head, tc.content))
			}
			if r := c.Reply(); !strings.HasPrefix(r, "250 2.0.0 Ok: queued as ") {
				t.Fatalf("valid content refused: %q", r)
			}
			c.must("NOOP", "250 2.0.0 Ok")
			c.cmd("QUIT")
			victim := "victim-" + id + "@far.example"
			waitUntil(t, "delivery to the next hop", slow(60*time.Second), func() bool { return sk.Count(victim) == 1 })
			waitUntil(t, "an empty queue", slow(30*time.Second), in.queueEmpty)
			for _, m := range sk.Messages() {
				if len(m.To) > 0 && strings.Contains(m.To[0], "smuggled") {
					t.Fatalf("the next hop got the smuggled message: %+v", m)
				}
				if len(m.To) != 1 || m.To[0] != victim {
					continue
				}
				if !strings.HasSuffix(m.Data, "\r\n"+head+tc.content) {
					t.Errorf("relayed content changed:\n got %q\nwant suffix %q", m.Data, head+tc.content)
				}
			}
		})
	}
	if n := len(sk.Messages()); n != 4 {
		t.Errorf("the next hop got %d messages, want 4", n)
	}
	in.alive("stuffing")
}

// TestSmugglingAfterTimeout: a client stalls in the middle of the
// content for longer than smtpd_timeout (a slow link, or a relaying MTA
// that the attacker only feeds content to), then sends the rest, which
// holds a whole second transaction. Once the server has given up on the
// message with a 421 it must close the connection (RFC 5321 3.8, and
// Postfix hangs up on a timeout): if it read on, the rest of the content
// would run as commands and the second message would be accepted from
// that client.
func TestSmugglingAfterTimeout(t *testing.T) {
	sk := newSink(t)
	in := newInstance(t, fmt.Sprintf(`mynetworks = 127.0.0.2/32
relay_domains = far.example
transport_maps = inline:{ far.example=smtp:[127.0.0.1]:%d }
smtpd_timeout = 2s
`, sk.Port()), nil)
	in.Start()
	for _, verb := range []string{"DATA", "BDAT"} {
		t.Run(verb, func(t *testing.T) {
			n := "timeout-" + strings.ToLower(verb)
			head := "From: mallory@outside.example\r\nSubject: stall\r\n\r\nfirst part\r\n"
			rest := "\r\n" + smuggled(n) + ".\r\n"
			c := dialRaw(t, in.Addr(), "127.0.0.1")
			c.must("EHLO client.outside.example", "250 ")
			c.must("MAIL FROM:<mallory@outside.example>", "250 ")
			c.must("RCPT TO:<victim-"+n+"@far.example>", "250 ")
			if verb == "DATA" {
				c.must("DATA", "354 ")
				c.send(head)
			} else {
				c.send(fmt.Sprintf("BDAT %d LAST\r\n%s", len(head)+len(rest)+1000, head))
			}
			// The stall: past smtpd_timeout.
			first := c.Reply()
			t.Logf("after the stall: %q", first)
			if strings.HasPrefix(first, "250 ") {
				t.Fatalf("a half-sent message was accepted: %q", first)
			}
			// The rest of the content arrives; the server may already
			// have closed.
			io.WriteString(c.Conn, rest)
			after, _ := c.closed(slow(10 * time.Second))
			t.Logf("then: %q", after)
			if strings.Contains(after, "250 2.1.0 Ok") || strings.Contains(after, "354 ") || strings.Contains(after, "queued as") {
				t.Errorf("after %q the server went on and ran the rest of the content as commands: %q", first, after)
			}
			if !strings.HasPrefix(first, "421 ") && !strings.HasPrefix(first, "EOF") {
				t.Errorf("the stalled transfer got %q, want 421 and the end of the session", first)
			}
			time.Sleep(time.Second)
			waitUntil(t, "an empty queue", slow(30*time.Second), in.queueEmpty)
			if sk.Count("smuggled-"+n+"@far.example") != 0 || len(in.MaildirMessages("smuggled-"+n)) != 0 {
				t.Errorf("the smuggled message was delivered")
			}
			if sk.Count("victim-"+n+"@far.example") != 0 {
				t.Errorf("the stalled message was delivered")
			}
		})
	}
	in.alive("timeout")
}
