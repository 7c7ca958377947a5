// Package badconfig is the bad-configuration suite, after chasquid's
// test/t-20-bad_configs: every parameter mailtee implements, given a
// wrong value, must make `mailtee check` exit 1 with an error that names
// main.cf, the line and the parameter. Whatever check lets through, serve
// meets at start-up or, worse, at every message.
//
// The parameters come from config.ImplementedParams, so a parameter
// implemented later without a wrong value here (or a reasoned exemption)
// fails TestEveryParameter.
//
// Set MAILTEE_BIN to test a binary built elsewhere.
package badconfig

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/mailtee/mailtee/internal/config"
	"github.com/mailtee/mailtee/test/internal/harness"
)

func TestMain(m *testing.M) { harness.Main(m, "badconfig", harness.BinFromEnv) }

// bad gives the wrong value of the parameters whose shape (see derive)
// does not say what is wrong. Each is wrong in the way a person gets it
// wrong: a typo, the wrong kind of thing, a value out of range.
var bad = map[string]string{
	// pacing (internal/pace): a window without its interval, a unit
	// Postfix has not, a profile typo
	"default_recipient_rate_limit": "60/1m, 3600", "smtp_recipient_rate_limit": "60/1x",
	"relay_recipient_rate_limit": "0/1m", "lmtp_recipient_rate_limit": "60/2w",
	"default_destination_rate_limit": "1000", "smtp_destination_rate_limit": "-5/1s",
	"relay_destination_rate_limit": "x/1s", "lmtp_destination_rate_limit": "5/",
	"default_destination_profile": "gmail", "smtp_destination_profile": "googel",
	"relay_destination_profile": "microsoft", "lmtp_destination_profile": "office365",
	// the issue's: passed check, then every message got a 451
	"always_bcc": "a b c @@",
	// relative: found from wherever mailtee was started
	"postfix_queue_directory": "spool/postfix",
	// a group name with a blank; a relative directory
	"setgid_group":                 "post drop",
	"alternate_config_directories": "/etc/postfix-out, etc/postfix-in",
	// a set of known words: a typo
	"canonical_classes":              "envelope_sender, envelope_recipent",
	"sender_canonical_classes":       "envelope_sendr",
	"recipient_canonical_classes":    "header_recipent",
	"masquerade_classes":             "envelope_sendr, header_sender",
	"propagate_unmatched_extensions": "canonical, virtul",
	"notify_classes":                 "resource, sofware",
	"local_header_rewrite_clients":   "permit_inet_interface",
	"smtpd_relay_restrictions":       "permit_mynetworks, reject_unauth_destinaton",
	"smtpd_recipient_restrictions":   "permit_mynetworks, check_client_access hash:/x",
	"smtp_tls_security_level":        "encrpyt",
	"smtpd_tls_security_level":       "dane",
	"smtpd_forbid_bare_newline":      "rejct",
	"smtputf8_autodetect_classes":    "sendmail, smptd",
	"mynetworks_style":               "subnets",
	"inet_protocols":                 "ipv7",
	"default_database_type":          "hahs",
	"stress":                         "no",
	"compatibility_level":            "three",
	// local(8)
	"mailbox_delivery_lock":  "fcntl, dotlok",
	"allow_mail_to_commands": "alias, forwards",
	"allow_mail_to_files":    "alias, includes",
	"syslog_facility":        "mial",
	"syslog_name":            "mail tee",
	// parameter names
	"parent_domain_matches_subdomains": "relay_domain",
	// host names, addresses, ports
	"myhostname":               "mx..example",
	"mydomain":                 "bad!domain",
	"myorigin":                 "-origin.example",
	"smtp_helo_name":           "helo name",
	"inet_interfaces":          "10.0.0.300/8",
	"proxy_interfaces":         "[192.0.2.1",
	"smtp_bind_address":        "::1",
	"smtp_bind_address6":       "10.0.0.1",
	"smtp_tcp_port":            "99999",
	"dns_servers":              "127.0.0.1",
	"relayhost":                "[10.0.0.1:25",
	"bounce_notice_recipient":  "a b @@",
	"2bounce_notice_recipient": "<postmaster",
	"double_bounce_sender":     "a@b@",
	"empty_address_recipient":  "a b",
	"masquerade_domains":       "!ex@mple.com",
	"masquerade_exceptions":    "root@example.com",
	"recipient_delimiter":      "+@",
	// reply codes: numbers, but not any number
	"unknown_local_recipient_reject_code": "250",
	"unknown_relay_recipient_reject_code": "lots",
	"unknown_virtual_mailbox_reject_code": "5xx",
	// transports (route.CheckTransports)
	"default_transport": "eror:nowhere",
	"relay_transport":   "smpt:[10.0.0.1]",
	"local_transport":   "locl",
	"virtual_transport": "lmpt:inet:127.0.0.1:24",
	"mailbox_transport": "eror:x",
	// files that serve opens at start-up: a file that is no certificate
	// (one that does not exist is a warning and no STARTTLS, as in
	// Postfix), a key without a certificate
	"smtpd_tls_cert_file":   "/etc/passwd",
	"smtpd_tls_key_file":    "/nonexistent/key.pem",
	"smtpd_tls_chain_files": "/etc/passwd",
	// local delivery as root: a user that does not exist
	"default_privs": "no-such-user-here",
	// local(8): a misspelt attribute; a program that is not there
	"forward_path":                "$home/.forward, $homedir/.forward",
	"command_execution_directory": "mail/$user",
	"export_environment":          "TZ LANG=C =x",
	"import_environment":          "TZ LANG=C 1X=y",
	"local_command_shell":         "/bin/bsah -c",
	"mailbox_command":             "/usr/bin/procmial -a \"$EXTENSION\"",
	// the ledger and the HTTP listener (web.Check; ledger_retention and
	// metrics_allow_plaintext go by their defaults' shape): a service
	// name for the port, an impossible network, files that are not
	// there, a certificate without its key, a URL of the wrong kind, a
	// database URL with a password in it (main.cf is world-readable)
	"metrics_listen":          "127.0.0.1:prometheus",
	"metrics_networks":        "127.0.0.0/8, 10.0.0.300/8",
	"dashboard_password_file": "/nonexistent/dashboard.passwd",
	"ledger_peer_token_file":  "/nonexistent/peer.token",
	"ledger_peers":            "ftp://relay.test.example",
	"ledger_database":         "postgres://ledger:secret@db.test.example/ledger",
	"metrics_tls_cert_file":   "/etc/passwd",
	"metrics_tls_key_file":    "/nonexistent/metrics.key",
	// SRS (internal/srs): a domain with a blank in it, a secret file
	// that is not there
	"srs_domain":      "srs example.org",
	"srs_secret_file": "/nonexistent/srs.secret",
	// phases (internal/migration): a typo of forward; a table that is
	// not there
	"dual_delivery_phase":      "forwrad",
	"dual_delivery_phase_maps": "hash:/nonexistent/pilot",

	// issue 18: the copies' source addresses and transport (a typo of smtp)
	"relay_bind_address": "::1", "relay_bind_address6": "10.0.0.1",
	"lmtp_bind_address": "::1", "lmtp_bind_address6": "10.0.0.1",
	"copy_transport": "smpt:[aspmx.l.google.com]",
}

