package provider

import (
	"strings"
	"testing"
)

// The providers' own reply texts, from the pages the README cites
// (support.google.com/a/answer/3726730, learn.microsoft.com's Exchange
// Online NDR list) and from logs of real replies.
func TestClassify(t *testing.T) {
	for _, c := range []struct {
		code     int
		enhanced string
		text     string
		want     Throttle
	}{
		// Google, per mailbox.
		{450, "4.2.1", "The user you are trying to contact is receiving mail at a rate that prevents additional messages from being delivered. Please resend your message at a later time. If the user is able to receive mail at that time, your message will be delivered. For more information, please visit https://support.google.com/mail/?p=ReceivingRate - gsmtp", Mailbox},
		{450, "4.2.1", "The user you are trying to contact is receiving mail too quickly. Please resend your message at a later time.", Mailbox},
		// As Postfix logs it, continuation lines and all, with no separate
		// enhanced code: the code is read from the text.
		{450, "", "450-4.2.1 The user you are trying to contact is receiving mail at a rate that 450-4.2.1 prevents additional messages from being delivered. Please resend your 450-4.2.1 message at a later time. If the user is able to receive mail at that 450-4.2.1 time, your message will be delivered. For more information, please 450-4.2.1 visit 450 4.2.1  https://support.google.com/mail/?p=ReceivingRate aabb1122ccddeeff.547 - gsmtp", Mailbox},
		// 2008's wording, the phrase broken over lines.
		{450, "", "4.2.1 The Gmail user you are trying to contact is receiving\n450-4.2.1 mail at a rate that prevents additional messages from", Mailbox},
		// Google, the sending side or the site.
		{421, "4.7.28", "Our system has detected an unusual rate of unsolicited mail originating from your IP address. To protect our users from spam, mail sent from your IP address has been temporarily rate limited. Please visit https://support.google.com/mail/?p=UnsolicitedRateLimitError to review our Bulk Email Senders Guidelines. - gsmtp", Destination},
		{421, "4.7.28", "Gmail has detected an unusual rate of unsolicited mail originating from your SPF domain. To protect our users from spam, mail sent from your domain has been temporarily rate limited.", Destination},
		{421, "4.7.28", "Gmail has detected an unusual rate of unsolicited mail originating from your DKIM domain.", Destination},
		{421, "4.7.0", "Our system has detected an unusual rate of unsolicited mail originating from your IP address. To protect our users from spam, mail sent from your IP address has been temporarily blocked.", Destination},
		{421, "4.7.0", "Try again later, closing connection.", Destination},
		{450, "4.7.28", "rate limited", Destination},
		{450, "4.7.0", "Greylisted, please try again in 300 seconds", None},
		{421, "4.7.0", "Temporary System Problem. Try again later.", Destination},
		{421, "4.4.5", "Server busy, try again later.", Destination},
		// Also 421 4.7.0, and also the site's: every message there would
		// get the same answer, so the site waits with backoff.
		{421, "4.7.0", "TLS required for RCPT domain, closing connection.", Destination},
		{421, "4.7.0", "IP not in whitelist for RCPT domain, closing connection.", Destination},
		{450, "4.2.1", "Peak SMTP relay limit exceeded for customer. This is a temporary error.", Destination},
		// Google, not throttles.
		{452, "4.2.2", "The email account that you tried to reach is over quota. Please direct the recipient to https://support.google.com/mail/?p=OverQuotaTemp", None},
		// A full mailbox is not a rate even when the site closes the
		// connection over it.
		{421, "4.2.2", "Mailbox full: too many messages stored", None},
		{552, "5.2.2", "The email account that you tried to reach is over quota.", None},
		{452, "4.5.3", "Your message has too many recipients.", None},
		{452, "4.5.3", "Domain policy size per transaction exceeded, please try this recipient in a separate transaction.", None},
		{451, "4.3.0", "Mail server temporarily rejected message.", None},
		{550, "5.1.1", "The email account that you tried to reach does not exist.", None},
		{421, "4.3.0", "Temporary System Problem. Try again later", None},
		// Microsoft 365.
		{550, "5.2.121", "Recipient's per hour message receive limit from specific sender exceeded.", Mailbox},
		{550, "5.2.122", "Recipient's per hour message receive limit exceeded.", Mailbox},
		{450, "4.2.122", "", Mailbox},
		{432, "4.3.2", "STOREDRV.Deliver; recipient thread limit exceeded", Mailbox},
		{451, "4.7.500", "Server busy. Please try again later from [134.119.1.64]. (S77719) [FR2DEU01FT008.eop-deu01.prod.protection.outlook.com]", Destination},
		{451, "4.7.699", "Access denied, please try again later", Destination},
		// Outlook.com's wording in the same range.
		{451, "4.7.650", "The mail server [192.0.2.1] has been temporarily rate limited due to IP reputation.", Destination},
		{451, "4.7.850", "Access denied, please try again later", Destination},
		{451, "4.7.499", "Access denied", None},
		{451, "4.7.700", "Access denied", None},
		{550, "5.7.500", "Access denied", None},
		{550, "5.2.2", "Submission quota exceeded", None},
		{452, "4.5.3", "Too many recipients", None},
		{451, "4.3.2", "System not accepting network messages", None},
		// Others' 421 replies (Postfix's anvil, Exim, Sendmail).
		{421, "4.7.0", "mx.example.org Error: too many connections from 192.0.2.1", Destination},
		{421, "", "Too many concurrent SMTP connections; please try again later.", Destination},
		{421, "", "mx.example Service not available, closing transmission channel: connection rate limit exceeded", Destination},
		{421, "4.3.2", "System shutting down", None},
		// Exchange's per-source connection limit (MaxInboundConnectionPerSource,
		// learn.microsoft.com/en-us/answers/questions/407670) and a relay's.
		{421, "4.3.2", "The maximum number of concurrent server connections has exceeded a per-source limit, closing transmission channel", Destination},
		{421, "4.4.5", "Service unavailable, concurrency limit reached", Destination},
		{421, "", "Please use a separate transaction", None},
		// Success and nonsense never throttle.
		{250, "2.0.0", "OK receiving mail too quickly rate 4.7.28", None},
		{250, "2.2.121", "", None},
		{354, "", "go ahead, too many connections", None},
		{0, "4.2.1", "", None},
		{600, "4.2.1", "", None},
	} {
		if got := Classify(c.code, c.enhanced, c.text); got != c.want {
			t.Errorf("Classify(%d, %q, %.60q) = %v, want %v", c.code, c.enhanced, c.text, got, c.want)
		}
	}
}

