package master

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailtee/mailtee/internal/diag"
)

// Issue 15: on the seed's relay, copies for students.example leave by
// transport_maps for Google, and bounce_notice_recipient's default,
// postmaster completed with @$myorigin, is postmaster@students.example:
// the notice that Google refused a copy would go to Google. check warns,
// naming the parameters; it is quiet when the notice stays on the host,
// when it goes elsewhere, and on a server that is not a relay.
func TestNoticeRoutedToProvider(t *testing.T) {
	dir := t.TempDir()
	transport := filepath.Join(dir, "transport")
	if err := os.WriteFile(transport, []byte("students.example smtp:[aspmx.l.google.com]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	base := "myorigin = students.example\ntransport_maps = hash:" + transport + "\ndefault_transport = discard:x\n"
	const sub = "bounce_notice_recipient: postmaster (postmaster@students.example) is routed by transport_maps to smtp:[aspmx.l.google.com], off this host"
	warned := func(extra string) bool {
		t.Helper()
		all, _ := Check(localCfg(t, dir, base+extra))
		if all.HasErrors() {
			t.Fatalf("%s: %v", extra, all)
		}
		n := 0
		for _, d := range all {
			if strings.HasPrefix(d.Msg, "bounce_notice_recipient:") {
				n++
			}
		}
		return n > 0
	}
	all, _ := Check(localCfg(t, dir, base+"dual_delivery_relay = yes\n"))
	if d := one(t, all, diag.Warning, sub); d.Line != 7 {
		t.Errorf("want the warning at dual_delivery_relay's line 7: %v", d)
	}
	if !warned("dual_delivery_relay = yes\nbounce_notice_recipient = admin@students.example\n") {
		t.Errorf("no warning for admin@students.example, routed to the provider")
	}
	for _, extra := range []string{
		"",                           // not a relay
		"dual_delivery_relay = no\n", // the same
		"dual_delivery_relay = yes\nbounce_notice_recipient = admin@mx.example.org\n", // local
		"dual_delivery_relay = yes\nbounce_notice_recipient = admin@other.example\n",  // not the copies' way
	} {
		if warned(extra) {
			t.Errorf("%q: warned", extra)
		}
	}
	// relayhost is the copies' way too, when transport_maps has none.
	all, _ = Check(localCfg(t, dir, "myorigin = students.example\nrelayhost = [smtp.provider.example]\ndual_delivery_relay = yes\n"))
	one(t, all, diag.Warning, "is routed by relayhost to smtp:[smtp.provider.example]")
}
