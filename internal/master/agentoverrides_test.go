package master

import (
	"path/filepath"
	"testing"

	"github.com/mailtee/mailtee/internal/diag"
)

// A delivery service's -o that main.cf could not set without an error
// (SASL towards the next hop, TLS wrapper mode) is that error for the
// service, one per feature: mailtee would deliver without them, and a
// relay that demands AUTH or TLS from the first byte refuses the mail.
// Overrides that cannot change delivery stay a warning.
func TestAgentOverridesChecked(t *testing.T) {
	dir := t.TempDir()
	writeMainCF(t, dir, freePort(t), "", "")
	writeMasterCF(t, dir, transportsCF+"smarthost unix - - n - - smtp\n  -o smtp_sasl_auth_enable=yes\n  -o smtp_sasl_password_maps=hash:/etc/postfix/sasl_passwd\n  -o smtp_tls_wrappermode=yes\n  -o smtp_header_checks=regexp:/etc/postfix/h\n  -o my_own_setting=x\n")
	mcf := filepath.Join(dir, "master.cf")
	d := findings(t, dir)
	if !hasFinding(d, diag.Error, mcf, 6, "service smarthost (smtp): -o SASL authentication to the next hop") {
		t.Errorf("SASL override: %v", d)
	}
	if !hasFinding(d, diag.Error, mcf, 8, "service smarthost (smtp): -o TLS policy of the SMTP client") {
		t.Errorf("TLS wrapper override: %v", d)
	}
	if !hasFinding(d, diag.Warning, mcf, 9, "-o smtp_header_checks=regexp:/etc/postfix/h is not honoured") {
		t.Errorf("header checks override: %v", d)
	}
	if !hasFinding(d, diag.Warning, mcf, 10, "-o my_own_setting=x is not honoured") || hasFinding(d, diag.Error, mcf, 10, "") {
		t.Errorf("an unknown name: %v", d)
	}
	n := 0
	for _, x := range d {
		if x.Line == 7 {
			n++
		}
	}
	if n != 0 {
		t.Errorf("smtp_sasl_password_maps has a finding of its own, want it in the SASL one: %v", d)
	}
}
