package dashboard

import (
	"regexp"
	"strings"
)

// advice maps the replies a migration meets most to what the
// administrator does about them, first match wins: throttling before the
// generic 4xx words, TLS before the 5.7.x policy codes (Google's
// "530 5.7.0 Must issue a STARTTLS command first").
var advice = []struct {
	re   *regexp.Regexp
	text string
}{
	{regexp.MustCompile(`(?i)\b4\.7\.28\b|\b4\.2\.1\b|\b4\.7\.0\b.*(rate|too many|limit)|rate[- ]limit|throttl|too many (messages|connections|recipients)|temporarily deferred|try again later`),
		"The provider is throttling: wait. mailtee slows down by itself and retries; nothing is lost."},
	{regexp.MustCompile(`(?i)starttls|\btls\b.*(required|must|needed)|must issue a starttls|encryption (required|needed)|\b5\.7\.10\b`),
		"The destination requires TLS: set smtp_tls_security_level = may (or encrypt) for this transport, with a CA file that verifies it."},
	{regexp.MustCompile(`(?i)\b5\.1\.1\b|\b5\.1\.10\b|user unknown|unknown user|no such (user|mailbox|recipient)|does not exist|recipient address rejected|recipient not found|mailbox unavailable|invalid recipient`),
		"The account does not exist at the destination: create it at the provider (or take the user out of the copy map until it exists), then resend."},
	{regexp.MustCompile(`(?i)white-?list|allow-?list|relay(ing)? (access )?(denied|not permitted)|not permitted to relay|\b5\.7\.1\b|\b5\.7\.606\b|\b5\.7\.64\b|access denied`),
		"The destination refuses the sending address: allow-list the relay's IP address at the provider (Google Workspace: inbound gateway; Microsoft 365: a connector)."},
	{regexp.MustCompile(`(?i)connection refused|timed? ?out|timeout|no route to host|network is unreachable|host (is )?unreachable|connection reset|lost connection|host not found|name service error|server (is )?down|\b4\.4\.[12]\b`),
		"The next hop is down or unreachable: check that it runs and that its firewall lets mailtee in; mailtee retries by itself."},
	{regexp.MustCompile(`(?i)\b5\.2\.2\b|mailbox full|over quota|quota exceeded`),
		"The mailbox is full at the destination: ask the user to make room, or raise the quota."},
	{regexp.MustCompile(`(?i)\b5\.3\.4\b|too (big|large)|size limit|message size exceeds`),
		"The message is larger than the destination accepts: raise its limit, or tell the sender."},
}

// Advice says what to do about a delivery that failed or waits with
// reply; "" when it is not one of the common cases.
func Advice(reply string) string {
	reply = strings.TrimSpace(reply)
	if reply == "" {
		return ""
	}
	for _, a := range advice {
		if a.re.MatchString(reply) {
			return a.text
		}
	}
	return ""
}
