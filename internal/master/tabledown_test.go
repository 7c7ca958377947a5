package master

import (
	"fmt"
	"net/smtp"
	"net/textproto"
	"strings"
	"testing"

	"github.com/mailtee/mailtee/internal/socketmap/smtest"
)

// downMaps answers local, virtual, relay and transport maps for
// tabledown tests.
func downMaps(name, key string) smtest.Reply {
	switch name + " " + key {
	case "local alice@example.org", "relay bob@relay.example":
		return smtest.OK("ok")
	}
	return smtest.NotFound()
}

// A socketmap server that is down never stops check, serve or a reload:
// check warns under each parameter, RCPT is answered 451 4.3.0 while it
// is down, and the same server (no reload) accepts once it answers.
func TestSocketmapDown(t *testing.T) {
	srv := smtest.New(t, "tcp", downMaps)
	srv.Stop()
	dir := t.TempDir()
	port := freePort(t)
	extra := "mydestination = example.org\nrelay_domains = relay.example\n" +
		"local_recipient_maps = " + srv.Spec("local") + "\n" +
		"virtual_alias_maps = " + srv.Spec("virtual") + "\n" +
		"relay_recipient_maps = " + srv.Spec("relay") + "\n" +
		"transport_maps = " + srv.Spec("transport") + "\n"
	cfg := writeMainCF(t, dir, port, "", extra)
	findings, opened := Check(cfg)
	if findings.HasErrors() {
		t.Fatalf("check with the socketmap server down: %v", findings)
	}
	warns := ProbeTables(cfg, opened)
	all := fmt.Sprint(warns)
	for _, p := range []string{"local_recipient_maps", "virtual_alias_maps", "relay_recipient_maps", "transport_maps"} {
		if !strings.Contains(all, "warning: "+cfg.File) || !strings.Contains(all, p+": socketmap:inet:") {
			t.Errorf("no warning for %s: %v", p, warns)
		}
	}
	if len(warns) != 4 || !strings.Contains(warns[0].Msg, "server unreachable: ") || !strings.HasSuffix(warns[0].Msg, "; mail that needs this table is deferred until it answers") || warns[0].Line == 0 {
		t.Errorf("warnings: %v", warns)
	}

	s, _ := serve(t, cfg)
	addr := s.listeners[0].Addr().String()
	rcpt := func(to string) (int, string) {
		t.Helper()
		c, err := smtp.Dial(addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Mail("someone@example.net"); err != nil {
			t.Fatal(err)
		}
		if err := c.Rcpt(to); err != nil {
			var te *textproto.Error
			if e, ok := err.(*textproto.Error); ok {
				te = e
				return te.Code, te.Msg
			}
			t.Fatal(err)
		}
		return 250, ""
	}
	for _, to := range []string{"alice@example.org", "bob@relay.example"} {
		if code, msg := rcpt(to); code != 451 || msg != "4.3.0 <"+to+">: Temporary lookup failure" {
			t.Errorf("RCPT TO:<%s> with the table down: %d %s", to, code, msg)
		}
	}
	if err := s.Reload(dir); err != nil {
		t.Errorf("reload with the table down: %v", err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	if n := len(ProbeTables(cfg, opened)); n != 0 {
		t.Errorf("%d warnings with the server up", n)
	}
	for _, to := range []string{"alice@example.org", "bob@relay.example"} {
		if code, msg := rcpt(to); code != 250 {
			t.Errorf("RCPT TO:<%s> with the table up: %d %s", to, code, msg)
		}
	}
	if code, msg := rcpt("carol@example.org"); code != 550 {
		t.Errorf("RCPT TO:<carol@example.org>, not in the table: %d %s", code, msg)
	}
}
