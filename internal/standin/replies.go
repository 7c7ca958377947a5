package standin

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-smtp"
)

// Flavors the stand-in can play.
const (
	Google       = "google"
	Microsoft365 = "microsoft365"
)

// words are the providers' own texts for the replies the stand-in
// gives, keyed by flavor and "CODE X.Y.Z".
//
// Google: "Gmail SMTP errors and codes",
// https://support.google.com/a/answer/3726730 (every reply ends in
// "- gsmtp"). Microsoft: "Email non-delivery reports and SMTP errors in
// Exchange Online", https://learn.microsoft.com/en-us/troubleshoot/exchange/email-delivery/ndr/non-delivery-reports-in-exchange-online
// (5.2.121, 5.2.122, 4.7.500-699), and the receiving limits of
// https://learn.microsoft.com/en-us/office365/servicedescriptions/exchange-online-service-description/exchange-online-limits#receiving-limits.
var words = map[string]map[string]string{
	Google: {
		// The per-mailbox receiving rate, answered to RCPT.
		"450 4.2.1": "The user you are trying to contact is receiving mail at a rate that prevents additional messages from being delivered. Please resend your message at a later time. If the user is able to receive mail at that time, your message will be delivered. For more information, visit https://support.google.com/mail/?p=ReceivingRate - gsmtp",
		// The sending address's or IP's rate.
		"421 4.7.28": "Our system has detected an unusual rate of unsolicited mail originating from your IP address. To protect our users from spam, mail sent from your IP address has been temporarily rate limited. Please visit https://support.google.com/mail/?p=UnsolicitedRateLimitError to review our Bulk Email Senders Guidelines. - gsmtp",
		"421 4.7.0":  "Try again later, closing connection. - gsmtp",
		// An account locked for exceeding its receiving limit.
		"550 5.2.1": "The email account that you tried to reach is disabled. For more information, visit https://support.google.com/mail/?p=DisabledUser - gsmtp",
	},
	Microsoft365: {
		"550 5.2.121": "Recipient's per hour message receive limit from specific sender exceeded",
		"550 5.2.122": "Recipient's per hour message receive limit exceeded",
		"451 4.7.500": "Access denied, please try again later",
		"421 4.7.28":  "Access denied, please try again later",
	},
}

// Which reply each flavor gives for which event. Microsoft answers an
// exceeded mailbox with 550 5.2.122 and blocks it for an hour (the same
// reply throughout), so its "locked" reply is that one.
var replyFor = map[string]struct{ mailbox, sender, locked string }{
	Google:       {mailbox: "450 4.2.1", sender: "421 4.7.28", locked: "550 5.2.1"},
	Microsoft365: {mailbox: "550 5.2.122", sender: "550 5.2.121", locked: "550 5.2.122"},
}

// ParseReply reads an SMTP reply as the -storm flag takes it:
// "CODE X.Y.Z [text]". Without text, the flavor's own words for that
// code are used when known, else a generic text.
func ParseReply(flavor, s string) (*smtp.SMTPError, error) {
	f := strings.Fields(s)
	if len(f) < 2 {
		return nil, fmt.Errorf("reply %q: want CODE X.Y.Z [text], such as 421 4.7.28", s)
	}
	code, err := strconv.Atoi(f[0])
	if err != nil || len(f[0]) != 3 || code < 400 || code > 599 {
		return nil, fmt.Errorf("reply %q: the code must be 4xx or 5xx", s)
	}
	var enh smtp.EnhancedCode
	parts := strings.Split(f[1], ".")
	if len(parts) != 3 {
		return nil, fmt.Errorf("reply %q: the enhanced code must be X.Y.Z", s)
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || n > 999 || len(p) > 3 {
			return nil, fmt.Errorf("reply %q: the enhanced code must be X.Y.Z", s)
		}
		enh[i] = n
	}
	if enh[0] != code/100 {
		return nil, fmt.Errorf("reply %q: the enhanced code's class must match the code's", s)
	}
	text := strings.Join(f[2:], " ")
	if text == "" {
		text = words[flavor][f[0]+" "+f[1]]
	}
	if text == "" {
		text = "Try again later"
	}
	return &smtp.SMTPError{Code: code, EnhancedCode: enh, Message: text}, nil
}

// ParseStorm reads the -storm flag, "REPLY:DURATION" (the last colon
// separates them), such as "421 4.7.28:30s".
func ParseStorm(flavor, s string) (*smtp.SMTPError, time.Duration, error) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return nil, 0, fmt.Errorf("-storm %q: want REPLY:DURATION, such as \"421 4.7.28:30s\"", s)
	}
	r, err := ParseReply(flavor, s[:i])
	if err != nil {
		return nil, 0, fmt.Errorf("-storm: %v", err)
	}
	d, err := time.ParseDuration(strings.TrimSpace(s[i+1:]))
	if err != nil || d <= 0 {
		return nil, 0, fmt.Errorf("-storm %q: the duration must be positive, such as 30s", s)
	}
	return r, d, nil
}

// known returns the flavor's reply for key ("450 4.2.1").
func known(flavor, key string) *smtp.SMTPError {
	r, err := ParseReply(flavor, key)
	if err != nil {
		panic(err) // the table is ours
	}
	return r
}

// format writes a reply as it goes on the wire.
func format(e *smtp.SMTPError) string {
	return fmt.Sprintf("%d %d.%d.%d %s", e.Code, e.EnhancedCode[0], e.EnhancedCode[1], e.EnhancedCode[2], e.Message)
}
