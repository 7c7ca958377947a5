package web

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/maillog"
)

const testToken = "0123456789abcdef-peer-token"

// named answers with its name and the path, so a test sees which
// handler a request reached.
func named(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, name+" "+r.URL.Path)
	})
}

// remote is a client address that the tests' IsLoopback calls remote:
// the machine's loopback is all the tests may use, so "off loopback"
// is 127.0.0.3 playing a LAN client (see the package doc: the rule is
// about the client address, and this injection is the one switch).
var remote = netip.MustParseAddr("127.0.0.3")

func notRemote(a netip.Addr) bool { return a.IsLoopback() && a != remote }

func start(t *testing.T, o Options) *Server {
	t.Helper()
	if o.Listen == "" {
		o.Listen = "127.0.0.1:0"
	}
	if o.Networks.Empty() {
		o.Networks = MustParseNetworks("127.0.0.0/8, [::1]/128")
	}
	if o.IsLoopback == nil {
		o.IsLoopback = notRemote
	}
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// client makes requests from the source address src.
func client(src string, tlsConf *tls.Config) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 10 * time.Second}
	return &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{DialContext: d.DialContext, TLSClientConfig: tlsConf, DisableKeepAlives: true},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

type result struct {
	code int
	body string
	h    http.Header
}

func do(t *testing.T, c *http.Client, method, url string, hdr ...string) result {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i] == "Host" {
			req.Host = hdr[i+1]
			continue
		}
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return result{resp.StatusCode, string(b), resp.Header}
}

func basic(user, pw string) string {
	r, _ := http.NewRequest("GET", "/", nil)
	r.SetBasicAuth(user, pw)
	return r.Header.Get("Authorization")
}

func testPasswords(t *testing.T) *Passwords {
	p, d, err := LoadPasswords("testdata/passwords.real")
	if err != nil || p == nil {
		t.Fatal(err, d)
	}
	return p
}

func allHandlers(o Options) Options {
	o.Metrics, o.Dashboard, o.Ledger = named("metrics"), named("dashboard"), named("ledger")
	return o
}

// Who may reach what, client by client and path by path.
func TestAccessRules(t *testing.T) {
	s := start(t, allHandlers(Options{Passwords: testPasswords(t), PeerToken: testToken}))
	base := s.URL()
	local, far := client("127.0.0.1", nil), client(remote.String(), nil)
	good, wrong := basic("admin", "secret"), basic("admin", "guess")
	for _, tc := range []struct {
		name string
		c    *http.Client
		path string
		hdr  []string
		code int
		body string
	}{
		{"metrics local", local, "/metrics", nil, 200, "metrics /metrics"},
		{"metrics remote, no credentials", far, "/metrics", nil, 200, "metrics /metrics"},
		{"dashboard local", local, "/", nil, 200, "dashboard /"},
		{"api local", local, "/api/summary", nil, 200, "dashboard /api/summary"},
		{"assets local", local, "/assets/app.js", nil, 200, "dashboard /assets/app.js"},
		{"ledger local", local, "/ledger/v1/messages", nil, 200, "ledger /ledger/v1/messages"},
		{"dashboard remote, none", far, "/", nil, 401, ""},
		{"api remote, none", far, "/api/summary", nil, 401, ""},
		{"dashboard remote, good", far, "/", []string{"Authorization", good}, 200, "dashboard /"},
		{"api remote, good", far, "/api/x", []string{"Authorization", good}, 200, "dashboard /api/x"},
		{"argon2 user", far, "/api/x", []string{"Authorization", basic("argon", "secret")}, 200, "dashboard /api/x"},
		{"dashboard remote, wrong", far, "/", []string{"Authorization", wrong}, 401, ""},
		{"dashboard remote, bearer", far, "/", []string{"Authorization", "Bearer " + testToken}, 401, ""},
		{"ledger remote, none", far, "/ledger/v1/messages", nil, 401, ""},
		{"ledger remote, token", far, "/ledger/v1/messages", []string{"Authorization", "Bearer " + testToken}, 200, "ledger /ledger/v1/messages"},
		{"ledger remote, wrong token", far, "/ledger/v1/messages", []string{"Authorization", "Bearer " + testToken + "x"}, 401, ""},
		{"ledger remote, basic", far, "/ledger/v1/messages", []string{"Authorization", good}, 401, ""},
		{"ledger other version", local, "/ledger/v2/x", nil, 404, ""},
		{"ledger other version remote", far, "/ledger/v2/x", nil, 401, ""},
		// DNS rebinding: a loopback client asking for a name not ours
		{"rebound name", local, "/api/summary", []string{"Host", "evil.example:80"}, 401, ""},
		{"rebound name, credentials", local, "/api/summary", []string{"Host", "evil.example", "Authorization", good}, 200, "dashboard /api/summary"},
		{"localhost name", local, "/api/summary", []string{"Host", "localhost"}, 200, "dashboard /api/summary"},
		{"unclean path", local, "/metrics/../ledger/v1/x", nil, 400, ""},
		{"double slash", far, "//ledger/v1/x", nil, 400, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := do(t, tc.c, "GET", base+tc.path, tc.hdr...)
			if r.code != tc.code || tc.body != "" && r.body != tc.body {
				t.Fatalf("%d %q, want %d %q", r.code, r.body, tc.code, tc.body)
			}
			if r.code == 401 && r.h.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
			if r.code >= 300 && r.code < 400 {
				t.Error("a redirect")
			}
		})
	}
}

