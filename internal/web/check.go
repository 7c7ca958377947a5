package web

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"github.com/mailtee/mailtee/internal/ledgerhttp"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/mailtee/mailtee/internal/config"
	"github.com/mailtee/mailtee/internal/diag"
	"github.com/mailtee/mailtee/internal/fleet"
	"github.com/mailtee/mailtee/internal/ledger"
)

// FromConfig reads the listener's options from main.cf (all but the
// handlers), with every finding about them: serve starts the listener
// from these options only when the findings have no error, and check
// reports the same findings (see Check), so the two agree. An empty
// metrics_listen gives Options with an empty Listen: no listener. The
// files are read and checked even then, since ledger_peer_token_file
// serves the report's client too.
func FromConfig(cfg *config.Config) (Options, diag.List) {
	var out diag.List
	line := func(name string) int { s, _ := cfg.Set(name); return s.Line }
	var o Options
	o.AllowPlaintext, _ = cfg.Bool("metrics_allow_plaintext") // a bad value is config.Check's

	nets := cfg.Get("metrics_networks")
	n, err := ParseNetworks(nets)
	if err != nil {
		out.Errorf(cfg.File, line("metrics_networks"), "metrics_networks: %v", err)
	}
	o.Networks = n

	certFile, keyFile := cfg.Get("metrics_tls_cert_file"), cfg.Get("metrics_tls_key_file")
	switch {
	case certFile == "" && keyFile != "":
		out.Errorf(cfg.File, line("metrics_tls_key_file"), "metrics_tls_key_file is set but metrics_tls_cert_file is empty: set both (HTTPS) or neither")
	case certFile != "" && keyFile == "":
		out.Errorf(cfg.File, line("metrics_tls_cert_file"), "metrics_tls_cert_file is set but metrics_tls_key_file is empty: set both (HTTPS) or neither")
	case certFile != "":
		if msg, warn := checkPair(certFile, keyFile); msg != "" {
			l := line("metrics_tls_cert_file")
			if warn {
				out.Warnf(cfg.File, l, "metrics_tls_cert_file: %s", msg)
			} else {
				out.Errorf(cfg.File, l, "metrics_tls_cert_file / metrics_tls_key_file: %s; serve refuses to start the listener with it", msg)
			}
		}
		o.CertFile, o.KeyFile = certFile, keyFile
	}

	if f := cfg.Get("dashboard_password_file"); f != "" {
		l := line("dashboard_password_file")
		if !filepath.IsAbs(f) {
			out.Errorf(cfg.File, l, "dashboard_password_file = %s: expected an absolute path", f)
		} else if p, d, err := LoadPasswords(f); err != nil {
			out.Errorf(cfg.File, l, "dashboard_password_file: %v", err)
		} else {
			out = append(out, d...)
			o.Passwords = p
			if p != nil {
				warnWorldReadable(&out, cfg.File, l, "dashboard_password_file", f, "password hashes can be attacked offline")
			}
		}
	}
	if f := cfg.Get("ledger_peer_token_file"); f != "" {
		l := line("ledger_peer_token_file")
		if tok, err := ledgerhttp.ReadToken(f); err != nil {
			out.Errorf(cfg.File, l, "ledger_peer_token_file: %v", err)
		} else {
			o.PeerToken = tok
			warnWorldReadable(&out, cfg.File, l, "ledger_peer_token_file", f, "anyone on this host could read the ledger of every peer")
		}
	}

	listen := cfg.Get("metrics_listen")
	if listen == "" {
		return Options{}, out
	}
	l := line("metrics_listen")
	host, _, err := splitListen(listen)
	if err != nil {
		out.Errorf(cfg.File, l, "metrics_listen = %s: %v", listen, err)
		return Options{}, out
	}
	o.Listen = listen
	local, err := listenIsLoopback(host)
	switch {
	case err != nil:
		out.Errorf(cfg.File, l, "metrics_listen = %s: %v", listen, err)
	case !local && o.CertFile == "" && !o.AllowPlaintext:
		out.Errorf(cfg.File, l, "metrics_listen = %s: %v", listen, errPlaintext)
	case !local && o.CertFile == "":
		out.Warnf(cfg.File, line("metrics_allow_plaintext"), "metrics_allow_plaintext = yes: the listener on %s serves plain HTTP off loopback, where dashboard passwords and the peers' token cross the network in clear text", listen)
	}
	if o.Networks.Empty() && !out.HasErrors() {
		out.Warnf(cfg.File, line("metrics_networks"), "metrics_networks is empty: the listener on %s refuses every request", listen)
	}
	o.Hosts = []string{cfg.Get("myhostname")}
	if host != "" {
		o.Hosts = append(o.Hosts, host)
	}
	return o, out
}

// Check returns every finding about the parameters of the ledger and
// the listener: FromConfig's, and ledger_peers' and ledger_database's.
// (The shape of ledger_retention, an age, and of
// metrics_allow_plaintext, yes or no, is config.Check's, by their
// defaults.)
func Check(cfg *config.Config) diag.List {
	_, out := FromConfig(cfg)
	line := func(name string) int { s, _ := cfg.Set(name); return s.Line }
	plain, _ := cfg.Bool("metrics_allow_plaintext")
	if v := cfg.Get("ledger_peers"); v != "" {
		if _, err := ParsePeers(v, plain); err != nil {
			out.Errorf(cfg.File, line("ledger_peers"), "ledger_peers: %v", err)
		} else if cfg.Get("ledger_peer_token_file") == "" {
			out.Errorf(cfg.File, line("ledger_peers"), "ledger_peers is set but ledger_peer_token_file is empty: peers refuse a ledger read off loopback without their shared token; put the same token (at least %d characters, e.g. from: openssl rand -hex 32) in a file on each host and name it in ledger_peer_token_file", ledgerhttp.MinTokenLen)
		}
	}
	if _, err := LedgerDatabase(cfg); err != nil {
		out.Errorf(cfg.File, line("ledger_database"), "ledger_database: %v", err)
	}
	return out
}

