// Package web is mailtee's HTTP listener (metrics_listen): Prometheus'
// /metrics, the migration dashboard (/, /assets/, /api/) and the
// ledger that peers read (/ledger/v1/), behind one set of access rules
// so that none of them is open by accident.
//
// Who may reach what:
//
//   - Every request's client address must be in metrics_networks
//     (default loopback), else 403: no redirect, no login page.
//   - /metrics: anyone in metrics_networks.
//   - The dashboard and /api/: loopback clients freely; any other
//     client only with HTTP Basic credentials that match
//     dashboard_password_file (bcrypt or argon2id); without that file,
//     403 off loopback. Failed attempts are throttled per client.
//   - /ledger/v1/: loopback clients freely; any other client only with
//     "Authorization: Bearer TOKEN", TOKEN being ledger_peer_token_file's
//     content; without that file, 403 off loopback.
//   - GET and HEAD only (405 otherwise), with a restrictive
//     Content-Security-Policy, no framing, no sniffing, and no caching
//     of /api/ and /ledger/.
//
// "Loopback" is about the client: a request whose source address is in
// 127.0.0.0/8 or ::1, whatever address the listener has. A reverse proxy
// on the same host therefore makes every client loopback: behind one,
// configure dashboard_password_file and have the proxy authenticate.
// Free loopback access also needs a Host header that names this host
// (an IP address, localhost, or one of Options.Hosts), so that a web
// page in a browser on this host cannot read the dashboard through a
// DNS name it rebinds to 127.0.0.1; such a request must authenticate
// like a remote one.
//
// Off loopback, the listener serves HTTPS (metrics_tls_cert_file and
// metrics_tls_key_file) or, only with metrics_allow_plaintext = yes,
// plain HTTP; New refuses anything else, and Check says so first.
package web

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mailtee/mailtee/internal/maillog"
)

// Options configure the listener. FromConfig fills all but the
// handlers from main.cf.
type Options struct {
	// Listen is metrics_listen, host:port.
	Listen string
	// Networks is metrics_networks.
	Networks Networks
	// Passwords is dashboard_password_file; nil: no dashboard off
	// loopback.
	Passwords *Passwords
	// PeerToken is ledger_peer_token_file's content, trimmed; empty: no
	// ledger off loopback.
	PeerToken string
	// CertFile and KeyFile are metrics_tls_cert_file and
	// metrics_tls_key_file; both set: HTTPS only. A renewed pair is
	// picked up within a minute, without a restart.
	CertFile, KeyFile string
	// AllowPlaintext is metrics_allow_plaintext: plain HTTP off loopback.
	AllowPlaintext bool
	// Hosts are names besides IP addresses and localhost that a
	// loopback client's Host header may carry for free access
	// (myhostname, metrics_listen's host).
	Hosts []string

	// The handlers; nil ones answer 404. Each sees the full path
	// (/ledger/v1/..., /api/...).
	Metrics   http.Handler // /metrics
	Dashboard http.Handler // /, /assets/, /api/ and anything else
	Ledger    http.Handler // /ledger/v1/

	// MaxConns caps open connections (0: 64); more wait to be accepted.
	// One client address (an IPv6 /64) may have 16 at most; more are
	// closed at once.
	MaxConns int
	// Log, when set, gets a line per refused request (at most a few a
	// second, with a count of those left out).
	Log *maillog.Logger
	// IsLoopback decides whether a client address is loopback; nil:
	// netip.Addr.IsLoopback. Tests set it to play a remote client.
	IsLoopback func(netip.Addr) bool
}

// Reasons a request is refused, the keys of Server.Refused.
const (
	RefusedNetwork   = "network"   // client not in metrics_networks (403)
	RefusedNoAuth    = "no_auth"   // off loopback, nothing configured to authenticate with (403)
	RefusedAuth      = "auth"      // missing or wrong credentials (401)
	RefusedThrottled = "throttled" // too many failed attempts (429)
	RefusedMethod    = "method"    // not GET or HEAD (405)
	RefusedPath      = "path"      // a path that is not in clean form (400)
)

