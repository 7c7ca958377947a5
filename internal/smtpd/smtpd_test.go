package smtpd

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/envelope"
	"github.com/mailtee/mailtee/internal/maps"
)

// smtpd_banner: "The text that follows the 220 status code in the SMTP
// greeting banner."
func TestBanner(t *testing.T) {
	ts := start(t, nil)
	c := dial(t, ts.addr)
	if got := c.reply(); got != "220 mx.example.com ESMTP mailtee" {
		t.Errorf("greeting %q", got)
	}

	// Postfix's default, $myhostname ESMTP $mail_name.
	ts = start(t, func(o *Options) { o.Banner = "" })
	c = dial(t, ts.addr)
	if got := c.reply(); got != "220 mx.example.com ESMTP mailtee" {
		t.Errorf("default greeting %q", got)
	}
}

func TestEHLO(t *testing.T) {
	ts := start(t, nil)
	c := dial(t, ts.addr)
	c.expect("220 ")
	got := c.cmd("EHLO client.example")
	for _, ext := range []string{"PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES", "SIZE 10000", "SMTPUTF8"} {
		if !strings.Contains(got, "250-"+ext+"\n") && !strings.HasSuffix(got, "250 "+ext) {
			t.Errorf("EHLO reply lacks %s:\n%s", ext, got)
		}
	}
	if strings.Contains(got, "STARTTLS") {
		t.Errorf("STARTTLS offered without a certificate:\n%s", got)
	}
}

// receivedRE is Postfix's Received: header for one recipient.
var receivedRE = regexp.MustCompile(`^Received: from client\.example \(localhost \[127\.0\.0\.1\]\)\r\n` +
	`\tby mx\.example\.com \(mailtee\) with (\S+) id (\S+)\r\n` +
	`\tfor <([^>]+)>; ([^\r\n]+)\r\n`)

func TestDeliver(t *testing.T) {
	ts := start(t, nil)
	c := ts.session(t)
	long := strings.Repeat("x", 3000)
	sent := "Subject: test\r\n\r\nline 1\r\n..leading dot\r\n\xc3\xa9t\xc3\xa9\r\n" + long + "\r\n\r\n"
	want := "Subject: test\r\n\r\nline 1\r\n.leading dot\r\n\xc3\xa9t\xc3\xa9\r\n" + long + "\r\n\r\n"
	c.must("MAIL FROM:<sender@remote.example> BODY=8BITMIME", "250 ")
	c.must("RCPT TO:<alice@example.com>", "250 ")
	c.must("DATA", "354 ")
	c.send(sent + ".\r\n")
	if got := c.reply(); got != "250 2.0.0 Ok: queued as 4Q00001" {
		t.Fatalf("end of data: %q", got)
	}
	c.must("QUIT", "221 ")

	msgs := ts.q.all()
	if len(msgs) != 1 {
		t.Fatalf("%d messages queued", len(msgs))
	}
	m := msgs[0]
	if m.id != "4Q00001" {
		t.Errorf("id %s", m.id)
	}
	sm := receivedRE.FindStringSubmatch(m.body)
	if sm == nil {
		t.Fatalf("no Received: header in front:\n%q", m.body[:min(len(m.body), 300)])
	}
	if sm[1] != "ESMTP" || sm[2] != "4Q00001" || sm[3] != "alice@example.com" {
		t.Errorf("Received: with %s id %s for %s", sm[1], sm[2], sm[3])
	}
	if _, err := time.Parse(dateLayout, sm[4]); err != nil {
		t.Errorf("Received: date: %v", err)
	}
	if rest := m.body[len(sm[0]):]; rest != want {
		t.Errorf("content not passed byte for byte:\n got %q\nwant %q", rest[:min(len(rest), 200)], want[:200])
	}

	e := m.env
	if e.From != "sender@remote.example" || len(e.Rcpts) != 1 || e.Rcpts[0].Addr != "alice@example.com" || e.Rcpts[0].Orig != "alice@example.com" {
		t.Errorf("envelope %+v", e)
	}
	if e.ClientName != "localhost" || e.ClientAddr != "127.0.0.1" || e.Helo != "client.example" ||
		e.Protocol != "ESMTP" || e.SMTPUTF8 || e.BodyType != "8BITMIME" || e.Arrival.IsZero() {
		t.Errorf("envelope %+v", e)
	}
}

