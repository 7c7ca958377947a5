package security

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// Issue 12, item 4: backscatter. A relay for relay_domains accepted any
// recipient there; when the next hop refused one, the bounce, with the
// original attached, went to the sender, whom the attacker forges: mailtee
// was a reflector. With relay_recipient_maps (as Postfix's smtpd), unknown
// recipients get 550 at RCPT and nothing is bounced.

const (
	backscatterMessages = 50 // transactions on one connection
	victim              = "victim@forged.example"
)

// backscatterSetup is a relay for relay.example whose next hop (a sink,
// also where mail for the forged sender's domain goes) knows only
// known@relay.example and refuses everyone else with 550 5.1.1. The
// attacking client, 127.0.0.1, is outside mynetworks.
func backscatterSetup(t *testing.T, extra string) (*instance, *sink) {
	t.Helper()
	sk := newSink(t)
	for i := 0; i < backscatterMessages; i++ {
		sk.SetRcptErr(fmt.Sprintf("nobody%d@relay.example", i), &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "User unknown"})
	}
	sk.SetRcptErr("disabled@relay.example", &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 2, 1}, Message: "Mailbox disabled"})
	in := newInstance(t, fmt.Sprintf(`compatibility_level = 3.6
mynetworks = 127.0.0.2/32
relay_domains = relay.example
relayhost = [127.0.0.1]:%d
smtpd_hard_error_limit = 1000
smtpd_soft_error_limit = 1000
`, sk.Port())+extra, nil)
	in.Start()
	return in, sk
}

// backscatterAttack sends backscatterMessages messages from the forged
// sender, each to one unknown user at the relay domain, on one
// connection, and returns how many RCPTs were refused with 550 5.1.1.
func backscatterAttack(t *testing.T, in *instance) (refused int) {
	t.Helper()
	c := dialRaw(t, in.Addr(), "127.0.0.1")
	c.must("EHLO attacker.example", "250 ")
	for i := 0; i < backscatterMessages; i++ {
		c.must("MAIL FROM:<"+victim+">", "250 ")
		r := c.cmd(fmt.Sprintf("RCPT TO:<nobody%d@relay.example>", i))
		switch {
		case strings.HasPrefix(r, "550 5.1.1 "):
			refused++
			c.must("RSET", "250 ")
		case strings.HasPrefix(r, "250 "):
			c.must("DATA", "354 ")
			c.send("From: <" + victim + ">\r\nSubject: reflect me\r\n\r\n" + strings.Repeat("payload ", 1000) + "\r\n.\r\n")
			if r := c.Reply(); !strings.HasPrefix(r, "250 ") {
				t.Fatalf("end of DATA %d: %q", i, r)
			}
		default:
			t.Fatalf("RCPT %d: %q", i, r)
		}
	}
	c.cmd("QUIT")
	return refused
}

// bouncesTo counts the notifications (MAIL FROM:<>) the sink received for
// rcpt.
func bouncesTo(sk *sink, rcpt string) int {
	n := 0
	for _, m := range sk.Messages() {
		if m.From == "" && len(m.To) == 1 && strings.EqualFold(m.To[0], rcpt) {
			n++
		}
	}
	return n
}

