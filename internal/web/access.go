package web

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"path"
	"strings"
	"time"
)

// The headers of every answer. The dashboard's assets are all served
// by it ('self'); nothing is framed, and no type is guessed.
var commonHeaders = [][2]string{
	{"Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"},
	{"X-Content-Type-Options", "nosniff"},
	{"X-Frame-Options", "DENY"},
	{"Referrer-Policy", "no-referrer"},
}

// ServeHTTP applies the access rules (see the package doc) and hands
// the request to its handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	for _, kv := range commonHeaders {
		h.Set(kv[0], kv[1])
	}
	ru := s.rules.Load()
	client, err := clientAddr(r.RemoteAddr)
	if err != nil || !ru.networks.Contains(client) {
		s.refuse(w, r, client, http.StatusForbidden, RefusedNetwork, "not in metrics_networks")
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.Set("Allow", "GET, HEAD")
		s.refuse(w, r, client, http.StatusMethodNotAllowed, RefusedMethod, "method "+r.Method+" (read-only: GET and HEAD)")
		return
	}
	p := r.URL.Path
	// A path such as /metrics/../ledger/v1/x must not reach one
	// handler past another's rule; clean ones are all a browser sends.
	if !strings.HasPrefix(p, "/") || strings.Contains(p, "//") || path.Clean(p) != strings.TrimSuffix(p, "/") && p != "/" {
		s.refuse(w, r, client, http.StatusBadRequest, RefusedPath, "path not in clean form")
		return
	}
	var handler http.Handler
	switch {
	case p == "/metrics":
		handler = s.o.Metrics
	case p == "/ledger" || strings.HasPrefix(p, "/ledger/"):
		h.Set("Cache-Control", "no-store")
		if !s.peerAllowed(w, r, ru, client) {
			return
		}
		if strings.HasPrefix(p, "/ledger/v1/") {
			handler = s.o.Ledger
		}
	default:
		if p == "/api" || strings.HasPrefix(p, "/api/") {
			h.Set("Cache-Control", "no-store")
		}
		if !s.dashboardAllowed(w, r, ru, client) {
			return
		}
		handler = s.o.Dashboard
	}
	if handler == nil {
		http.NotFound(w, r)
		return
	}
	handler.ServeHTTP(w, r)
}

// clientAddr is the request's source address.
func clientAddr(remote string) (netip.Addr, error) {
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		return netip.Addr{}, err
	}
	return ap.Addr().Unmap(), nil
}

// freeLocal reports whether the request may go without credentials: a
// loopback client that asked for this host by a name that cannot be
// someone else's (see the package doc on DNS rebinding).
func (s *Server) freeLocal(r *http.Request, ru *rules, client netip.Addr) bool {
	if !s.o.IsLoopback(client) {
		return false
	}
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.ToLower(strings.TrimSuffix(strings.Trim(host, "[]"), "."))
	if _, err := netip.ParseAddr(host); err == nil || host == "" {
		// (no Host: an HTTP/1.0 script; a browser always sends one)
		return true
	}
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	for _, n := range ru.hosts {
		if strings.EqualFold(strings.TrimSuffix(n, "."), host) {
			return true
		}
	}
	return false
}

func (s *Server) dashboardAllowed(w http.ResponseWriter, r *http.Request, ru *rules, client netip.Addr) bool {
	if s.freeLocal(r, ru, client) {
		return true
	}
	if ru.passwords == nil {
		s.refuse(w, r, client, http.StatusForbidden, RefusedNoAuth, "dashboard off loopback without dashboard_password_file")
		return false
	}
	user, pass, ok := r.BasicAuth()
	if !ok {
		// Not a failed attempt: a browser asks first without.
		w.Header().Set("WWW-Authenticate", `Basic realm="mailtee", charset="UTF-8"`)
		s.refuse(w, r, client, http.StatusUnauthorized, RefusedAuth, "no credentials")
		return false
	}
	if !s.throttle.allow(client) {
		w.Header().Set("Retry-After", "1")
		s.refuse(w, r, client, http.StatusTooManyRequests, RefusedThrottled, "too many failed logins")
		return false
	}
	select {
	case s.verifying <- struct{}{}:
	case <-r.Context().Done():
		return false
	}
	good := ru.passwords.Verify(user, pass)
	<-s.verifying
	if !good {
		s.throttle.fail(client)
		w.Header().Set("WWW-Authenticate", `Basic realm="mailtee", charset="UTF-8"`)
		s.refuse(w, r, client, http.StatusUnauthorized, RefusedAuth, fmt.Sprintf("wrong password for user %q", user))
		return false
	}
	return true
}

func (s *Server) peerAllowed(w http.ResponseWriter, r *http.Request, ru *rules, client netip.Addr) bool {
	if s.freeLocal(r, ru, client) {
		return true
	}
	if ru.token == "" {
		s.refuse(w, r, client, http.StatusForbidden, RefusedNoAuth, "ledger off loopback without ledger_peer_token_file")
		return false
	}
	auth := r.Header.Get("Authorization")
	scheme, token, _ := strings.Cut(auth, " ")
	if !strings.EqualFold(scheme, "Bearer") || token == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="mailtee"`)
		s.refuse(w, r, client, http.StatusUnauthorized, RefusedAuth, "no bearer token")
		return false
	}
	if !s.throttle.allow(client) {
		w.Header().Set("Retry-After", "1")
		s.refuse(w, r, client, http.StatusTooManyRequests, RefusedThrottled, "too many failed tokens")
		return false
	}
	// Digests of equal length: the comparison tells nothing of the
	// token's length either.
	got := sha256.Sum256([]byte(strings.TrimSpace(token)))
	if subtle.ConstantTimeCompare(got[:], ru.tokenSum[:]) != 1 {
		s.throttle.fail(client)
		w.Header().Set("WWW-Authenticate", `Bearer realm="mailtee", error="invalid_token"`)
		s.refuse(w, r, client, http.StatusUnauthorized, RefusedAuth, "wrong bearer token")
		return false
	}
	return true
}

// refuse answers with code and a one-line reason, counts it, and logs
// it when the log is not already full this second.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, client netip.Addr, code int, reason, why string) {
	s.refused[reason].Add(1)
	w.Header().Set("Cache-Control", "no-store")
	http.Error(w, fmt.Sprintf("%d %s", code, http.StatusText(code)), code)
	if s.o.Log == nil {
		return
	}
	now := time.Now()
	s.mu.Lock()
	if now.Sub(s.logged) >= time.Second {
		if s.skipped > 0 {
			s.o.Log.Warnf("web", "%d more refused requests not logged", s.skipped)
		}
		s.logged, s.nlogged, s.skipped = now, 0, 0
	}
	s.nlogged++
	if s.nlogged > logsPerSecond {
		s.skipped++
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	c := "unknown"
	if client.IsValid() {
		c = client.String()
	}
	s.o.Log.Warnf("web", "refused %s %q from [%s]: %s (%d)", r.Method, r.URL.Path, c, why, code)
}
