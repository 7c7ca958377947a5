package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/dnsresolve/dnstest"
	"github.com/mailtee/mailtee/internal/srs"
	"github.com/mailtee/mailtee/test/internal/harness"
)

// srsSecret is the test's srs_secret_file: the first line signs, the
// second (an old secret) still verifies.
const srsSecret = "e2e-srs-secret-0123456789\nretired-secret-abcdefghij\n"

// TestSRSCopyBounce is SRS for copies from end to end: mailtee, a
// primary with recipient_bcc_maps and srs_domain, copies alice's mail to
// the provider's stand-in (a sink) with MAIL FROM SRS0=...@srs_domain,
// while an ordinary recipient at the same next hop, in the same message,
// keeps the original sender in a transaction of its own; the sink gets
// the headers and body byte for byte as sent. Then the test sends, as
// the provider would, a DSN bounce to the SRS address, from a client
// outside mynetworks: postmaster's mailbox gets the copy's failure with
// the bounce attached, the ledger shows the copy bounced with the
// provider's reply, and the sender's own MX (a sink) never sees a
// connection. Forged, tampered and expired SRS addresses are refused at
// RCPT, from mynetworks as well.
func TestSRSCopyBounce(t *testing.T) {
	provider := newSink(t, "", nil)
	senderPort := freePort(t)
	senderMX := newSink(t, fmt.Sprintf("127.0.0.1:%d", senderPort), nil)
	dns := newDNS(t, map[string]string{"mx.sender.example": "127.0.0.1"}, map[string][]string{"sender.example": {"10 mx.sender.example"}})
	in := newInstance(t, fmt.Sprintf(`dns_servers = %s
smtp_tcp_port = %d
mynetworks = 127.0.0.1/32
transport_maps = inline:{ provider.example=smtp:[127.0.0.1]:%d }
recipient_bcc_maps = inline:{ alice@test.example=alice@provider.example }
srs_domain = srs-bounces.example
srs_secret_file = $config_directory/srs.secret
ledger_database = ledger.db
`, dns.Addr, senderPort, provider.Port()), map[string]string{"srs.secret": srsSecret})
	if err := os.Chmod(filepath.Join(in.Dir, "srs.secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := in.Run("", "check"); err != nil || strings.Contains(out, "srs_") {
		t.Fatalf("mailtee check: %v\n%s", err, out)
	}
	in.Start()

	// A message as a DKIM signer leaves it: folded header, odd spacing,
	// a body whose bytes any change would show.
	const msgID = "<srs-e2e-1@sender.example>"
	body := "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=sender.example; s=s1;\r\n" +
		"\th=from:to:subject:message-id; bh=Zm9vYmFy; b=c2lnbmF0dXJl\r\n" +
		"From: Sender <sender@sender.example>\r\nTo: alice@test.example, bob@provider.example\r\n" +
		"Subject:   SRS  test\r\nMessage-ID: " + msgID + "\r\nDate: Mon, 7 Dec 2026 04:00:00 +0000\r\n\r\n" +
		"Body line with trailing blanks   \r\n\tand a tab.\r\n..leading dot\r\n"
	if err := send(in.Addr(), "sender@sender.example", []string{"alice@test.example", "bob@provider.example"}, body); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "alice's local delivery", 30*time.Second, func() bool { return len(in.MaildirMessages("alice")) == 1 })
	waitUntil(t, "the queue empty", 30*time.Second, func() bool { return queueEmpty(in) })
	if provider.Total() != 2 {
		t.Errorf("the provider got %d transactions, want 2: the copy with its SRS sender, bob's with the original one", provider.Total())
	}

	var copyFrom string
	for _, m := range provider.Messages() {
		if len(m.To) != 1 {
			t.Fatalf("one transaction for the copy and bob: MAIL FROM <%s> RCPT %v (one MAIL FROM for both)", m.From, m.To)
		}
		switch strings.ToLower(m.To[0]) {
		case "alice@provider.example":
			copyFrom = m.From
		case "bob@provider.example":
			if m.From != "sender@sender.example" {
				t.Errorf("ordinary recipient bob: MAIL FROM <%s>, want the original sender", m.From)
			}
		default:
			t.Errorf("unexpected recipient %v", m.To)
		}
		// Byte for byte: mailtee adds its Received: line on top and
		// changes nothing else.
		if !strings.HasSuffix(m.Data, body) {
			t.Errorf("the provider got the message changed (to %v):\n%q\nwant a Received: line, then\n%q", m.To, m.Data, body)
		} else if extra := strings.TrimSuffix(m.Data, body); !regexp.MustCompile(`^Received: [^\r\n]*\r\n(?:[ \t][^\r\n]*\r\n)*$`).MatchString(extra) {
			t.Errorf("headers added above the message: %q, want one Received:", extra)
		}
	}
	if !regexp.MustCompile(`^SRS0=[A-Za-z0-9+/]{4}=[A-Z2-7]{2}=sender\.example=sender@srs-bounces\.example$`).MatchString(copyFrom) {
		t.Fatalf("the copy's MAIL FROM is <%s>, want SRS0=HHHH=TT=sender.example=sender@srs-bounces.example", copyFrom)
	}
	if !strings.Contains(in.Log.String(), "from=<sender@sender.example> rewritten as <"+copyFrom+"> for the copy to <alice@provider.example>") {
		t.Errorf("no srs line saying the copy's sender was rewritten:\n%s", in.Log.String())
	}
	codec := srs.New("srs-bounces.example", srs.ParseSecrets([]byte(srsSecret)))
	if orig, err := codec.Reverse(copyFrom); err != nil || orig != "sender@sender.example" {
		t.Fatalf("the copy's SRS sender <%s> decodes to %q, %v", copyFrom, orig, err)
	}

	// Not an open relay: forged, tampered, expired and non-SRS
	// addresses at srs_domain are refused, from the provider's side
	// (outside mynetworks) and from mynetworks alike.
	old := srs.New("srs-bounces.example", srs.ParseSecrets([]byte(srsSecret)))
	old.Now = func() time.Time { return time.Now().Add(-30 * 24 * time.Hour) }
	expired, _ := old.Forward("sender@sender.example")
	tampered := strings.Replace(copyFrom, "=sender@", "=victim@", 1)
	otherKey := srs.New("srs-bounces.example", [][]byte{[]byte("not-our-secret")})
	forged, _ := otherKey.Forward("victim@sender.example")
	for _, local := range []string{"127.0.0.3", "127.0.0.1"} {
		c := dialRaw(t, in.Addr(), local)
		c.Cmd("EHLO mx.google.example")
		if r := c.Cmd("MAIL FROM:<>"); !strings.HasPrefix(r, "250") {
			t.Fatalf("MAIL FROM:<> from %s: %s", local, r)
		}
		for _, a := range []string{forged, tampered, expired, "postmaster@srs-bounces.example", "SRS0=abcd=J2=x@srs-bounces.example"} {
			if r := c.Cmd("RCPT TO:<" + a + ">"); !strings.HasPrefix(r, "550 5.1.1") {
				t.Errorf("RCPT TO:<%s> from %s: %q, want 550 5.1.1", a, local, r)
			}
		}
		c.Cmd("QUIT")
	}

	// The provider's bounce, to the SRS address, from outside mynetworks.
	const diagText = "550-5.7.26 Unauthenticated email from sender.example is not accepted due to domain's DMARC policy - gsmtp"
	dsnMsg := "From: Mail Delivery Subsystem <mailer-daemon@googlemail.example>\r\n" +
		"To: " + copyFrom + "\r\nSubject: Delivery Status Notification (Failure)\r\nMessage-ID: <bounce-1@googlemail.example>\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"b1\"\r\n\r\n" +
		"--b1\r\nContent-Type: text/plain\r\n\r\nYour message wasn't delivered. X-Bounce-Marker-7731\r\n\r\n" +
		"--b1\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.google.example\r\n\r\n" +
		"Final-Recipient: rfc822; alice@provider.example\r\nAction: failed\r\nStatus: 5.7.26\r\n" +
		"Remote-MTA: dns; mx.google.example\r\nDiagnostic-Code: smtp; " + diagText + "\r\n\r\n" +
		"--b1\r\nContent-Type: text/rfc822-headers\r\n\r\nFrom: Sender <sender@sender.example>\r\nSubject:   SRS  test\r\nMessage-ID: " + msgID + "\r\n\r\n" +
		"--b1--\r\n"
	if err := (harness.Client{Local: "127.0.0.3", DialTimeout: 10 * time.Second}).Send(in.Addr(), "", []string{copyFrom}, dsnMsg); err != nil {
		t.Fatalf("the provider's bounce to <%s> was refused: %v", copyFrom, err)
	}

	var notice string
	waitUntil(t, "postmaster's notice", 30*time.Second, func() bool {
		for _, m := range in.MaildirMessages("admin") {
			if strings.Contains(m, "X-Bounce-Marker-7731") {
				notice = m
				return true
			}
		}
		return false
	})
	flat := strings.Join(strings.Fields(notice), " ")
	want := "copy of <sender@sender.example>'s message to <alice@provider.example> failed: " + diagText
	if !strings.Contains(flat, want) {
		t.Errorf("postmaster's notice does not say %q:\n%s", want, notice)
	}
	if !strings.Contains(flat, "recorded in the ledger") {
		t.Errorf("the notice does not say the copy was found in the ledger:\n%s", notice)
	}
	waitUntil(t, "the queue empty", 30*time.Second, func() bool { return queueEmpty(in) })

	// Nobody but postmaster was told; nothing went to the sender's MX.
	if n := len(senderMX.Conns()); n != 0 || senderMX.Total() != 0 {
		t.Errorf("the sender's MX got %d connections, %d messages: a bounce was forwarded to the sender", n, senderMX.Total())
	}
	if provider.Total() != 2 {
		t.Errorf("the provider got %d transactions, want the copy and bob's only", provider.Total())
	}
	if strings.Contains(in.Log.String(), "to=<sender@sender.example>") {
		t.Errorf("a delivery to the original sender was logged:\n%s", in.Log.String())
	}

	// The ledger: alice's copy bounced, with the provider's reply.
	needLedger(t, in)
	waitUntil(t, "the copy bounced in the ledger", 30*time.Second, func() bool {
		for _, m := range reportJSON(t, in).Messages {
			if m.MessageID != msgID {
				continue
			}
			for _, q := range m.Required {
				if q.Copy && strings.EqualFold(q.Rcpt, "alice@provider.example") && q.Status == "bounced" && strings.Contains(q.Reply, "5.7.26") {
					return true
				}
			}
		}
		return false
	})
}

