package master

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/config"
	"github.com/mailtee/mailtee/internal/diag"
	"github.com/mailtee/mailtee/internal/mastercf"
	"github.com/mailtee/mailtee/internal/pace"
	"github.com/mailtee/mailtee/internal/ratelimit"
)

// The pacing of each SMTP and LMTP transport comes from main.cf:
// TRANSPORT_X, else default_X, with Postfix's defaults; a master.cf
// service gets its own by its name; the client's own settings (TLS
// none, a reuse limit) may come from the service's -o and keep the
// profile's away; bad values are findings at their line, once.
func TestPacingTransports(t *testing.T) {
	maincf := `default_recipient_rate_limit = 50/1m, 3000/1h
google_recipient_rate_limit = 5/5s
google_destination_rate_delay = 2s
google_destination_profile = google
relay_destination_recipient_limit = 1
`
	cfg := config.Parse("/etc/postfix", "/etc/postfix/main.cf", []byte(maincf))
	mf, d := mastercf.Parse("/etc/postfix/master.cf", []byte("smtp unix - - n - - smtp\nrelay unix - - n - - smtp\ngoogle unix - - n - - smtp\n  -o smtp_tls_security_level=none\nlocal unix - n n - - local\n"))
	if d.HasErrors() {
		t.Fatal(d)
	}
	ts, d := pacingTransports(cfg, mf)
	if len(d) != 0 {
		t.Fatalf("findings: %v", d)
	}
	if _, ok := ts["local"]; ok || len(ts) != 3 {
		t.Errorf("paced transports %v, want smtp, relay and google", ts)
	}
	g := ts["google"]
	if g.Profile != "google" || g.Limits.RateDelay != 2*time.Second || ratelimit.FormatWindows(g.Limits.RecipientRate) != "5/5s" ||
		g.Explicit&pace.TLSLevel == 0 || g.Explicit&pace.RecipientRate == 0 || g.Explicit&pace.Concurrency != 0 || !g.SMTP {
		t.Errorf("google: %+v", g)
	}
	s := ts["smtp"]
	if s.Profile != "auto" || ratelimit.FormatWindows(s.Limits.RecipientRate) != "50/1m, 3000/1h" || s.Limits.Concurrency != 20 || s.Limits.RecipientLimit != 50 || s.Explicit&pace.TLSLevel != 0 {
		t.Errorf("smtp: %+v", s)
	}
	if r := ts["relay"]; r.Limits.RecipientLimit != 1 || r.Explicit&pace.RecipientLimit == 0 {
		t.Errorf("relay: %+v", r)
	}

	bad := config.Parse("/etc/postfix", "/etc/postfix/main.cf", []byte("default_recipient_rate_limit = 50/1x\ngoogle_destination_profile = gmail\n"))
	_, d = pacingTransports(bad, mf)
	msgs := d.Err().Error()
	if len(d) != 2 || !strings.Contains(msgs, "line 1: default_recipient_rate_limit = 50/1x") || !strings.Contains(msgs, "line 2: google_destination_profile = gmail") {
		t.Errorf("findings %v: want one for each bad line, with its line", d)
	}
}

// A master.cf SMTP service's -o of its pacing parameters is honoured
// (serve paces the transport with it), so check must not say otherwise,
// and a bad value is an error at master.cf's line, not main.cf's.
func TestPacingOverrides(t *testing.T) {
	dir := t.TempDir()
	writeMainCF(t, dir, freePort(t), "", "")
	writeMasterCF(t, dir, transportsCF+"gmail unix - - n - - smtp\n  -o gmail_recipient_rate_limit=5/5s\n  -o gmail_destination_profile=gogle\n")
	mcf := filepath.Join(dir, "master.cf")
	cfg := reload(t, dir)
	mf, _ := loadMaster(cfg)
	pacing, _ := pacingTransports(cfg, mf)
	if got := ratelimit.FormatWindows(pacing["gmail"].Limits.RecipientRate); got != "5/5s" {
		t.Fatalf("serve paces gmail with %q, want the -o's 5/5s", got)
	}
	d := findings(t, dir)
	for _, x := range d {
		if x.Line == 6 && x.File == mcf {
			t.Errorf("finding on an honoured, valid -o: %v", x)
		}
	}
	if !hasFinding(d, diag.Error, mcf, 7, "gmail_destination_profile = gogle") {
		t.Errorf("want the bad profile as an error at master.cf line 7: %v", d)
	}
}