func TestReceivedVariants(t *testing.T) {
	ts := start(t, nil)

	// Two recipients: no "for", the date on a line of its own.
	c := ts.session(t)
	c.mail("", []string{"alice@example.com", "bob@example.com"}, "\r\n")
	// HELO, SMTPUTF8.
	c2 := dial(t, ts.addr)
	c2.expect("220 ")
	c2.must("HELO old.example", "250 ")
	c2.must("MAIL FROM:<s@remote.example> SMTPUTF8", "250 ")
	c2.must("RCPT TO:<alice@example.com>", "250 ")
	c2.must("DATA", "354 ")
	c2.send("\r\n.\r\n")
	c2.expect("250 ")

	msgs := ts.q.all()
	if len(msgs) != 2 {
		t.Fatalf("%d messages", len(msgs))
	}
	two := regexp.MustCompile(`^Received: from client\.example \(localhost \[127\.0\.0\.1\]\)\r\n` +
		`\tby mx\.example\.com \(mailtee\) with ESMTP id 4Q00001;\r\n\t[^\r\n]+\r\n\r\n$`)
	if !two.MatchString(msgs[0].body) {
		t.Errorf("two recipients: %q", msgs[0].body)
	}
	if msgs[0].env.From != "" {
		t.Errorf("null sender came out as %q", msgs[0].env.From)
	}
	helo := regexp.MustCompile(`^Received: from old\.example \(localhost \[127\.0\.0\.1\]\)\r\n` +
		`\tby mx\.example\.com \(mailtee\) with UTF8SMTP id 4Q00002\r\n\tfor <alice@example.com>; `)
	if !helo.MatchString(msgs[1].body) {
		t.Errorf("HELO, SMTPUTF8: %q", msgs[1].body)
	}
	if e := msgs[1].env; e.Protocol != "SMTP" || !e.SMTPUTF8 || e.Helo != "old.example" {
		t.Errorf("HELO envelope %+v", e)
	}
}

// Postfix's default smtpd_relay_restrictions: permit_mynetworks,
// reject_unauth_destination ("Relay access denied"), with
// permit_auth_destination skipping "source-routed non-local or virtual
// mail".
func TestRelayControl(t *testing.T) {
	denied := func(a string) string { return "554 5.7.1 <" + a + ">: Relay access denied" }
	cases := []struct {
		rcpt string
		want string // prefix of the reply, for a client outside mynetworks
		mine string // for a client in mynetworks
	}{
		{"alice@example.com", "250 ", "250 "},
		{"ALICE@Example.COM.", "250 ", "250 "},
		{"x@relay.example", "250 ", "250 "},
		{"x@sub.relay.example", denied("x@sub.relay.example"), "250 "},
		{"info@virtual.example", "250 ", "250 "},
		{"x@foreign.example", denied("x@foreign.example"), "250 "},
		{"x@FOREIGN.example", denied("x@FOREIGN.example"), "250 "},
		// routing in the local part: percent hack, bang path, '@'
		{"user%foreign.example@example.com", denied("user%foreign.example@example.com"), "250 "},
		{"foreign.example!user@example.com", denied("foreign.example!user@example.com"), "250 "},
		{`"user@foreign.example"@example.com`, denied(`"user@foreign.example"@example.com`), "250 "},
		{"user@foreign.example@example.com", denied(`"user@foreign.example"@example.com`), "250 "},
		{"user%foreign.example@relay.example", denied("user%foreign.example@relay.example"), "250 "},
		// address literals: only ours
		{"alice@[192.0.2.1]", denied("alice@[192.0.2.1]"), "250 "},
		{"alice@[127.0.0.1]", "250 ", "250 "},
		{"alice@[IPv6:2001:db8::1]", denied("alice@[IPv6:2001:db8::1]"), "250 "},
	}
	for _, mynet := range []bool{false, true} {
		nets := notUs
		if mynet {
			nets = us
		}
		ts := start(t, func(o *Options) { o.Policy = testPolicy(t, nets); o.MaxRecipients = 0; o.HardErrorLimit = 100 })
		c := ts.session(t)
		c.must("MAIL FROM:<sender@remote.example>", "250 ")
		for _, tc := range cases {
			want := tc.want
			if mynet {
				want = tc.mine
			}
			if got := c.cmd("RCPT TO:<" + tc.rcpt + ">"); !strings.HasPrefix(got, want) {
				t.Errorf("mynetworks=%v: RCPT TO:<%s>: got %q, want %q", mynet, tc.rcpt, got, want)
			}
		}
		if !mynet {
			line := "NOQUEUE: reject: RCPT from localhost[127.0.0.1]: 554 5.7.1 <x@foreign.example>: Relay access denied; from=<sender@remote.example> to=<x@foreign.example> proto=ESMTP helo=<client.example>"
			if !ts.log.has(line) {
				t.Errorf("log lacks %q:\n%s", line, strings.Join(ts.log.all(), "\n"))
			}
		}
	}
}

// go-smtp removes a source route before the backend sees the address, so
// the route cannot be refused as Postfix refuses it; it is dropped, and
// relay control judges the final domain, so nothing is relayed through it.
func TestSourceRouteDropped(t *testing.T) {
	ts := start(t, nil)
	c := ts.session(t)
	c.must("MAIL FROM:<s@remote.example>", "250 ")
	c.must("RCPT TO:<@hop.example:x@foreign.example>", "554 5.7.1 <x@foreign.example>: Relay access denied")
	c.must("RCPT TO:<@hop.example:alice@example.com>", "250 ")
	c.must("DATA", "354 ")
	c.send("\r\n.\r\n")
	c.expect("250 ")
	if e := ts.q.all()[0].env; len(e.Rcpts) != 1 || e.Rcpts[0].Addr != "alice@example.com" {
		t.Errorf("recipients %+v", e.Rcpts)
	}
}

