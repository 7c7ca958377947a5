package e2e

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mailtee/mailtee/internal/dnsresolve/dnstest"
	"github.com/mailtee/mailtee/test/internal/harness"
)

// provider is a loopback stand-in for a provider's MX, as preflight
// meets it: it knows its accounts (nil: it accepts every RCPT, as
// Microsoft 365 without directory-based edge blocking), may accept mail
// only from some client addresses (answering as Google's SMTP relay
// does), and may offer STARTTLS.
type provider struct {
	accounts map[string]bool
	allow    map[string]bool // client IPs accepted; nil: any

	mu    sync.Mutex
	rcpts []string // every RCPT TO, in order
	msgs  []string // what DATA carried
	froms []string // client IPs
	addr  string
}

func startProvider(t *testing.T, ip string, p *provider, tlsCfg *tls.Config) *provider {
	t.Helper()
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		host, _, _ := net.SplitHostPort(c.Conn().RemoteAddr().String())
		p.mu.Lock()
		p.froms = append(p.froms, host)
		p.mu.Unlock()
		return &providerSession{p: p, client: host}, nil
	}))
	srv.Domain = "mx.provider.test"
	srv.ErrorLog = log.New(io.Discard, "", 0)
	srv.TLSConfig = tlsCfg
	l, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = l.Addr().String()
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return p
}

func (p *provider) port() string { _, port, _ := net.SplitHostPort(p.addr); return port }

type providerSession struct {
	p      *provider
	client string
}

func (s *providerSession) Reset()        {}
func (s *providerSession) Logout() error { return nil }
func (s *providerSession) Mail(string, *smtp.MailOptions) error {
	return nil
}

func (s *providerSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.p.mu.Lock()
	s.p.rcpts = append(s.p.rcpts, to)
	s.p.mu.Unlock()
	if s.p.allow != nil && !s.p.allow[s.client] {
		// Google's reply when the SMTP relay service does not list the
		// client's address.
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1},
			Message: fmt.Sprintf("[%s] The IP you're using to send mail is not authorized to send email directly to our servers. IP not in whitelist for RCPT domain. - gsmtp", s.client)}
	}
	if s.p.accounts != nil && !s.p.accounts[strings.ToLower(to)] {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1},
			Message: "The email account that you tried to reach does not exist. Please try double-checking the recipient's email address for typos or unnecessary spaces. - gsmtp"}
	}
	return nil
}

func (s *providerSession) Data(r io.Reader) error {
	b, _ := io.ReadAll(r)
	s.p.mu.Lock()
	s.p.msgs = append(s.p.msgs, string(b))
	s.p.mu.Unlock()
	return nil
}

// preflightRow is a row of `mailtee preflight --format json`.
type preflightRow struct {
	Check, Destination, Target, Status, Seen, Do string
}

