package master

import (
	"strings"
	"testing"
)

// A reload whose master.cf no longer has a running listener's service
// (removed, or moved to another port) leaves that listener running
// until the restart; it must keep the restrictions of its -o overrides
// meanwhile, not fall back to main.cf's, which let this client relay.
func TestReloadKeepsPolicyOfGoneService(t *testing.T) {
	dir := t.TempDir()
	p1, p2 := freePort(t), freePort(t)
	writeMainCF(t, dir, p1, "", "")
	svcs := transportsCF + "127.0.0.1:" + p1 + " inet n - n - - smtpd\n"
	writeMasterCF(t, dir, svcs+"127.0.0.1:"+p2+" inet n - n - - smtpd\n  -o smtpd_recipient_restrictions=reject\n")
	s, log := serve(t, reload(t, dir))
	if got := rcpt(t, "127.0.0.1:"+p2, "b@example.com"); !strings.HasPrefix(got, "554 ") {
		t.Fatalf("RCPT on the restricted service: %q", got)
	}
	writeMasterCF(t, dir, svcs)
	if err := s.Reload(dir); err != nil {
		t.Fatal(err)
	}
	if got := rcpt(t, "127.0.0.1:"+p2, "b@example.com"); !strings.HasPrefix(got, "554 ") {
		t.Errorf("after a reload without its service, RCPT on the still running restricted listener: %q, want 554", got)
	}
	waitLog(t, log, "master.cf service 127.0.0.1:"+p2+" is gone")
	if got := rcpt(t, "127.0.0.1:"+p1, "b@example.com"); got != "" {
		t.Errorf("RCPT on the plain service: %q", got)
	}
}
