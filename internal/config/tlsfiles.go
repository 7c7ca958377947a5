package config

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/mailtee/mailtee/internal/diag"
)

// ServerCertificate loads what serve offers STARTTLS with, as Postfix's
// smtpd does: smtpd_tls_chain_files when set (each file a private key
// followed by its certificate chain; it takes precedence over the
// others, postconf(5)), else smtpd_tls_cert_file with
// smtpd_tls_key_file (the cert file when empty). It returns a nil
// certificate when none is configured or smtpd_tls_security_level is
// none. A file that does not exist is no error: its path is returned
// as missing, and the server runs without STARTTLS, as Postfix's does
// ("cannot get RSA certificate from file ...: disabling TLS support",
// src/tls/tls_certkey.c) — Debian's main.cf names the snakeoil
// certificate, which only the ssl-cert package creates. param is the
// parameter that names the files, for messages.
func (c *Config) ServerCertificate() (cert *tls.Certificate, param, missing string, err error) {
	if c.Get("smtpd_tls_security_level") == "none" {
		return nil, "", "", nil
	}
	var certFiles, keyFiles []string
	if chain := c.List("smtpd_tls_chain_files"); len(chain) > 0 {
		param, certFiles, keyFiles = "smtpd_tls_chain_files", chain, chain
	} else {
		certFile, keyFile := c.Get("smtpd_tls_cert_file"), c.Get("smtpd_tls_key_file")
		if certFile == "" && keyFile == "" {
			return nil, "", "", nil
		}
		if certFile == "" {
			return nil, "smtpd_tls_cert_file", "", fmt.Errorf("empty, but STARTTLS needs both a certificate and a key (smtpd_tls_key_file is %s)", keyFile)
		}
		if keyFile == "" {
			keyFile = certFile
		}
		param, certFiles, keyFiles = "smtpd_tls_cert_file", []string{certFile}, []string{keyFile}
		if keyFile != certFile {
			param = "smtpd_tls_cert_file / smtpd_tls_key_file"
		}
	}
	read := func(files []string) ([]byte, string, error) {
		var all []byte
		for _, f := range files {
			data, err := os.ReadFile(f)
			if errors.Is(err, fs.ErrNotExist) {
				return nil, f, nil
			}
			if err != nil {
				return nil, "", err
			}
			all = append(append(all, data...), '\n')
		}
		return all, "", nil
	}
	certPEM, miss, err := read(certFiles)
	if err != nil || miss != "" {
		return nil, param, miss, err
	}
	keyPEM, miss, err := read(keyFiles)
	if err != nil || miss != "" {
		return nil, param, miss, err
	}
	// X509KeyPair takes the CERTIFICATE blocks of the one and the first
	// key of the other, so a chain file serves as both.
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, param, "", fmt.Errorf("%s: %w", strings.Join(uniq(append(certFiles, keyFiles...)), ", "), err)
	}
	return &pair, param, "", nil
}

func uniq(l []string) []string {
	var out []string
	for _, s := range l {
		if !contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// checkTLSFiles does what serve does with the server's certificate (see
// ServerCertificate and serverTLS in internal/master): a certificate
// that does not load is an error; one that does not exist is a warning
// and no STARTTLS, as in Postfix, unless smtpd_tls_security_level =
// encrypt, where no client could send mail without it.
func (c *Config) checkTLSFiles(out *diag.List) {
	line := 0
	for _, n := range []string{"smtpd_tls_chain_files", "smtpd_tls_key_file", "smtpd_tls_cert_file"} {
		if s, ok := c.set[n]; ok && s.Line > 0 {
			line = s.Line
		}
	}
	if c.set["smtpd_tls_chain_files"].Line > 0 {
		line = c.set["smtpd_tls_chain_files"].Line
	}
	encrypt := c.Get("smtpd_tls_security_level") == "encrypt"
	if lvl, ok := c.set["smtpd_tls_security_level"]; ok && encrypt && c.Get("smtpd_tls_cert_file") == "" && len(c.List("smtpd_tls_chain_files")) == 0 {
		out.Errorf(c.File, lvl.Line, "smtpd_tls_security_level: encrypt refuses mail without STARTTLS, which needs smtpd_tls_cert_file and smtpd_tls_key_file (or smtpd_tls_chain_files): no client could send mail")
		return
	}
	_, param, missing, err := c.ServerCertificate()
	switch {
	case err != nil:
		out.Errorf(c.File, line, "%s: %v; serve refuses to start with it", param, err)
	case missing != "" && encrypt:
		out.Errorf(c.File, line, "%s: open %s: no such file or directory; smtpd_tls_security_level = encrypt refuses mail without STARTTLS, so serve refuses to start without it", param, missing)
	case missing != "":
		out.Warnf(c.File, line, "%s: open %s: no such file or directory; serve starts without STARTTLS, as Postfix does (\"cannot get certificate from file %s: disabling TLS support\"); install the file (Debian's snakeoil certificate comes with the ssl-cert package) to offer STARTTLS", param, missing, missing)
	}
}
