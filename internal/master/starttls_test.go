package master

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/pem"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// STARTTLS per listener, with master.cf's -o: each listener's own
// certificate, smtpd_tls_security_level and smtpd_starttls_timeout, and
// Postfix's replies over TLS (smtpd does STARTTLS below go-smtp).
func TestMasterCFStartTLSPerListener(t *testing.T) {
	dir := t.TempDir()
	dirB := filepath.Join(dir, "b")
	if err := os.Mkdir(dirB, 0o755); err != nil {
		t.Fatal(err)
	}
	certA, keyA := writeCert(t, dir)
	certB, keyB := writeCert(t, dirB)
	p1, p2, p3 := freePort(t), freePort(t), freePort(t)
	writeMainCF(t, dir, p1, "", "smtpd_tls_cert_file = "+certA+"\nsmtpd_tls_key_file = "+keyA+"\n")
	writeMasterCF(t, dir, transportsCF+
		"127.0.0.1:"+p1+" inet n - n - - smtpd\n"+
		"127.0.0.1:"+p2+" inet n - n - - smtpd -o smtpd_tls_cert_file="+certB+" -o smtpd_tls_key_file="+keyB+"\n"+
		"127.0.0.1:"+p3+" inet n - n - - smtpd -o smtpd_tls_security_level=encrypt -o smtpd_starttls_timeout=1s\n")
	_, log := serve(t, reload(t, dir))

	certDER := func(file string) []byte {
		b, _ := os.ReadFile(file)
		blk, _ := pem.Decode(b)
		if blk == nil {
			t.Fatalf("%s: no PEM", file)
		}
		return blk.Bytes
	}
	for _, l := range []struct{ port, cert string }{{p1, certA}, {p2, certB}} {
		c, r := dialSMTP(t, "127.0.0.1:"+l.port)
		say(t, c, r, "EHLO client.example", "250-")
		say(t, c, r, "STARTTLS", "220 2.0.0 Ready to start TLS")
		tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true})
		if err := tc.Handshake(); err != nil {
			t.Fatalf("port %s: %v", l.port, err)
		}
		peer := tc.ConnectionState().PeerCertificates[0].Raw
		if !bytes.Equal(certDER(l.cert), peer) {
			t.Errorf("port %s: not the certificate of %s", l.port, l.cert)
		}
		r = bufio.NewReader(tc)
		say(t, tc, r, "EHLO client.example", "250-mx.example.org")
		say(t, tc, r, "MAIL FROM:<s@example.com>", "250 2.1.0 Ok")
		say(t, tc, r, "RCPT TO:<x@example.net>", "250 2.1.5 Ok")
		say(t, tc, r, "QUIT", "221 2.0.0 Bye")
		tc.Close()
	}

	// encrypt: no MAIL before STARTTLS; a handshake that never comes
	// ends within smtpd_starttls_timeout.
	c, r := dialSMTP(t, "127.0.0.1:"+p3)
	say(t, c, r, "EHLO client.example", "250-")
	say(t, c, r, "MAIL FROM:<s@example.com>", "530 5.7.0 Must issue a STARTTLS command first")
	say(t, c, r, "STARTTLS", "220 ")
	begin := time.Now()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if b, _ := io.ReadAll(r); len(b) > 0 {
		t.Errorf("after the handshake timeout: %q", b)
	}
	if d := time.Since(begin); d < 900*time.Millisecond || d > 5*time.Second {
		t.Errorf("closed after %v, want smtpd_starttls_timeout = 1s", d)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(log.String(), "SSL_accept error from localhost[127.0.0.1]: Connection timed out") {
		if time.Now().After(deadline) {
			t.Fatalf("no timeout logged:\n%s", log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func dialSMTP(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	r := bufio.NewReader(c)
	if l, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(l, "220 ") {
		t.Fatalf("greeting: %q, %v", l, err)
	}
	return c, r
}

// say sends a command and checks the start of its reply (all its lines,
// joined by "\n").
func say(t *testing.T, c net.Conn, r *bufio.Reader, cmd, want string) {
	t.Helper()
	io.WriteString(c, cmd+"\r\n")
	var lines []string
	for {
		l, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("%s: %v after %q", cmd, err, lines)
		}
		l = strings.TrimRight(l, "\r\n")
		lines = append(lines, l)
		if len(l) < 4 || l[3] != '-' {
			break
		}
	}
	if got := strings.Join(lines, "\n"); !strings.HasPrefix(got, want) {
		t.Errorf("%s: %q, want %q...", cmd, got, want)
	}
}
