package config

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/mailtee/mailtee/internal/diag"
)

// findings returns Check's findings whose message contains sub.
func findings(c *Config, sub string) diag.List {
	return diagsMatching(c.Check(), sub)
}

// wantOne fails unless Check has exactly one finding of severity sev
// containing sub.
func wantOne(t *testing.T, c *Config, sev diag.Severity, sub string) diag.Diag {
	t.Helper()
	m := findings(c, sub)
	if len(m) != 1 || m[0].Severity != sev {
		t.Fatalf("want one %v containing %q, got %v", sev, sub, c.Check())
	}
	return m[0]
}

// Issue 15: Postfix's legacy names (postconf_builtin.c's
// pcf_legacy_str_table) are not unknown; each is checked as its
// successor, whose default refers to it.
func TestLegacyNames(t *testing.T) {
	c := parse(t, "postscreen_blacklist_action = drop\n")
	if m := findings(c, "unknown parameter"); len(m) != 0 {
		t.Errorf("legacy name called unknown: %v", m)
	}
	wantOne(t, c, diag.Error, "postscreen: not implemented by mailtee, and ignoring it could change which clients may send mail; set: postscreen_blacklist_action (line 1)")

	// virtual_alias_maps = $virtual_maps: the legacy name's tables are
	// opened, and credited to its line.
	c = parse(t, "mydestination =\nvirtual_maps = hash:/etc/postfix/virtual\n")
	if d := c.Check(); d.HasErrors() {
		t.Errorf("virtual_maps: %v", d)
	}
	found := false
	for _, r := range c.TableRefs() {
		if r.Spec == "hash:/etc/postfix/virtual" && r.Param == "virtual_maps" && r.Line == 2 {
			found = true
		}
	}
	if !found {
		t.Errorf("virtual_maps's table not among %v", c.TableRefs())
	}
	// smtpd_client_connection_limit_exceptions is implemented through
	// smtpd_client_event_limit_exceptions and validated as it is.
	wantOne(t, parse(t, "smtpd_client_connection_limit_exceptions = 10.0.0.0/33\n"), diag.Error, "smtpd_client_event_limit_exceptions: ")
	if d := parse(t, "smtpd_client_connection_limit_exceptions = 10.0.0.0/8\n").Check(); d.HasErrors() {
		t.Errorf("smtpd_client_connection_limit_exceptions: %v", d)
	}
	// An empty legacy setting is the legacy default.
	wantOne(t, parse(t, "postscreen_dnsbl_ttl =\n"), diag.Warning, "postscreen_dnsbl_ttl (the name postscreen_dnsbl_max_ttl had before Postfix renamed it): not implemented by mailtee; set to its Postfix default")
}

// Issue 15: SERVICE_destination_recipient_limit and the other
// per-service names exist for master.cf's delivery services
// (postconf_service.c), and only for those.
func TestServiceNames(t *testing.T) {
	text := "dovecot_destination_recipient_limit = 1\nmlmmj_destination_concurrency_limit = 2\nwhitelist_time_limit = 10s\nwhitelist_destination_recipient_limit = 1\npickup_destination_recipient_limit = 1\n"
	c := parse(t, text)
	for _, n := range []string{"dovecot_destination_recipient_limit", "mlmmj_destination_concurrency_limit", "whitelist_time_limit"} {
		wantOne(t, c, diag.Error, n+": unknown parameter")
	}
	c = parse(t, text)
	c.SetMasterNames([]MasterService{
		{"dovecot", "unix", "pipe"}, {"mlmmj", "unix", "pipe"},
		{"whitelist", "inet", "spawn"}, {"pickup", "unix", "pickup"},
	}, nil)
	wantOne(t, c, diag.Warning, "dovecot_destination_recipient_limit: per-service form of default_destination_recipient_limit for a master.cf service")
	wantOne(t, c, diag.Warning, "mlmmj_destination_concurrency_limit: per-service form of default_destination_concurrency_limit")
	wantOne(t, c, diag.Warning, "whitelist_time_limit: per-service form of command_time_limit")
	// spawn(8) services get SERVICE_time_limit only; pickup none.
	wantOne(t, c, diag.Error, "whitelist_destination_recipient_limit: unknown parameter")
	wantOne(t, c, diag.Error, "pickup_destination_recipient_limit: unknown parameter")
}

// Issue 15: a name set in main.cf and used only from master.cf
// (-o smtpd_sender_restrictions=$mua_sender_restrictions) is
// user-defined, as is one listed in smtpd_restriction_classes.
func TestUserDefinedNames(t *testing.T) {
	c := parse(t, "mua_sender_restrictions = permit_sasl_authenticated, reject\n")
	wantOne(t, c, diag.Error, "mua_sender_restrictions: unknown parameter")
	c = parse(t, "mua_sender_restrictions = permit_sasl_authenticated, reject\n")
	c.SetMasterNames(nil, []string{"mua_sender_restrictions", "smtpd_sender_restrictions"})
	if d := c.Check(); len(d) != 0 {
		t.Errorf("want no findings, got %v", d)
	}
	// smtpd_restriction_classes names its classes (postconf_user.c);
	// the class itself still needs the restrictions mailtee lacks.
	c = parse(t, "smtpd_restriction_classes = from_freemail, strict\nfrom_freemail = reject\nstrict = reject\n")
	if m := findings(c, "unknown parameter"); len(m) != 0 {
		t.Errorf("restriction class called unknown: %v", m)
	}
	wantOne(t, c, diag.Error, "SMTP access restrictions: not implemented by mailtee, and ignoring it could change what mail is accepted; set: smtpd_restriction_classes (line 1)")
}