// local_recipient_maps, unknown_local_recipient_reject_code,
// virtual_alias_maps (smtpd_check.c, check_rcpt_maps).
func TestUnknownRecipients(t *testing.T) {
	ts := start(t, func(o *Options) { o.MaxRecipients = 0 })
	c := ts.session(t)
	c.must("MAIL FROM:<sender@remote.example>", "250 ")
	for _, tc := range []struct{ rcpt, want string }{
		{"nobody@example.com", "550 5.1.1 <nobody@example.com>: Recipient address rejected: User unknown in local recipient table"},
		{"alice@example.com", "250 "},
		{"Alice+tag@example.com", "250 "},  // user+ext finds user
		{"carol+x@example.com", "250 "},    // user@domain form
		{"Postmaster@example.com", "250 "}, // absorbed by Postfix itself
		{"mailer-daemon@example.com", "250 "},
		{"dave@example.com", "250 "}, // in virtual_alias_maps
		{"info@virtual.example", "250 "},
		{"info+x@virtual.example", "250 "},
		{"nobody@virtual.example", "550 5.1.1 <nobody@virtual.example>: Recipient address rejected: User unknown in virtual alias table"},
		{"alice@virtual.example", "550 5.1.1 <alice@virtual.example>: Recipient address rejected: User unknown in virtual alias table"},
		{"anyone@relay.example", "250 "}, // relay_recipient_maps empty: any
	} {
		if got := c.cmd("RCPT TO:<" + tc.rcpt + ">"); !strings.HasPrefix(got, tc.want) {
			t.Errorf("RCPT TO:<%s>: got %q, want %q", tc.rcpt, got, tc.want)
		}
	}
	line := "NOQUEUE: reject: RCPT from localhost[127.0.0.1]: 550 5.1.1 <nobody@example.com>: Recipient address rejected: User unknown in local recipient table; from=<sender@remote.example> to=<nobody@example.com> proto=ESMTP helo=<client.example>"
	if !ts.log.has(line) {
		t.Errorf("log lacks %q", line)
	}
}

func TestUnknownLocalCode(t *testing.T) {
	ts := start(t, func(o *Options) { o.Policy.UnknownLocalCode = 450 })
	c := ts.session(t)
	c.must("MAIL FROM:<>", "250 ")
	c.must("RCPT TO:<nobody@example.com>", "450 4.1.1 <nobody@example.com>: Recipient address rejected: User unknown in local recipient table")

	// No local_recipient_maps: any local recipient.
	ts = start(t, func(o *Options) { o.Policy.LocalRecipients = nil })
	c = ts.session(t)
	c.must("MAIL FROM:<>", "250 ")
	c.must(`RCPT TO:<"first last"@example.com>`, "250 ")
	c.must("DATA", "354 ")
	c.send("\r\n.\r\n")
	c.expect("250 ")
	if e := ts.q.all()[0].env; e.Rcpts[0].Addr != `"first last"@example.com` {
		t.Errorf("quoted local part came out as %q", e.Rcpts[0].Addr)
	}
}

// relay_recipient_maps (smtpd_check.c, check_rcpt_maps, case
// RESOLVE_CLASS_RELAY): when set, a recipient in relay_domains must be
// listed (user@domain, or @domain for the whole domain), or be in
// virtual_alias_maps, else "User unknown in relay recipient table" with
// unknown_relay_recipient_reject_code; mynetworks clients too.
func TestRelayRecipients(t *testing.T) {
	for _, nets := range []string{notUs, us} {
		ts := start(t, func(o *Options) {
			o.MaxRecipients = 0
			o.Policy = testPolicy(t, nets)
			relay, err := maps.NewDomainList([]string{"relay.example", "open.example"}, false)
			if err != nil {
				t.Fatal(err)
			}
			o.Policy.Relay = relay
			o.Policy.RelayRecipients = mustTable(t, "inline:{ known@relay.example=OK, @open.example=OK }")
			o.Policy.VirtualAliases = mustTable(t, "inline:{ alias@relay.example=known@relay.example }")
		})
		c := ts.session(t)
		c.must("MAIL FROM:<forged@victim.example>", "250 ")
		for _, tc := range []struct{ rcpt, want string }{
			{"known@relay.example", "250 "},
			{"Known+tag@Relay.Example", "250 "}, // extension dropped, case folded
			{"alias@relay.example", "250 "},     // virtual_alias_maps first
			{"anyone@open.example", "250 "},     // @domain
			{"nobody@relay.example", "550 5.1.1 <nobody@relay.example>: Recipient address rejected: User unknown in relay recipient table"},
			{"alice@example.com", "250 "}, // local: local_recipient_maps
		} {
			if got := c.cmd("RCPT TO:<" + tc.rcpt + ">"); !strings.HasPrefix(got, tc.want) {
				t.Errorf("mynetworks %s: RCPT TO:<%s>: got %q, want %q", nets, tc.rcpt, got, tc.want)
			}
		}
		line := "NOQUEUE: reject: RCPT from localhost[127.0.0.1]: 550 5.1.1 <nobody@relay.example>: Recipient address rejected: User unknown in relay recipient table; from=<forged@victim.example> to=<nobody@relay.example> proto=ESMTP helo=<client.example>"
		if !ts.log.has(line) {
			t.Errorf("log lacks %q", line)
		}
	}

	ts := start(t, func(o *Options) {
		o.Policy.RelayRecipients = mustTable(t, "inline:{ known@relay.example=OK }")
		o.Policy.UnknownRelayCode = 450
	})
	c := ts.session(t)
	c.must("MAIL FROM:<>", "250 ")
	c.must("RCPT TO:<nobody@relay.example>", "450 4.1.1 <nobody@relay.example>: Recipient address rejected: User unknown in relay recipient table")
}

