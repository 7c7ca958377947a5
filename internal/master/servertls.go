package master

import (
	"crypto/tls"
	"fmt"

	"github.com/mailtee/mailtee/internal/config"
	"github.com/mailtee/mailtee/internal/maillog"
)

// serverTLS loads the certificate of config.ServerCertificate, or
// returns nil when none is configured. One that does not exist is
// logged, as Postfix logs it, and the server offers no STARTTLS.
func serverTLS(cfg *config.Config, log *maillog.Logger) (*tls.Config, error) {
	pair, param, missing, err := cfg.ServerCertificate()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", param, err)
	}
	if missing != "" {
		log.Warnf("smtpd", "cannot get certificate from file \"%s\" (%s): disabling TLS support", missing, param)
		return nil, nil
	}
	if pair == nil {
		return nil, nil
	}
	return &tls.Config{Certificates: []tls.Certificate{*pair}, MinVersion: tls.VersionTLS12}, nil
}
