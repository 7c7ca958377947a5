package metrics

import (
	"crypto/tls"
	"strconv"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// SMTPD counts smtpd's session events (smtpd.Observer): the exporter's
// postfix_smtpd_* families.
type SMTPD struct {
	connects, disconnects prometheus.Counter
	processed             prometheus.Counter // sasl_method="NONE"
	lost                  *prometheus.CounterVec
	rejects               *prometheus.CounterVec
	tlsConns              *prometheus.CounterVec

	// Resolved children by label value: a session must not hash label
	// values and allocate on every event.
	mu       sync.RWMutex
	lostBy   map[string]prometheus.Counter
	rejectBy map[int]prometheus.Counter
	tlsBy    map[tlsKey]prometheus.Counter
}

// tlsKey is what the labels of a TLS session are made from.
type tlsKey struct {
	version, suite uint16
	trust          string
}

func newSMTPD(reg *prometheus.Registry) *SMTPD {
	s := &SMTPD{
		connects: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "postfix", Name: "smtpd_connects_total",
			Help: "Total number of incoming connections."}),
		disconnects: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "postfix", Name: "smtpd_disconnects_total",
			Help: "Total number of incoming disconnections."}),
		lost: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "postfix", Name: "smtpd_connections_lost_total",
			Help: "Total number of connections lost."}, []string{"after_stage"}),
		// sasl_method: mailtee's smtpd offers no AUTH; the fork's value
		// for none is "NONE" (kumina's was "").
		rejects: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "postfix", Name: "smtpd_messages_rejected_total",
			Help: "Total number of NOQUEUE rejects."}, []string{"code"}),
		tlsConns: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "postfix", Name: "smtpd_tls_connections_total",
			Help: "Total number of incoming TLS connections."}, []string{"trust", "protocol", "cipher", "secret_bits", "algorithm_bits"}),
		lostBy:   map[string]prometheus.Counter{},
		rejectBy: map[int]prometheus.Counter{},
		tlsBy:    map[tlsKey]prometheus.Counter{},
	}
	processed := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "postfix", Name: "smtpd_messages_processed_total",
		Help: "Total number of messages processed."}, []string{"sasl_method"})
	s.processed = processed.WithLabelValues("NONE")
	// What mailtee never does (no SASL, no reverse-DNS check) is
	// exported at zero, so that a dashboard shows 0 rather than "no data".
	sasl := prometheus.NewCounter(prometheus.CounterOpts{Namespace: "postfix", Name: "smtpd_sasl_authentication_failures_total",
		Help: "Total number of SASL authentication failures."})
	fcrdns := prometheus.NewCounter(prometheus.CounterOpts{Namespace: "postfix", Name: "smtpd_forward_confirmed_reverse_dns_errors_total",
		Help: "Total number of connections for which forward-confirmed DNS cannot be resolved."})
	reg.MustRegister(s.connects, s.disconnects, s.lost, processed, s.rejects, s.tlsConns, sasl, fcrdns)
	return s
}

func (s *SMTPD) Connect()    { s.connects.Inc() }
func (s *SMTPD) Disconnect() { s.disconnects.Inc() }
func (s *SMTPD) Accepted()   { s.processed.Inc() }

// Lost counts a connection lost after the command named; the label is
// the word of Postfix's line, "lost connection after DATA".
func (s *SMTPD) Lost(after string) {
	s.mu.RLock()
	c, ok := s.lostBy[after]
	s.mu.RUnlock()
	if !ok {
		c = s.lost.WithLabelValues(after)
		s.mu.Lock()
		s.lostBy[after] = c
		s.mu.Unlock()
	}
	c.Inc()
}

// Reject counts a recipient refused with code.
func (s *SMTPD) Reject(code int) {
	s.mu.RLock()
	c, ok := s.rejectBy[code]
	s.mu.RUnlock()
	if !ok {
		c = s.rejects.WithLabelValues(strconv.Itoa(code))
		s.mu.Lock()
		s.rejectBy[code] = c
		s.mu.Unlock()
	}
	c.Inc()
}

// TLS counts a completed handshake with the labels of Postfix's line
// "Anonymous TLS connection established from host[addr]: TLSv1.3 with
// cipher TLS_AES_128_GCM_SHA256 (128/128 bits)". The cipher is Go's
// name for it (the IANA name, OpenSSL's too for TLS 1.3; OpenSSL names
// TLS 1.2 suites its own way, ECDHE-RSA-AES128-GCM-SHA256).
func (s *SMTPD) TLS(cs tls.ConnectionState) {
	trust := "Anonymous" // no client certificate, as Postfix says
	if len(cs.PeerCertificates) > 0 {
		trust = "Untrusted"
		if len(cs.VerifiedChains) > 0 {
			trust = "Trusted"
		}
	}
	k := tlsKey{cs.Version, cs.CipherSuite, trust}
	s.mu.RLock()
	c, ok := s.tlsBy[k]
	s.mu.RUnlock()
	if !ok {
		cipher := tls.CipherSuiteName(cs.CipherSuite)
		bits := strconv.Itoa(cipherBits(cipher))
		c = s.tlsConns.WithLabelValues(trust, tlsVersion(cs.Version), cipher, bits, bits)
		s.mu.Lock()
		s.tlsBy[k] = c
		s.mu.Unlock()
	}
	c.Inc()
}

// tlsVersion is OpenSSL's name of a protocol version, as Postfix logs it.
func tlsVersion(v uint16) string {
	switch v {
	case tls.VersionTLS10:
		return "TLSv1"
	case tls.VersionTLS11:
		return "TLSv1.1"
	case tls.VersionTLS12:
		return "TLSv1.2"
	case tls.VersionTLS13:
		return "TLSv1.3"
	}
	return "unknown"
}

// cipherBits is the symmetric key size of a suite, Postfix's "(256/256
// bits)": the cipher's strength and its algorithm's, equal for every
// suite Go offers.
func cipherBits(name string) int {
	switch {
	case strings.Contains(name, "AES_256"), strings.Contains(name, "CHACHA20"):
		return 256
	case strings.Contains(name, "AES_128"):
		return 128
	case strings.Contains(name, "3DES"):
		return 112
	}
	return 0
}