// TestSRSPreflight: mailtee preflight checks srs_domain's MX and SPF for
// the address the probes leave from (smtp_bind_address 127.0.0.7): both
// missing fail (exit 3), then, published in the test's DNS, both pass.
func TestSRSPreflight(t *testing.T) {
	provider := newSink(t, "", nil)
	dns := dnstest.Start(t, "mailtee.test. A 127.0.0.7", "7.0.0.127.in-addr.arpa. PTR mailtee.test.")
	in := newInstance(t, fmt.Sprintf(`myhostname = mailtee.test
dns_servers = %s
smtp_bind_address = 127.0.0.7
transport_maps = inline:{ provider.example=smtp:[127.0.0.1]:%d }
recipient_bcc_maps = inline:{ alice@test.example=alice@provider.example }
srs_domain = srs-bounces.example
srs_secret_file = $config_directory/srs.secret
`, dns.Addr, provider.Port()), map[string]string{"srs.secret": srsSecret})
	os.Chmod(filepath.Join(in.Dir, "srs.secret"), 0o600)
	run := func() (map[string]preflightRow, int) {
		t.Helper()
		cmd := exec.Command(harness.Bin, "preflight", "-c", in.Dir, "--format", "json", "--rate", "10/s")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		var rep struct{ Rows []preflightRow }
		if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
			t.Fatalf("JSON: %v\n%s\n%s", err, stdout.String(), stderr.String())
		}
		rows := map[string]preflightRow{}
		for _, r := range rep.Rows {
			if strings.HasPrefix(r.Check, "srs-") {
				rows[r.Check+" "+r.Status] = r
			}
		}
		t.Logf("exit %d, SRS rows %+v", code, rows)
		return rows, code
	}
	rows, code := run()
	if _, ok := rows["srs-mx FAIL"]; !ok || code != 3 {
		t.Errorf("no MX for srs_domain: exit %d, rows %v; want srs-mx FAIL and exit 3", code, rows)
	}
	if r, ok := rows["srs-spf FAIL"]; !ok || !strings.Contains(r.Do, `TXT "v=spf1 ip4:127.0.0.7 -all"`) {
		t.Errorf("no SPF for srs_domain: rows %v; want srs-spf FAIL saying what to publish", rows)
	}
	dns.Add(t, "srs-bounces.example. MX 10 mailtee.test.")
	dns.Add(t, `srs-bounces.example. TXT "v=spf1 ip4:127.0.0.0/24 -all"`)
	rows, _ = run()
	if _, ok := rows["srs-mx ok"]; !ok {
		t.Errorf("MX published: rows %v, want srs-mx ok", rows)
	}
	if _, ok := rows["srs-spf ok"]; !ok || len(rows) != 2 {
		t.Errorf("SPF published: rows %v, want srs-spf ok only", rows)
	}
}
