package e2e

import (
	"fmt"
	"net/smtp"
	"os"
	"strings"
	"testing"
	"time"
)

// stockMasterCF is Debian's master.cf.dist (see
// internal/mastercf/testdata/README.md).
func stockMasterCF(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../../internal/mastercf/testdata/master.cf.dist")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Debian's stock master.cf plus a listener of its own: mailtee serves
// the smtp service on smtpd_port (which replaces its port) and the
// 127.0.0.1:PORT service, whose -o smtpd_recipient_restrictions=reject
// refuses every recipient there and only there.
func TestMasterCFServices(t *testing.T) {
	p2 := freePort(t)
	in := newInstance(t, "", map[string]string{"master.cf": stockMasterCF(t) +
		fmt.Sprintf("127.0.0.1:%d inet n - n - - smtpd\n  -o smtpd_recipient_restrictions=reject\n", p2)})
	in.Start()
	if err := send(in.Addr(), "s@test.example", []string{"postmaster@test.example"}, testMessage("via smtp")); err != nil {
		t.Fatalf("smtp service: %v", err)
	}
	waitUntil(t, "delivery to admin's mailbox", 15*time.Second, func() bool { return len(in.MaildirMessages("admin")) == 1 })
	c, err := smtp.Dial(fmt.Sprintf("127.0.0.1:%d", p2))
	if err != nil {
		t.Fatalf("second service: %v", err)
	}
	defer c.Close()
	if err := c.Mail("s@test.example"); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("postmaster@test.example"); err == nil || !strings.Contains(err.Error(), "Recipient address rejected: Access denied") {
		t.Errorf("RCPT on the service with -o smtpd_recipient_restrictions=reject: %v", err)
	}
	in.WaitLog(fmt.Sprintf("listening on 127.0.0.1:%d, queue", p2))
}

// An amavis content filter (amavisd-new's README.postfix: the
// smtp-amavis transport, the re-injection smtpd, main.cf's
// content_filter) makes serve refuse to start, naming master.cf's line
// and main.cf's, and saying what to do.
func TestMasterCFAmavisRefused(t *testing.T) {
	stock := stockMasterCF(t)
	line := strings.Count(stock, "\n") + 1
	in := newInstance(t, "content_filter = smtp-amavis:[127.0.0.1]:10024\n", map[string]string{"master.cf": stock + `smtp-amavis     unix    -       -       n       -       2       smtp
        -o smtp_data_done_timeout=1200
        -o smtp_send_xforward_command=yes
127.0.0.1:10025 inet    n       -       n       -       -       smtpd
        -o content_filter=
        -o smtpd_recipient_restrictions=permit_mynetworks,reject
        -o mynetworks=127.0.0.0/8
`})
	out, err := in.Run("", "serve")
	if err == nil {
		t.Fatal("serve started with an amavis content filter")
	}
	for _, want := range []string{
		fmt.Sprintf("master.cf, line %d: service smtp-amavis (unix, smtp): this is the content filter that main.cf's content_filter", line),
		"main.cf, line 16: content filters: not implemented by mailtee",
		"remove content_filter and the filter's services",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// A master.cf smtp service with -o smtp_tcp_port delivers to that port:
// the SMTP client of a transport honours the overrides it has settings
// for.
func TestMasterCFTransportOverride(t *testing.T) {
	sink := newSink(t, "", nil)
	in := newInstance(t, "transport_maps = texthash:$config_directory/transport\n", map[string]string{
		"transport": "far.example fast:[127.0.0.1]\n",
		"master.cf": stockMasterCF(t) + fmt.Sprintf("fast unix - - n - - smtp\n  -o smtp_tcp_port=%d\n  -o smtp_helo_name=fast.test.example\n", sink.Port()),
	})
	if out, err := in.Run("", "check"); err != nil || strings.Contains(out, "smtp_tcp_port") {
		t.Errorf("check: %v\n%s", err, out)
	}
	in.Start()
	if err := send(in.Addr(), "s@test.example", []string{"a@far.example"}, testMessage("fast")); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "delivery through the fast transport", 15*time.Second, func() bool { return sink.Count("a@far.example") == 1 })
}