var refusedReasons = []string{RefusedNetwork, RefusedNoAuth, RefusedAuth, RefusedThrottled, RefusedMethod, RefusedPath}

// Server is the listener.
type Server struct {
	o        Options
	tls      *tls.Config
	srv      *http.Server
	throttle *throttle
	rules    atomic.Pointer[rules]
	// verifying bounds the hash computations under way: each may take
	// a 64 MiB argon2 buffer or tens of milliseconds of CPU.
	verifying chan struct{}

	refused map[string]*atomic.Uint64

	mu      sync.Mutex
	ln      net.Listener
	logged  time.Time // start of the current second of log lines
	nlogged int
	skipped int
}

// Limits of the listener.
const (
	defaultMaxConns   = 64
	maxConnsPerClient = 16 // a browser opens 6 per host
	readHeaderTimeout = 10 * time.Second
	readTimeout       = 30 * time.Second
	// A peer's ledger read may be large; the write timeout bounds a
	// client that stops reading, not a long answer to a fast one.
	writeTimeout   = 5 * time.Minute
	idleTimeout    = 2 * time.Minute
	maxHeaderBytes = 16 << 10
	logsPerSecond  = 5
	// Failed logins: a burst of 5, then 2 a second, per client.
	throttleRate  = 2
	throttleBurst = 5
)

// New checks the options and prepares the listener; Start opens it.
func New(o Options) (*Server, error) {
	if o.Listen == "" {
		return nil, errors.New("metrics_listen is empty: no listener to start")
	}
	host, _, err := splitListen(o.Listen)
	if err != nil {
		return nil, fmt.Errorf("metrics_listen = %s: %w", o.Listen, err)
	}
	s := &Server{o: o, throttle: newThrottle(throttleRate, throttleBurst),
		verifying: make(chan struct{}, 2), refused: map[string]*atomic.Uint64{}}
	for _, r := range refusedReasons {
		s.refused[r] = new(atomic.Uint64)
	}
	if s.o.IsLoopback == nil {
		s.o.IsLoopback = netip.Addr.IsLoopback
	}
	if s.o.MaxConns <= 0 {
		s.o.MaxConns = defaultMaxConns
	}
	s.Reload(o)
	switch {
	case (o.CertFile == "") != (o.KeyFile == ""):
		return nil, errors.New("metrics_tls_cert_file and metrics_tls_key_file: set both (HTTPS) or neither")
	case o.CertFile != "":
		var logf func(string, ...any)
		if o.Log != nil {
			logf = func(format string, args ...any) { o.Log.Warnf("web", format, args...) }
		}
		certs, err := loadCertFiles(o.CertFile, o.KeyFile, logf)
		if err != nil {
			return nil, fmt.Errorf("metrics_tls_cert_file / metrics_tls_key_file: %w", err)
		}
		s.tls = &tls.Config{GetCertificate: certs.get, MinVersion: tls.VersionTLS12}
	default:
		local, err := listenIsLoopback(host)
		if err != nil {
			return nil, fmt.Errorf("metrics_listen = %s: %w", o.Listen, err)
		}
		if !local && !o.AllowPlaintext {
			return nil, fmt.Errorf("metrics_listen = %s: %w", o.Listen, errPlaintext)
		}
	}
	s.srv = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		TLSConfig:         s.tls,
		// TLS handshake failures and the like from scanners: not for
		// the mail log.
		ErrorLog: log.New(io.Discard, "", 0),
	}
	return s, nil
}

var errPlaintext = errors.New("not a loopback address, and metrics_tls_cert_file is not set: the dashboard's credentials and the peers' token would cross the network in clear text; set metrics_tls_cert_file and metrics_tls_key_file, or metrics_allow_plaintext = yes on a network you trust")

// rules are what Reload may change while the listener runs.
type rules struct {
	networks  Networks
	passwords *Passwords
	token     string
	tokenSum  [32]byte
	hosts     []string
}

