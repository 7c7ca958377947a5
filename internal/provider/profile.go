// Package provider holds what mailtee knows about the two providers a
// migration most often ends at, Google Workspace and Microsoft 365: a
// delivery profile for each (TLS, connections, recipients per
// transaction, messages per connection, per-mailbox rates) with the
// publication each value comes from; the classification of their
// throttling replies by what they limit (Classify); and which receiving
// site a destination's MX hosts belong to (SiteOfHosts, Rollup), so that
// every domain hosted at Google is paced as one destination.
//
// The published limits, and the sentences that state them, are collected
// in the README's "Provider profiles" section. Each profile value stays
// below the published limit with a margin: the provider counts mail from
// every sender, not only ours, and does not say whether its windows
// slide; tripping Google's receiving limit locks the mailbox for about a
// day, during which its mail bounces.
//
// The package knows nothing of queues or main.cf; internal/pace applies a
// profile and the classification to deliveries.
package provider

import (
	"slices"
	"time"

	"github.com/mailtee/mailtee/internal/ratelimit"
)

// Profile is how to deliver to one provider.
type Profile struct {
	Name string // "google", "microsoft365"
	// TLSLevel is an smtp_tls_security_level value. Both providers offer
	// STARTTLS on every MX host and ask senders to use it; a profile
	// requires it ("encrypt"), so that a stripped STARTTLS defers
	// instead of sending in clear.
	TLSLevel              string
	Concurrency           int                // connections at once to the site (T_destination_concurrency_limit)
	RecipientLimit        int                // recipients per transaction (T_destination_recipient_limit)
	MessagesPerConnection int                // messages per connection, the first included (deliver.Policy.MaxReuse)
	RecipientRate         []ratelimit.Window // per mailbox (T_recipient_rate_limit), below the published limit
	DestinationRate       []ratelimit.Window // per site (T_destination_rate_limit); nil: nothing published
	Sources               []Source           // one per value that comes from a publication
}

// Source names the publication a profile value comes from.
type Source struct {
	What string // the value it supports, and the published figure
	URL  string
}

// Publications the profiles cite (their quoted sentences are in the
// README).
const (
	urlGoogleReceiving = "https://support.google.com/a/answer/1366776"
	urlGoogleErrors    = "https://support.google.com/a/answer/3726730"
	urlGoogleSender    = "https://support.google.com/a/answer/81126"
	urlRFC5321Rcpt     = "https://www.rfc-editor.org/rfc/rfc5321#section-4.5.3.1.8"
	urlPostfixInitConc = "https://www.postfix.org/postconf.5.html#initial_destination_concurrency"
	urlMSLimits        = "https://learn.microsoft.com/office365/servicedescriptions/exchange-online-service-description/exchange-online-limits#receiving-limits"
	urlMSHotReport     = "https://learn.microsoft.com/exchange/monitoring/mail-flow-reports/mailboxes-exceeding-receiving-limits-report"
	urlMSNDR           = "https://learn.microsoft.com/exchange/mail-flow-best-practices/non-delivery-reports-in-exchange-online/non-delivery-reports-in-exchange-online"
	urlMSReceiveConn   = "https://learn.microsoft.com/powershell/module/exchange/set-receiveconnector"
	urlMSDANE          = "https://techcommunity.microsoft.com/t5/exchange-team-blog/implementing-inbound-smtp-dane-with-dnssec-for-exchange-online/ba-p/3939694"
)