// Without a password file or a token, off loopback is 403; so is any
// client outside metrics_networks, whatever it brings, and a real
// address outside it is refused without injection.
func TestForbidden(t *testing.T) {
	s := start(t, allHandlers(Options{}))
	far := client(remote.String(), nil)
	for _, p := range []string{"/", "/api/x", "/assets/a.css", "/ledger/v1/m"} {
		if r := do(t, far, "GET", s.URL()+p, "Authorization", basic("admin", "secret")); r.code != 403 || r.h.Get("WWW-Authenticate") != "" {
			t.Errorf("%s from off loopback with nothing configured: %d, want 403 and no login prompt", p, r.code)
		}
	}
	if r := do(t, far, "GET", s.URL()+"/metrics"); r.code != 200 {
		t.Errorf("/metrics: %d", r.code)
	}

	// metrics_networks admits 127.0.0.2 only: the real client address
	// 127.0.0.1 is refused, 127.0.0.2 admitted.
	n := start(t, allHandlers(Options{Listen: "127.0.0.2:0", Networks: MustParseNetworks("!127.0.0.1, 127.0.0.2"),
		Passwords: testPasswords(t), PeerToken: testToken, IsLoopback: netip.Addr.IsLoopback}))
	for _, p := range []string{"/metrics", "/", "/api/x", "/ledger/v1/m"} {
		r := do(t, client("127.0.0.1", nil), "GET", n.URL()+p, "Authorization", "Bearer "+testToken)
		if r.code != 403 || r.h.Get("Location") != "" || r.h.Get("WWW-Authenticate") != "" {
			t.Errorf("%s from 127.0.0.1, outside metrics_networks: %d %v, want a bare 403", p, r.code, r.h)
		}
		if r := do(t, client("127.0.0.2", nil), "GET", n.URL()+p); r.code != 200 {
			t.Errorf("%s from 127.0.0.2: %d, want 200 (loopback: no credentials needed)", p, r.code)
		}
	}
	if got := n.Refused()[RefusedNetwork]; got != 4 {
		t.Errorf("Refused()[network] = %d, want 4", got)
	}
}

