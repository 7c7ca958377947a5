package smtpd

import (
	"strings"

	"github.com/emersion/go-smtp"
)

// Restrictions are smtpd_relay_restrictions and
// smtpd_recipient_restrictions, in the words mailtee implements:
// permit_mynetworks, permit_sasl_authenticated (mailtee offers no AUTH,
// so it never matches), reject_unauth_destination and
// defer_unauth_destination (both "554 5.7.1 Relay access denied", see
// the package doc), permit, reject and defer. Each list is evaluated as
// smtpd_check.c does: the first permit ends the list, the first reject or
// defer ends the command; the relay list comes first.
type Restrictions struct {
	Relay, Recipient []string
}

// defaultRestrictions is Postfix's default smtpd_relay_restrictions and
// empty smtpd_recipient_restrictions.
var defaultRestrictions = Restrictions{Relay: []string{"permit_mynetworks", "permit_sasl_authenticated", "defer_unauth_destination"}}

// restrict evaluates the policy's restrictions for a recipient; authDest
// says whether its domain is one mailtee is the final or relay
// destination for (permit_auth_destination).
func (p *Policy) restrict(mynet, authDest bool, ext string) *smtp.SMTPError {
	r := p.Restrictions
	if r == nil {
		r = &defaultRestrictions
	}
	for _, list := range [][]string{r.Relay, r.Recipient} {
	words:
		for _, w := range list {
			switch strings.ToLower(w) {
			case "permit_mynetworks":
				if mynet {
					break words
				}
			case "permit":
				break words
			case "reject_unauth_destination", "defer_unauth_destination":
				if !authDest {
					return reply(554, "5.7.1", "<%s>: Relay access denied", ext)
				}
			case "reject":
				// smtpd_check.c: var_reject_code (554), "5.7.1".
				return reply(554, "5.7.1", "<%s>: Recipient address rejected: Access denied", ext)
			case "defer":
				// var_defer_code (450), "4.3.2".
				return reply(450, "4.3.2", "<%s>: Recipient address rejected: Try again later", ext)
			}
		}
	}
	return nil
}
