package e2e

import (
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/mailtee/mailtee/test/internal/harness"
)

func TestLocalDeliveryToMaildir(t *testing.T) {
	in := newInstance(t, "", map[string]string{"aliases": "postmaster: admin\nteam: alice, bob\n"})
	in.Start()
	if err := send(in.Addr(), "sender@outside.example", []string{"alice@test.example", "team@test.example"}, testMessage("local")); err != nil {
		t.Fatalf("send: %v", err)
	}
	// alice is a recipient and a member of team: one copy, as a
	// mailbox gets a message once.
	waitUntil(t, "alice and bob's mail", 15*time.Second, func() bool {
		return len(in.MaildirMessages("alice")) == 1 && len(in.MaildirMessages("bob")) == 1
	})
	in.WaitLog("duplicate of alice@test.example, delivered once")
	msg := in.MaildirMessages("bob")[0]
	// Delivered-To: is the recipient the queue had, team, not bob:
	// Postfix's frozen_delivered_to = yes, so that a forwarded copy
	// carries the address whose loop it would be.
	for _, want := range []string{"Delivered-To: team@test.example", "X-Original-To: team@test.example", "Return-Path: <sender@outside.example>", "Received: from client.test.example", "Subject: local"} {
		if !strings.Contains(msg, want) {
			t.Errorf("bob's message lacks %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "\r\n") {
		t.Error("a Maildir file must have LF line endings")
	}
	in.WaitLog("to=<alice@test.example>, relay=local")
	in.WaitLog("status=sent")
	in.WaitLog(": removed")
	in.Stop()
}

func TestRelayToNextHop(t *testing.T) {
	sk := newSink(t, "", nil)
	in := newInstance(t, "transport_maps = hash:$config_directory/transport\nrelay_domains = far.example\n",
		map[string]string{"transport": fmt.Sprintf("far.example smtp:[127.0.0.1]:%d\n", sk.Port())})
	in.Start()
	if err := send(in.Addr(), "sender@test.example", []string{"rcpt@far.example"}, testMessage("relay")); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "delivery to the sink", 15*time.Second, func() bool { return sk.Count("rcpt@far.example") == 1 })
	m := sk.Messages()[0]
	if m.From != "sender@test.example" || !strings.Contains(m.Data, "Subject: relay") {
		t.Errorf("sink got %+v", m)
	}
	in.WaitLog(fmt.Sprintf("to=<rcpt@far.example>, relay=127.0.0.1[127.0.0.1]:%d", sk.Port()))
}

// MX resolution through dns_servers: the destination's MX points to a
// sink on 127.0.0.x, as the seed's aspmx.l.google.com will in tests.
func TestMXLookupViaDNSServers(t *testing.T) {
	sk := newSink(t, "127.0.0.3:0", nil)
	d := newDNS(t, map[string]string{"mx.far.example": "127.0.0.3"}, map[string][]string{"far.example": {"10 mx.far.example"}})
	in := newInstance(t, fmt.Sprintf("dns_servers = %s\nsmtp_tcp_port = %d\n", d.Addr, sk.Port()), nil)
	in.Start()
	if err := send(in.Addr(), "sender@test.example", []string{"rcpt@far.example"}, testMessage("mx")); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "delivery via MX", 15*time.Second, func() bool { return sk.Count("rcpt@far.example") == 1 })
	in.WaitLog("relay=mx.far.example[127.0.0.3]")
}

