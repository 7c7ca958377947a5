package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// SMTPUTF8 through a real mailtee, as Postfix handles it: offered in
// EHLO (smtputf8_enable = yes), UTF-8 addresses accepted, the flag kept
// in the queue and passed on to a next hop that offers it; to one that
// does not, a message that needs it bounces with 5.6.7 and one that
// only asked for it goes without (src/smtp/smtp_proto.c). A UTF-8 local
// recipient is delivered to its Maildir.
func TestSMTPUTF8NextHops(t *testing.T) {
	withUTF8 := newSink(t, "", nil, func(s *smtp.Server) { s.EnableSMTPUTF8 = true })
	without := newSink(t, "", nil)
	// Postfix offers SMTPUTF8 from compatibility_level 1 on (its default
	// is 0; Debian writes 3.6), and so does mailtee.
	in := newInstance(t, fmt.Sprintf(`compatibility_level = 3.6
relay_domains = u.example, p.example
transport_maps = inline:{ u.example=smtp:[127.0.0.1]:%d, p.example=smtp:[127.0.0.1]:%d }
`, withUTF8.Port(), without.Port()), map[string]string{"aliases": "postmaster: admin\njos\u00e9: jose\n"})
	logOnFailure(t, "mailtee", in)
	in.Start()

	c := dialRaw(t, in.Addr(), "127.0.0.1")
	fmt.Fprintf(c.Conn, "EHLO client.example\r\n")
	var ehlo []string
	for {
		line, err := c.R.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		ehlo = append(ehlo, strings.TrimSpace(line))
		if line[3] == ' ' {
			break
		}
	}
	if !strings.Contains(strings.Join(ehlo, "\n"), "SMTPUTF8") {
		t.Fatalf("EHLO does not offer SMTPUTF8: %q", ehlo)
	}
	must := func(line, want string) {
		t.Helper()
		if got := c.Cmd(line); !strings.HasPrefix(got, want) {
			t.Fatalf("%q: %q, want %q", line, got, want)
		}
	}
	msg := func(from, opts, rcpt, subject string) {
		t.Helper()
		must("MAIL FROM:<"+from+">"+opts, "250 2.1.0 Ok")
		must("RCPT TO:<"+rcpt+">", "250 2.1.5 Ok")
		must("DATA", "354 ")
		must("From: <"+from+">\r\nSubject: "+subject+"\r\n\r\nbody\r\n.", "250 2.0.0 Ok: queued as ")
	}
	msg("sender@outside.example", " SMTPUTF8", "j\u00f6ran@u.example", "caf\u00e9") // passed on with SMTPUTF8
	msg("sender@outside.example", " SMTPUTF8", "j\u00f6ran@p.example", "needs it")  // bounces: 5.6.7
	msg("sender@outside.example", " SMTPUTF8", "ascii@p.example", "plain")          // goes without
	msg("sender@outside.example", "", "ascii@u.example", "not asked")               // no SMTPUTF8
	msg("sender@outside.example", " SMTPUTF8", "jos\u00e9@test.example", "local")   // alias to jose
	must("QUIT", "221 2.0.0 Bye")
	// Local submission with a UTF-8 header: smtputf8_autodetect_classes
	// (default sendmail, verify) makes it ask for SMTPUTF8.
	if out, err := in.Run("Subject: r\u00e9sum\u00e9\n\nfrom sendmail\n", "sendmail", "-f", "root@test.example", "cron@u.example"); err != nil {
		t.Fatalf("sendmail: %v %s", err, out)
	}

	waitUntil(t, "the deliveries", 20*time.Second, func() bool {
		return withUTF8.Total() == 3 && without.Total() == 1 && len(in.MaildirMessages("jose")) == 1 &&
			strings.Contains(in.Log.String(), "dsn=5.6.7")
	})
	for _, m := range withUTF8.Messages() {
		want := m.To[0] == "j\u00f6ran@u.example" || m.To[0] == "cron@u.example"
		if m.UTF8 != want {
			t.Errorf("to %v: SMTPUTF8 %v, want %v", m.To, m.UTF8, want)
		}
		if m.To[0] == "j\u00f6ran@u.example" && !strings.Contains(m.Data, "Subject: caf\u00e9") {
			t.Errorf("content changed: %q", m.Data)
		}
	}
	if m := without.Messages()[0]; m.To[0] != "ascii@p.example" || m.UTF8 {
		t.Errorf("to the server without SMTPUTF8: %+v", m)
	}
	in.WaitLog("to=<j\u00f6ran@p.example>")
	for _, want := range []string{"dsn=5.6.7, status=bounced (SMTPUTF8 is required, but was not offered by host 127.0.0.1[127.0.0.1])"} {
		if !strings.Contains(in.Log.String(), want) {
			t.Errorf("log lacks %q", want)
		}
	}
}
