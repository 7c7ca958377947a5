package srs

import (
	"strings"
	"testing"

	"github.com/mailtee/mailtee/internal/address"
)

// FuzzReverse feeds the decoder what a remote may put in RCPT TO. It
// must never panic; what it accepts must be signed by one of the
// secrets (an address Forward made decodes back to its sender), and
// any change to a valid hash must be refused.
func FuzzReverse(f *testing.F) {
	for _, s := range []string{
		"SRS0=7Cba=J2=sender.example=alice@srs.example.org",
		"SRS1=on9K=other.example==abcd=AB=orig.example=bob@srs.example.org",
		"srs0=7cba=j2=sender.example=alice@srs.example.org",
		"SRS0+x=J2=a=b@c", "SRS1-==x==@", "SRS0====@", `"SRS0=a b"@x`, "SRS0=7Cba=J2=@",
		"alice@sender.example", "", `"SRs0+"@A`,
	} {
		f.Add(s)
	}
	c := vecCodec()
	f.Fuzz(func(t *testing.T, in string) {
		back, err := c.Reverse(in)
		if err == nil && back == "" {
			t.Fatalf("Reverse(%q) accepted with no address", in)
		}
		if err == nil && !strings.Contains(back, "@") {
			t.Fatalf("Reverse(%q) = %q: no domain", in, back)
		}
		// What Forward makes of in as a sender must decode to it.
		fwd, err := c.Forward(in)
		if err != nil || fwd == in || fwd == "" {
			return
		}
		got, err := c.Reverse(fwd)
		if err != nil {
			t.Fatalf("Reverse(Forward(%q) = %q): %v", in, fwd, err)
		}
		// Another forwarder's SRS address comes back as libsrs2 rebuilds
		// it ("SRS0" + the rest); any other sender as it was.
		canon, local := in, in
		if a, err := address.Parse("<" + in + ">"); err == nil {
			canon, local = a.String(), a.Local
		}
		if !strings.HasPrefix(strings.ToUpper(local), "SRS") && got != canon {
			t.Fatalf("Reverse(Forward(%q)) = %q", in, got)
		}
	})
}