// Reload takes new access rules from o: Networks, Passwords, PeerToken
// and Hosts (serve's reload, after FromConfig found no error). The
// address, TLS files and handlers stay as New took them; requests under
// way finish under the old rules.
func (s *Server) Reload(o Options) {
	ru := &rules{networks: o.Networks, passwords: o.Passwords, token: strings.TrimSpace(o.PeerToken), hosts: o.Hosts}
	if ru.token != "" {
		ru.tokenSum = sha256.Sum256([]byte(ru.token))
	}
	s.rules.Store(ru)
}

// Start opens the listener and serves in the background.
func (s *Server) Start() error {
	ln, err := net.Listen("tcp", s.o.Listen)
	if err != nil {
		return fmt.Errorf("metrics_listen = %s: %w", s.o.Listen, err)
	}
	ln = newLimitListener(ln, s.o.MaxConns, min(s.o.MaxConns, maxConnsPerClient))
	s.mu.Lock()
	s.ln = ln
	s.mu.Unlock()
	go func() {
		var err error
		if s.tls != nil {
			err = s.srv.Serve(tls.NewListener(ln, s.tls))
		} else {
			err = s.srv.Serve(ln)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) && s.o.Log != nil {
			s.o.Log.Warnf("web", "metrics_listen %s: %v", s.o.Listen, err)
		}
	}()
	return nil
}

// Addr is the address listened on (the port chosen for ":0"), or nil
// before Start.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// URL is the base URL of the listener, for messages and tests.
func (s *Server) URL() string {
	a := s.Addr()
	if a == nil {
		return ""
	}
	scheme := "http"
	if s.tls != nil {
		scheme = "https"
	}
	return scheme + "://" + a.String()
}

// Shutdown stops accepting and waits for requests under way, until ctx
// ends.
func (s *Server) Shutdown(ctx context.Context) error {
	s.closeListener()
	return s.srv.Shutdown(ctx)
}

// Close stops at once.
func (s *Server) Close() error {
	s.closeListener()
	return s.srv.Close()
}

// closeListener closes the listener itself: http.Server closes only the
// listeners its Serve goroutine has registered, and that goroutine may
// not have run yet when Shutdown comes right after Start.
func (s *Server) closeListener() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		s.ln.Close()
	}
}

// Refused returns how many requests were refused, by reason (the
// Refused* constants), since New: for a metric.
func (s *Server) Refused() map[string]uint64 {
	out := make(map[string]uint64, len(s.refused))
	for k, v := range s.refused {
		out[k] = v.Load()
	}
	return out
}

// splitListen reads host:port, the port numeric.
func splitListen(v string) (host string, port int, err error) {
	host, p, err := net.SplitHostPort(v)
	if err != nil {
		return "", 0, fmt.Errorf("expected host:port ([::1]:9100 for IPv6): %v", err)
	}
	n := 0
	if p == "" || len(p) > 5 || strings.Trim(p, "0123456789") != "" {
		return "", 0, fmt.Errorf("port %q: expected a number (service names are not looked up)", p)
	}
	fmt.Sscan(p, &n)
	if n > 65535 {
		return "", 0, fmt.Errorf("port %d: at most 65535", n)
	}
	if strings.ContainsAny(host, " \t/%") {
		return "", 0, fmt.Errorf("host %q: expected an IP address or a host name", host)
	}
	return host, n, nil
}

// listenIsLoopback reports whether a listener on host is reachable from
// this machine only: a loopback address, or a name all of whose
// addresses are loopback. An empty host, 0.0.0.0 and :: are every
// interface.
func listenIsLoopback(host string) (bool, error) {
	if host == "" {
		return false, nil
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return a.Unmap().IsLoopback(), nil
	}
	if host == "localhost" {
		return true, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return false, fmt.Errorf("host %s: %v", host, err)
	}
	for _, a := range addrs {
		if !a.Unmap().IsLoopback() {
			return false, nil
		}
	}
	return len(addrs) > 0, nil
}