// Issue 15: settings that cannot change routing, acceptance or relay
// are warnings, each with its reason.
func TestHarmlessSettings(t *testing.T) {
	for _, tc := range []struct{ line, reason string }{
		{"tls_ssl_options = NO_COMPRESSION, NO_RENEGOTIATION", "a TLS library setting"},
		{"tls_high_cipherlist = ECDHE-ECDSA-AES128-GCM-SHA256", "a TLS library setting"},
		{"tls_preempt_cipherlist = yes", "a TLS library setting"},
		{"smtpd_tls_mandatory_protocols = !SSLv2, !SSLv3", "ignored"},
		{"smtpd_tls_exclude_ciphers = aNULL", "ignored"},
		{"disable_vrfy_command = yes", "mailtee never discloses"},
		{"unknown_address_reject_code = 550", "a reply code or text"},
		{"unverified_recipient_reject_reason = Address lookup failure", "a reply code or text"},
		{"smtpd_reject_footer = call us", "a reply code or text"},
		{"proxy_read_maps = $virtual_alias_maps", "proxymap(8)'s list"},
		{"smtp_header_checks = pcre:/etc/postfix/anonymize.pcre", "outgoing content edits only"},
		{"smtpd_discard_ehlo_keywords = silent-discard, dsn", "mailtee announces its own extensions"},
		{"smtp_tls_cert_file = /etc/ssl/mail/cert.pem", "a client certificate"},
		{"smtpd_sender_login_maps = hash:/etc/postfix/logins", "reject_*sender_login_mismatch"},
		{"allow_percent_hack = no", "set to no, which is how mailtee behaves"},
		{"swap_bangpath = no", "set to no, which is how mailtee behaves"},
		{"enable_long_queue_ids = yes", "the shape of queue IDs only"},
	} {
		c := parse(t, tc.line+"\n")
		d := c.Check()
		if d.HasErrors() || len(diagsMatching(d, tc.reason)) != 1 {
			t.Errorf("%q: want a warning with %q, got %v", tc.line, tc.reason, d)
		}
	}
	// Not every value is harmless: mailtee does not percent-hack.
	wantOne(t, parse(t, "allow_percent_hack = yes\n"), diag.Warning, "set to its Postfix default")
}

// Issue 15: details of a feature that is off are what Postfix ignores:
// SASL while smtpd_sasl_auth_enable = no, milter settings without
// milters, postscreen's when master.cf runs none. With the feature on,
// they are one error.
func TestIdleFeatures(t *testing.T) {
	sasl := "smtpd_sasl_type = dovecot\nsmtpd_sasl_local_domain = $mydomain\nbroken_sasl_auth_clients = yes\n"
	c := parse(t, sasl+"smtpd_sasl_auth_enable = no\n")
	if d := c.Check(); d.HasErrors() || len(diagsMatching(d, "AUTH is off")) != 3 {
		t.Errorf("SASL details with AUTH off: %v", d)
	}
	c = parse(t, sasl+"smtpd_sasl_auth_enable = yes\n")
	wantOne(t, c, diag.Error, "SASL authentication (AUTH): not implemented by mailtee, and ignoring it could change who may relay; set: smtpd_sasl_type (line 1), smtpd_sasl_local_domain (line 2), broken_sasl_auth_clients (line 3), smtpd_sasl_auth_enable (line 4); serve refuses to start until they are removed")
	if n := len(c.Check()); n != 1 {
		t.Errorf("want one finding, got %d: %v", n, c.Check())
	}

	milter := "milter_default_action = accept\nmilter_protocol = 2\n"
	if d := parse(t, milter).Check(); d.HasErrors() {
		t.Errorf("milter details without milters: %v", d)
	}
	wantOne(t, parse(t, milter+"smtpd_milters = inet:127.0.0.1:8891\n"), diag.Error, "milters: not implemented by mailtee")

	ps := "postscreen_dnsbl_action = enforce\npostscreen_greet_action = enforce\n"
	c = parse(t, ps)
	wantOne(t, c, diag.Error, "postscreen: not implemented by mailtee, and ignoring it could change which clients may send mail; set: postscreen_dnsbl_action (line 1), postscreen_greet_action (line 2)")
	c = parse(t, ps)
	c.SetMasterNames([]MasterService{{"smtp", "inet", "smtpd"}, {"smtp", "unix", "smtp"}}, nil)
	if d := c.Check(); d.HasErrors() || len(diagsMatching(d, "master.cf runs no postscreen service")) != 2 {
		t.Errorf("postscreen settings without postscreen: %v", d)
	}
	c = parse(t, ps)
	c.SetMasterNames([]MasterService{{"smtp", "inet", "postscreen"}, {"smtp", "unix", "smtp"}}, nil)
	wantOne(t, c, diag.Error, "postscreen: not implemented by mailtee")
}

