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
	"net"
	"net/smtp"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/config"
	"github.com/mailtee/mailtee/internal/diag"
)

// transportsCF are the delivery services writeMainCF's main.cf uses.
const transportsCF = `smtp      unix  -       -       y       -       -       smtp
relay     unix  -       -       y       -       -       smtp
discard   unix  -       -       y       -       -       discard
local     unix  -       n       n       -       -       local
`

func writeMasterCF(t *testing.T, dir, text string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "master.cf"), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// rcpt opens a session to addr and returns the reply to RCPT TO:<to>
// ("" when accepted).
func rcpt(t *testing.T, addr, to string) string {
	t.Helper()
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer c.Close()
	if err := c.Mail("a@example.org"); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt(to); err != nil {
		return err.Error()
	}
	return ""
}

// master.cf's smtpd services are what mailtee listens on, each with its
// own -o overrides: a 127.0.0.1:PORT service accepts mail, smtpd_port's
// default (not set in main.cf) is not listened on, and a second service
// with -o smtpd_recipient_restrictions=reject refuses RCPT there only.
func TestMasterCFListeners(t *testing.T) {
	dir := t.TempDir()
	p1, p2 := freePort(t), freePort(t)
	cfg := writeMainCF(t, dir, "", "", "")
	// writeMainCF sets smtpd_port; here main.cf must not.
	data, _ := os.ReadFile(cfg.File)
	os.WriteFile(cfg.File, []byte(strings.Replace(string(data), "smtpd_port = \n", "", 1)), 0o644)
	writeMasterCF(t, dir, transportsCF+"# test\n127.0.0.1:"+p1+" inet n - n - - smtpd\n"+
		"127.0.0.1:"+p2+"  inet  n - n - 10 smtpd\n  -o smtpd_recipient_restrictions=reject\n"+
		"  -o { smtpd_banner = $myhostname restricted }\n")
	cfg = reload(t, dir)
	s, log := serve(t, cfg)
	if len(s.listeners) != 2 {
		t.Fatalf("%d listeners, want 2: %v", len(s.listeners), s.listeners)
	}
	if got := rcpt(t, "127.0.0.1:"+p1, "b@example.com"); got != "" {
		t.Errorf("RCPT on the plain service: %s", got)
	}
	got := rcpt(t, "127.0.0.1:"+p2, "b@example.com")
	if !strings.HasPrefix(got, "554 ") || !strings.Contains(got, "5.7.1 <b@example.com>: Recipient address rejected: Access denied") {
		t.Errorf("RCPT on the -o smtpd_recipient_restrictions=reject service: %q, want 554 Access denied", got)
	}
	c, err := net.Dial("tcp", "127.0.0.1:"+p2)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 100)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _ := c.Read(buf)
	c.Close()
	if !strings.HasPrefix(string(buf[:n]), "220 mx.example.org restricted\r\n") {
		t.Errorf("greeting of the second service: %q", buf[:n])
	}
	// Nothing on 25 (smtpd_port's default): only master.cf's services.
	for _, l := range s.listeners {
		if strings.HasSuffix(l.Addr().String(), ":25") {
			t.Errorf("listening on %s", l.Addr())
		}
	}
	waitLog(t, log, "listening on 127.0.0.1:"+p2+", queue ")
	waitLog(t, log, "(master.cf service 127.0.0.1:"+p2+", line 7)")

	// A reload gives the running listener the overrides master.cf has
	// now.
	writeMasterCF(t, dir, transportsCF+"# test\n127.0.0.1:"+p1+" inet n - n - - smtpd\n"+
		"127.0.0.1:"+p2+"  inet  n - n - 10 smtpd\n  -o smtpd_recipient_restrictions=permit_mynetworks,defer\n")
	if err := s.Reload(dir); err != nil {
		t.Fatal(err)
	}
	if got := rcpt(t, "127.0.0.1:"+p2, "b@example.com"); got != "" {
		t.Errorf("after reload, RCPT from mynetworks with permit_mynetworks, defer: %q", got)
	}
	if got := rcpt(t, "127.0.0.1:"+p1, "b@example.com"); got != "" {
		t.Errorf("after reload, RCPT on the plain service: %q", got)
	}
}