// virtual_mailbox_domains (smtpd_check.c, check_rcpt_maps, case
// RESOLVE_CLASS_VIRTUAL), as SQL-backed sites have it with Dovecot
// behind: a final destination, so any client may send to it (no relay
// access denied), whose recipients must be in virtual_mailbox_maps or
// virtual_alias_maps, else "User unknown in virtual mailbox table" with
// unknown_virtual_mailbox_reject_code; a table that does not answer is
// 451 4.3.0, never a refusal.
func TestVirtualMailboxes(t *testing.T) {
	for _, nets := range []string{notUs, us} {
		ts := start(t, func(o *Options) {
			o.MaxRecipients = 0
			o.Policy = testPolicy(t, nets)
			vm, err := maps.NewDomainList([]string{"inline:{ users.example=OK }"}, false)
			if err != nil {
				t.Fatal(err)
			}
			o.Policy.VirtualMailbox = vm
			o.Policy.VirtualMailboxes = mustTable(t, "inline:{ anna@users.example=users.example/anna/, @catchall.example=OK }")
			o.Policy.VirtualAliases = mustTable(t, "inline:{ info@users.example=anna@users.example }")
		})
		c := ts.session(t)
		c.must("MAIL FROM:<someone@outside.example>", "250 ")
		for _, tc := range []struct{ rcpt, want string }{
			{"anna@users.example", "250 "},
			{"Anna+tag@USERS.example", "250 "}, // extension dropped, case folded
			{"info@users.example", "250 "},     // virtual_alias_maps first
			{"bob@users.example", "550 5.1.1 <bob@users.example>: Recipient address rejected: User unknown in virtual mailbox table"},
			{"anna@sub.users.example", ""}, // not ours: relay rules decide
		} {
			got := c.cmd("RCPT TO:<" + tc.rcpt + ">")
			if tc.want == "" {
				// From outside, another domain is relaying: refused.
				if nets == notUs && !strings.HasPrefix(got, "554 5.7.1") {
					t.Errorf("mynetworks %s: RCPT TO:<%s>: got %q, want relay access denied", nets, tc.rcpt, got)
				}
				continue
			}
			if !strings.HasPrefix(got, tc.want) {
				t.Errorf("mynetworks %s: RCPT TO:<%s>: got %q, want %q", nets, tc.rcpt, got, tc.want)
			}
		}
	}

	ts := start(t, func(o *Options) {
		vm, _ := maps.NewDomainList([]string{"users.example"}, false)
		o.Policy.VirtualMailbox = vm
		o.Policy.VirtualMailboxes = mustTable(t, "inline:{ anna@users.example=OK }")
		o.Policy.UnknownVirtualCode = 450
	})
	c := ts.session(t)
	c.must("MAIL FROM:<>", "250 ")
	c.must("RCPT TO:<nobody@users.example>", "450 4.1.1 <nobody@users.example>: Recipient address rejected: User unknown in virtual mailbox table")

	ts = start(t, func(o *Options) {
		vm, _ := maps.NewDomainList([]string{"users.example"}, false)
		o.Policy.VirtualMailbox = vm
		o.Policy.VirtualMailboxes = errTable{}
	})
	c = ts.session(t)
	c.must("MAIL FROM:<>", "250 ")
	c.must("RCPT TO:<anna@users.example>", "451 4.3.0 <anna@users.example>: Temporary lookup failure")
}

// reject_dict_retry: "451 4.3.0 <%s>: Temporary lookup failure".
func TestLookupFailure(t *testing.T) {
	for name, mod := range map[string]func(*Policy){
		"local_recipient_maps": func(p *Policy) { p.LocalRecipients = errTable{} },
		"virtual_alias_maps":   func(p *Policy) { p.VirtualAliases = errTable{} },
		"relay_recipient_maps": func(p *Policy) { p.RelayRecipients = errTable{} },
	} {
		ts := start(t, func(o *Options) { mod(o.Policy) })
		c := ts.session(t)
		c.must("MAIL FROM:<>", "250 ")
		rcpt := "x@example.com"
		if name == "relay_recipient_maps" {
			rcpt = "x@relay.example"
		}
		if got := c.cmd("RCPT TO:<" + rcpt + ">"); got != "451 4.3.0 <"+rcpt+">: Temporary lookup failure" {
			t.Errorf("%s: %q", name, got)
		}
		if len(ts.q.all()) != 0 {
			t.Errorf("%s: queued", name)
		}
	}
}