// Issue 15: one error per missing feature, naming every parameter,
// including the restrictions of smtpd_recipient_restrictions that
// mailtee lacks (their arguments left out).
func TestOneErrorPerFeature(t *testing.T) {
	c := parse(t, "smtpd_helo_required = yes\nsmtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination, check_policy_service inet:127.0.0.1:10023, reject_rbl_client zen.spamhaus.org\nsmtpd_sender_restrictions = reject_non_fqdn_sender\nheader_checks = regexp:/etc/postfix/h\nbody_checks = regexp:/etc/postfix/b\n")
	d := c.Check()
	if n := len(d); n != 2 {
		t.Errorf("want 2 findings, got %d: %v", n, d)
	}
	wantOne(t, c, diag.Error, "SMTP access restrictions: not implemented by mailtee, and ignoring it could change what mail is accepted; set: smtpd_helo_required (line 1), smtpd_recipient_restrictions (line 2: check_policy_service reject_rbl_client), smtpd_sender_restrictions (line 3)")
	wantOne(t, c, diag.Error, "content inspection (header_checks, body_checks): not implemented by mailtee, and ignoring it could change what mail is accepted; set: header_checks (line 4), body_checks (line 5)")
	// DANE: the level and its DNSSEC lookups are one finding.
	c = parse(t, "smtp_tls_security_level = dane\nsmtp_dns_support_level = dnssec\n")
	if n := len(c.Check()); n != 1 {
		t.Errorf("want 1 finding, got %d: %v", n, c.Check())
	}
	wantOne(t, c, diag.Error, "TLS policy of the SMTP client: not implemented by mailtee, and ignoring it could change where mail may go unencrypted; set: smtp_tls_security_level (line 1: dane), smtp_dns_support_level (line 2)")
	// What mailtee does anyway is no finding.
	if d := parse(t, "smtpd_recipient_restrictions = permit_mynetworks, reject_unlisted_recipient, reject_unauth_destination\n").Check(); len(d) != 0 {
		t.Errorf("want no findings, got %v", d)
	}
}

// Check with master.cf's names never panics, whatever main.cf and
// master.cf hold.
func FuzzCheckMasterNames(f *testing.F) {
	f.Add([]byte("dovecot_destination_recipient_limit = 1\npostscreen_blacklist_action = drop\nx = $y\n"), "dovecot", "pipe", "y")
	f.Add([]byte("smtpd_restriction_classes = a,,b\na = reject\nsmtpd_recipient_restrictions = a, check_x\n"), "", "spawn", "")
	f.Add([]byte("google_bind_address = 127.0.0.7\ngoogle_bind_address6 = $smtp_bind_address\ngoogle_destination_rate_limit = 1/1s\n"), "google", "smtp", "")
	old := lookupHost
	lookupHost = func(host string) ([]netip.Addr, error) {
		return nil, fmt.Errorf("lookup %s: no DNS while fuzzing", host)
	}
	f.Cleanup(func() { lookupHost = old })
	f.Fuzz(func(t *testing.T, data []byte, svc, cmd, ref string) {
		c := Parse("/cfg", "/cfg/main.cf", data)
		c.SetMasterNames([]MasterService{{svc, "unix", cmd}}, strings.Fields(ref))
		c.Check()
		c.TableRefs()
	})
}

// smtpd_tls_req_ccert = yes with smtpd_tls_security_level = encrypt
// refuses every client without a trusted certificate: mailtee, which
// asks for none, would accept them, so it is an error, not "a TLS
// library setting". At other levels Postfix ignores it (smtpd.c), and
// so it is a warning.
func TestRequireClientCert(t *testing.T) {
	c := parse(t, "smtpd_tls_security_level = encrypt\nsmtpd_tls_req_ccert = yes\n")
	if d := diagsMatching(c.Check(), "smtpd_tls_req_ccert"); len(d) != 1 || d[0].Severity != diag.Error || d[0].Line != 2 {
		t.Errorf("req_ccert with encrypt: %v", d)
	}
	for _, text := range []string{"smtpd_tls_req_ccert = yes\n", "smtpd_tls_security_level = may\nsmtpd_tls_req_ccert = yes\n", "smtpd_tls_security_level = encrypt\nsmtpd_tls_req_ccert = no\n"} {
		if d := diagsMatching(parse(t, text).Check(), "smtpd_tls_req_ccert"); len(d) != 1 || d[0].Severity != diag.Warning {
			t.Errorf("%q: %v, want one warning", text, d)
		}
	}
}

// data_directory is mailtee's own (import-postfix-queue archives
// Postfix's files there, DataDirectory): check must not call it
// ignored.
func TestDataDirectoryHonoured(t *testing.T) {
	if d := diagsMatching(parse(t, "data_directory = /var/lib/mailtee-test\n").Check(), "not implemented"); len(d) != 0 {
		t.Errorf("data_directory: %v", d)
	}
}
