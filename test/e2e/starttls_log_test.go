package e2e

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mailtee/mailtee/test/internal/harness"
)

// A failed or abandoned TLS handshake after STARTTLS: no reply, the
// session ends, and the log says so in Postfix's words.
func TestStartTLSFailureLogAsPostfix(t *testing.T) {
	certFile, keyFile, _ := harness.TestCert(t, t.TempDir(), "mx.test.example")
	cf := "myhostname = mx.test.example\nmydestination = test.example\nsmtpd_tls_security_level = may\nsmtpd_tls_cert_file = " + certFile + "\nsmtpd_tls_key_file = " + keyFile + "\n"
	pf := newPostfix(t, "127.0.0.1", freePort(t))
	pf.start(cf+"smtpd_starttls_timeout = 2s\n", nil)
	in := newInstance(t, cf+"smtpd_starttls_timeout = 2s\n", nil)
	logOnFailure(t, "mailtee", in)
	in.Start()

	for _, tc := range []struct {
		name string
		do   func(c net.Conn)
	}{
		{"plaintext after the 220", func(c net.Conn) { io.WriteString(c, "MAIL FROM:<a@b.example>\r\n") }},
		{"the client goes away", func(c net.Conn) { c.(*net.TCPConn).CloseWrite() }},
		{"the client does not trust the certificate", func(c net.Conn) {
			tls.Client(c, &tls.Config{ServerName: "mx.test.example"}).Handshake()
		}},
		{"the client says nothing", func(net.Conn) {}},
	} {
		for _, addr := range []string{pf.addr(), in.Addr()} {
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			c.SetDeadline(time.Now().Add(20 * time.Second))
			r := bufio.NewReader(c)
			for _, cmd := range []string{"", "EHLO client.example", "STARTTLS"} {
				if cmd != "" {
					fmt.Fprintf(c, "%s\r\n", cmd)
				}
				for {
					l, err := r.ReadString('\n')
					if err != nil {
						t.Fatalf("%s %s: %q: %v", addr, tc.name, cmd, err)
					}
					if len(l) < 4 || l[3] != '-' {
						break
					}
				}
			}
			tc.do(c)
			if b, _ := io.ReadAll(r); strings.Contains(string(b), "\r\n") {
				t.Errorf("%s %s: replied %q", addr, tc.name, b)
			}
			c.Close()
		}
		time.Sleep(500 * time.Millisecond)
		// mailtee names loopback clients "localhost"; the private
		// Postfix does no lookups ("unknown").
		want := starttlsLog(pf.maillog())
		got := starttlsLog(strings.ReplaceAll(in.Log.String(), "localhost[", "unknown["))
		t.Logf("%s: Postfix %q, mailtee %q", tc.name, want, got)
		if strings.Join(want, "|") != strings.Join(got, "|") {
			t.Errorf("%s: mailtee logs %q, Postfix %q", tc.name, got, want)
		}
	}
}

var starttlsLogRe = regexp.MustCompile(`(SSL_accept error from [^:]+: (-1|lost connection|Connection timed out)|warning: TLS library problem|(lost connection|timeout) after STARTTLS from \S+)`)

// starttlsLog picks the handshake's lines out of a mail log, without
// their details (OpenSSL's and Go's error texts differ).
func starttlsLog(log string) []string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		if m := starttlsLogRe.FindString(l); m != "" {
			out = append(out, m)
		}
	}
	return out
}