// reload loads dir's main.cf again.
func reload(t *testing.T, dir string) *configT {
	t.Helper()
	cfg, err := configLoad(dir)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// smtpd_port set in main.cf replaces the port of master.cf's smtp service.
func TestMasterCFSmtpdPort(t *testing.T) {
	dir := t.TempDir()
	port := freePort(t)
	cfg := writeMainCF(t, dir, port, "", "")
	writeMasterCF(t, dir, "smtp inet n - y - - smtpd\npickup unix n - y 60 1 pickup\n"+transportsCF)
	s, _ := serve(t, reload(t, dir))
	_ = cfg
	if len(s.listeners) != 1 || s.listeners[0].Addr().String() != "127.0.0.1:"+port {
		t.Fatalf("listeners %v, want 127.0.0.1:%s", s.listeners, port)
	}
	if got := rcpt(t, "127.0.0.1:"+port, "b@example.com"); got != "" {
		t.Errorf("RCPT: %s", got)
	}
}

func findings(t *testing.T, dir string) diag.List {
	t.Helper()
	d, _ := Check(reload(t, dir))
	return d
}

func hasFinding(d diag.List, sev diag.Severity, file string, line int, msg string) bool {
	for _, x := range d {
		if x.Severity == sev && x.File == file && x.Line == line && strings.Contains(x.Msg, msg) {
			return true
		}
	}
	return false
}

// An amavis setup (amavisd-new's README.postfix: an smtp-amavis
// transport, a re-injection smtpd on 127.0.0.1:10025, main.cf's
// content_filter) cannot run on mailtee: check and serve refuse it,
// naming master.cf's line and main.cf's.
func TestMasterCFAmavis(t *testing.T) {
	dir := t.TempDir()
	port := freePort(t)
	writeMainCF(t, dir, port, "", "content_filter = smtp-amavis:[127.0.0.1]:10024\n")
	stock, err := os.ReadFile("../mastercf/testdata/master.cf.dist")
	if err != nil {
		t.Fatal(err)
	}
	base := strings.Count(string(stock), "\n")
	writeMasterCF(t, dir, string(stock)+`smtp-amavis     unix    -       -       n       -       2       smtp
        -o smtp_data_done_timeout=1200
        -o smtp_send_xforward_command=yes
        -o disable_dns_lookups=yes
        -o max_use=20
127.0.0.1:10025 inet    n       -       n       -       -       smtpd
        -o content_filter=
        -o local_recipient_maps=
        -o relay_recipient_maps=
        -o smtpd_restriction_classes=
        -o smtpd_delay_reject=no
        -o smtpd_client_restrictions=permit_mynetworks,reject
        -o smtpd_helo_restrictions=
        -o smtpd_sender_restrictions=
        -o smtpd_recipient_restrictions=permit_mynetworks,reject
        -o smtpd_data_restrictions=reject_unauth_pipelining
        -o smtpd_end_of_data_restrictions=
        -o mynetworks=127.0.0.0/8
        -o smtpd_error_sleep_time=0
        -o smtpd_soft_error_limit=1001
        -o smtpd_hard_error_limit=1000
        -o smtpd_client_connection_count_limit=0
        -o smtpd_client_connection_rate_limit=0
        -o receive_override_options=no_header_body_checks,no_unknown_recipient_checks
`)
	d := findings(t, dir)
	mf := filepath.Join(dir, "master.cf")
	if !hasFinding(d, diag.Error, mf, base+1, "main.cf's content_filter ("+filepath.Join(dir, "main.cf")+", line ") {
		t.Errorf("no error at master.cf line %d naming main.cf's content_filter:\n%v", base+1, d.Err())
	}
	if !hasFinding(d, diag.Error, filepath.Join(dir, "main.cf"), 10, "content_filter") {
		t.Errorf("no error at main.cf's content_filter line:\n%v", d.Err())
	}
	for _, x := range d {
		t.Log(x)
	}
	// serve refuses what check finds.
	if !d.HasErrors() {
		t.Fatal("check finds no error; serve would start")
	}
}

// Debian's stock master.cf, with a stock-like main.cf: no error, and the
// pipe services nobody refers to are one warning.
func TestMasterCFStock(t *testing.T) {
	dir := t.TempDir()
	port := freePort(t)
	writeMainCF(t, dir, port, "", "")
	stock, err := os.ReadFile("../mastercf/testdata/master.cf.dist")
	if err != nil {
		t.Fatal(err)
	}
	writeMasterCF(t, dir, string(stock))
	d := findings(t, dir)
	if d.HasErrors() {
		t.Errorf("errors on Debian's master.cf.dist:\n%v", d.Err())
	}
	n := 0
	for _, x := range d {
		t.Log(x)
		if x.File == filepath.Join(dir, "master.cf") {
			n++
			if !strings.Contains(x.Msg, "7 services run programs mailtee does not have") || !strings.Contains(x.Msg, "maildrop (pipe, line 93)") {
				t.Errorf("unexpected finding: %v", x)
			}
		}
	}
	if n != 1 {
		t.Errorf("%d findings about master.cf, want 1", n)
	}
	// A pipe service named by a transport setting is an error at its line.
	writeMainCF(t, dir, port, "", "relay_transport = uucp\n")
	d = findings(t, dir)
	if !hasFinding(d, diag.Error, filepath.Join(dir, "master.cf"), 125, "main.cf's relay_transport") {
		t.Errorf("relay_transport = uucp: no error at master.cf line 125:\n%v", d)
	}
	// And one that a transport table names.
	os.WriteFile(filepath.Join(dir, "transport"), []byte("lists.example.org mailman:\n"), 0o644)
	writeMainCF(t, dir, port, "", "transport_maps = texthash:"+filepath.Join(dir, "transport")+"\n")
	d = findings(t, dir)
	if !hasFinding(d, diag.Error, filepath.Join(dir, "master.cf"), 136, "transport_maps (texthash:"+filepath.Join(dir, "transport")+") for lists.example.org names this service, which runs pipe") {
		t.Errorf("transport_maps naming mailman: no error at master.cf line 136:\n%v", d)
	}
	// So is one of Postfix's own services, which deliver nothing.
	writeMainCF(t, dir, port, "", "default_transport = cleanup\n")
	d = findings(t, dir)
	if !hasFinding(d, diag.Error, filepath.Join(dir, "master.cf"), 54, "main.cf's default_transport") {
		t.Errorf("default_transport = cleanup: no error at master.cf line 54:\n%v", d)
	}
}

// What mailtee cannot run on a listener is an error at its line.
func TestMasterCFListenerFindings(t *testing.T) {
	dir := t.TempDir()
	port := freePort(t)
	writeMainCF(t, dir, port, "", "")
	writeMasterCF(t, dir, `smtp inet n - y - 1 postscreen
smtpd pass - - y - - smtpd
submission inet n - y - - smtpd
  -o smtpd_proxy_filter=127.0.0.1:10025
  -o smtpd_milters=inet:localhost:8891
  -o smtpd_relay_restrictions=permit_mynetworks
  -o mumble=1
  -o smtpd_recipient_restrictions=$mua_restrictions
nosuchservice inet n - n - - smtpd
relay unix - - n - - smtp -o syslog_name=x -o smtp_data_done_timeout=1200 -o smtp_helo_name=other.example -o smtp_tls_security_level=bogus
`)
	d := findings(t, dir)
	mf := filepath.Join(dir, "master.cf")
	for _, want := range []struct {
		sev  diag.Severity
		line int
		msg  string
	}{
		{diag.Error, 1, "mailtee has no postscreen(8)"},
		{diag.Error, 4, "-o smtpd_proxy_filter=127.0.0.1:10025: mailtee has no before-queue proxy filter"},
		{diag.Error, 5, "-o smtpd_milters=inet:localhost:8891: mailtee has no milter support"},
		{diag.Error, 3, "specify at least one working instance of"},
		{diag.Warning, 7, "unused parameter: mumble=1"},
		{diag.Warning, 8, "undefined parameter $mua_restrictions"},
		{diag.Error, 9, `service nosuchservice: unknown service name "nosuchservice": it is neither a port number nor in /etc/services`},
		{diag.Warning, 10, "-o smtp_data_done_timeout=1200 is not honoured"},
		{diag.Error, 10, "service relay: -o smtp_tls_security_level: \"bogus\" not supported"},
	} {
		if !hasFinding(d, want.sev, mf, want.line, want.msg) {
			t.Errorf("no %v at line %d: %q", want.sev, want.line, want.msg)
		}
	}
	// smtpd_port (main.cf line 6) has no smtp smtpd service to apply to.
	if !hasFinding(d, diag.Warning, filepath.Join(dir, "main.cf"), 6, "smtpd_port has no effect") {
		t.Error("no warning that smtpd_port has no effect")
	}
	for _, x := range d {
		t.Log(x)
	}
}

type configT = config.Config

var configLoad = config.Load

// writeCert writes a self-signed certificate and its key for
// mx.example.org into dir, PEM-encoded, and returns their paths.
func writeCert(t *testing.T, dir string) (cert, key string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mx.example.org"},
		DNSNames: []string{"mx.example.org"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kd, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	cert, key = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd}), 0o600)
	return cert, key
}