// exempt lists the parameters where no value can be wrong before serve
// runs, each with the reason. Keep it short: a parameter belongs here only
// when every string is a legitimate value.
var exempt = map[string]string{
	"mail_name":    "free text (the name in smtpd_banner and bounces)",
	"smtpd_banner": "free text after the host name; Postfix checks nothing either",
	// Paths: any path is a path, and serve creates the directories it
	// needs (a wrong one fails at start-up with the path in the error).
	"config_directory":     "a path; mailtee takes -c, and the value is informational",
	"queue_directory":      "a path that serve creates",
	"data_directory":       "a path that import-postfix-queue creates",
	"mail_spool_directory": "a path that serve creates",
	"home_mailbox":         "a path relative to each home directory, any string",
	"maillog_file":         "a path that serve creates",
	// The characters a filter keeps: any set is one.
	"forward_expansion_filter":             "a set of characters",
	"command_expansion_filter":             "a set of characters",
	"execution_directory_expansion_filter": "a set of characters",
}

// pending lists parameters whose check is being added by another change
// of issue 13; remove each entry when that change is merged.
var pending = map[string]string{}

// derive gives a wrong value from how the value is read: tables and
// domain lists name a table type that does not exist, network lists an
// impossible address, and the rest go by the shape of the default.
func derive(c *config.Config, name string) string {
	switch config.KindOf(name) {
	case config.KindTables, config.KindDomainList:
		return "nosuch:/x"
	case config.KindNetList:
		return "10.0.0.300/8"
	}
	def, _ := c.Default(name)
	if d, err := c.Expand(def); err == nil {
		def = d
	}
	switch {
	case def == "yes" || def == "no":
		return "maybe"
	case regexp.MustCompile(`^[0-9]+$`).MatchString(def):
		return "lots"
	case regexp.MustCompile(`^[0-9]+[smhdw]$`).MatchString(def):
		return "5x"
	}
	return ""
}

