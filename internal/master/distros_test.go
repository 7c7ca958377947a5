package master

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/mailtee/mailtee/internal/config"
	"github.com/mailtee/mailtee/internal/diag"
	"github.com/mailtee/mailtee/internal/mastercf"
)

// stockMasterNames gives cfg what Check takes from a master.cf beside
// main.cf, from a master.cf kept under another name.
func stockMasterNames(t *testing.T, cfg *config.Config, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, _ := mastercf.Parse(path, data)
	setMasterNames(cfg, f)
}

// distroCheck loads testdata/distros/NAME as `mailtee check -c` would,
// with master.cf's names given as internal/mastercf will give them.
func distroCheck(t *testing.T, name string) diag.List {
	t.Helper()
	dir := filepath.Join("testdata", "distros", name)
	cfg, err := config.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return checkAll(cfg) // Check reads master.cf beside main.cf
}

// kinds sums up findings as "severity subject", the subject being what
// precedes a message's first ": " (a parameter, or a feature such as
// postscreen). Findings about files of the distribution's own host
// (tables, certificates, /etc/mailname: "no such file or directory")
// and infos are left out: they depend on the machine the test runs on.
func kinds(l diag.List) []string {
	var out []string
	for _, d := range l {
		if d.Severity == diag.Info || strings.Contains(d.Msg, "no such file or directory") {
			continue
		}
		subject, _, _ := strings.Cut(d.Msg, ": ")
		out = append(out, d.Severity.String()+" "+subject)
	}
	sort.Strings(out)
	return out
}