func TestSyntax(t *testing.T) {
	ts := start(t, nil)
	c := ts.session(t)
	c.must("MAIL FROM:<a@b..example>", "501 5.1.7 Bad sender address syntax")
	c.must("MAIL FROM:<a@exa\x01mple.com>", "501 5.1.7 Bad sender address syntax")
	c.must(`MAIL FROM:<"a b"@remote.example>`, "250 ")
	c.must("MAIL FROM:<x@remote.example>", "503 5.5.1 Error: nested MAIL command")
	c.must("RCPT TO:<alice@-bad-.example>", "501 5.1.3 Bad recipient address syntax")
	c.must("RCPT TO:<alice@example.com>", "250 ")
	c.must("DATA", "354 ")
	c.send("\r\n.\r\n")
	c.expect("250 ")
	if e := ts.q.all()[0].env; e.From != `"a b"@remote.example` {
		t.Errorf("sender %q", e.From)
	}
}

// message_size_limit: "552 5.3.4 Message size exceeds fixed limit".
func TestSizeLimit(t *testing.T) {
	ts := start(t, nil)
	c := ts.session(t)
	// go-smtp answers SIZE= itself, with its own text.
	c.must("MAIL FROM:<s@remote.example> SIZE=10001", "552 5.3.4 ")
	c.must("MAIL FROM:<s@remote.example> SIZE=9000", "250 ")
	c.must("RCPT TO:<alice@example.com>", "250 ")
	c.must("DATA", "354 ")
	big := strings.Repeat(strings.Repeat("y", 98)+"\r\n", 101)
	c.send(big + ".\r\n")
	if got := c.reply(); got != "552 5.3.4 Message size exceeds fixed limit" {
		t.Errorf("oversized DATA: %q", got)
	}
	// The session is in step and goes on.
	c.must("NOOP", "250 ")
	if got := c.mail("s@remote.example", []string{"alice@example.com"}, "small\r\n"); got != "250 2.0.0 Ok: queued as 4Q00002" {
		t.Errorf("after an oversized message: %q", got)
	}
	if n := len(ts.q.all()); n != 1 {
		t.Errorf("%d messages queued, want 1", n)
	}
}

// smtpd_recipient_limit: "452 4.5.3 Error: too many recipients".
func TestTooManyRecipients(t *testing.T) {
	ts := start(t, func(o *Options) { o.MaxRecipients = 2 })
	c := ts.session(t)
	c.must("MAIL FROM:<>", "250 ")
	c.must("RCPT TO:<alice@example.com>", "250 ")
	c.must("RCPT TO:<bob@example.com>", "250 ")
	c.must("RCPT TO:<carol@example.com>", "452 4.5.3 Error: too many recipients")
	c.must("DATA", "354 ")
	c.send("\r\n.\r\n")
	c.expect("250 ")
	if e := ts.q.all()[0].env; len(e.Rcpts) != 2 {
		t.Errorf("recipients %+v", e.Rcpts)
	}
}

// smtpd_forbid_bare_newline = reject: "%d 5.5.2 %s Error: bare <LF>
// received", and the same for a bare CR.
func TestBareNewlines(t *testing.T) {
	lf := "550 5.5.2 mx.example.com Error: bare <LF> received"
	cr := "550 5.5.2 mx.example.com Error: bare <CR> received"
	for _, tc := range []struct{ name, content, want string }{
		{"LF in a line", "Subject: x\r\n\r\na\nb\r\n", lf},
		{"LF ends a line", "Subject: x\n\r\n", lf},
		{"LF first", "\nx\r\n", lf},
		{"CR in a line", "Subject: x\r\n\r\na\rb\r\n", cr},
		{"CR CR LF", "a\r\r\n\r\n", cr},
		{"CR alone on a line", "a\r\n\r\r\n\r\n", cr},
		// "." right after CR CR LF ends the data, as for Postfix, which
		// reads lines up to LF: go-smtp v0.25.1 missed the line start
		// there, and the session hung until smtpd_timeout
		// (crfilter.go works around it).
		{"CR CR LF, then the end", "Subject: x\r\n\r\na\r\r\n", cr},
		{"CR CR CR CR LF, then the end", "Subject: x\r\n\r\na\r\r\r\r\n", cr},
		{"CR CR LF at the start, then the end", "\r\r\n", cr},
		// The CR after a dot at a line start is content: seen, refused.
		{"dot CR X", "Subject: x\r\n\r\n.\rX\r\n", cr},
		{"dot CR CR LF", "Subject: x\r\n\r\n.\r\r\n", cr},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := start(t, func(o *Options) { o.BareNewline = BareNewlineReject })
			c := ts.session(t)
			if got := c.mail("s@remote.example", []string{"alice@example.com"}, tc.content); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
			c.must("NOOP", "250 ")
			if got := c.mail("s@remote.example", []string{"alice@example.com"}, "fine\r\n"); !strings.HasPrefix(got, "250 ") {
				t.Errorf("next message: %q", got)
			}
			msgs := ts.q.all()
			if len(msgs) != 1 || !strings.HasSuffix(msgs[0].body, ">; "+msgs[0].env.Arrival.Format(dateLayout)+"\r\nfine\r\n") {
				t.Errorf("queued %+v, want only the good message", msgs)
			}
			ts.log.waitFor(t, "4Q00001: reject: END-OF-MESSAGE from localhost[127.0.0.1]: bare <")
		})
	}
}