// smtpd_tls_wrappermode=yes (submissions) is TLS from the first byte on
// that listener, while the other offers STARTTLS; a wrapper-mode
// listener without a certificate is an error.
func TestMasterCFWrapperMode(t *testing.T) {
	dir := t.TempDir()
	p1, p2 := freePort(t), freePort(t)
	cert, key := writeCert(t, dir)
	writeMainCF(t, dir, p1, "", "smtpd_tls_cert_file = "+cert+"\nsmtpd_tls_key_file = "+key+"\n")
	writeMasterCF(t, dir, transportsCF+"127.0.0.1:"+p1+" inet n - n - - smtpd\n127.0.0.1:"+p2+" inet n - n - - smtpd -o smtpd_tls_wrappermode=yes\n")
	serve(t, reload(t, dir))
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", "127.0.0.1:"+p2, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("TLS to the wrapper-mode listener: %v", err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 200)
	n, _ := c.Read(buf)
	if !strings.HasPrefix(string(buf[:n]), "220 ") {
		t.Errorf("greeting over TLS: %q", buf[:n])
	}
	c.Write([]byte("EHLO client.example\r\n"))
	time.Sleep(200 * time.Millisecond)
	n, _ = c.Read(buf)
	if strings.Contains(string(buf[:n]), "STARTTLS") {
		t.Errorf("wrapper mode offers STARTTLS: %q", buf[:n])
	}
	c.Close()
	// The plain listener still offers STARTTLS.
	sc, err := smtp.Dial("127.0.0.1:" + p1)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	if ok, _ := sc.Extension("STARTTLS"); !ok {
		t.Error("the plain listener offers no STARTTLS")
	}

	writeMainCF(t, dir, p1, "", "")
	if d := findings(t, dir); !hasFinding(d, diag.Error, filepath.Join(dir, "master.cf"), 6, "smtpd_tls_wrappermode = yes needs a certificate") {
		t.Errorf("wrapper mode without a certificate: %v", d)
	}
}