// Issue 15: on the public configurations of six mail-server
// distributions (testdata/distros, see its README) and on Debian's stock
// files (testdata/stock), check reports
// exactly these findings. Every error is something mailtee does not do
// and that changes what is accepted, relayed or delivered (the README
// of testdata/distros says why for each); every warning is a setting
// that cannot, or that Postfix itself ignores here. A false alarm that
// comes back, such as "unknown parameter" for a legacy, per-service or
// master.cf-only name, or an error for a TLS library setting, fails.
func TestDistroConfigurations(t *testing.T) {
	want := map[string][]string{
		"dms": {
			"error SMTP access restrictions",
			"error content inspection (header_checks, body_checks)",
			"error postscreen",
			"error service smtp (inet, postscreen)",
			"error service submission",
			"error service submission",
			"error service submissions",
			"error service submissions",
			"error virtual_mailbox_domains",
			"warning 1 services run programs mailtee does not have, and nothing in main.cf or the transport tables refers to them",
			"warning alias_database",
			"warning append_dot_mydomain",
			"warning biff",
			"warning broken_sasl_auth_clients",
			"warning disable_vrfy_command",
			"warning milter_default_action",
			"warning milter_protocol",
			"warning non_smtpd_milters",
			"warning readme_directory",
			"warning service submission",
			"warning service submission",
			"warning service submission",
			"warning service submissions",
			"warning service submissions",
			"warning service submissions",
			"warning smtp_header_checks",
			"warning smtp_tls_CApath",
			"warning smtp_tls_loglevel",
			"warning smtp_tls_protocols",
			"warning smtpd_delay_reject",
			"warning smtpd_discard_ehlo_keywords",
			"warning smtpd_milters",
			"warning smtpd_sasl_auth_enable",
			"warning smtpd_sasl_local_domain",
			"warning smtpd_sasl_path",
			"warning smtpd_sasl_security_options",
			"warning smtpd_sasl_type",
			"warning smtpd_tls_CApath",
			"warning smtpd_tls_exclude_ciphers",
			"warning smtpd_tls_loglevel",
			"warning smtpd_tls_mandatory_ciphers",
			"warning smtpd_tls_mandatory_protocols",
			"warning smtpd_tls_protocols",
			"warning tls_high_cipherlist",
			"warning tls_preempt_cipherlist",
			"warning tls_ssl_options",
		},
		"iredmail": {
			"error SMTP access restrictions",
			"error content filters",
			"error content inspection (header_checks, body_checks)",
			"error postscreen",
			"error sender_dependent_relayhost_maps",
			"error service 127.0.0.1:10025",
			"error service 127.0.0.1:10025",
			"error service 127.0.0.1:10025",
			"error service 127.0.0.1:10028",
			"error service 127.0.0.1:10028",
			"error service 127.0.0.1:10028",
			"error service 465",
			"error service 465",
			"error service 465",
			"error service dovecot (unix, pipe)",
			"error service smtp (inet, postscreen)",
			"error service smtp-amavis (unix, smtp)",
			"error service smtp-amavis (unix, smtp)",
			"error service smtp-amavis (unix, smtp)",
			"error service submission",
			"error service submission",
			"error service submission",
			"error smtpd_command_filter",
			"warning 8 services run programs mailtee does not have, and nothing in main.cf or the transport tables refers to them",
			"warning alias_database",
			"warning allow_min_user",
			"warning allow_percent_hack",
			"warning biff",
			"warning command_directory",
			"warning daemon_directory",
			"warning debug_peer_level",
			"warning debugger_command",
			"warning disable_vrfy_command",
			"warning dovecot_destination_recipient_limit",
			"warning enable_long_queue_ids",
			"warning lmtp_tls_mandatory_protocols",
			"warning lmtp_tls_protocols",
			"warning mail_owner",
			"warning mailq_path",
			"warning mlmmj_destination_recipient_limit",
			"warning newaliases_path",
			"warning proxy_read_maps",
			"warning relay_domains is set but relay_recipient_maps is empty",
			"warning sendmail_path",
			"warning service 127.0.0.1:10025",
			"warning service 127.0.0.1:10025",
			"warning service 127.0.0.1:10025",
			"warning service 127.0.0.1:10025",
			"warning service 127.0.0.1:10028",
			"warning service 127.0.0.1:10028",
			"warning service 127.0.0.1:10028",
			"warning service 127.0.0.1:10028",
			"warning show_user_unknown_table_name",
			"warning smtp-amavis_destination_recipient_limit",
			"warning smtp_tls_CAfile",
			"warning smtp_tls_CApath",
			"warning smtp_tls_loglevel",
			"warning smtp_tls_mandatory_protocols",
			"warning smtp_tls_note_starttls_offer",
			"warning smtp_tls_protocols",
			"warning smtpd_discard_ehlo_keywords",
			"warning smtpd_reject_unlisted_recipient",
			"warning smtpd_sasl_path",
			"warning smtpd_sasl_type",
			"warning smtpd_sender_login_maps",
			"warning smtpd_tls_CAfile",
			"warning smtpd_tls_CApath",
			"warning smtpd_tls_dh1024_param_file",
			"warning smtpd_tls_dh512_param_file",
			"warning smtpd_tls_loglevel",
			"warning smtpd_tls_mandatory_protocols",
			"warning smtpd_tls_protocols",
			"warning swap_bangpath",
			"warning tls_random_source",
			"warning virtual_gid_maps",
			"warning virtual_mailbox_base",
			"warning virtual_minimum_uid",
			"warning virtual_uid_maps",
		},
		"mailcow": {
			"error SASL authentication (AUTH)",
			"error SASL authentication to the next hop (smtp_sasl_*)",
			"error SMTP access restrictions",
			"error TLS policy of the SMTP client",
			"error milters",
			"error postscreen",
			"error sender_dependent_default_transport_maps",
			"error service 10025 (inet, postscreen)",
			"error service 10465",
			"error service 10465",
			"error service 10587",
			"error service 10587",
			"error service 127.0.0.1:10027 (inet, spawn)",
			"error service 588",
			"error service 589",
			"error service 590",
			"error service 591",
			"error service smtp (inet, postscreen)",
			"error service smtp_enforced_tls (smtp)",
			"error service smtp_via_transport_maps (smtp)",
			"error service smtps",
			"error service submission",
			"warning 2 services run programs mailtee does not have, and nothing in main.cf or the transport tables refers to them",
			"warning alias_database",
			"warning append_dot_mydomain",
			"warning biff",
			"warning delay_warning_time",
			"warning disable_vrfy_command",
			"warning lmtp_tls_mandatory_protocols",
			"warning lmtp_tls_protocols",
			"warning milter_default_action",
			"warning milter_protocol",
			"warning overriding earlier entry",
			"warning plaintext_reject_code",
			"warning postscreen_bare_newline_enable",
			"warning postscreen_greet_banner",
			"warning postscreen_non_smtp_command_enable",
			"warning postscreen_pipelining_enable",
			"warning proxy_read_maps",
			"warning service 10465",
			"warning service 10465",
			"warning service 10465",
			"warning service 10587",
			"warning service 10587",
			"warning service 10587",
			"warning service 588",
			"warning service 588",
			"warning service 589",
			"warning service 590",
			"warning service 590",
			"warning service 591",
			"warning service 591",
			"warning service smtps",
			"warning service smtps",
			"warning service smtps",
			"warning service submission",
			"warning service submission",
			"warning service submission",
			"warning service watchdog_discard (discard)",
			"warning smtp_address_preference",
			"warning smtp_header_checks",
			"warning smtp_tls_CAfile",
			"warning smtp_tls_cert_file",
			"warning smtp_tls_key_file",
			"warning smtp_tls_loglevel",
			"warning smtp_tls_mandatory_protocols",
			"warning smtp_tls_protocols",
			"warning smtp_tls_session_cache_database",
			"warning smtpd_delay_reject",
			"warning smtpd_discard_ehlo_keywords",
			"warning smtpd_proxy_timeout",
			"warning smtpd_sasl_path",
			"warning smtpd_sender_login_maps",
			"warning smtpd_tls_auth_only",
			"warning smtpd_tls_exclude_ciphers",
			"warning smtpd_tls_loglevel",
			"warning smtpd_tls_mandatory_ciphers",
			"warning smtpd_tls_mandatory_protocols",
			"warning smtpd_tls_protocols",
			"warning smtpd_tls_received_header",
			"warning tls_preempt_cipherlist",
			"warning tls_server_sni_maps",
			"warning tls_ssl_options",
			"warning virtual_gid_maps",
			"warning virtual_mailbox_base",
			"warning virtual_minimum_uid",
			"warning virtual_uid_maps",
		},
		"mailu": {
			"error SMTP access restrictions",
			"error TLS policy of the SMTP client",
			"error lmtp_host_lookup",
			"error milters",
			"error service 10025",
			"error service 10025",
			"error smtpd_authorized_xclient_hosts",
			"warning delay_warning_time",
			"warning milter_default_action",
			"warning milter_protocol",
			"warning postscreen_upstream_proxy_protocol",
			"warning relay_domains is set but relay_recipient_maps is empty",
			"warning service 10025",
			"warning service 10025",
			"warning service polite (smtp)",
			"warning service turtle (smtp)",
			"warning smtp_host_lookup",
			"warning smtp_tls_CApath",
			"warning smtp_tls_loglevel",
			"warning smtp_tls_mandatory_protocols",
			"warning smtp_tls_protocols",
			"warning smtp_tls_session_cache_database",
			"warning smtpd_delay_reject",
			"warning smtpd_forbid_unauth_pipelining",
			"warning smtpd_sender_login_maps",
			"warning smtpd_tls_session_cache_database",
			"warning tls_high_cipherlist",
			"warning tls_preempt_cipherlist",
			"warning tls_ssl_options",
			"warning unverified_recipient_reject_reason",
		},
		"miab": {
			"error SMTP access restrictions",
			"error TLS policy of the SMTP client",
			"error milters",
			"error service smtps",
			"error service smtps",
			"error service submission",
			"error service submission",
			"warning 7 services run programs mailtee does not have, and nothing in main.cf or the transport tables refers to them",
			"warning alias_database",
			"warning append_dot_mydomain",
			"warning biff",
			"warning delay_warning_time",
			"warning readme_directory",
			"warning service smtps",
			"warning service submission",
			"warning smtp_tls_CAfile",
			"warning smtp_tls_CApath",
			"warning smtp_tls_ciphers",
			"warning smtp_tls_exclude_ciphers",
			"warning smtp_tls_loglevel",
			"warning smtp_tls_mandatory_ciphers",
			"warning smtp_tls_mandatory_protocols",
			"warning smtp_tls_protocols",
			"warning smtp_tls_session_cache_database",
			"warning smtpd_sasl_auth_enable",
			"warning smtpd_sasl_path",
			"warning smtpd_sasl_type",
			"warning smtpd_sender_login_maps",
			"warning smtpd_tls_auth_only",
			"warning smtpd_tls_ciphers",
			"warning smtpd_tls_dh1024_param_file",
			"warning smtpd_tls_exclude_ciphers",
			"warning smtpd_tls_mandatory_ciphers",
			"warning smtpd_tls_mandatory_exclude_ciphers",
			"warning smtpd_tls_mandatory_protocols",
			"warning smtpd_tls_protocols",
			"warning smtpd_tls_received_header",
			"warning tls_high_cipherlist",
			"warning tls_medium_cipherlist",
			"warning tls_preempt_cipherlist",
		},
		"modoboa": {
			"error SASL authentication (AUTH)",
			"error SMTP access restrictions",
			"error milters",
			"error postscreen",
			"error service 127.0.0.1:10025",
			"error service 127.0.0.1:10025",
			"error service 127.0.0.1:10025",
			"error service 127.0.0.1:10025",
			"error service 127.0.0.1:10025",
			"error service smtp (inet, postscreen)",
			"error service submission",
			"error service submission",
			"error service submission",
			"error service submission",
			"warning 7 services run programs mailtee does not have, and nothing in main.cf or the transport tables refers to them",
			"warning address_verify_map",
			"warning alias_database",
			"warning append_dot_mydomain",
			"warning biff",
			"warning disable_vrfy_command",
			"warning milter_content_timeout",
			"warning postscreen_pipelining_action",
			"warning proxy_read_maps",
			"warning proxy_write_maps",
			"warning readme_directory",
			"warning relay_domains is set but relay_recipient_maps is empty",
			"warning service 127.0.0.1:10025",
			"warning service 127.0.0.1:10025",
			"warning service 127.0.0.1:10025",
			"warning service 127.0.0.1:10025",
			"warning service submission",
			"warning service submission",
			"warning service submission",
			"warning smtp_tls_CApath",
			"warning smtp_tls_exclude_ciphers",
			"warning smtp_tls_loglevel",
			"warning smtpd_sasl_path",
			"warning smtpd_sasl_security_options",
			"warning smtpd_sender_login_maps",
			"warning smtpd_tls_CApath",
			"warning smtpd_tls_auth_only",
			"warning smtpd_tls_dh1024_param_file",
			"warning smtpd_tls_eecdh_grade",
			"warning smtpd_tls_exclude_ciphers",
			"warning smtpd_tls_loglevel",
			"warning smtpd_tls_mandatory_ciphers",
			"warning smtpd_tls_mandatory_exclude_ciphers",
			"warning smtpd_tls_mandatory_protocols",
			"warning smtpd_tls_protocols",
			"warning smtpd_tls_received_header",
			"warning smtpd_tls_session_cache_database",
			"warning smtpd_use_tls",
			"warning tls_preempt_cipherlist",
			"warning tls_ssl_options",
			"warning unverified_recipient_reject_code",
		},
		"stock/main.cf.debian": {
			"warning append_dot_mydomain",
			"warning biff",
			"warning readme_directory",
		},
		"stock/main.cf.dist": {
			"warning command_directory",
			"warning daemon_directory",
			"warning debugger_command",
			"warning html_directory",
			"warning mailq_path",
			"warning manpage_directory",
			"warning newaliases_path",
			"warning readme_directory",
			"warning sample_directory",
			"warning sendmail_path",
			"warning setgid_group is empty",
		},
		"stock/main.cf.internet-site": {
			"warning alias_database",
			"warning append_dot_mydomain",
			"warning biff",
			"warning readme_directory",
			"warning smtp_tls_CApath",
			"warning smtp_tls_session_cache_database",
		},
	}
	for name, w := range want {
		var got []string
		if stock, ok := strings.CutPrefix(name, "stock/"); ok {
			cfg := loadStock(t, stock)
			stockMasterNames(t, cfg, filepath.Join("testdata", "stock", "master.cf.debian"))
			got = kinds(checkAll(cfg))
		} else {
			got = kinds(distroCheck(t, name))
		}
		if os.Getenv("MAILTEE_DISTRO_DUMP") != "" {
			fmt.Printf("DUMP %q: {\n", name)
			for _, g := range got {
				fmt.Printf("DUMP \t%q,\n", g)
			}
			fmt.Printf("DUMP },\n")
		}
		if strings.Join(got, "\n") != strings.Join(w, "\n") {
			t.Errorf("%s: findings changed:\n%s", name, lineDiff(w, got))
		}
	}
}

// lineDiff lists what is only in want (-) and only in got (+).
func lineDiff(want, got []string) string {
	count := map[string]int{}
	for _, w := range want {
		count[w]++
	}
	for _, g := range got {
		count[g]--
	}
	var out []string
	for k, n := range count {
		for ; n > 0; n-- {
			out = append(out, "- "+k)
		}
		for ; n < 0; n++ {
			out = append(out, "+ "+k)
		}
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}