// SMTP smuggling: an end-of-data that another server might see inside the
// content must never turn into a second message here.
func TestSmuggling(t *testing.T) {
	for _, mode := range []BareNewline{BareNewlineNormalize, BareNewlineReject} {
		t.Run(fmt.Sprint(mode), func(t *testing.T) { testSmuggling(t, mode) })
	}
}

func testSmuggling(t *testing.T, mode BareNewline) {
	smuggled := "MAIL FROM:<admin@bank.example>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\nFrom: admin@bank.example\r\n\r\nsmuggled\r\n"
	for _, tc := range []struct{ name, eod string }{
		{"LF.CRLF", "\n.\r\n"},
		{"CRLF.LF", "\r\n.\n"},
		{"LF.LF", "\n.\n"},
		{"CR.CRLF", "\r.\r\n"},
		{"CRLF.CR", "\r\n.\r"},
		{"CRLF.CRCRLF", "\r\n.\r\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := start(t, func(o *Options) { o.BareNewline = mode })
			c := ts.session(t)
			c.must("MAIL FROM:<mallory@remote.example>", "250 ")
			c.must("RCPT TO:<alice@example.com>", "250 ")
			c.must("DATA", "354 ")
			c.send("Subject: hello\r\n\r\nhello" + tc.eod + smuggled + ".\r\n")
			got := c.reply()
			// A bare CR is refused in every mode, a bare LF with
			// reject; with normalize the whole is one message.
			refused := mode == BareNewlineReject || strings.Contains(tc.eod, "\r.") || strings.HasSuffix(tc.eod, "\r") || strings.Contains(tc.eod, "\r\r")
			if refused && !strings.HasPrefix(got, "550 5.5.2 ") {
				t.Fatalf("end of data: %q, want the bare CR or LF refused", got)
			}
			if !refused && !strings.HasPrefix(got, "250 2.0.0 Ok: queued as ") {
				t.Fatalf("end of data: %q, want one message", got)
			}
			// One reply to the whole: the smuggled commands were content.
			if got := c.cmd("NOOP"); !strings.HasPrefix(got, "250 2.0.0 ") || strings.Contains(got, "queued") {
				t.Fatalf("NOOP: %q", got)
			}
			msgs := ts.q.all()
			if len(msgs) > 1 {
				t.Fatalf("%d messages from one DATA", len(msgs))
			}
			for _, m := range msgs {
				if len(m.env.Rcpts) != 1 || m.env.Rcpts[0].Addr != "alice@example.com" || m.env.From != "mallory@remote.example" {
					t.Errorf("envelope %+v", m.env)
				}
				if hasBareNewline(m.body) {
					t.Errorf("queued content has a bare CR or LF: %q", m.body)
				}
			}
		})
	}
}

func hasBareNewline(s string) bool {
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\r' && (i+1 == len(s) || s[i+1] != '\n'):
			return true
		case s[i] == '\n' && (i == 0 || s[i-1] != '\r'):
			return true
		}
	}
	return false
}

// BDAT (CHUNKING, which go-smtp always offers) goes through the same
// checks.
func TestBDAT(t *testing.T) {
	ts := start(t, func(o *Options) { o.BareNewline = BareNewlineReject })
	c := ts.session(t)
	c.must("MAIL FROM:<s@remote.example>", "250 ")
	c.must("RCPT TO:<alice@example.com>", "250 ")
	c.send("BDAT 8 LAST\r\nbad\nxx\r\n")
	c.expect("550 5.5.2 mx.example.com Error: bare <LF> received")
	c.must("MAIL FROM:<s@remote.example>", "250 ")
	c.must("RCPT TO:<alice@example.com>", "250 ")
	c.send("BDAT 5\r\nab\r\nc")
	c.expect("250 ")
	c.send("BDAT 2 LAST\r\n\r\n")
	c.expect("250 2.0.0 Ok: queued as 4Q00002")
	msgs := ts.q.all()
	if len(msgs) != 1 || !strings.HasSuffix(msgs[0].body, "\r\nab\r\nc\r\n") {
		t.Errorf("queued %+v", msgs)
	}
}

