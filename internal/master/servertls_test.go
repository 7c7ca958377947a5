package master

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/smtp"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Issue 15: Debian's main.cf names the snakeoil certificate, which only
// the ssl-cert package creates. Postfix then logs "cannot get RSA
// certificate ...: disabling TLS support" and serves without STARTTLS;
// so does mailtee, instead of refusing to start: EHLO offers no
// STARTTLS, mail is still accepted, and the log says why.
func TestMissingCertificateNoSTARTTLS(t *testing.T) {
	dir := t.TempDir()
	port := freePort(t)
	cert := filepath.Join(dir, "ssl-cert-snakeoil.pem")
	key := filepath.Join(dir, "ssl-cert-snakeoil.key")
	cfg := writeMainCF(t, dir, port, "", "smtpd_tls_cert_file = "+cert+"\nsmtpd_tls_key_file = "+key+"\nsmtpd_tls_security_level = may\n")
	s, log := serve(t, cfg)
	addr := s.listeners[0].Addr().String()
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.example"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := c.Extension("STARTTLS"); ok {
		t.Errorf("EHLO offers STARTTLS without a certificate")
	}
	if err := c.Mail("a@example.org"); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("b@example.com"); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("Subject: x\r\n\r\nbody\r\n"))
	if err := w.Close(); err != nil {
		t.Fatalf("message refused: %v", err)
	}
	c.Quit()
	waitLog(t, log, "to=<b@example.com>")
	waitLog(t, log, `warning: cannot get certificate from file "`+cert+`" (smtpd_tls_cert_file / smtpd_tls_key_file): disabling TLS support`)
}

// smtpd_tls_chain_files (Postfix 3.4: a key followed by its
// certificates in one file) is what docker-mailserver sets; with it the
// server offers STARTTLS and the handshake presents that certificate.
func TestChainFilesSTARTTLS(t *testing.T) {
	dir := t.TempDir()
	port := freePort(t)
	chain := filepath.Join(dir, "chain.pem")
	der := writeKeyThenCert(t, chain)
	cfg := writeMainCF(t, dir, port, "", "smtpd_tls_chain_files = "+chain+"\n")
	s, _ := serve(t, cfg)
	c, err := smtp.Dial(s.listeners[0].Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.example"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := c.Extension("STARTTLS"); !ok {
		t.Fatal("EHLO offers no STARTTLS with smtpd_tls_chain_files")
	}
	if err := c.StartTLS(&tls.Config{InsecureSkipVerify: true}); err != nil {
		t.Fatal(err)
	}
	st, _ := c.TLSConnectionState()
	if len(st.PeerCertificates) == 0 || string(st.PeerCertificates[0].Raw) != string(der) {
		t.Errorf("handshake presented another certificate")
	}
}

// writeKeyThenCert writes a private key followed by its self-signed
// certificate, the order smtpd_tls_chain_files wants, and returns the
// certificate's DER.
func writeKeyThenCert(t *testing.T, path string) []byte {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mx.example.org"},
		DNSNames: []string{"mx.example.org"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	pem.Encode(&b, &pem.Block{Type: "PRIVATE KEY", Bytes: kder})
	pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return der
}
