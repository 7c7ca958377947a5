package master

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailtee/mailtee/internal/config"
	"github.com/mailtee/mailtee/internal/diag"
)

// stockFiles are the stock main.cf files of testdata/stock (see its
// README for how each was made).
var stockFiles = []string{"main.cf.debian", "main.cf.dist", "main.cf.internet-site", "main.cf.rhel"}

// loadStock parses a stock file as if it were DIR/main.cf.
func loadStock(t *testing.T, name string) *config.Config {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "stock", name))
	if err != nil {
		t.Fatal(err)
	}
	return config.Parse("testdata/stock", name, data)
}

// checkAll is every finding `mailtee check` prints (cmd/mailtee/check.go).
func checkAll(cfg *config.Config) diag.List {
	all, opened := Check(cfg)
	all = append(all, MailboxFindings(cfg)...)
	_, sockets := LMTPSockets(cfg, opened)
	return append(all, sockets...)
}

// hostFile reports a finding about a file that the stock configuration
// names and that belongs to its distribution's host (RHEL's
// /etc/pki/tls/certs/postfix.pem, Debian's snakeoil certificate when
// ssl-cert is not installed): on its own host it is there.
func hostFile(d diag.Diag) bool {
	return (strings.HasPrefix(d.Msg, "smtpd_tls_cert_file: ") || strings.HasPrefix(d.Msg, "smtpd_tls_key_file: ")) &&
		strings.Contains(d.Msg, "no such file or directory")
}

// Issue 14: Debian's three stock configurations (main.cf.debian,
// main.cf.dist, the "Internet Site" file its installer writes) and
// RHEL's load and pass every check `mailtee check` runs, with warnings
// only.
func TestStockConfigurations(t *testing.T) {
	for _, name := range stockFiles {
		cfg := loadStock(t, name)
		for _, d := range checkAll(cfg) {
			switch {
			case d.Severity == diag.Error && hostFile(d):
				t.Logf("%s: not this distribution's host: %v", name, d)
			case d.Severity == diag.Error:
				t.Errorf("%s: %v", name, d)
			default:
				t.Logf("%v", d)
			}
		}
	}
}

// Issue 14: RHEL's stock main.cf names Postfix's queue and data
// directories; mailtee's queue stays its own, Postfix's serves for its
// sockets, and check says so at those lines.
func TestStockRHELDirectories(t *testing.T) {
	cfg := loadStock(t, "main.cf.rhel")
	if got := QueueDir(cfg); got != "/var/spool/mailtee" {
		t.Errorf("QueueDir = %q, want /var/spool/mailtee", got)
	}
	if got := postfixQueueDir(cfg); got != "/var/spool/postfix" {
		t.Errorf("postfix_queue_directory = %q, want /var/spool/postfix", got)
	}
	if got := cfg.DataDirectory(); got != "/var/lib/mailtee" {
		t.Errorf("DataDirectory = %q, want /var/lib/mailtee", got)
	}
	all := checkAll(cfg)
	if d := one(t, all, diag.Info, "queue_directory = /var/spool/postfix is Postfix's queue; mailtee keeps its queue in /var/spool/mailtee"); d.Line != 2 {
		t.Errorf("want line 2: %v", d)
	}
	if d := one(t, all, diag.Info, "data_directory = /var/lib/postfix is Postfix's data directory"); d.Line != 5 {
		t.Errorf("want line 5: %v", d)
	}
}

// A directory laid out as a Postfix queue is refused as mailtee's queue
// as /var/spool/postfix is, and its sockets are still found under it.
func TestPostfixShapedQueueRefused(t *testing.T) {
	dir := t.TempDir()
	pq := filepath.Join(dir, "pfqueue")
	for _, sub := range []string{"active", "deferred", "maildrop", "pid", "private"} {
		os.MkdirAll(filepath.Join(pq, sub), 0o700)
	}
	cfg := localCfg(t, dir, "queue_directory = "+pq+"\n")
	if got := QueueDir(cfg); got != "/var/spool/mailtee" {
		t.Errorf("QueueDir = %q, want /var/spool/mailtee", got)
	}
	if got := postfixQueueDir(cfg); got != pq {
		t.Errorf("postfix_queue_directory = %q, want %q", got, pq)
	}
	all, _ := Check(cfg)
	one(t, all, diag.Info, "queue_directory = "+pq+" is laid out as Postfix's queue")
	// A queue of mailtee's own, as every test sets one, is kept.
	own := filepath.Join(dir, "queue")
	if got := QueueDir(localCfg(t, dir, "queue_directory = "+own+"\n")); got != own {
		t.Errorf("QueueDir = %q, want %q", got, own)
	}
}

// Issue 14, "done when": on each of Debian's stock configurations, local
// mail is mbox in /var/mail, as Postfix delivers it there. What check
// says is asserted here; test/e2e's TestStockDebianLocalDelivery
// delivers to a real user's /var/mail/USER on each of them.
func TestStockLocalDelivery(t *testing.T) {
	if st, err := os.Stat("/var/mail"); err != nil || !st.IsDir() {
		t.Skip("no /var/mail on this host")
	}
	for _, name := range stockFiles {
		cfg := loadStock(t, name)
		one(t, LocalDeliveryFindings(cfg), diag.Info, "local mail is delivered to the mbox file /var/mail/USER of each user")
	}
}