// The "done when": preflight against loopback stand-ins reports
// a missing account, a source address the provider refuses and a missing
// PTR, and exits non-zero (3). Three providers: google.test knows user1
// and user2 and offers STARTTLS with a self-signed certificate;
// walled.test takes mail only from 127.0.0.99 (not from mailtee's
// 127.0.0.7); open.test accepts every RCPT and is reached through a
// master.cf transport that sends from 127.0.0.9, which has no PTR.
func TestPreflightReportsAndExits(t *testing.T) {
	dir := harness.TempDir(t)
	_, _, tlsCfg := harness.TestCert(t, dir, "mx.google.test")
	google := startProvider(t, "127.0.0.11", &provider{accounts: map[string]bool{"user1@google.test": true, "user2@google.test": true, "test@google.test": true}}, tlsCfg)
	walled := startProvider(t, "127.0.0.12", &provider{accounts: map[string]bool{"user4@walled.test": true}, allow: map[string]bool{"127.0.0.99": true}}, nil)
	open := startProvider(t, "127.0.0.13", &provider{}, nil)
	dns := dnstest.Start(t,
		"google.test. MX 10 mx.google.test.", "mx.google.test. A 127.0.0.11",
		"walled.test. MX 10 mx.walled.test.", "mx.walled.test. A 127.0.0.12",
		"open.test. MX 10 mx.open.test.", "mx.open.test. A 127.0.0.13",
		"7.0.0.127.in-addr.arpa. PTR mailtee.test.", "mailtee.test. A 127.0.0.7",
	)
	in := newInstance(t, fmt.Sprintf(`myhostname = mailtee.test
myorigin = mailtee.test
dns_servers = %s
smtp_bind_address = 127.0.0.7
mailbox_bcc_maps = hash:$config_directory/copies
transport_maps = hash:$config_directory/transport
`, dns.Addr), map[string]string{
		"copies": "user1: user1@google.test\nuser2: user2@google.test\nuser3: user3@google.test\nuser4: user4@walled.test\nuser5: user5@open.test\n",
		"transport": fmt.Sprintf("google.test smtp:google.test:%s\nwalled.test smtp:walled.test:%s\nopen.test nobind:open.test:%s\n",
			google.port(), walled.port(), open.port()),
		"master.cf": stockMasterCF(t) + "nobind unix - - n - - smtp\n  -o smtp_bind_address=127.0.0.9\n",
	})

	run := func(args ...string) (string, string, int) {
		t.Helper()
		return runBin(t, append([]string{"preflight", "-c", in.Dir}, args...)...)
	}

	start := time.Now()
	out, errOut, code := run("--format", "json", "--rate", "10/s", "--send-test", "test@google.test")
	t.Logf("preflight took %v; stderr:\n%s", time.Since(start), errOut)
	if code != 3 {
		t.Errorf("exit status %d, want 3 (a check failed)\n%s", code, out)
	}
	var rep struct {
		Rows   []preflightRow
		Failed bool
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("JSON: %v\n%s", err, out)
	}
	// want finds the row of check and target (at the destination whose
	// name starts with dest) and holds it to status and texts.
	want := func(dest, check, target, status string, seen ...string) preflightRow {
		t.Helper()
		var r preflightRow
		found := false
		for _, x := range rep.Rows {
			if x.Check == check && x.Target == target && strings.HasPrefix(x.Destination, dest) {
				r, found = x, true
				break
			}
		}
		if !found {
			t.Errorf("no %s row for %s at %s in\n%s", check, target, dest, out)
			return r
		}
		if r.Status != status {
			t.Errorf("%s %s: status %q, want %q (seen %q, do %q)", check, target, r.Status, status, r.Seen, r.Do)
		}
		for _, s := range seen {
			if !strings.Contains(r.Seen+" | "+r.Do, s) {
				t.Errorf("%s %s: %q (do %q) does not say %q", check, target, r.Seen, r.Do, s)
			}
		}
		return r
	}
	want("smtp:google.test", "mx", "google.test", "ok", "MX 10 mx.google.test [127.0.0.11]")
	want("smtp:walled.test", "mx", "walled.test", "ok", "mx.walled.test [127.0.0.12]")
	want("smtp:google.test", "source-dns", "127.0.0.7", "ok", "127.0.0.7 -> mailtee.test -> 127.0.0.7", "smtp_bind_address")
	want("nobind:open.test", "source-dns", "127.0.0.9", "FAIL", "master.cf nobind -o smtp_bind_address", "no PTR record", "add a PTR record for 127.0.0.9")
	want("", "tls", "mx.google.test[127.0.0.11]:"+google.port(), "warn", "TLS 1.3", `subject "CN=mx.google.test"`, "does not verify for mx.google.test")
	want("", "tls", "mx.walled.test[127.0.0.12]:"+walled.port(), "warn", "STARTTLS not offered")
	want("", "account", "user1@google.test", "ok", "exists: ", "250")
	want("", "account", "user2@google.test", "ok", "exists: ")
	want("", "account", "user3@google.test", "FAIL", "missing: ", "550 5.1.1", "create the account at the provider, or remove it from the copy map (mailbox_bcc_maps hash:")
	want("smtp:google.test", "allow-list", "127.0.0.7", "ok", "accepts connection, EHLO, MAIL and RCPT")
	want("smtp:walled.test", "allow-list", "127.0.0.7", "FAIL", "IP not in whitelist", "add 127.0.0.7 to the Google Workspace SMTP relay allow-list")
	want("", "account", "user4@walled.test", "unknown", "not probed")
	want("", "account", "user5@open.test", "unknown", "made-up", "accepts every RCPT")
	want("nobind:open.test", "allow-list", "127.0.0.9", "ok")
	want("smtp:google.test", "send-test", "test@google.test", "ok", "250")
	if !rep.Failed {
		t.Error(`"failed" is false`)
	}

	// The probes: every user once, a made-up address first in each
	// domain, and nothing from the refused address after the refusal.
	google.mu.Lock()
	if len(google.rcpts) != 5 || !strings.HasPrefix(google.rcpts[0], "mailtee-preflight-") || google.rcpts[1] != "user1@google.test" {
		t.Errorf("google.test saw RCPTs %q; want a made-up one, user1, user2, user3, then the test message's", google.rcpts)
	}
	if len(google.msgs) != 1 || !strings.Contains(google.msgs[0], "Subject: mailtee preflight test") || !strings.Contains(google.msgs[0], "Message-ID: <") ||
		!strings.Contains(google.msgs[0], "From: <postmaster@mailtee.test>") {
		t.Errorf("google.test got %q; want one test message", google.msgs)
	}
	for _, ip := range google.froms {
		if ip != "127.0.0.7" {
			t.Errorf("google.test: a connection from %s, not smtp_bind_address 127.0.0.7", ip)
		}
	}
	google.mu.Unlock()
	walled.mu.Lock()
	if len(walled.rcpts) != 1 {
		t.Errorf("walled.test saw RCPTs %q; want only the first (refused)", walled.rcpts)
	}
	walled.mu.Unlock()
	open.mu.Lock()
	if len(open.froms) != 1 || open.froms[0] != "127.0.0.9" {
		t.Errorf("open.test: connections from %q, want one from the nobind service's 127.0.0.9", open.froms)
	}
	open.mu.Unlock()

	// The text table says the same, one row per check, with what to do.
	text, _, code := run("--rate", "100/s")
	if code != 3 {
		t.Errorf("text: exit status %d, want 3", code)
	}
	hasLine := func(parts ...string) bool {
		for _, l := range strings.Split(text, "\n") {
			if f := strings.Fields(l); len(f) >= len(parts) && slices.Equal(f[:len(parts)], parts) {
				return true
			}
		}
		return false
	}
	for _, l := range [][]string{{"STATUS", "CHECK", "TARGET", "SEEN"}, {"#", "smtp:google.test:" + google.port()},
		{"FAIL", "account", "user3@google.test", "missing:"}, {"->", "create", "the", "account"},
		{"FAIL", "allow-list", "127.0.0.7"}, {"FAIL", "source-dns", "127.0.0.9"}, {"unknown", "account", "user5@open.test"}} {
		if !hasLine(l...) {
			t.Errorf("text output lacks a line %q:\n%s", l, text)
		}
	}
	if !strings.Contains(text, "preflight: ") || !strings.Contains(text, " FAIL, ") {
		t.Errorf("text output lacks the totals:\n%s", text)
	}
	t.Logf("text output:\n%s", text)

	// Bad input is 1, with the file and line for main.cf.
	if _, e, code := run("--rate", "fast"); code != 1 || !strings.Contains(e, "--rate") {
		t.Errorf("--rate fast: exit %d, %q; want 1 and a word on --rate", code, e)
	}
	in.WriteFile("main.cf", "myhostname = mailtee.test\nsmtp_bind_address = 127.0.0.300\n")
	if _, e, code := run(); code != 1 || !strings.Contains(e, filepath.Join(in.Dir, "main.cf")+", line 2") {
		t.Errorf("bad main.cf: exit %d, %q; want 1 and main.cf, line 2", code, e)
	}
}