func TestRelayDeniedOutsideMynetworks(t *testing.T) {
	in := newInstance(t, "mynetworks = 127.0.0.2/32\n", nil)
	in.Start()
	c := dialRaw(t, in.Addr(), "127.0.0.1")
	c.Cmd("EHLO outside.example")
	c.Cmd("MAIL FROM:<spammer@outside.example>")
	if r := c.Cmd("RCPT TO:<victim@elsewhere.example>"); !strings.HasPrefix(r, "554 5.7.1") || !strings.Contains(r, "Relay access denied") {
		t.Errorf("relay from outside mynetworks: %q", r)
	}
	for _, trick := range []string{"victim%elsewhere.example@test.example", "@test.example:victim@elsewhere.example", "elsewhere.example!victim@test.example"} {
		if r := c.Cmd("RCPT TO:<" + trick + ">"); strings.HasPrefix(r, "250") {
			t.Errorf("routing trick %s accepted: %q", trick, r)
		}
	}
	if r := c.Cmd("RCPT TO:<alice@test.example>"); !strings.HasPrefix(r, "250") {
		t.Errorf("mail to a local domain must be accepted from anywhere: %q", r)
	}
	in.WaitLog("NOQUEUE: reject: RCPT from")
}

func TestUnknownLocalUser550(t *testing.T) {
	in := newInstance(t, "local_recipient_maps = hash:$config_directory/users\n", map[string]string{"users": "alice x\n"})
	in.Start()
	c := dialRaw(t, in.Addr(), "")
	c.Cmd("EHLO client.example")
	c.Cmd("MAIL FROM:<s@outside.example>")
	if r := c.Cmd("RCPT TO:<nobody@test.example>"); !strings.HasPrefix(r, "550 5.1.1") {
		t.Errorf("unknown user: %q", r)
	}
	if r := c.Cmd("RCPT TO:<alice@test.example>"); !strings.HasPrefix(r, "250") {
		t.Errorf("known user: %q", r)
	}
}

// The next hop is down: the message is deferred, then delivered exactly
// once when the next hop comes back.
func TestNextHopDownThenBack(t *testing.T) {
	port := freePort(t)
	in := newInstance(t, "transport_maps = inline:{ far.example=smtp:[127.0.0.1]:"+fmt.Sprint(port)+" }\n", nil)
	in.Start()
	if err := send(in.Addr(), "sender@test.example", []string{"rcpt@far.example"}, testMessage("later")); err != nil {
		t.Fatal(err)
	}
	in.WaitLog("status=deferred")
	out, _ := in.Run("", "queue", "list")
	if !strings.Contains(out, "rcpt@far.example") || !strings.Contains(out, "Connection refused") && !strings.Contains(out, "connection refused") {
		t.Errorf("queue list must show the deferred recipient and why:\n%s", out)
	}
	sk := newSink(t, fmt.Sprintf("127.0.0.1:%d", port), nil)
	waitUntil(t, "delivery after the next hop returns", 20*time.Second, func() bool { return sk.Count("rcpt@far.example") == 1 })
	time.Sleep(2 * time.Second) // a second delivery would come within the backoff
	if n := sk.Count("rcpt@far.example"); n != 1 {
		t.Errorf("delivered %d times, want once", n)
	}
}