// LedgerDatabase is where the ledger is (ledger.Location): a PostgreSQL
// URL, shared by a fleet, or an SQLite file's path, relative to
// data_directory unless absolute; "" when it is empty (no ledger). A URL
// with a password in it is refused: main.cf is readable by every local
// user.
func LedgerDatabase(cfg *config.Config) (string, error) {
	v := cfg.Get("ledger_database")
	if v == "" {
		return "", nil
	}
	if fleet.IsURL(v) {
		if err := fleet.CheckURL(v); err != nil {
			return "", err
		}
		if _, err := pgx.ParseConfig(v); err != nil {
			return "", fmt.Errorf("%s: %v", diag.RedactURL(v), err)
		}
		return strings.TrimSpace(v), nil
	}
	if _, _, ok := strings.Cut(v, "://"); ok {
		return "", fmt.Errorf("%s: expected the path of an SQLite file, such as ledger.db, or a postgres:// URL", diag.RedactURL(v))
	}
	if strings.ContainsRune(v, 0) || strings.HasSuffix(v, "/") {
		return "", fmt.Errorf("%q: expected the path of a file", v)
	}
	return ledger.Location(cfg.DataDirectory(), v), nil // where serve opens it
}

// LedgerReach is check's warning when ledger_database names a
// PostgreSQL database that does not answer now: a warning, never an
// error, since serve starts without it (the ledger holds its records
// until it answers) and a database may well be down while main.cf is
// checked.
func LedgerReach(cfg *config.Config) diag.List {
	loc, err := LedgerDatabase(cfg)
	if err != nil || !ledger.Shared(loc) {
		return nil
	}
	var out diag.List
	s, _ := cfg.Set("ledger_database")
	if u, err := url.Parse(loc); err == nil {
		if pf := u.Query().Get("passfile"); pf != "" {
			if _, err := os.Stat(pf); err != nil {
				out.Warnf(cfg.File, s.Line, "ledger_database: passfile %s: %v; the connection has no password", pf, err)
			}
			warnWorldReadable(&out, cfg.File, s.Line, "ledger_database", pf, "it holds the database's password")
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ledger.Probe(ctx, loc); err != nil {
		out.Warnf(cfg.File, s.Line, "ledger_database: %s; serve starts anyway and writes the ledger once the database answers (the records wait in the queue directory)", diag.OneLine(err.Error()))
	}
	return out
}

// ParsePeers reads ledger_peers: http:// or https:// URLs with a host
// (and optionally a port and a base path), no credentials, query or
// fragment. Plain http is allowed for a loopback peer (an IP address
// or localhost) and, with allowPlaintext, for any.
func ParsePeers(v string, allowPlaintext bool) ([]*url.URL, error) {
	var out []*url.URL
	for _, el := range config.SplitList(v) {
		u, err := url.Parse(el)
		if err != nil {
			return nil, fmt.Errorf("%q: %v", el, errors.Unwrap(err))
		}
		switch {
		case u.Scheme != "http" && u.Scheme != "https":
			return nil, fmt.Errorf("%q: expected an http:// or https:// URL of a peer's metrics_listen", el)
		case u.Host == "" || u.Hostname() == "":
			return nil, fmt.Errorf("%q: no host", el)
		case u.User != nil:
			return nil, fmt.Errorf("%q: no credentials in the URL; the peers share the token of ledger_peer_token_file", u.Redacted())
		case u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" || strings.HasSuffix(el, "?") || strings.HasSuffix(el, "#"):
			return nil, fmt.Errorf("%q: no query or fragment; name the peer's listener, such as https://relay.example:9100", el)
		}
		if p := u.Port(); p != "" {
			if _, _, err := splitListen("x:" + p); err != nil {
				return nil, fmt.Errorf("%q: %v", el, err)
			}
		}
		if u.Scheme == "http" && !allowPlaintext && !loopbackName(u.Hostname()) {
			return nil, fmt.Errorf("%q: plain http to a host off loopback sends the token in clear text; use https:// (the peer sets metrics_tls_cert_file), or set metrics_allow_plaintext = yes", el)
		}
		out = append(out, u)
	}
	return out, nil
}

func loopbackName(h string) bool {
	if a, err := netip.ParseAddr(h); err == nil {
		return a.Unmap().IsLoopback()
	}
	return strings.EqualFold(h, "localhost")
}

func warnWorldReadable(out *diag.List, file string, line int, param, path, why string) {
	if st, err := os.Stat(path); err == nil && st.Mode().Perm()&0o004 != 0 {
		out.Warnf(file, line, "%s: %s is readable by every user (mode %04o): %s; chmod o-rwx %s", param, path, st.Mode().Perm(), why, path)
	}
}

// checkPair loads the certificate and key as New does; a certificate
// out of its validity period is only a warning (clients say so).
func checkPair(certFile, keyFile string) (msg string, warn bool) {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return err.Error(), false
	}
	leaf := pair.Leaf
	if leaf == nil && len(pair.Certificate) > 0 {
		leaf, _ = x509.ParseCertificate(pair.Certificate[0])
	}
	if leaf != nil {
		if now := time.Now(); now.After(leaf.NotAfter) {
			return fmt.Sprintf("%s expired on %s; HTTPS clients (Prometheus, browsers, peers) refuse it", certFile, leaf.NotAfter.Format(time.DateOnly)), true
		}
	}
	return "", false
}
