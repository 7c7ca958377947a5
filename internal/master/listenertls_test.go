package master

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailtee/mailtee/internal/diag"
)

// A listener's -o certificate is checked as main.cf's is: one that
// does not load (serve refuses to start with it) is an error of check
// too, naming master.cf's line; a missing one is a warning, an error
// with -o smtpd_tls_security_level=encrypt, as is encrypt with no
// certificate at all. Before, check passed all three and serve then
// refused the first.
func TestMasterCFListenerCertificate(t *testing.T) {
	dir := t.TempDir()
	p1, p2 := freePort(t), freePort(t)
	notPEM := filepath.Join(dir, "notpem")
	os.WriteFile(notPEM, []byte("not a certificate\n"), 0o600)
	writeMainCF(t, dir, p1, "", "")
	mcf := filepath.Join(dir, "master.cf")
	write := func(over string) {
		writeMasterCF(t, dir, transportsCF+"127.0.0.1:"+p1+" inet n - n - - smtpd\n127.0.0.1:"+p2+" inet n - n - - smtpd\n"+over)
	}
	write("  -o smtpd_tls_cert_file=" + notPEM + "\n")
	if d := findings(t, dir); !hasFinding(d, diag.Error, mcf, 7, "serve refuses to start with it") {
		t.Errorf("a listener's certificate that does not load: %v", d)
	}
	// serve refuses it too (it runs check first; its newSMTPD would).
	cfg := reload(t, dir)
	if d, _ := Check(cfg); !d.HasErrors() {
		t.Error("serve's check passes a certificate serve cannot load")
	}

	write("  -o smtpd_tls_cert_file=" + filepath.Join(dir, "none.pem") + "\n")
	if d := findings(t, dir); !hasFinding(d, diag.Warning, mcf, 7, "this port runs without STARTTLS") || d.HasErrors() {
		t.Errorf("a listener's missing certificate: %v", d)
	}
	write("  -o smtpd_tls_cert_file=" + filepath.Join(dir, "none.pem") + "\n  -o smtpd_tls_security_level=encrypt\n")
	if d := findings(t, dir); !hasFinding(d, diag.Error, mcf, 8, "no client could send mail on this port") {
		t.Errorf("encrypt with a missing certificate: %v", d)
	}
	write("  -o smtpd_tls_security_level=encrypt\n")
	if d := findings(t, dir); !hasFinding(d, diag.Error, mcf, 7, "no client could send mail on this port") {
		t.Errorf("encrypt without a certificate: %v", d)
	}
	// A good one passes.
	cert, key := writeCert(t, dir)
	write("  -o smtpd_tls_cert_file=" + cert + "\n  -o smtpd_tls_key_file=" + key + "\n  -o smtpd_tls_security_level=encrypt\n")
	if d := findings(t, dir); d.HasErrors() {
		t.Errorf("a good listener certificate: %v", d)
	}
}

// A service whose host is a name is resolved by serve at its start,
// which refuses to start when it does not resolve; check says so, as it
// does of inet_interfaces, rather than pass it without a word.
func TestMasterCFHostName(t *testing.T) {
	dir := t.TempDir()
	writeMainCF(t, dir, freePort(t), "", "")
	writeMasterCF(t, dir, transportsCF+"nosuchhost.invalid:2525 inet n - n - - smtpd\nlocalhost:2526 inet n - n - - smtpd\n127.0.0.1:2527 inet n - n - - smtpd\n")
	d := findings(t, dir)
	if !hasFinding(d, diag.Warning, filepath.Join(dir, "master.cf"), 5, `"nosuchhost.invalid" is not an IP address`) {
		t.Errorf("a host name in master.cf: %v", d)
	}
	n := 0
	for _, x := range d {
		if strings.Contains(x.Msg, "is not an IP address") {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d such warnings, want 1 (localhost and addresses are fine): %v", n, d)
	}
}

// A wrapper-mode listener (smtps) whose certificate file is missing
// (Debian's snakeoil without ssl-cert) would speak plaintext on a port
// where clients start with TLS: an error, where main.cf alone gets a
// warning and plain STARTTLS-less SMTP. A chain file is a certificate.
func TestMasterCFWrapperMissingCert(t *testing.T) {
	dir := t.TempDir()
	p1, p2 := freePort(t), freePort(t)
	missing := filepath.Join(dir, "ssl-cert-snakeoil.pem")
	writeMainCF(t, dir, p1, "", "smtpd_tls_cert_file = "+missing+"\nsmtpd_tls_key_file = "+missing+"\n")
	writeMasterCF(t, dir, transportsCF+"127.0.0.1:"+p1+" inet n - n - - smtpd\n127.0.0.1:"+p2+" inet n - n - - smtpd\n  -o smtpd_tls_wrappermode=yes\n")
	if d := findings(t, dir); !hasFinding(d, diag.Error, filepath.Join(dir, "master.cf"), 6, "smtpd_tls_wrappermode = yes needs a certificate, and smtpd_tls_cert_file") {
		t.Errorf("wrapper mode with a missing certificate: %v", d)
	}
	cert, key := writeCert(t, dir)
	chain := filepath.Join(dir, "chain.pem")
	os.WriteFile(chain, append(mustReadFile(t, key), mustReadFile(t, cert)...), 0o600)
	writeMainCF(t, dir, p1, "", "smtpd_tls_chain_files = "+chain+"\n")
	if d := findings(t, dir); d.HasErrors() {
		t.Errorf("wrapper mode with smtpd_tls_chain_files: %v", d)
	}
}

func mustReadFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