// 5xx from the next hop: the sender gets an RFC 3464 bounce.
func TestPermanentFailureBouncesToSender(t *testing.T) {
	sk := newSink(t, "", nil)
	sk.SetRcptErr("bad@far.example", &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user here"})
	in := newInstance(t, fmt.Sprintf("transport_maps = inline:{ far.example=smtp:[127.0.0.1]:%d }\n", sk.Port()), nil)
	in.Start()
	if err := send(in.Addr(), "alice@test.example", []string{"bad@far.example", "good@far.example"}, testMessage("will bounce")); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the bounce in alice's mailbox", 20*time.Second, func() bool { return len(in.MaildirMessages("alice")) == 1 })
	b := in.MaildirMessages("alice")[0]
	for _, want := range []string{"multipart/report", "report-type=delivery-status", "Final-Recipient: rfc822; bad@far.example", "Action: failed", "Status: 5.1.1", "no such user here", "Subject: will bounce"} {
		if !strings.Contains(b, want) {
			t.Errorf("bounce lacks %q:\n%s", want, b)
		}
	}
	if strings.Contains(b, "good@far.example") && strings.Contains(b, "Final-Recipient: rfc822; good@far.example") {
		t.Error("the delivered recipient must not be in the bounce")
	}
	if sk.Count("good@far.example") != 1 {
		t.Error("good@far.example must be delivered")
	}
	in.WaitLog("status=bounced")
	in.WaitLog("sender non-delivery notification")
}

func TestExpiryBouncesToSender(t *testing.T) {
	port := freePort(t)
	in := newInstance(t, fmt.Sprintf("transport_maps = inline:{ far.example=smtp:[127.0.0.1]:%d }\nmaximal_queue_lifetime = 3s\n", port), nil)
	in.Start()
	if err := send(in.Addr(), "alice@test.example", []string{"rcpt@far.example"}, testMessage("expires")); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the expiry bounce", 30*time.Second, func() bool { return len(in.MaildirMessages("alice")) == 1 })
	b := in.MaildirMessages("alice")[0]
	if !strings.Contains(b, "Final-Recipient: rfc822; rcpt@far.example") || !strings.Contains(b, "Action: failed") {
		t.Errorf("expiry bounce:\n%s", b)
	}
	in.WaitLog("status=expired")
}

func TestQueueCommands(t *testing.T) {
	port := freePort(t)
	in := newInstance(t, fmt.Sprintf("transport_maps = inline:{ far.example=smtp:[127.0.0.1]:%d }\nminimal_backoff_time = 1h\nmaximal_backoff_time = 1h\n", port), nil)
	in.Start()
	for i := 0; i < 2; i++ {
		if err := send(in.Addr(), "alice@test.example", []string{fmt.Sprintf("r%d@far.example", i)}, testMessage("q")); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, "two deferrals", 15*time.Second, func() bool { return strings.Count(in.Log.String(), "status=deferred") >= 2 })
	out, err := in.Run("", "queue", "list")
	if err != nil || strings.Count(out, "@far.example") != 2 {
		t.Fatalf("list: %v\n%s", err, out)
	}
	ids := harness.QueueIDs(out)
	if len(ids) != 2 {
		t.Fatalf("want 2 IDs in:\n%s", out)
	}
	if out, err := in.Run("", "queue", "hold", ids[0]); err != nil {
		t.Fatalf("hold: %v %s", err, out)
	}
	out, _ = in.Run("", "queue", "list")
	if !strings.Contains(out, ids[0]+"!") {
		t.Errorf("a held message is marked with '!':\n%s", out)
	}
	if out, err := in.Run("", "queue", "delete", ids[1]); err != nil {
		t.Fatalf("delete: %v %s", err, out)
	}
	if out, err := in.Run("", "queue", "delete", "NOSUCHID"); err == nil {
		t.Errorf("deleting an unknown ID must fail: %s", out)
	}
	sk := newSink(t, fmt.Sprintf("127.0.0.1:%d", port), nil)
	in.Run("", "queue", "flush")
	time.Sleep(1500 * time.Millisecond)
	if len(sk.Messages()) != 0 {
		t.Fatal("a held message was delivered")
	}
	if out, err := in.Run("", "queue", "release", ids[0]); err != nil {
		t.Fatalf("release: %v %s", err, out)
	}
	in.Run("", "queue", "flush")
	waitUntil(t, "delivery after release", 15*time.Second, func() bool { return len(sk.Messages()) == 1 })
	if sk.Count("r1@far.example") != 0 {
		t.Error("the deleted message was delivered")
	}
	in.Stop()
	out, err = in.Run("", "queue", "list")
	if err != nil || !strings.Contains(out, "Mail queue is empty") {
		t.Errorf("list on a stopped server: %v\n%s", err, out)
	}
}

func TestSendmail(t *testing.T) {
	in := newInstance(t, "", nil)
	in.Start()
	out, err := in.Run("Subject: from cron\n\nbackup done\n", "sendmail", "-f", "cron@test.example", "alice")
	if err != nil {
		t.Fatalf("sendmail: %v %s", err, out)
	}
	waitUntil(t, "delivery", 15*time.Second, func() bool { return len(in.MaildirMessages("alice")) == 1 })
	m := in.MaildirMessages("alice")[0]
	for _, want := range []string{"Subject: from cron", "backup done", "Return-Path: <cron@test.example>", "Message-Id:", "Date:"} {
		if !strings.Contains(m, want) {
			t.Errorf("message lacks %q:\n%s", want, m)
		}
	}
	// With the server stopped, sendmail still queues; the next start
	// delivers.
	in.Stop()
	if out, err := in.Run("To: bob@test.example\nSubject: t\n\nx\n", "sendmail", "-t"); err != nil {
		t.Fatalf("sendmail -t: %v %s", err, out)
	}
	in.Start()
	waitUntil(t, "delivery after restart", 15*time.Second, func() bool { return len(in.MaildirMessages("bob")) == 1 })
}

// SIGTERM with mail arriving: every message that got 250 is delivered
// (before the exit or after the restart), and the process exits 0.
func TestSIGTERMDrains(t *testing.T) {
	sk := newSink(t, "", nil)
	in := newInstance(t, fmt.Sprintf("transport_maps = inline:{ far.example=smtp:[127.0.0.1]:%d }\n", sk.Port()), nil)
	in.Start()
	var ok atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if send(in.Addr(), "s@test.example", []string{fmt.Sprintf("w%di%d@far.example", w, i)}, testMessage("drain")) == nil {
					ok.Add(1)
				}
			}
		}(w)
	}
	time.Sleep(700 * time.Millisecond)
	in.Stop()
	close(stop)
	wg.Wait()
	in.Start()
	want := int(ok.Load())
	waitUntil(t, fmt.Sprintf("%d deliveries", want), 30*time.Second, func() bool { return len(sk.Messages()) >= want })
	t.Logf("%d messages accepted around SIGTERM, %d delivered", want, len(sk.Messages()))
}

