package provider

import (
	"strconv"
	"strings"
	"unicode"
)

// Throttle is what a throttling reply limits.
type Throttle int

const (
	// None: not a throttling reply. Mail is retried (or bounced) as any
	// other reply says.
	None Throttle = iota
	// Destination: the receiving site limits us, our sending address or
	// domain: the whole site is suspended with backoff.
	Destination
	// Mailbox: one recipient mailbox receives too much: that mailbox is
	// suspended with backoff, the rest of the site keeps flowing.
	Mailbox
)

func (t Throttle) String() string {
	switch t {
	case Destination:
		return "destination"
	case Mailbox:
		return "mailbox"
	}
	return "none"
}

// Classify says what an SMTP reply limits, from its code, its enhanced
// status code ("4.2.1"; "" when the reply has none, in which case one at
// the start of text is used) and its text, continuation lines
// included. Only 4xx replies throttle, except Microsoft's 5.2.121 and
// 5.2.122, which the caller must treat as temporary.
//
// Mailbox:
//   - X.2.121 and X.2.122 (Microsoft 365: "Recipient's per hour message
//     receive limit [from specific sender] exceeded"), whatever the class.
//   - 4xx 4.2.1 (Google: "The user you are trying to contact is receiving
//     mail at a rate that prevents additional messages from being
//     delivered" / "...too quickly"). RFC 3463's X.2.1 is the mailbox's
//     status; a temporary one is that mailbox's, not the site's.
//   - 4xx whose text says the user receives mail too fast, and
//     Microsoft's "432 4.3.2 STOREDRV.Deliver; recipient thread limit
//     exceeded" (one mailbox receiving too quickly).
//
// Destination:
//   - 421 4.7.0 and 4xx 4.7.28 (Google: "unusual rate of unsolicited mail
//     originating from your IP address / SPF domain / DKIM domain",
//     "Try again later, closing connection"; 4.7.28 is Google's code for
//     "rate limited", whatever the reply code).
//   - 4xx 4.7.500-4.7.699 and 4.7.850-4.7.899 (Microsoft: "Access denied,
//     please try again later", "Server busy": IP throttling).
//   - Google's "450 4.2.1 Peak SMTP relay limit exceeded for customer",
//     a limit on the sending customer, not on a mailbox.
//   - any other 421 whose text speaks of a rate, too many connections or
//     messages, concurrency (Exchange's "421 4.3.2 The maximum number of
//     concurrent server connections has exceeded a per-source limit"), a
//     busy server or throttling.
//
// Not throttles: 4.2.2 is a full mailbox ("452 4.2.2 The email account
// that you tried to reach is over quota"; RFC 3463 "Mailbox full"), and
// Microsoft's 5.2.2 "Submission quota exceeded" is a Microsoft 365 user's
// own sending quota: waiting longer between attempts does not empty a
// mailbox, and slowing the site would hold back every other mailbox for
// it. 452 4.5.3 "Too many recipients" asks for smaller transactions, not
// a slower rate. They keep the ordinary per-recipient retry.
func Classify(code int, enhanced, text string) Throttle {
	if code < 400 || code > 599 {
		return None
	}
	// The class may disagree with the code; the code decides.
	_, subj, detail, ok := parseEnhanced(enhanced)
	if !ok {
		_, subj, detail, ok = parseEnhanced(leadingEnhanced(text))
	}
	words := normalize(text)

	if ok && subj == 2 && (detail == 121 || detail == 122) {
		return Mailbox
	}
	if code >= 500 {
		return None
	}
	switch {
	case ok && subj == 2 && detail == 1:
		if strings.Contains(words, "relay limit") {
			return Destination
		}
		return Mailbox
	case ok && subj == 2 && detail == 2:
		return None
	case ok && subj == 7 && (detail == 28 || detail >= 500 && detail <= 699 || detail >= 850 && detail <= 899):
		return Destination
	case ok && subj == 3 && detail == 2 && strings.Contains(words, "recipient thread limit"):
		return Mailbox
	case containsAny(words, "receiving mail at a rate", "receiving mail too quickly", "receiving mail too fast"):
		return Mailbox
	}
	if code != 421 {
		return None
	}
	if ok && subj == 7 && (detail == 0 || detail == 28) {
		return Destination
	}
	if hasWord(words, "rate") || hasWord(words, "busy") || hasWord(words, "concurrent") || hasWord(words, "concurrency") ||
		containsAny(words, "ratelimit", "rate-limit", "too many connections", "too many messages",
			"too fast", "too quickly", "throttl") {
		return Destination
	}
	return None
}

// parseEnhanced parses an RFC 3463 status code "class.subject.detail".
func parseEnhanced(s string) (cls, subj, detail int, ok bool) {
	parts := strings.Split(strings.TrimSpace(s), ".")
	if len(parts) != 3 {
		return 0, 0, 0, false
	}
	var n [3]int
	for i, p := range parts {
		if len(p) == 0 || len(p) > 3 {
			return 0, 0, 0, false
		}
		v, err := strconv.Atoi(p)
		if err != nil || v < 0 || p[0] == '+' {
			return 0, 0, 0, false
		}
		n[i] = v
	}
	if n[0] != 2 && n[0] != 4 && n[0] != 5 {
		return 0, 0, 0, false
	}
	return n[0], n[1], n[2], true
}

// leadingEnhanced returns the first word of text after an optional reply
// code ("450-4.2.1 The user" -> "4.2.1").
func leadingEnhanced(text string) string {
	f := strings.Fields(text)
	if len(f) == 0 {
		return ""
	}
	w := f[0]
	if isReplyCode(w) {
		if len(f) < 2 {
			return ""
		}
		w = f[1]
	} else if len(w) > 4 && isReplyCode(w[:3]) && (w[3] == '-' || w[3] == ' ') {
		w = w[4:]
	}
	return w
}

func isReplyCode(w string) bool {
	return len(w) == 3 && w[0] >= '2' && w[0] <= '5' && w[1] >= '0' && w[1] <= '9' && w[2] >= '0' && w[2] <= '9'
}

// normalize lowers text and drops the reply-code prefixes of continuation
// lines ("450-4.2.1"), so that a phrase broken over lines still matches.
func normalize(text string) string {
	var keep []string
	for _, w := range strings.Fields(strings.ToLower(text)) {
		if isReplyCode(w) {
			continue
		}
		if len(w) > 4 && isReplyCode(w[:3]) && (w[3] == '-' || w[3] == ' ') {
			if _, _, _, ok := parseEnhanced(w[4:]); ok {
				continue
			}
		}
		if _, _, _, ok := parseEnhanced(w); ok {
			continue
		}
		keep = append(keep, w)
	}
	return strings.Join(keep, " ")
}

// hasWord reports whether w occurs in s as a word of its own ("rate",
// not "separate").
func hasWord(s, w string) bool {
	for _, f := range strings.FieldsFunc(s, func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r)
	}) {
		if f == w {
			return true
		}
	}
	return false
}

func containsAny(s string, subs ...string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}
