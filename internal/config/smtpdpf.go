package config

import (
	"fmt"
	"strconv"
)

// smtpd's bare LF handling (internal/smtpd/data.go), in Postfix 3.7.11's
// words (3.9's "note" is not one of them), and SMTPUTF8 autodetection.
// Kept apart from support.go's table so that the parameters of one
// feature read together.
func init() {
	implemented["smtpd_forbid_bare_newline"] = paramInfo{allowed: []string{"normalize", "yes", "reject", "no"}}
	implemented["smtpd_forbid_bare_newline_exclusions"] = paramInfo{kind: KindNetList}
	implemented["smtpd_forbid_bare_newline_reject_code"] = paramInfo{valid: validBareNewlineCode}
	// Postfix's mail source classes (mail_proto.h); mailtee has mail from
	// sendmail and smtpd only (internal/cleanup/smtputf8.go)
	implemented["smtputf8_autodetect_classes"] = paramInfo{allowed: []string{"sendmail", "smtpd", "qmqpd", "forward", "bounce", "notify", "verify", "all"}}
}

// validBareNewlineCode is smtpd_forbid_bare_newline_reject_code's range in
// Postfix (smtpd.c: 500..599).
func validBareNewlineCode(v string) error {
	if n, err := strconv.Atoi(v); err == nil && (n < 500 || n > 599) {
		return fmt.Errorf("%d: expected a 5XX reply code", n)
	}
	return nil // a non-number is refused by the number check
}
