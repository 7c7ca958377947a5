package master

import (
	"path/filepath"
	"testing"

	"github.com/mailtee/mailtee/internal/diag"
	"github.com/mailtee/mailtee/internal/ratelimit"
)

// A master.cf SMTP service's -o of its pacing parameters is honoured
// (serve paces the transport with it), so check must not say otherwise,
// and a bad value is an error at master.cf's line, not main.cf's.
func TestPacingOverrides(t *testing.T) {
	dir := t.TempDir()
	writeMainCF(t, dir, freePort(t), "", "")
	writeMasterCF(t, dir, transportsCF+"gmail unix - - n - - smtp\n  -o gmail_recipient_rate_limit=5/5s\n  -o gmail_destination_profile=gogle\n")
	mcf := filepath.Join(dir, "master.cf")
	cfg := reload(t, dir)
	mf, _ := loadMaster(cfg)
	pacing, _ := pacingTransports(cfg, mf)
	if got := ratelimit.FormatWindows(pacing["gmail"].Limits.RecipientRate); got != "5/5s" {
		t.Fatalf("serve paces gmail with %q, want the -o's 5/5s", got)
	}
	d := findings(t, dir)
	for _, x := range d {
		if x.Line == 6 && x.File == mcf {
			t.Errorf("finding on an honoured, valid -o: %v", x)
		}
	}
	if !hasFinding(d, diag.Error, mcf, 7, "gmail_destination_profile = gogle") {
		t.Errorf("want the bad profile as an error at master.cf line 7: %v", d)
	}
}
