package smtpd

import (
	"context"
	"errors"
	"net/netip"
	"testing"

	"github.com/mailtee/mailtee/internal/address"
)

type tempErr struct{ error }

func (tempErr) Temporary() bool { return true }

// The SRS hook refuses a forged address for good (550), but a lookup
// that failed (srs_domain shared with a domain listed in a table that
// did not answer) must be a temporary refusal, as any other lookup
// failure is: a 550 there bounced real users' mail for good.
func TestSRSHookTemporary(t *testing.T) {
	p := testPolicy(t, notUs)
	client := netip.MustParseAddr("127.0.0.1")
	for _, c := range []struct {
		err  error
		want int
	}{{errors.New("hash invalid in SRS address"), 550}, {tempErr{errors.New("mydestination: lookup failed")}, 451}} {
		p.SRS = func(ctx context.Context, local, domain string) (bool, error) { return true, c.err }
		a, _ := address.Parse("<alice@srs.example>")
		r := p.checkRcpt(context.Background(), client, a)
		if r == nil || r.Code != c.want {
			t.Errorf("SRS hook error %v: reply %v, want %d", c.err, r, c.want)
		}
	}
}
