package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/socketmap/smtest"
)

// A lookup table that is down never loses or misroutes mail: what needs
// it waits (4xx at RCPT, deferred in the queue), nothing is bounced or
// sent elsewhere, and once the table answers every message is delivered
// once, without a reload. The tables are socketmap servers on loopback,
// stopped and started by the test.

// TestTableDownRCPT: recipients checked against a table that is down are
// answered as Postfix answers them, "451 4.3.0 <addr>: Temporary lookup
// failure"; a message whose rewriting needs the table (virtual_alias_maps
// in cleanup) is refused with 451 at the end of DATA, and a local
// submission waits in the maildrop. check warns and passes.
func TestTableDownRCPT(t *testing.T) {
	sk := newSink(t, "", nil)
	srv := smtest.New(t, "tcp", func(name, key string) smtest.Reply {
		switch name + " " + key {
		case "local alice@test.example", "relay ok@relay.example":
			return smtest.OK("ok")
		case "virtual v@virt.example":
			return smtest.OK("alice@test.example")
		case "virtual fwd@test.example":
			return smtest.OK("fwd@far.example")
		}
		return smtest.NotFound()
	})
	srv.Stop()
	in := newInstance(t, fmt.Sprintf(`local_recipient_maps = %s
virtual_alias_maps = %s
virtual_alias_domains = virt.example
relay_domains = relay.example
relay_recipient_maps = %s
transport_maps = inline:{ far.example=smtp:[127.0.0.1]:%d, relay.example=smtp:[127.0.0.1]:%d }
`, srv.Spec("local"), srv.Spec("virtual"), srv.Spec("relay"), sk.Port(), sk.Port()), nil)

	out, err := in.Run("", "check")
	if err != nil {
		t.Fatalf("check with the tables down must pass (warnings only): %v\n%s", err, out)
	}
	for _, p := range []string{"local_recipient_maps", "virtual_alias_maps", "relay_recipient_maps"} {
		if !strings.Contains(out, "warning: "+in.Dir+"/main.cf, line ") || !strings.Contains(out, p+": "+srv.Spec("")) {
			t.Errorf("check does not warn about %s:\n%s", p, out)
		}
	}
	in.Start()

	c := dialRaw(t, in.Addr(), "")
	c.Cmd("EHLO client.example")
	c.Cmd("MAIL FROM:<s@outside.example>")
	for _, to := range []string{"alice@test.example", "v@virt.example", "ok@relay.example"} {
		if r, want := c.Cmd("RCPT TO:<"+to+">"), "451 4.3.0 <"+to+">: Temporary lookup failure"; r != want {
			t.Errorf("RCPT TO:<%s> with the table down: %q, want %q", to, r, want)
		}
	}
	c.Cmd("RSET")
	// From mynetworks to a domain no table guards: RCPT passes, but
	// cleanup's virtual alias lookup cannot, so DATA is refused for now.
	c.Cmd("MAIL FROM:<s@test.example>")
	if r := c.Cmd("RCPT TO:<fwd@test.example>"); !strings.HasPrefix(r, "451 4.3.0") {
		t.Errorf("RCPT TO:<fwd@test.example>: %q", r)
	}
	c.Cmd("RCPT TO:<x@far.example>")
	c.Cmd("DATA")
	if r := c.Cmd("Subject: refused for now\r\n\r\nbody\r\n."); !strings.HasPrefix(r, "451 4.3.0") {
		t.Errorf("end of DATA with virtual_alias_maps down: %q", r)
	}
	c.Cmd("QUIT")

	// A local submission waits in the maildrop for the table.
	if out, err := in.Run("From: s@test.example\nSubject: dropped\n\nbody\n", "sendmail", "-f", "s@test.example", "fwd@test.example"); err != nil {
		t.Fatalf("sendmail: %v %s", err, out)
	}
	in.WaitLog("cannot queue it now, will try again")

	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	// The same running server, no reload.
	c = dialRaw(t, in.Addr(), "")
	c.Cmd("EHLO client.example")
	c.Cmd("MAIL FROM:<s@outside.example>")
	for _, to := range []string{"alice@test.example", "v@virt.example", "ok@relay.example"} {
		if r := c.Cmd("RCPT TO:<" + to + ">"); !strings.HasPrefix(r, "250") {
			t.Errorf("RCPT TO:<%s> with the table up: %q", to, r)
		}
	}
	if r := c.Cmd("RCPT TO:<nobody@test.example>"); !strings.HasPrefix(r, "550 5.1.1") {
		t.Errorf("RCPT TO:<nobody@test.example> with the table up: %q", r)
	}
	c.Cmd("QUIT")
	waitUntil(t, "the dropped message, through the virtual alias", 20*time.Second, func() bool { return sk.Count("fwd@far.example") == 1 })
	time.Sleep(2 * time.Second) // a second delivery would come within the backoff
	if n := sk.Count("fwd@far.example"); n != 1 {
		t.Errorf("the dropped message was delivered %d times", n)
	}
	if strings.Contains(in.Log.String(), "status=bounced") {
		t.Errorf("a bounce:\n%s", in.Log.String())
	}
}

