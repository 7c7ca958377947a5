package cleanup

import (
	"context"
	"io"
	"strings"
	"testing"

	"github.com/mailtee/mailtee/internal/envelope"
	"github.com/mailtee/mailtee/internal/rewrite"
)

// smtputf8_autodetect_classes: for mail from a listed class, a non-ASCII
// envelope address or header field sets the SMTPUTF8 flag (Postfix's
// cleanup_addr.c, cleanup_out.c); a body alone does not, and mail from
// other classes keeps what the client said.
func TestAutoUTF8(t *testing.T) {
	c, err := New(Options{Rewrite: rewrite.Options{Myorigin: "example.org"}, HeaderSizeLimit: 102400,
		AutoUTF8: ParseAutoUTF8([]string{"sendmail", "verify"})})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name       string
		src        Source
		from, rcpt string
		content    string
		want       bool
	}{
		{"sendmail, UTF-8 header", Source{Pickup: true, UID: 1000}, "a@example.org", "b@example.org", "Subject: caf\u00e9\r\n\r\nx\r\n", true},
		{"sendmail, UTF-8 recipient", Source{Pickup: true, UID: 1000}, "a@example.org", "j\u00f6ran@example.org", "Subject: x\r\n\r\nx\r\n", true},
		{"sendmail, UTF-8 body only", Source{Pickup: true, UID: 1000}, "a@example.org", "b@example.org", "Subject: x\r\n\r\ncaf\u00e9\r\n", false},
		{"sendmail, ASCII", Source{Pickup: true, UID: 1000}, "a@example.org", "b@example.org", "Subject: x\r\n\r\nx\r\n", false},
		{"smtpd not listed", Source{}, "a@example.org", "b@example.org", "Subject: caf\u00e9\r\n\r\nx\r\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := &envelope.Envelope{From: tc.from, Rcpts: []envelope.Rcpt{{Addr: tc.rcpt}}}
			out, r, err := c.Process(context.Background(), "ID", env, strings.NewReader(tc.content), tc.src)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadAll(r); err != nil {
				t.Fatal(err)
			}
			if out.SMTPUTF8 != tc.want {
				t.Errorf("SMTPUTF8 %v, want %v", out.SMTPUTF8, tc.want)
			}
		})
	}
	if a := ParseAutoUTF8([]string{"all"}); !a.Sendmail || !a.SMTPD {
		t.Errorf("all: %+v", a)
	}
}
