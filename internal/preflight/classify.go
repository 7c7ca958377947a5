package preflight

import (
	"strconv"
	"strings"
)

// Reply is one SMTP reply: its code and its text, continuation lines
// joined with "\n" (net/textproto's form).
type Reply struct {
	Code int
	Text string
}

// String is the reply on one line, as rows show it.
func (r Reply) String() string {
	if r.Code == 0 {
		return r.Text
	}
	return strconv.Itoa(r.Code) + " " + strings.Join(strings.Fields(r.Text), " ")
}

// Enhanced returns the reply's RFC 3463 status code ("5.1.1"), or "" when
// its text does not start with one.
func (r Reply) Enhanced() string {
	f := strings.Fields(r.Text)
	if len(f) == 0 {
		return ""
	}
	parts := strings.Split(f[0], ".")
	if len(parts) != 3 || len(parts[0]) != 1 || parts[0][0] < '2' || parts[0][0] > '5' {
		return ""
	}
	for _, p := range parts[1:] {
		if n, err := strconv.Atoi(p); err != nil || n < 0 || len(p) > 3 {
			return ""
		}
	}
	return f[0]
}

// Verdict is what a refusal means for preflight.
type Verdict int

const (
	Other          Verdict = iota // any other reply
	Accepted                      // 2xx
	SourceRefused                 // the provider does not accept mail from this source address
	MissingAccount                // the recipient does not exist (or is disabled)
	Temporary                     // 4xx: try again later
)

// sourceTexts are the words of replies that refuse the client's address
// rather than the message or the recipient, lower-cased. Google Workspace
// (Gmail SMTP errors and codes, support.google.com/a/answer/3726730, and
// the SMTP relay service's): "550 5.7.1 Mail relay denied [IP]. Invalid
// credentials for relay for one of the domains in: ...", "550 5.7.1
// Invalid credentials for relay [IP]", "421 4.7.0 IP not in whitelist for
// RCPT domain, closing connection." Microsoft 365 (Exchange Online NDRs):
// "550 5.7.64 TenantAttribution; Relay Access Denied", "5.7.51
// TenantInboundAttribution" (a connector restricted to other IPs),
// "5.7.606-649 Access denied, banned sending IP [IP]", "5.7.708 Access
// denied, traffic not accepted from this IP". Postfix and mailtee say
// "Relay access denied" and "Client host rejected".
var sourceTexts = []string{
	"not in whitelist", "not whitelisted", "not in allowlist", "not allowlisted",
	"mail relay denied", "invalid credentials for relay", "relay access denied", "relaying denied",
	"relay not permitted", "tenantattribution", "tenantinboundattribution",
	"banned sending ip", "traffic not accepted from this ip", "client host rejected",
	"client host blocked", "blocked using",
}

// missingTexts are the words of a reply that says the mailbox does not
// exist, for servers that give no enhanced code or a general one.
// Microsoft 365 with directory-based edge blocking answers "550 5.4.1
// Recipient address rejected: Access denied" for an address its
// directory does not have.
var missingTexts = []string{
	"user unknown", "unknown user", "no such user", "does not exist", "doesn't exist",
	"recipient not found", "recipientnotfound", "mailbox not found",
	"unknown recipient", "recipient address rejected: access denied", "account that you tried to reach is disabled",
	"invalid recipient", "no mailbox",
}

// Classify says what reply r means for preflight's probes.
func Classify(r Reply) Verdict {
	switch {
	case r.Code >= 200 && r.Code < 300:
		return Accepted
	case r.Code < 400 || r.Code > 599:
		return Other
	}
	text := strings.ToLower(r.Text)
	enh := r.Enhanced()
	for _, s := range sourceTexts {
		if strings.Contains(text, s) {
			return SourceRefused
		}
	}
	switch enh[min(len(enh), 2):] {
	case "7.64", "7.51", "7.708":
		return SourceRefused
	}
	if n, ok := strings.CutPrefix(enh, "5.7."); ok {
		if c, err := strconv.Atoi(n); err == nil && c >= 606 && c <= 649 {
			return SourceRefused
		}
	}
	if r.Code >= 500 {
		// X.1.1 bad destination mailbox, X.1.10 (Microsoft's
		// RecipientNotFound), X.2.1 mailbox disabled.
		switch enh[min(len(enh), 2):] {
		case "1.1", "1.10", "2.1":
			return MissingAccount
		}
		for _, s := range missingTexts {
			if strings.Contains(text, s) {
				return MissingAccount
			}
		}
		return Other
	}
	return Temporary
}

// isSPF reports whether a refusal after DATA speaks of SPF, DKIM or
// DMARC: what forwarded mail meets when the provider does not trust the
// relay as its gateway.
func isSPF(r Reply) bool {
	t := strings.ToLower(r.Text)
	for _, s := range []string{"spf", "dmarc", "dkim", "not authenticated", "unauthenticated", "5.7.26", "5.7.27", "5.7.509"} {
		if strings.Contains(t, s) {
			return true
		}
	}
	return false
}