// FuzzMasterFindings: whatever master.cf holds, check's findings and
// the listener list are computed without a panic, and every finding
// about master.cf names a line inside it (or none).
func FuzzMasterFindings(f *testing.F) {
	f.Add([]byte("smtp inet n - y - - smtpd\n -o smtpd_recipient_restrictions=reject\nrelay unix - - n - - smtp -o x=$y\n"))
	f.Add([]byte("smtp inet n - y - 1 postscreen\nsmtp-amavis unix - - n - 2 smtp\n127.0.0.1:10025 inet n - n - - smtpd -o content_filter=\n"))
	f.Add([]byte("[::1]:smtps inet n - n - - smtpd -o smtpd_tls_wrappermode=yes -o mynetworks=hash:/nonexistent\nuucp unix - n n - - pipe flags=F argv=uux\n"))
	dir := f.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.cf"), []byte("myhostname = mx.example.org\nmydestination =\nalias_maps =\ninet_interfaces = 127.0.0.1\nsmtpd_port = 2525\nrelay_transport = uucp\n"), 0o644); err != nil {
		f.Fatal(err)
	}
	cfg, err := config.Load(dir)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(filepath.Join(dir, "master.cf"), data, 0o644); err != nil {
			t.Fatal(err)
		}
		lines := strings.Count(string(data), "\n") + 1
		for _, d := range MasterFindings(cfg, nil) {
			if d.File == filepath.Join(dir, "master.cf") && (d.Line < 0 || d.Line > lines) {
				t.Fatalf("finding at line %d of %d: %v", d.Line, lines, d)
			}
		}
		mf, _ := loadMaster(cfg)
		smtpServices(cfg, mf, false)
		transportNames(mf)
	})
}
