package master

import (
	"github.com/mailtee/mailtee/internal/config"
	"github.com/mailtee/mailtee/internal/diag"
	"github.com/mailtee/mailtee/internal/mastercf"
)

// tlsParams are the settings that decide a listener's certificate
// (config.ServerCertificate).
var tlsParams = map[string]bool{"smtpd_tls_cert_file": true, "smtpd_tls_key_file": true,
	"smtpd_tls_chain_files": true, "smtpd_tls_security_level": true}

// listenerTLSFindings does for a listener whose -o overrides change its
// certificate what main.cf's check does for main.cf's (and what serve's
// newSMTPD then does): a certificate that does not load is an error,
// since serve refuses to start with it; one that does not exist is a
// warning and no STARTTLS, an error with smtpd_tls_security_level =
// encrypt, where no client could send mail on that port.
func listenerTLSFindings(sc *config.Config, mf *mastercf.File, s *mastercf.Service, where string) diag.List {
	var out diag.List
	line := 0
	for _, o := range s.Overrides {
		if tlsParams[o.Name] {
			line = o.Line
		}
	}
	if line == 0 {
		return nil // main.cf's certificate, checked with main.cf
	}
	encrypt := sc.Get("smtpd_tls_security_level") == "encrypt"
	wrapper, _ := sc.Bool("smtpd_tls_wrappermode") // wrapperFindings covers it
	pair, param, missing, err := sc.ServerCertificate()
	switch {
	case err != nil:
		out.Errorf(mf.Path, line, "%s: %s: %v; serve refuses to start with it", where, param, err)
	case missing != "" && encrypt:
		out.Errorf(mf.Path, line, "%s: %s: open %s: no such file or directory; smtpd_tls_security_level = encrypt refuses mail without STARTTLS, so no client could send mail on this port", where, param, missing)
	case missing != "":
		out.Warnf(mf.Path, line, "%s: %s: open %s: no such file or directory; this port runs without STARTTLS, as Postfix's smtpd does (\"disabling TLS support\")", where, param, missing)
	case pair == nil && encrypt && !wrapper:
		out.Errorf(mf.Path, line, "%s: smtpd_tls_security_level = encrypt refuses mail without STARTTLS, which needs smtpd_tls_cert_file and smtpd_tls_key_file (or smtpd_tls_chain_files): no client could send mail on this port", where)
	}
	return out
}