// base is a main.cf that check passes, with the test's paths.
func base(dir string) []string {
	return []string{
		"myhostname = mx.test.example",
		"mydomain = test.example",
		"myorigin = test.example",
		"mydestination = $myhostname, localhost",
		"inet_interfaces = 127.0.0.1",
		"mynetworks = 127.0.0.0/8",
		"queue_directory = " + dir + "/queue",
		"mail_spool_directory = " + dir + "/mail/",
		"alias_maps = hash:" + dir + "/aliases",
		"local_recipient_maps =",
		// Dovecot's mailboxes over LMTP, so that virtual_transport
		// is checked.
		"virtual_mailbox_domains = vmail.test.example",
		"virtual_transport = lmtp:inet:127.0.0.1:24",
	}
}

// badLine is where the wrong value goes in main.cf.
const badLine = 3

// check writes main.cf (base, with name = value on badLine when name is
// set) and runs mailtee check, returning its output and exit code.
func check(t *testing.T, name, value string) (string, int) {
	t.Helper()
	dir := harness.TempDir(t)
	if err := os.WriteFile(filepath.Join(dir, "aliases"), []byte("postmaster: root\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	lines := []string{"# bad-configuration suite", "#"}
	if name != "" {
		lines = append(lines, name+" = "+value)
	}
	for _, l := range base(dir) {
		if !strings.HasPrefix(l, name+" ") || name == "" {
			lines = append(lines, l)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "main.cf"), []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(harness.Bin, "check", "-c", dir).CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &ee):
		return string(out), ee.ExitCode()
	}
	t.Fatalf("running check: %v", err)
	return "", 0
}

// The base configuration is good: each failure below is the wrong value's.
func TestBaseIsGood(t *testing.T) {
	if out, code := check(t, "", ""); code != 0 {
		t.Fatalf("check of the base main.cf: exit %d, want 0:\n%s", code, out)
	}
}

func TestEveryParameter(t *testing.T) {
	c := config.Parse("/etc/postfix", "/etc/postfix/main.cf", nil)
	for _, name := range config.ImplementedParams() {
		t.Run(name, func(t *testing.T) {
			if why, ok := exempt[name]; ok {
				if _, also := bad[name]; also {
					t.Fatalf("both exempt (%s) and given a wrong value", why)
				}
				t.Skip("exempt: " + why)
			}
			if why, ok := pending[name]; ok {
				t.Skip("pending: " + why)
			}
			value, ok := bad[name]
			if !ok {
				value = derive(c, name)
			}
			if value == "" {
				t.Fatalf("no wrong value for %s: add one to bad (and make check refuse it), or add it to exempt with the reason no value can be wrong", name)
			}
			out, code := check(t, name, value)
			want := fmt.Sprintf("main.cf, line %d: ", badLine)
			found := false
			for _, l := range strings.Split(out, "\n") {
				if strings.HasPrefix(l, "error: ") && strings.Contains(l, want) && strings.Contains(l, name) {
					found = true
				}
			}
			if code != 1 || !found {
				t.Errorf("%s = %s: exit %d, want 1 with an error naming main.cf, line %d and %s:\n%s", name, value, code, badLine, name, out)
			}
		})
	}
}

// Every name in the lists is a parameter mailtee implements: a renamed or
// removed one must not linger here.
func TestListsAreCurrent(t *testing.T) {
	impl := map[string]bool{}
	for _, n := range config.ImplementedParams() {
		impl[n] = true
	}
	for _, m := range []map[string]string{bad, exempt, pending} {
		for n := range m {
			if !impl[n] {
				t.Errorf("%s: not an implemented parameter", n)
			}
		}
	}
}

// A transport_maps entry with a transport mailtee does not deliver with
// is reported at the table's file and line (issue 13, defect 2).
func TestTransportMapsEntry(t *testing.T) {
	for _, tc := range []struct{ typ, text, where string }{
		{"hash", "a.example  smtp:[10.0.0.1]\nb.example  smpt:[10.0.0.1]\n", "transport, line 2: "},
		{"texthash", "# c\n\nb.example  eror:gone\n", "transport, line 3: "},
		{"regexp", "/^(.*)@a\\.example$/  relay:[$1]\n/@b\\.example$/  virtual:\n", "transport, line 2: "},
		{"pcre", "/^(.*)@b\\.example$/  eror:$1\n", "transport, line 1: "},
	} {
		dir := harness.TempDir(t)
		file := filepath.Join(dir, "transport")
		if err := os.WriteFile(file, []byte(tc.text), 0o644); err != nil {
			t.Fatal(err)
		}
		out, code := check(t, "transport_maps", tc.typ+":"+file)
		if code != 1 || !strings.Contains(out, "error: "+dir+"/"+tc.where) || !strings.Contains(out, "unknown mail transport") {
			t.Errorf("%s: exit %d, want 1 with an error at %s:\n%s", tc.typ, code, tc.where, out)
		}
	}
	out, code := check(t, "transport_maps", "inline:{ b.example=lmpt:unix:/x }")
	if code != 1 || !strings.Contains(out, fmt.Sprintf("main.cf, line %d: transport_maps", badLine)) {
		t.Errorf("inline: exit %d, want 1 with an error at main.cf, line %d:\n%s", code, badLine, out)
	}
}

// The files of the ledger and the listener: a password file's bad line
// is reported at that file's line; a short token, a listener off
// loopback in plain text and plain http to a peer at main.cf's.
func TestLedgerAndListenerFiles(t *testing.T) {
	dir := harness.TempDir(t)
	pw := filepath.Join(dir, "dashboard.passwd")
	token := filepath.Join(dir, "peer.token")
	if err := os.WriteFile(pw, []byte("# made with htpasswd -nbm\nadmin:$apr1$DRNI43qI$dLywcupLHnxK2pmVPZXEV/\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(token, []byte("short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, value, where, what string }{
		{"dashboard_password_file", pw, pw + ", line 2: dashboard_password_file", "MD5, SHA and crypt hashes are not supported"},
		{"ledger_peer_token_file", token, fmt.Sprintf("main.cf, line %d: ledger_peer_token_file", badLine), "fewer than 16"},
		{"metrics_listen", "0.0.0.0:9100", fmt.Sprintf("main.cf, line %d: metrics_listen", badLine), "metrics_allow_plaintext = yes"},
		{"ledger_peers", "http://relay.test.example:9100", fmt.Sprintf("main.cf, line %d: ledger_peers", badLine), "clear text"},
	} {
		out, code := check(t, tc.name, tc.value)
		if code != 1 || !strings.Contains(out, "error: ") || !strings.Contains(out, tc.where) || !strings.Contains(out, tc.what) {
			t.Errorf("%s = %s: exit %d, want 1 with an error at %s saying %q:\n%s", tc.name, tc.value, code, tc.where, tc.what, out)
		}
	}
}
