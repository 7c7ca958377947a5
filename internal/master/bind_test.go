package master

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailtee/mailtee/internal/config"
	"github.com/mailtee/mailtee/internal/diag"
	"github.com/mailtee/mailtee/internal/maillog"
	"github.com/mailtee/mailtee/internal/qmgr"
)

// bindServer loads main.cf and master.cf (when not empty) from a new
// directory, checks them as serve would, and returns the server's
// agents with their clients.
func bindServer(t *testing.T, maincf, mastercf string) (map[string]qmgr.Agent, diag.List) {
	t.Helper()
	dir := t.TempDir()
	maincf = "queue_directory = " + dir + "/q\ndata_directory = " + dir + "/d\nalias_maps =\n" + maincf
	if err := os.WriteFile(filepath.Join(dir, "main.cf"), []byte(maincf), 0o644); err != nil {
		t.Fatal(err)
	}
	if mastercf != "" {
		writeMasterCF(t, dir, mastercf)
	}
	cfg, err := config.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	d, _ := Check(cfg)
	s := &Server{cfg: cfg, log: maillog.New(io.Discard, "test")}
	s.mf, _ = loadMaster(cfg)
	s.smtp = s.smtpClient(cfg, nil, "smtp")
	s.lmtp = s.lmtpClient(cfg, nil, "lmtp")
	return s.agents(), d
}

func bindOf(t *testing.T, agents map[string]qmgr.Agent, transport string) [2]string {
	t.Helper()
	a, ok := agents[transport].(qmgr.SMTPAgent)
	if !ok {
		t.Fatalf("transport %s: agent %T, want an SMTP or LMTP client", transport, agents[transport])
	}
	return [2]string{a.Client.BindAddr, a.Client.BindAddr6}
}

// TRANSPORT_bind_address (issue 18): the copy's transport leaves from
// its own address, every other client keeps smtp_bind_address; an -o
// smtp_bind_address on a service works as before, and an lmtp service
// has its own too.
func TestTransportBindAddress(t *testing.T) {
	master := transportsCF + `google    unix  -       -       n       -       -       smtp
legacy    unix  -       -       n       -       -       smtp
  -o smtp_bind_address=127.0.0.8
both      unix  -       -       n       -       -       smtp
  -o smtp_bind_address=127.0.0.8
  -o both_bind_address6=::1
dove      unix  -       -       n       -       -       lmtp
lmtp      unix  -       -       n       -       -       lmtp
`
	agents, d := bindServer(t, "smtp_bind_address = 127.0.0.2\ngoogle_bind_address = 127.0.0.7\ngoogle_bind_address6 = ::1\nboth_bind_address = 127.0.0.9\ndove_bind_address = 127.0.0.5\nmydestination = localhost\n", master)
	if d.HasErrors() {
		t.Fatalf("check: %v", d)
	}
	for _, f := range d {
		if strings.Contains(f.Msg, "bind_address") {
			t.Errorf("check says of a bind address: %v", f)
		}
	}
	for tr, want := range map[string][2]string{
		"smtp":   {"127.0.0.2", ""},
		"relay":  {"127.0.0.2", ""},
		"google": {"127.0.0.7", "::1"},
		"legacy": {"127.0.0.8", ""},
		// TRANSPORT_bind_address is the service's own: it wins over
		// smtp_bind_address, even one set with -o.
		"both": {"127.0.0.9", "::1"},
		"dove": {"127.0.0.5", ""},
		"lmtp": {"", ""},
	} {
		if got := bindOf(t, agents, tr); got != want {
			t.Errorf("transport %s binds to %q, want %q", tr, got, want)
		}
	}

	// smtp_bind_address_enforce, in main.cf or as a service's -o: a
	// copy that cannot leave from its address is deferred, not sent
	// from another the provider does not allow-list.
	agents, d = bindServer(t, "mydestination = localhost\ngoogle_bind_address = 127.0.0.7\n", transportsCF+"google    unix  -       -       n       -       -       smtp\n  -o smtp_bind_address_enforce=yes\n")
	if d.HasErrors() {
		t.Fatalf("check: %v", d)
	}
	if a := agents["google"].(qmgr.SMTPAgent); !a.Client.BindEnforce || agents["smtp"].(qmgr.SMTPAgent).Client.BindEnforce {
		t.Errorf("BindEnforce: google %v, smtp %v; want true, false", a.Client.BindEnforce, agents["smtp"].(qmgr.SMTPAgent).Client.BindEnforce)
	}

	// Without master.cf: relay_bind_address for the relay transport.
	agents, d = bindServer(t, "relay_bind_address = 127.0.0.6\nlmtp_bind_address = 127.0.0.4\nmydestination = localhost\n", "")
	if d.HasErrors() {
		t.Fatalf("check: %v", d)
	}
	if got := bindOf(t, agents, "relay"); got[0] != "127.0.0.6" {
		t.Errorf("relay binds to %q, want 127.0.0.6", got)
	}
	if got := bindOf(t, agents, "smtp"); got[0] != "" {
		t.Errorf("smtp binds to %q, want none", got)
	}
	if got := bindOf(t, agents, "lmtp"); got[0] != "127.0.0.4" {
		t.Errorf("lmtp binds to %q, want 127.0.0.4", got)
	}
}

// A bad TRANSPORT_bind_address fails check as a bad smtp_bind_address
// does: main.cf's line, or master.cf's for an -o.
func TestTransportBindAddressCheck(t *testing.T) {
	master := transportsCF + "google    unix  -       -       n       -       -       smtp\n  -o google_bind_address6=127.0.0.1\n"
	_, d := bindServer(t, "mydestination = localhost\ngoogle_bind_address = aspmx.example\n", master)
	var main, mcf bool
	for _, f := range d {
		if f.Severity != diag.Error {
			continue
		}
		switch {
		case filepath.Base(f.File) == "main.cf" && f.Line == 5 && strings.Contains(f.Msg, `google_bind_address: "aspmx.example": not an IPv4 address`):
			main = true
		case filepath.Base(f.File) == "master.cf" && f.Line == 6 && strings.Contains(f.Msg, "-o google_bind_address6") && strings.Contains(f.Msg, "not an IPv6 address"):
			mcf = true
		default:
			t.Errorf("unexpected error: %v", f)
		}
	}
	if !main || !mcf {
		t.Errorf("findings %v; want main.cf line 5 and master.cf line 6", d)
	}
	// A name that is no smtp or lmtp service's stays unknown.
	_, d = bindServer(t, "mydestination = localhost\nnosuch_bind_address = 127.0.0.1\n", transportsCF)
	if !d.HasErrors() || !strings.Contains(d.Err().Error(), "nosuch_bind_address: unknown parameter") {
		t.Errorf("nosuch_bind_address: %v", d)
	}
}