var profiles = map[string]Profile{
	"google": {
		Name: "google",
		// Google's sender guidelines: "Use a TLS connection for
		// transmitting email" (a requirement since Dec. 2023), and a
		// Workspace domain may answer "421 4.7.0 TLS required for RCPT
		// domain".
		TLSLevel: "encrypt",
		// Nothing published for Google's MX hosts. Every domain hosted at
		// Google is one site here, so this bounds all of them together;
		// 5 is Postfix's initial_destination_concurrency, what Postfix
		// opens to a destination before it has seen it cope. Gmail
		// answers an unusual volume from one address with 421 4.7.28,
		// which costs more than a few connections save.
		Concurrency: 5,
		// Nothing published for the MX. RFC 5321 4.5.3.1.8 makes 100 the
		// minimum a server must take; 50 is Postfix's
		// smtp_destination_recipient_limit default.
		RecipientLimit: 50,
		// Nothing published. Bounds what one connection carries, so that
		// a 421 mid-connection defers little, and connections get spread
		// over Google's front ends (Postfix's default is unlimited within
		// smtp_connection_reuse_time_limit, 300s).
		MessagesPerConnection: 100,
		// Published: 60 a minute, 3,600 an hour, 86,400 a day per
		// account, all mail counted, not only ours. About 17% below
		// each, for the mailbox's other mail and because Google does not
		// say whether its windows slide. 3000/1h also keeps the day at
		// 72,000, below 86,400.
		RecipientRate: []ratelimit.Window{{N: 50, Per: time.Minute}, {N: 3000, Per: time.Hour}},
		// Nothing published per site: 421 4.7.28 / 4.7.0 "unusual rate"
		// is reputation-driven, with no number. Replies pace the site.
		DestinationRate: nil,
		Sources: []Source{
			{"TLS required: \"Use a TLS connection for transmitting email\"", urlGoogleSender},
			{"TLS required: 421 4.7.0 \"TLS required for RCPT domain\"", urlGoogleErrors},
			{"recipient rate: 60 per minute, 3,600 per hour, 86,400 per day per account", urlGoogleReceiving},
			{"recipient limit: a server must buffer at least 100 recipients", urlRFC5321Rcpt},
			{"concurrency: Postfix's initial destination concurrency, 5 (nothing published by Google)", urlPostfixInitConc},
		},
	},
	"microsoft365": {
		Name: "microsoft365",
		// Exchange Online's new mx.microsoft hosts publish DANE TLSA
		// records, which bind a validating sender to TLS; every Exchange
		// Online MX offers STARTTLS.
		TLSLevel: "encrypt",
		// Nothing published. A site here is one tenant's MX host; 5 is
		// Postfix's initial_destination_concurrency.
		Concurrency: 5,
		// Published: "4.5.3 Too many recipients: The message has more
		// than 200 SMTP envelope recipients from the same domain." Half
		// of it.
		RecipientLimit: 100,
		// Nothing published for Exchange Online. Exchange's receive
		// connector, which Exchange Online Protection is built from,
		// closes the connection after MaxMessagesPerConnection, default
		// 20; sending more only earns a dropped connection.
		MessagesPerConnection: 20,
		// Published: 3,600 messages an hour per mailbox (the "hot"
		// limit), 33% of it (1,200) from one sender, and a "warm" limit
		// of 1,000 in a rolling hour at which a mailbox is reported "at
		// risk". mailtee does not key its limit by sender, so it stays
		// below the sender-recipient pair limit for any mix of senders,
		// and below the warm limit: 900 an hour. Nothing is published per
		// minute; 60/1m spreads an hour's quota over 15 minutes, since a
		// burst earns "432 4.3.2 STOREDRV.Deliver; recipient thread
		// limit exceeded".
		RecipientRate: []ratelimit.Window{{N: 60, Per: time.Minute}, {N: 900, Per: time.Hour}},
		// Nothing published per tenant: 451 4.7.500-699 fires on a
		// change "from previously-established patterns", with no number.
		DestinationRate: nil,
		Sources: []Source{
			{"TLS required: mx.microsoft hosts publish DANE (DNSSEC) records", urlMSDANE},
			{"recipient rate: 3,600 messages per hour per mailbox, 33% of it from one sender", urlMSLimits},
			{"recipient rate: warm limit, 1,000 messages per rolling hour", urlMSHotReport},
			{"recipient limit: 4.5.3 \"more than 200 SMTP envelope recipients from the same domain\"", urlMSNDR},
			{"messages per connection: Exchange receive connector MaxMessagesPerConnection, default 20", urlMSReceiveConn},
			{"concurrency: Postfix's initial destination concurrency, 5 (nothing published by Microsoft)", urlPostfixInitConc},
		},
	},
}

// Lookup returns the profile called name ("google", "microsoft365").
// The profile is a copy; changing it changes nothing here.
func Lookup(name string) (Profile, bool) {
	p, ok := profiles[name]
	if !ok {
		return Profile{}, false
	}
	p.RecipientRate = slices.Clone(p.RecipientRate)
	p.DestinationRate = slices.Clone(p.DestinationRate)
	p.Sources = slices.Clone(p.Sources)
	return p, true
}

// Names returns the profile names, sorted: the values
// T_destination_profile takes besides auto and none.
func Names() []string {
	var out []string
	for n := range profiles {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}