func TestParseEnhanced(t *testing.T) {
	for s, ok := range map[string]bool{
		"4.2.1": true, "5.2.121": true, "4.7.500": true, " 4.7.28 ": true,
		"": false, "4.2": false, "4.2.1.1": false, "3.2.1": false, "4.2.1000": false,
		"4.+2.1": false, "4..1": false, "a.b.c": false, "4.-1.2": false,
	} {
		if _, _, _, got := parseEnhanced(s); got != ok {
			t.Errorf("parseEnhanced(%q) ok = %v, want %v", s, got, ok)
		}
	}
}

func FuzzClassify(f *testing.F) {
	f.Add(450, "4.2.1", "The user you are trying to contact is receiving mail at a rate")
	f.Add(421, "4.7.28", "unusual rate")
	f.Add(550, "5.2.122", "")
	f.Add(451, "", "451-4.7.500 Server busy")
	f.Add(250, "2.0.0", "ok")
	f.Fuzz(func(t *testing.T, code int, enhanced, text string) {
		got := Classify(code, enhanced, text)
		if got != None && got != Destination && got != Mailbox {
			t.Fatalf("Classify = %d", got)
		}
		if code < 400 && got != None {
			t.Fatalf("Classify(%d, %q, %q) = %v: a %dxx reply never throttles", code, enhanced, text, got, code/100)
		}
		// Case and line breaks do not change the answer.
		if g := Classify(code, strings.ToUpper(enhanced), strings.ToUpper(text)); g != got && !strings.ContainsFunc(text, func(r rune) bool { return r > 127 }) {
			t.Fatalf("upper case changed %v to %v", got, g)
		}
	})
}