// kill -9 during a burst of 1000 messages, then restart: every message
// that got 250 is delivered; only those in flight at the kill may repeat.
func TestKill9LosesNothingAcknowledged(t *testing.T) {
	if testing.Short() {
		t.Skip("burst of 1000 messages")
	}
	sk := newSink(t, "", nil)
	in := newInstance(t, fmt.Sprintf("transport_maps = inline:{ far.example=smtp:[127.0.0.1]:%d }\n", sk.Port()), nil)
	in.Start()
	var mu sync.Mutex
	acked := map[string]bool{}
	var wg sync.WaitGroup
	var next atomic.Int64
	killed := make(chan struct{})
	for w := 0; w < 10; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > 1000 {
					return
				}
				rcpt := fmt.Sprintf("m%d@far.example", i)
				if send(in.Addr(), "s@test.example", []string{rcpt}, testMessage(rcpt)) == nil {
					mu.Lock()
					acked[rcpt] = true
					mu.Unlock()
				}
				if i == 400 {
					in.Kill()
					close(killed)
				}
			}
		}()
	}
	<-killed
	wg.Wait()
	in.Start()
	mu.Lock()
	n := len(acked)
	mu.Unlock()
	waitUntil(t, fmt.Sprintf("all %d acknowledged messages", n), 60*time.Second, func() bool {
		for r := range acked {
			if sk.Count(r) == 0 {
				return false
			}
		}
		return true
	})
	dups := 0
	for r := range acked {
		if sk.Count(r) > 1 {
			dups++
		}
	}
	t.Logf("1000 attempted, %d acknowledged with 250, 0 lost, %d delivered twice (in flight at the kill)", n, dups)
	if dups > 20 {
		t.Errorf("%d duplicates: more than deliveries in flight could explain", dups)
	}
}