// TestTableDownQueued: mail accepted while transport_maps and alias_maps
// are down (RCPT does not need them) is deferred with the reason, shown
// in the queue listing, never bounced and never sent the way it would go
// without the table (relayhost here, a second sink that must stay empty);
// when the tables answer, each recipient gets the message once. The two
// tables are two servers, brought back one after the other, so that the
// alias lookup at local delivery is seen to wait too.
func TestTableDownQueued(t *testing.T) {
	good := newSink(t, "", nil)
	wrong := newSink(t, "", nil)
	transport := smtest.New(t, "unix", func(name, key string) smtest.Reply {
		// Postfix asks a socketmap (a pattern table) only with the full
		// address, never its domain.
		if name == "transport" && strings.HasSuffix(key, "@far.example") {
			return smtest.OK(fmt.Sprintf("smtp:[127.0.0.1]:%d", good.Port()))
		}
		return smtest.NotFound()
	})
	aliases := smtest.New(t, "tcp", func(name, key string) smtest.Reply {
		if name+" "+key == "aliases team" {
			return smtest.OK("alice, bob")
		}
		return smtest.NotFound()
	})
	transport.Stop()
	aliases.Stop()
	in := newInstance(t, fmt.Sprintf(`transport_maps = %s
alias_maps = %s
relayhost = [127.0.0.1]:%d
`, transport.Spec("transport"), aliases.Spec("aliases"), wrong.Port()), nil)
	in.Start()
	if err := send(in.Addr(), "sender@test.example", []string{"rcpt@far.example"}, testMessage("routed by the table")); err != nil {
		t.Fatal(err)
	}
	if err := send(in.Addr(), "sender@test.example", []string{"team@test.example"}, testMessage("an alias in the table")); err != nil {
		t.Fatal(err)
	}
	deferred := func(what string, want ...string) {
		t.Helper()
		waitUntil(t, what, 20*time.Second, func() bool {
			out, _ := in.Run("", "queue", "list")
			for _, w := range want {
				if !strings.Contains(out, w) {
					return false
				}
			}
			return true
		})
	}
	deferred("both deferred by transport_maps", "rcpt@far.example", "team@test.example",
		`(transport_maps lookup of "rcpt@far.example": table `+transport.Spec("transport")+" lookup error: ",
		`(transport_maps lookup of "team@test.example": table `+transport.Spec("transport")+" lookup error: ")
	// Retries while it is down change nothing.
	time.Sleep(3 * time.Second)
	quiet := func() {
		t.Helper()
		if n := wrong.Total(); n != 0 {
			t.Errorf("%d messages went to relayhost, the route without the table", n)
		}
		if l := in.Log.String(); strings.Contains(l, "status=bounced") || len(in.MaildirMessages("sender")) != 0 {
			t.Errorf("a bounce:\n%s", l)
		}
	}
	quiet()

	if err := transport.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if t.Failed() {
			t.Log(in.Log.String())
		}
	}()
	waitUntil(t, "far.example's delivery once transport_maps answers", 20*time.Second, func() bool { return good.Count("rcpt@far.example") == 1 })
	deferred("the alias deferred by alias_maps", "team@test.example", "alias lookup failed for team@test.example: table "+aliases.Spec("aliases")+" lookup error: ")
	if strings.Contains(in.Log.String(), "to=<alice@test.example>") || len(in.MaildirMessages("team")) != 0 {
		t.Errorf("team@test.example delivered without its alias:\n%s", in.Log.String())
	}
	quiet()

	if err := aliases.Start(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the alias's deliveries once alias_maps answers", 20*time.Second, func() bool {
		return len(in.MaildirMessages("alice")) == 1 && len(in.MaildirMessages("bob")) == 1
	})
	time.Sleep(2 * time.Second) // a second delivery would come within the backoff
	if good.Count("rcpt@far.example") != 1 || len(in.MaildirMessages("alice")) != 1 || len(in.MaildirMessages("bob")) != 1 || len(in.MaildirMessages("team")) != 0 {
		t.Errorf("after recovery: far %d, alice %d, bob %d, team %d; want 1, 1, 1, 0",
			good.Count("rcpt@far.example"), len(in.MaildirMessages("alice")), len(in.MaildirMessages("bob")), len(in.MaildirMessages("team")))
	}
	quiet()
	if out, _ := in.Run("", "queue", "list"); strings.Contains(out, "@") {
		t.Errorf("the queue is not empty:\n%s", out)
	}
}

// TestTableDownLocalDomain: when mydestination names a table that is
// down, whether a domain is local is unknown, and so is whether a bare
// "user" key of virtual_alias_maps applies to it: the message must wait
// (Postfix's mail_addr_find fails the lookup), not be queued without its
// alias and then delivered to the mailbox the alias replaces.
func TestTableDownLocalDomain(t *testing.T) {
	sk := newSink(t, "", nil)
	srv := smtest.New(t, "tcp", func(name, key string) smtest.Reply {
		if name+" "+key == "mydest tab.example" {
			return smtest.OK("tab.example")
		}
		return smtest.NotFound()
	})
	srv.Stop()
	in := newInstance(t, fmt.Sprintf(`mydestination = %s, $myhostname, localhost
virtual_alias_maps = inline:{ info=alice@far.example }
transport_maps = inline:{ far.example=smtp:[127.0.0.1]:%d }
`, srv.Spec("mydest"), sk.Port()), nil)
	in.Start()
	if out, err := in.Run("From: s@test.example\nSubject: to info\n\nbody\n", "sendmail", "-f", "s@test.example", "info@tab.example"); err != nil {
		t.Fatalf("sendmail: %v %s", err, out)
	}
	time.Sleep(3 * time.Second) // retries while the table is down
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the message, through the alias, once mydestination answers", 20*time.Second, func() bool {
		return sk.Count("alice@far.example") == 1 || len(in.MaildirMessages("info")) > 0
	})
	time.Sleep(2 * time.Second)
	if n, m := sk.Count("alice@far.example"), len(in.MaildirMessages("info")); n != 1 || m != 0 {
		t.Errorf("alice@far.example got %d, the mailbox info %d; want 1 and 0:\n%s", n, m, in.Log.String())
	}
}