func TestSTARTTLS(t *testing.T) {
	cert, pool := selfSigned(t)
	ts := start(t, func(o *Options) {
		o.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	})
	c := dial(t, ts.addr)
	c.expect("220 mx.example.com ESMTP mailtee")
	if got := c.cmd("EHLO client.example"); !strings.Contains(got, "250-STARTTLS") {
		t.Fatalf("no STARTTLS in %q", got)
	}
	c.must("STARTTLS", "220 ")
	tc := tls.Client(c.nc, &tls.Config{RootCAs: pool, ServerName: testHost})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	c.nc, c.r = tc, bufio.NewReader(tc)
	if got := c.cmd("EHLO client.example"); strings.Contains(got, "STARTTLS") {
		t.Errorf("STARTTLS offered again: %q", got)
	}
	if got := c.mail("s@remote.example", []string{"alice@example.com"}, "secret\r\n"); got != "250 2.0.0 Ok: queued as 4Q00001" {
		t.Fatalf("end of data: %q", got)
	}
	c.must("QUIT", "221 ")
	m := ts.q.all()[0]
	if m.env.Protocol != "ESMTPS" {
		t.Errorf("protocol %q", m.env.Protocol)
	}
	if sm := receivedRE.FindStringSubmatch(m.body); sm == nil || sm[1] != "ESMTPS" {
		t.Errorf("Received: %q", m.body)
	}
	ts.log.waitFor(t, "disconnect from localhost[127.0.0.1] ehlo=2 starttls=1 mail=1 rcpt=1 data=1 commands=6")

	// TLS 1.2 at least.
	c = dial(t, ts.addr)
	c.expect("220 ")
	c.cmd("EHLO client.example")
	c.must("STARTTLS", "220 ")
	old := tls.Client(c.nc, &tls.Config{RootCAs: pool, ServerName: testHost, MaxVersion: tls.VersionTLS11})
	if err := old.Handshake(); err == nil {
		t.Error("TLS 1.1 handshake succeeded")
	}
}

// smtpd_tls_security_level = encrypt: no mail without STARTTLS, as
// Postfix's "530 5.7.0 Must issue a STARTTLS command first".
func TestRequireTLS(t *testing.T) {
	cert, pool := selfSigned(t)
	ts := start(t, func(o *Options) {
		o.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
		o.RequireTLS = true
	})
	c := ts.session(t)
	c.must("MAIL FROM:<s@remote.example>", "530 5.7.0 Must issue a STARTTLS command first")
	c = startTLS(t, ts, pool)
	c.cmd("EHLO client.example")
	if got := c.mail("s@remote.example", []string{"alice@example.com"}, "secret\r\n"); !strings.HasPrefix(got, "250 ") {
		t.Errorf("over TLS: %q", got)
	}
}

// smtpd_hard_error_limit: "421 4.7.0 %s Error: too many errors", checked
// before each command; an accepted message forgives earlier errors.
func TestHardErrorLimit(t *testing.T) {
	ts := start(t, func(o *Options) { o.HardErrorLimit = 3 })
	c := ts.session(t)
	c.must("MAIL FROM:<s@remote.example>", "250 ")
	c.must("RCPT TO:<x@foreign.example>", "554 ")
	c.must("RCPT TO:<y@foreign.example>", "554 ")
	c.must("RCPT TO:<alice@example.com>", "250 ")
	c.must("DATA", "354 ")
	c.send("\r\n.\r\n")
	c.expect("250 ")
	c.must("MAIL FROM:<s@remote.example>", "250 ")
	c.must("RCPT TO:<x@foreign.example>", "554 ")
	c.must("RCPT TO:<y@foreign.example>", "554 ")
	c.must("RCPT TO:<z@foreign.example>", "554 ")
	c.must("RCPT TO:<alice@example.com>", "421 4.7.0 mx.example.com Error: too many errors")
	c.closed()
	ts.log.waitFor(t, "too many errors after RCPT from localhost[127.0.0.1]")
	ts.log.waitFor(t, "disconnect from localhost[127.0.0.1] ehlo=1 mail=2 rcpt=1/7 data=1 commands=5/11")
}

// smtpd_soft_error_limit: past it, every reply waits
// smtpd_error_sleep_time.
func TestSoftErrorLimit(t *testing.T) {
	ts := start(t, func(o *Options) { o.SoftErrorLimit = 1 }, func(s *Server) { s.errSleep = 300 * time.Millisecond })
	c := ts.session(t)
	c.must("MAIL FROM:<s@remote.example>", "250 ")
	start := time.Now()
	c.must("RCPT TO:<x@foreign.example>", "554 ")
	if d := time.Since(start); d >= ts.errSleep {
		t.Errorf("first error slowed down: %v", d)
	}
	start = time.Now()
	c.must("RCPT TO:<alice@example.com>", "250 ")
	if d := time.Since(start); d < ts.errSleep {
		t.Errorf("reply after the soft limit took %v, want %v at least", d, ts.errSleep)
	}
}

