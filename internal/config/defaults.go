package config

import (
	_ "embed"
	"os"
	"strconv"
	"strings"
)

// postfixDefaults is `postconf -d` of Postfix 3.7 as Debian 12 ships it:
// the name of every Postfix parameter and its default value, so that a
// stock /etc/postfix/main.cf loads and unknown names can be told apart from
// Postfix parameters that mailtee does not implement. Machine-dependent
// values in it (myhostname, mynetworks, process_id, ...) are computed at run
// time instead, see machineDefaults.
//
//go:embed postfix-3.7-defaults.txt
var postfixDefaultsText string

// mailteeParams are the parameters mailtee adds to Postfix's, with their
// defaults. Documented in README.md.
var mailteeParams = map[string]string{
	// Listening port for every inet_interfaces address. Postfix takes it
	// from master.cf, which mailtee does not read.
	"smtpd_port": "25",
	// Resolvers for MX/A lookups as host:port, separated like any list.
	// Empty means /etc/resolv.conf.
	"dns_servers": "",
	// Tables looked up with each final local mailbox address, after
	// alias expansion: every address in the value gets an automatic
	// copy. Unlike recipient_bcc_maps, it sees list members.
	"mailbox_bcc_maps": "",
	// yes: every message this server accepts is an automatic copy (a
	// dual-delivery relay): delivery failures are reported to
	// postmaster, never to the original sender.
	"dual_delivery_relay": "no",
	// The migration layer (internal/migration, README "Migration
	// control"): the phase of the users in the copy maps (off, dual,
	// forward), per user in dual_delivery_phase_maps; the transport of
	// every mailbox's copy (recipient_bcc_maps, mailbox_bcc_maps) and of
	// forward-phase mail; SRS for copies.
	"dual_delivery_phase":      "dual",
	"dual_delivery_phase_maps": "",
	"copy_transport":           "",
	"srs_domain":               "",
	"srs_secret_file":          "",
	// Postfix's queue directory, under which a relative LMTP socket
	// (lmtp:unix:private/dovecot-lmtp) is found, as lmtp(8) finds it.
	// When main.cf sets queue_directory, that is Postfix's (the file
	// is Postfix's main.cf) and this defaults to it, see Config.Raw.
	"postfix_queue_directory": "/var/spool/postfix",
	// The delivery ledger (internal/ledger): an SQLite file, relative
	// to data_directory unless absolute, or a fleet's PostgreSQL
	// database (postgres://..., no password in it); empty: no ledger.
	"ledger_database": "ledger.db",
	// How long the ledger keeps a message (an age: 90d, 12w, 2160h).
	"ledger_retention": "90d",
	// A fleet (internal/fleet): when ledger_database is a PostgreSQL
	// URL, the nodes sharing it say they are alive every
	// fleet_heartbeat_interval, a node unheard of for fleet_node_timeout
	// is gone, and the provider limits are counted across the nodes
	// unless fleet_shared_limits = no.
	"fleet_heartbeat_interval": "5s",
	"fleet_node_timeout":       "30s",
	"fleet_shared_limits":      "yes",
	// socketmap tables (internal/socketmap): Postfix 3.10's limits,
	// which Debian's 3.7 has built in as constants.
	"socketmap_max_reply_size": "100000",
	"socketmap_max_query_size": "10000",
	// Other mailtee hosts' ledger URLs (http[s]://host:port), which
	// `mailtee report` follows a copy into, and the file holding the
	// token they share (read by both sides).
	"ledger_peers":           "",
	"ledger_peer_token_file": "",
	// The HTTP listener for /metrics, the dashboard and the peers'
	// ledger endpoint (host:port; empty: none), and who may use it.
	"metrics_listen":   "",
	"metrics_networks": "127.0.0.0/8, [::1]/128",
	// A file with a bcrypt or argon2 hash (user:hash lines or one hash)
	// that opens the dashboard beyond loopback.
	"dashboard_password_file": "",
	// The listener's certificate and key, for HTTPS; off loopback the
	// listener needs them unless metrics_allow_plaintext = yes.
	"metrics_tls_cert_file":   "",
	"metrics_tls_key_file":    "",
	"metrics_allow_plaintext": "no",
}

// pacingParams are mailtee's per-transport pacing parameters (README,
// "Provider-aware delivery"), with their global defaults: each
// TRANSPORT_X defaults to $default_X, as Postfix's per-transport
// parameters do. Transports of master.cf get theirs through
// serviceSuffixes.
var pacingParams = map[string]string{
	"_recipient_rate_limit":        "",
	"_destination_rate_limit":      "",
	"_destination_bandwidth_limit": "0",
	"_destination_profile":         "auto",
}

// pacingNames are pacingParams' names, each with its default value.
func pacingNames() map[string]string {
	out := map[string]string{}
	for suffix, v := range pacingParams {
		out["default"+suffix] = v
		for _, t := range []string{"smtp", "relay", "lmtp"} {
			out[t+suffix] = "$default" + suffix
		}
	}
	return out
}

// mailteeDefaults are Postfix parameters whose default differs in mailtee,
// each for a stated reason.
var mailteeDefaults = map[string]string{
	// A separate spool: mailtee must never share one with a Postfix
	// running on the same host, even when main.cf names Postfix's
	// (see owndirs.go).
	"queue_directory": "/var/spool/mailtee",
	// Likewise mailtee's data (the ledger): never Postfix's
	// /var/lib/postfix. See owndirs.go for a main.cf that names them.
	"data_directory": "/var/lib/mailtee",
	// NIS is gone from practice; Postfix's default would make every
	// start-up fail on an unsupported table type.
	"alias_maps": "hash:/etc/aliases",
	// The greeting ($smtpd_banner), Received: and the notices name the
	// program that answers: mailtee, not Postfix.
	"mail_name": "mailtee",
	// Postfix 3.9's default: clients that end lines with a bare LF keep
	// working, and no smuggled message gets through (internal/smtpd).
	"smtpd_forbid_bare_newline": "normalize",
}

// defaults is the table of all known parameters and their raw default values.
var defaults = func() map[string]string {
	m := make(map[string]string, 1100)
	for _, line := range strings.Split(postfixDefaultsText, "\n") {
		name, value, ok := strings.Cut(line, " = ")
		if !ok {
			name, ok = strings.CutSuffix(line, " =")
			if !ok {
				continue
			}
		}
		m[name] = value
	}
	for k, v := range mailteeParams {
		m[k] = v
	}
	for k, v := range pacingNames() {
		m[k] = v
	}
	for k, v := range bindNames() {
		m[k] = v
	}
	for k, v := range mailteeDefaults {
		m[k] = v
	}
	return m
}()

// machineDefaults computes the defaults that Postfix derives from the host.
func machineDefaults(configDir string) map[string]string {
	host := "localhost"
	if h, err := os.Hostname(); err == nil && h != "" {
		host = strings.ToLower(h)
	}
	// Postfix: "if the hostname is not fully qualified, append .localdomain".
	if !strings.Contains(host, ".") {
		host += ".localdomain"
	}
	return map[string]string{
		"myhostname":       host,
		"config_directory": configDir,
		"process_id":       strconv.Itoa(os.Getpid()),
		"process_name":     "mailtee",
	}
}

// domainOf strips the first label, as Postfix derives mydomain.
func domainOf(host string) string {
	if _, d, ok := strings.Cut(host, "."); ok && d != "" {
		return d
	}
	return "localdomain"
}