func TestSTARTTLSInAndOut(t *testing.T) {
	dir := t.TempDir()
	_, _, sinkTLS := testCert(t, dir, "sink.test.example")
	sk := newSink(t, "", sinkTLS)
	in := newInstance(t, fmt.Sprintf("transport_maps = inline:{ far.example=smtp:[127.0.0.1]:%d }\nsmtp_tls_security_level = encrypt\nsmtpd_tls_cert_file = %s/cert.pem\nsmtpd_tls_key_file = %s/key.pem\n", sk.Port(), dir, dir), nil)
	in.Start()
	plain, err := smtp.Dial(in.Addr())
	if err != nil {
		t.Fatal(err)
	}
	if err := plain.Hello("client.example"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := plain.Extension("STARTTLS"); !ok {
		t.Fatal("STARTTLS not offered with a certificate configured")
	}
	plain.Close()
	conn, err := net.Dial("tcp", in.Addr())
	if err != nil {
		t.Fatal(err)
	}
	c, err := smtp.NewClientStartTLS(conn, &tlsInsecure)
	if err != nil {
		t.Fatalf("STARTTLS: %v", err)
	}
	if err := c.Noop(); err != nil {
		t.Fatal(err)
	}
	st, ok := c.TLSConnectionState()
	if !ok || st.Version < tls.VersionTLS12 {
		t.Errorf("TLS version %x, want 1.2 or newer", st.Version)
	}
	if err := c.Mail("s@test.example", nil); err != nil {
		t.Fatal(err)
	}
	c.Rcpt("rcpt@far.example", nil)
	w, _ := c.Data()
	w.Write([]byte(testMessage("tls")))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	c.Quit()
	waitUntil(t, "delivery over TLS", 15*time.Second, func() bool { return len(sk.Messages()) == 1 })
	tlsUsed := sk.TLS()[0]
	if !tlsUsed {
		t.Error("outgoing delivery did not use TLS under smtp_tls_security_level = encrypt")
	}
	if m := sk.Messages()[0]; !strings.Contains(m.Data, "with ESMTPS") {
		t.Errorf("Received: should say ESMTPS for a TLS session:\n%s", m.Data)
	}
}

func TestBadConfigRefusesToStart(t *testing.T) {
	in := newInstance(t, "smtpd_milters = inet:127.0.0.1:8891\nmydestinaton = x\n", nil)
	out, err := exec_(in, "serve")
	if err == nil {
		t.Fatal("serve must refuse a configuration with errors")
	}
	for _, want := range []string{"main.cf, line", "smtpd_milters", "did you mean mydestination?"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if _, err := os.Stat(filepath.Join(in.Dir, "queue")); err == nil {
		t.Error("a refused start must not create the queue")
	}
}

func exec_(in *instance, args ...string) (string, error) { return in.Run("", args...) }

// A reload with a valid configuration takes edited tables: routing
// follows the new transport map without a restart (DESIGN.md: tables are
// reloaded on SIGHUP / mailtee reload).
func TestReloadAppliesTables(t *testing.T) {
	one := newSink(t, "", nil)
	two := newSink(t, "", nil)
	in := newInstance(t, "transport_maps = hash:$config_directory/transport\n",
		map[string]string{"transport": fmt.Sprintf("far.example smtp:[127.0.0.1]:%d\n", one.Port())})
	in.Start()
	if err := send(in.Addr(), "s@test.example", []string{"a@far.example"}, testMessage("before")); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "delivery to the first next hop", 15*time.Second, func() bool { return one.Count("a@far.example") == 1 })
	os.WriteFile(filepath.Join(in.Dir, "transport"), []byte(fmt.Sprintf("far.example smtp:[127.0.0.1]:%d\n", two.Port())), 0o644)
	if out, err := in.Run("", "reload"); err != nil {
		t.Fatalf("reload: %v %s", err, out)
	}
	in.WaitLog("reload: tables, routing")
	if err := send(in.Addr(), "s@test.example", []string{"b@far.example"}, testMessage("after")); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "delivery to the second next hop", 15*time.Second, func() bool { return two.Count("b@far.example") == 1 })
	if one.Count("b@far.example") != 0 {
		t.Error("the old route was used after the reload")
	}
}