func TestEnqueueErrors(t *testing.T) {
	ts := start(t, nil)
	c := ts.session(t)
	ts.q.setFail(fmt.Errorf("write 4Q00001: %w", syscall.ENOSPC))
	if got := c.mail("s@remote.example", []string{"alice@example.com"}, "x\r\n"); got != "452 4.3.1 Insufficient system storage" {
		t.Errorf("disk full: %q", got)
	}
	ts.q.setFail(errors.New("fsync: input/output error"))
	if got := c.mail("s@remote.example", []string{"alice@example.com"}, "x\r\n"); got != "451 4.3.0 Error: queue file write error" {
		t.Errorf("write error: %q", got)
	}
	ts.q.setFail(nil)
	if got := c.mail("s@remote.example", []string{"alice@example.com"}, "x\r\n"); got != "250 2.0.0 Ok: queued as 4Q00003" {
		t.Errorf("after errors: %q", got)
	}
	ts.log.waitFor(t, "warning: 4Q00001: queue file write error: ")
}

// brokenQueue commits without reading the whole body.
type brokenQueue struct{ fakeQueue }

func (q *brokenQueue) Enqueue(_ context.Context, id string, env *envelope.Envelope, body io.Reader) error {
	buf := make([]byte, 10)
	io.ReadFull(body, buf)
	return nil
}

// The Enqueuer contract: read the content to its end before committing.
// A queue that does not gets no 250.
func TestEnqueuerMustReadAll(t *testing.T) {
	ts := start(t, func(o *Options) { o.Queue = &brokenQueue{} })
	c := ts.session(t)
	if got := c.mail("s@remote.example", []string{"alice@example.com"}, strings.Repeat("y", 100)+"\r\n"); got != "451 4.3.0 Error: queue file write error" {
		t.Errorf("got %q", got)
	}
	ts.log.waitFor(t, "warning: 4Q00001: the queue stored a message without reading all of it")
}

func TestLogLines(t *testing.T) {
	ts := start(t, nil)
	c := ts.session(t)
	c.must("MAIL FROM:<s@remote.example>", "250 ")
	c.must("RCPT TO:<alice@example.com>", "250 ")
	c.must("RCPT TO:<x@foreign.example>", "554 ")
	c.must("DATA", "354 ")
	c.send("x\r\n.\r\n")
	c.expect("250 ")
	c.must("QUIT", "221 ")
	ts.log.waitFor(t, "disconnect from")
	want := []string{
		"connect from localhost[127.0.0.1]",
		"NOQUEUE: reject: RCPT from localhost[127.0.0.1]: 554 5.7.1 <x@foreign.example>: Relay access denied; from=<s@remote.example> to=<x@foreign.example> proto=ESMTP helo=<client.example>",
		"4Q00001: client=localhost[127.0.0.1]",
		"disconnect from localhost[127.0.0.1] ehlo=1 mail=1 rcpt=1/2 data=1 commands=4/5",
	}
	if got := ts.log.all(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("log:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// smtpd_timeout bounds each read, not a whole DATA transfer.
func TestTimeout(t *testing.T) {
	ts := start(t, func(o *Options) { o.Timeout = 300 * time.Millisecond })
	c := ts.session(t)
	c.must("MAIL FROM:<s@remote.example>", "250 ")
	c.must("RCPT TO:<alice@example.com>", "250 ")
	c.must("DATA", "354 ")
	for i := 0; i < 8; i++ {
		c.send("slow line\r\n")
		time.Sleep(100 * time.Millisecond)
	}
	c.send(".\r\n")
	c.expect("250 ")
	// Idle: go-smtp's own 421.
	c.expect("421 4.4.2 ")
	c.closed()
}

// Shutdown lets a transaction finish and sends idle sessions away.
func TestShutdown(t *testing.T) {
	ts := start(t, nil)
	busy := ts.session(t)
	busy.must("MAIL FROM:<s@remote.example>", "250 ")
	busy.must("RCPT TO:<alice@example.com>", "250 ")
	idle := ts.session(t)

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- ts.Shutdown(ctx)
	}()
	idle.expect("421 ")
	idle.closed()
	time.Sleep(50 * time.Millisecond)
	busy.must("DATA", "354 ")
	busy.send("last words\r\n.\r\n")
	busy.expect("250 2.0.0 Ok: queued as 4Q00001")
	busy.expect("421 ")
	busy.closed()
	if err := <-done; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if _, err := net.Dial("tcp", ts.addr); err == nil {
		t.Error("still accepting after Shutdown")
	}
}

// Shutdown gives up when its context ends, and closes what is left.
func TestShutdownDeadline(t *testing.T) {
	ts := start(t, nil)
	busy := ts.session(t)
	busy.must("MAIL FROM:<s@remote.example>", "250 ")
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := ts.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown: %v", err)
	}
	busy.closed()
}