// TestBackscatterRelayRecipientMaps is the attack against a relay that
// lists its users: every unknown recipient is refused at RCPT with
// Postfix's reply, nothing is queued and no bounce leaves; a listed user
// still gets mail. Before relay_recipient_maps existed, mailtee refused
// to start with it set, and without it every message was accepted and
// bounced to the forged sender (TestBackscatterWithoutRelayRecipientMaps).
func TestBackscatterRelayRecipientMaps(t *testing.T) {
	in, sk := backscatterSetup(t, "relay_recipient_maps = inline:{ known@relay.example=OK, disabled@relay.example=OK }\n")
	start := time.Now()
	if got := backscatterAttack(t, in); got != backscatterMessages {
		t.Errorf("%d of %d unknown recipients refused at RCPT", got, backscatterMessages)
	}
	t.Logf("%d transactions in %v", backscatterMessages, time.Since(start))
	in.WaitLog("RCPT from localhost[127.0.0.1]: 550 5.1.1 <nobody0@relay.example>: Recipient address rejected: User unknown in relay recipient table; from=<" + victim + "> to=<nobody0@relay.example>")

	// A listed user is relayed, and a message to the victim's domain
	// afterwards shows that the queue has drained in order.
	if err := sendFrom("127.0.0.1", in.Addr(), "friend@outside.example", []string{"known@relay.example"}, testMessage("legit")); err != nil {
		t.Fatalf("mail for a listed user: %v", err)
	}
	waitUntil(t, "the listed user's message at the next hop", slow(60*time.Second), func() bool {
		return sk.Count("known@relay.example") == 1
	})
	waitUntil(t, "an empty queue", slow(60*time.Second), in.queueEmpty)
	if n := bouncesTo(sk, victim); n != 0 {
		t.Errorf("%d bounces reached the forged sender", n)
	}
}

// TestBackscatterWithoutRelayRecipientMaps pins Postfix's behaviour when
// relay_recipient_maps is empty, which is what the attack exploited:
// every recipient in relay_domains is accepted, and what the next hop
// refuses is bounced to the sender. check warns about it.
func TestBackscatterWithoutRelayRecipientMaps(t *testing.T) {
	in, sk := backscatterSetup(t, "")
	out, _ := in.Run("", "check")
	if !strings.Contains(out, "relay_recipient_maps is empty") || !strings.Contains(out, "backscatter") {
		t.Errorf("check does not warn about backscatter:\n%s", out)
	}
	start := time.Now()
	if got := backscatterAttack(t, in); got != 0 {
		t.Errorf("%d recipients refused, want 0 (Postfix accepts any with relay_recipient_maps empty)", got)
	}
	waitUntil(t, "the bounces", slow(120*time.Second), func() bool { return bouncesTo(sk, victim) == backscatterMessages })
	t.Logf("%d bounces to the forged sender %v after the first message", bouncesTo(sk, victim), time.Since(start))
}

// TestBounceSizeLimit: a real bounce returns the original whole when it
// is at most bounce_size_limit bytes, and only its header section when it
// is larger (Postfix's bounce_original), instead of a fixed 50000.
func TestBounceSizeLimit(t *testing.T) {
	in, sk := backscatterSetup(t, "bounce_size_limit = 2000\nrelay_recipient_maps = inline:{ disabled@relay.example=OK }\n")
	for _, tc := range []struct {
		subject   string
		bodyBytes int
		whole     bool
	}{
		{"small", 1000, true},
		{"large", 3000, false},
	} {
		body := strings.Repeat("body-line-"+tc.subject+"\r\n", tc.bodyBytes/(len(tc.subject)+12))
		sender := "sender-" + tc.subject + "@outside.example"
		if err := sendFrom("127.0.0.1", in.Addr(), sender, []string{"disabled@relay.example"},
			"From: <"+sender+">\r\nSubject: "+tc.subject+"\r\n\r\n"+body); err != nil {
			t.Fatalf("%s: %v", tc.subject, err)
		}
		waitUntil(t, "the bounce for "+tc.subject, slow(60*time.Second), func() bool { return bouncesTo(sk, sender) == 1 })
		var dsn string
		for _, m := range sk.Messages() {
			if m.From == "" && strings.EqualFold(m.To[0], sender) {
				dsn = m.Data
			}
		}
		hasBody := strings.Contains(dsn, "body-line-"+tc.subject)
		switch {
		case tc.whole && (!hasBody || !strings.Contains(dsn, "Content-Type: message/rfc822")):
			t.Errorf("%s (%d bytes, limit 2000): original not returned whole:\n%s", tc.subject, tc.bodyBytes, dsn)
		case !tc.whole && (hasBody || !strings.Contains(dsn, "Content-Type: text/rfc822-headers") || !strings.Contains(dsn, "Subject: "+tc.subject)):
			t.Errorf("%s (%d bytes, limit 2000): want the headers only:\n%s", tc.subject, tc.bodyBytes, dsn)
		}
	}
}