// Read-only, with the headers.
func TestMethodsAndHeaders(t *testing.T) {
	s := start(t, allHandlers(Options{}))
	c := client("127.0.0.1", nil)
	for _, m := range []string{"POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"} {
		r := do(t, c, m, s.URL()+"/api/x")
		if r.code != 405 || r.h.Get("Allow") != "GET, HEAD" {
			t.Errorf("%s: %d Allow=%q, want 405 GET, HEAD", m, r.code, r.h.Get("Allow"))
		}
	}
	if r := do(t, c, "HEAD", s.URL()+"/metrics"); r.code != 200 {
		t.Errorf("HEAD: %d", r.code)
	}
	for _, p := range []string{"/", "/metrics", "/api/x", "/ledger/v1/x", "/nowhere/../x"} {
		r := do(t, c, "GET", s.URL()+p)
		for _, kv := range [][2]string{{"Content-Security-Policy", "default-src 'self';"}, {"X-Content-Type-Options", "nosniff"}, {"X-Frame-Options", "DENY"}} {
			if got := r.h.Get(kv[0]); !strings.HasPrefix(got, kv[1]) {
				t.Errorf("%s: %s = %q, want %q", p, kv[0], got, kv[1])
			}
		}
		noStore := strings.HasPrefix(p, "/api/") || strings.HasPrefix(p, "/ledger/") || r.code >= 400
		if got := r.h.Get("Cache-Control") == "no-store"; got != noStore {
			t.Errorf("%s (%d): Cache-Control %q", p, r.code, r.h.Get("Cache-Control"))
		}
	}
	// nil handlers: 404, after the access rules
	e := start(t, Options{})
	if r := do(t, c, "GET", e.URL()+"/metrics"); r.code != 404 {
		t.Errorf("nil Metrics: %d", r.code)
	}
	if r := do(t, client(remote.String(), nil), "GET", e.URL()+"/api/x"); r.code != 403 {
		t.Errorf("nil Dashboard, remote: %d, want 403 before 404", r.code)
	}
}

