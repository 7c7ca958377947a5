package cleanup

import (
	"strings"

	"github.com/mailtee/mailtee/internal/envelope"
)

// SMTPUTF8 autodetection (smtputf8_autodetect_classes, Postfix's
// cleanup_addr.c and cleanup_out.c, "Fix 20140713: request SMTPUTF8
// support selectively"): for mail from a source class in the list, a
// non-ASCII envelope address or header field makes the message one whose
// sender asked for SMTPUTF8, as if the client had said so. Postfix's
// default classes are sendmail and verify; mailtee has sendmail (local
// submission) and smtpd (SMTP clients) as classes of its own.

// AutoUTF8 is smtputf8_autodetect_classes, for the classes mailtee has.
type AutoUTF8 struct {
	Sendmail bool // "sendmail": local submission (pickup)
	SMTPD    bool // "smtpd": SMTP clients that did not say SMTPUTF8
}

// ParseAutoUTF8 reads smtputf8_autodetect_classes (a list of Postfix's
// class names, "all" for every one); names of classes mailtee has no
// mail from (qmqpd, forward, bounce, notify, verify) are taken and
// ignored.
func ParseAutoUTF8(classes []string) AutoUTF8 {
	var a AutoUTF8
	for _, c := range classes {
		switch strings.ToLower(c) {
		case "all":
			a.Sendmail, a.SMTPD = true, true
		case "sendmail":
			a.Sendmail = true
		case "smtpd":
			a.SMTPD = true
		}
	}
	return a
}

// autoUTF8 reports whether mail from src is autodetected.
func (c *Cleanup) autoUTF8(src Source) bool {
	switch {
	case src.Internal:
		return false
	case src.Pickup:
		return c.o.AutoUTF8.Sendmail
	}
	return c.o.AutoUTF8.SMTPD
}

// envelopeNeedsUTF8 reports whether an envelope address is not ASCII.
func envelopeNeedsUTF8(env *envelope.Envelope) bool {
	if !isASCII(env.From) {
		return true
	}
	for _, r := range env.Rcpts {
		if !isASCII(r.Addr) {
			return true
		}
	}
	return false
}

func isASCII[T string | []byte](s T) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
