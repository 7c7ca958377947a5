package deliver

import (
	"regexp"
	"testing"

	"github.com/emersion/go-smtp"
)

// The server writes its enhanced code, and go-smtp reads any integers:
// the status a delivery records (and a bounce carries, and internal/dsn
// checks) must stay in RFC 3463's form, as Postfix's dsn_valid() keeps
// it, whatever the server sent.
func TestReplyStatusValid(t *testing.T) {
	valid := regexp.MustCompile(`^[245]\.[0-9]{1,3}\.[0-9]{1,3}$`)
	for _, c := range []struct {
		code int
		ec   smtp.EnhancedCode
		want string
	}{
		{550, smtp.EnhancedCode{5, 1, 1}, "5.1.1"},
		{550, smtp.EnhancedCode{5, 44315926, 974}, "5.0.0"},
		{451, smtp.EnhancedCode{4, 7, 1000}, "4.0.0"},
		{550, smtp.EnhancedCode{5, -1, 0}, "5.0.0"},
		{550, smtp.EnhancedCode{4, 2, 1}, "5.0.0"}, // class disagrees with the code
		{554, smtp.EnhancedCode{5, 999, 999}, "5.999.999"},
	} {
		text, status := reply(&smtp.SMTPError{Code: c.code, EnhancedCode: c.ec, Message: "hostile"})
		if status != c.want || !valid.MatchString(status) {
			t.Errorf("%d %v: status %q, want %q (text %q)", c.code, c.ec, status, c.want, text)
		}
	}
}