// Failed logins are throttled per client: past the burst the right
// password is refused too (without a hash computation), and after a
// pause it works again. Another client is not affected.
func TestThrottle(t *testing.T) {
	var log bytes.Buffer
	var mu sync.Mutex
	s := start(t, allHandlers(Options{Passwords: testPasswords(t), PeerToken: testToken,
		Log: maillog.New(lockedWriter{&mu, &log}, "mx.test"),
		// a second remote client
		IsLoopback: func(a netip.Addr) bool { return notRemote(a) && a != netip.MustParseAddr("127.0.0.4") }}))
	far := client(remote.String(), nil)
	for i := 0; i < throttleBurst; i++ {
		if r := do(t, far, "GET", s.URL()+"/", "Authorization", basic("admin", "nope")); r.code != 401 {
			t.Fatalf("attempt %d: %d, want 401", i+1, r.code)
		}
	}
	r := do(t, far, "GET", s.URL()+"/", "Authorization", basic("admin", "secret"))
	if r.code != 429 || r.h.Get("Retry-After") == "" {
		t.Fatalf("right password past the burst: %d, want 429 with Retry-After", r.code)
	}
	if r := do(t, far, "GET", s.URL()+"/ledger/v1/x", "Authorization", "Bearer wrong-token-wrong-token"); r.code != 429 {
		t.Errorf("token past the burst: %d, want 429", r.code)
	}
	if r := do(t, client("127.0.0.4", nil), "GET", s.URL()+"/", "Authorization", basic("admin", "secret")); r.code != 200 {
		t.Errorf("another client: %d, want 200", r.code)
	}
	// 2 attempts a second refill: a generous pause.
	time.Sleep(2 * time.Second)
	if r := do(t, far, "GET", s.URL()+"/", "Authorization", basic("admin", "secret")); r.code != 200 {
		t.Errorf("after a pause: %d, want 200", r.code)
	}
	got := s.Refused()
	if got[RefusedAuth] != throttleBurst || got[RefusedThrottled] != 2 {
		t.Errorf("Refused() = %v", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(log.String(), `mailtee/web[`) || !strings.Contains(log.String(), `refused GET "/" from [127.0.0.3]: wrong password for user "admin" (401)`) {
		t.Errorf("log:\n%s", log.String())
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// Off loopback: TLS, or the explicit override; with TLS, HTTPS only.
func TestPlaintextOffLoopback(t *testing.T) {
	for _, listen := range []string{"0.0.0.0:9100", "[::]:9100", ":9100", "192.0.2.2:9100"} {
		if _, err := New(Options{Listen: listen}); err == nil || !strings.Contains(err.Error(), "metrics_allow_plaintext") {
			t.Errorf("%s without TLS: %v, want a refusal", listen, err)
		}
		if _, err := New(Options{Listen: listen, AllowPlaintext: true}); err != nil {
			t.Errorf("%s with metrics_allow_plaintext: %v", listen, err)
		}
	}
	for _, listen := range []string{"127.0.0.1:9100", "[::1]:9100", "localhost:9100", "127.0.0.2:0"} {
		if _, err := New(Options{Listen: listen}); err != nil {
			t.Errorf("%s: %v", listen, err)
		}
	}
	for _, listen := range []string{"127.0.0.1", "127.0.0.1:http", "127.0.0.1:99999", "::1:9100"} {
		if _, err := New(Options{Listen: listen}); err == nil {
			t.Errorf("%s: accepted", listen)
		}
	}
	cert, key, pool := selfSigned(t)
	if _, err := New(Options{Listen: "0.0.0.0:9100", CertFile: cert, KeyFile: key}); err != nil {
		t.Errorf("with TLS: %v", err)
	}
	if _, err := New(Options{Listen: "0.0.0.0:9100", CertFile: cert}); err == nil {
		t.Error("a certificate without its key: accepted")
	}
	s := start(t, allHandlers(Options{CertFile: cert, KeyFile: key}))
	if !strings.HasPrefix(s.URL(), "https://") {
		t.Fatal(s.URL())
	}
	if r := do(t, client("127.0.0.1", &tls.Config{RootCAs: pool}), "GET", s.URL()+"/metrics"); r.code != 200 {
		t.Errorf("HTTPS: %d", r.code)
	}
	plain := "http://" + s.Addr().String() + "/metrics"
	if r := do(t, client("127.0.0.1", nil), "GET", plain); r.code != 400 || strings.Contains(r.body, "metrics /metrics") {
		t.Errorf("plain HTTP to the HTTPS listener: %d %q", r.code, r.body)
	}
}

// selfSigned writes a certificate for 127.0.0.1 and its key.
func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	return selfSignedAt(t, t.TempDir(), 1)
}

// selfSignedAt writes the pair into dir, with serial number serial.
func selfSignedAt(t *testing.T, dir string, serial int64) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "mailtee test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kd, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}), 0o600)
	c, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(c)
	return certFile, keyFile, pool
}

// The connection cap: past MaxConns, a connection waits to be accepted
// until one closes.
func TestMaxConns(t *testing.T) {
	s := start(t, allHandlers(Options{MaxConns: 2}))
	var held []net.Conn
	for i := 0; i < 2; i++ {
		c, err := net.Dial("tcp", s.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		// a request, so that the connection is surely accepted
		io.WriteString(c, "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
		buf := make([]byte, 12)
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "HTTP/1.1 200" {
			t.Fatalf("conn %d: %q %v", i, buf, err)
		}
		held = append(held, c)
	}
	done := make(chan result, 1)
	go func() { done <- do(t, client("127.0.0.1", nil), "GET", s.URL()+"/metrics") }()
	select {
	case r := <-done:
		t.Fatalf("a third connection was served (%d) while two were held", r.code)
	case <-time.After(500 * time.Millisecond):
	}
	held[0].Close()
	select {
	case r := <-done:
		if r.code != 200 {
			t.Errorf("third: %d", r.code)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the third connection was not served after one closed")
	}
	held[1].Close()
}

func TestShutdown(t *testing.T) {
	s := start(t, allHandlers(Options{}))
	addr := s.Addr().String()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Error("still listening after Shutdown")
	}
}

// One client may hold maxConnsPerClient connections; past that its new
// ones are closed, and another client is still served.
func TestMaxConnsPerClient(t *testing.T) {
	s := start(t, allHandlers(Options{}))
	dial := func(src string) net.Conn {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 10 * time.Second}
		c, err := d.Dial("tcp", s.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	get := func(c net.Conn) string {
		c.SetDeadline(time.Now().Add(20 * time.Second))
		io.WriteString(c, "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
		buf := make([]byte, 12)
		n, _ := io.ReadFull(c, buf)
		return string(buf[:n])
	}
	for i := 0; i < maxConnsPerClient; i++ {
		if got := get(dial("127.0.0.1")); got != "HTTP/1.1 200" {
			t.Fatalf("conn %d: %q", i+1, got)
		}
	}
	if got := get(dial("127.0.0.1")); got != "" {
		t.Errorf("connection %d of one client: %q, want it closed", maxConnsPerClient+1, got)
	}
	if got := get(dial("127.0.0.5")); got != "HTTP/1.1 200" {
		t.Errorf("another client: %q", got)
	}
}

// A renewed certificate is served without a restart.
func TestCertRenewal(t *testing.T) {
	defer func(d time.Duration) { checkEvery = d }(checkEvery)
	checkEvery = 0
	dir := t.TempDir()
	cert, key, _ := selfSignedAt(t, dir, 1)
	s := start(t, allHandlers(Options{CertFile: cert, KeyFile: key}))
	serial := func() int64 {
		c, err := tls.Dial("tcp", s.Addr().String(), &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
	}
	if got := serial(); got != 1 {
		t.Fatalf("serial %d, want 1", got)
	}
	// A key that does not go with the certificate: the old pair stays.
	os.WriteFile(key, []byte("not a key"), 0o600)
	later := time.Now().Add(time.Minute)
	os.Chtimes(key, later, later)
	if got := serial(); got != 1 {
		t.Fatalf("after a broken renewal: serial %d, want the old 1", got)
	}
	selfSignedAt(t, dir, 2)
	later = later.Add(time.Minute)
	os.Chtimes(cert, later, later)
	os.Chtimes(key, later, later)
	if got := serial(); got != 2 {
		t.Fatalf("after renewal: serial %d, want 2", got)
	}
}

// Reload changes who may reach what while the listener runs.
func TestReload(t *testing.T) {
	o := allHandlers(Options{})
	s := start(t, o)
	far := client(remote.String(), nil)
	if r := do(t, far, "GET", s.URL()+"/ledger/v1/x", "Authorization", "Bearer "+testToken); r.code != 403 {
		t.Fatalf("before: %d", r.code)
	}
	o.PeerToken = testToken + "\n"
	o.Networks = MustParseNetworks("127.0.0.0/8")
	s.Reload(o)
	if r := do(t, far, "GET", s.URL()+"/ledger/v1/x", "Authorization", "Bearer "+testToken); r.code != 200 {
		t.Errorf("after adding the token: %d", r.code)
	}
	o.Networks = MustParseNetworks("127.0.0.1")
	s.Reload(o)
	if r := do(t, far, "GET", s.URL()+"/metrics"); r.code != 403 {
		t.Errorf("after narrowing metrics_networks: %d", r.code)
	}
}

// An HTTP/1.0 request without Host from loopback (a script) is free;
// with a Host that is not ours it needs the login.
func TestNoHostHeader(t *testing.T) {
	s := start(t, allHandlers(Options{}))
	for req, want := range map[string]string{
		"GET /api/summary HTTP/1.0\r\n\r\n":                       "HTTP/1.0 200",
		"GET /api/summary HTTP/1.0\r\nHost: evil.example\r\n\r\n": "HTTP/1.0 403",
	} {
		c, err := net.Dial("tcp", s.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(20 * time.Second))
		io.WriteString(c, req)
		buf := make([]byte, 12)
		io.ReadFull(c, buf)
		c.Close()
		if string(buf) != want {
			t.Errorf("%q: %q, want %q", req, buf, want)
		}
	}
}
