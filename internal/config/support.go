package config

import (
	"fmt"
	"net/netip"
	"os"
	"regexp"
	"sort"
	"strings"

	"github.com/mailtee/mailtee/internal/diag"
	"github.com/mailtee/mailtee/internal/pflist"
)

// Support says what mailtee does with a parameter.
type Support int

const (
	// Unsupported: a Postfix parameter mailtee does not honour and whose
	// absence could change where mail goes, what is accepted or who may
	// relay. Set to anything but its default, it stops serve.
	Unsupported Support = iota
	// Harmless: not honoured, but ignoring it cannot misroute or accept
	// mail that Postfix would not (paths, logging, caches, tuning).
	Harmless
	// Implemented: mailtee honours it with Postfix semantics.
	Implemented
)

// Kind says how a parameter's value is read, for validation and for
// `check` to open the tables it names.
type Kind int

const (
	KindText       Kind = iota
	KindTables          // a list of type:name lookup tables
	KindDomainList      // domains, /file/name and type:table (mydestination, ...)
	KindNetList         // networks, /file/name and type:table (mynetworks)
)

type paramInfo struct {
	kind Kind
	// allowed, when set, lists the only values (list elements) mailtee
	// can honour: the words Postfix knows for the parameter, or those
	// mailtee implements when it implements it in part.
	allowed []string
	// valid, when set, says what is wrong with a value (values.go).
	valid func(string) error
}

// Word sets, for parameters whose values are names Postfix knows.
var (
	classWords       = []string{"envelope_sender", "envelope_recipient", "header_sender", "header_recipient"}
	propagateWords   = []string{"canonical", "virtual", "alias", "forward", "include", "generic"}
	notifyWords      = []string{"bounce", "2bounce", "data", "delay", "policy", "protocol", "resource", "software"}
	restrictionWords = []string{"permit_mynetworks", "permit_sasl_authenticated", "defer_unauth_destination", "reject_unauth_destination", "permit", "reject", "defer",
		// what smtpd_reject_unlisted_recipient = yes (the default, and
		// mailtee's behaviour: local_recipient_maps, relay_recipient_maps)
		// does anyway
		"reject_unlisted_recipient"}
)

// facilityWords are syslog_facility's names on Linux (msg_syslog.c);
// maillog.Facilities has their numbers.
var facilityWords = []string{"auth", "authpriv", "cron", "daemon", "ftp", "kern", "lpr", "mail", "news",
	"syslog", "user", "uucp", "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7"}

// validSyslogName keeps "NAME/component[pid]:", which log parsers split
// on, whole; '/' is allowed, as in master.cf's syslog_name=postfix/submission.
func validSyslogName(v string) error {
	if strings.ContainsAny(v, " \t:[]") {
		return fmt.Errorf("%q: no blanks, ':', '[' or ']' in the name before each log line's /component[pid]: (log tools such as pflogsumm split lines there)", v)
	}
	return nil
}

// implemented lists the parameters mailtee honours. The mail path (serve)
// reads each of these; anything else set in main.cf is reported by Check.
var implemented = map[string]paramInfo{
	// identity and listening
	"myhostname": {valid: validHostname}, "mydomain": {valid: validHostname},
	"myorigin": {valid: validOrigin}, "mail_name": {},
	"inet_interfaces": {valid: validInterfaces}, "proxy_interfaces": {valid: validInterfaces},
	"inet_protocols": {allowed: []string{"all", "ipv4", "ipv6"}},
	"smtpd_port":     {valid: validPort}, "smtpd_banner": {}, "dns_servers": {valid: validDNSServers},
	"mailbox_bcc_maps": {kind: KindTables}, "dual_delivery_relay": {},
	"dual_delivery_phase":      {allowed: []string{"off", "dual", "forward"}},
	"dual_delivery_phase_maps": {kind: KindTables}, "copy_transport": {valid: validCopyTransport},
	"srs_domain": {}, "srs_secret_file": {},
	// The ledger and the observability listener (internal/ledger,
	// internal/web): values checked by web.Check.
	"ledger_database": {}, "ledger_retention": {}, "ledger_peers": {}, "ledger_peer_token_file": {},
	"fleet_heartbeat_interval": {}, "fleet_node_timeout": {}, "fleet_shared_limits": {},
	"socketmap_max_reply_size": {}, "socketmap_max_query_size": {},
	"metrics_listen": {}, "metrics_networks": {}, "dashboard_password_file": {},
	"metrics_tls_cert_file": {}, "metrics_tls_key_file": {}, "metrics_allow_plaintext": {},
	"local_header_rewrite_clients": {allowed: []string{"permit_inet_interfaces", "permit_mynetworks"}},
	"config_directory":             {}, "queue_directory": {}, "postfix_queue_directory": {valid: validAbsPath},
	"data_directory": {}, // import-postfix-queue archives there (cfg.DataDirectory)
	// sendmail's drop into maildrop (internal/maildrop)
	"setgid_group": {valid: validGroupName}, "alternate_config_directories": {valid: validAbsPaths},
	// who is local, who may relay
	"mydestination":                       {kind: KindDomainList},
	"relay_domains":                       {kind: KindDomainList},
	"virtual_alias_domains":               {kind: KindDomainList},
	"mynetworks":                          {kind: KindNetList},
	"mynetworks_style":                    {allowed: []string{"host", "subnet", "class"}},
	"smtpd_relay_restrictions":            {allowed: restrictionWords},
	"smtpd_recipient_restrictions":        {allowed: restrictionWords},
	"local_recipient_maps":                {kind: KindTables},
	"unknown_local_recipient_reject_code": {valid: validRejectCode},
	"relay_recipient_maps":                {kind: KindTables},
	"unknown_relay_recipient_reject_code": {valid: validRejectCode},
	// Virtual mailbox domains whose mail goes to another delivery
	// agent (Dovecot over LMTP, as SQL-backed sites run): the domains,
	// the recipients smtpd accepts, the transport. virtual(8) itself is
	// a feature mailtee lacks (features.go).
	"virtual_mailbox_domains":             {kind: KindDomainList},
	"virtual_mailbox_maps":                {kind: KindTables},
	"virtual_transport":                   {},
	"unknown_virtual_mailbox_reject_code": {valid: validRejectCode},
	"parent_domain_matches_subdomains":    {valid: validParamNames},
	// address rewriting
	"recipient_delimiter": {valid: validDelimiter}, "append_at_myorigin": {},
	"propagate_unmatched_extensions":        {allowed: propagateWords},
	"canonical_maps":                        {kind: KindTables},
	"sender_canonical_maps":                 {kind: KindTables},
	"recipient_canonical_maps":              {kind: KindTables},
	"canonical_classes":                     {allowed: classWords},
	"sender_canonical_classes":              {allowed: []string{"envelope_sender", "header_sender"}},
	"recipient_canonical_classes":           {allowed: []string{"envelope_recipient", "header_recipient"}},
	"masquerade_domains":                    {valid: validDomains},
	"masquerade_classes":                    {allowed: classWords},
	"masquerade_exceptions":                 {valid: validLocalParts},
	"virtual_alias_maps":                    {kind: KindTables},
	"virtual_alias_recursion_limit":         {},
	"virtual_alias_expansion_limit":         {},
	"recipient_bcc_maps":                    {kind: KindTables},
	"sender_bcc_maps":                       {kind: KindTables},
	"always_bcc":                            {},
	"enable_original_recipient":             {},
	"hopcount_limit":                        {},
	"alias_maps":                            {kind: KindTables},
	"owner_request_special":                 {},
	"expand_owner_alias":                    {},
	"empty_address_recipient":               {valid: validAddress},
	"smtputf8_enable":                       {},
	"default_database_type":                 {allowed: []string{"hash", "btree", "lmdb", "cdb", "dbm", "sdbm", "texthash"}},
	"transport_maps":                        {kind: KindTables},
	"default_transport":                     {},
	"local_transport":                       {},
	"relay_transport":                       {},
	"relayhost":                             {valid: validNexthops},
	"mailbox_transport":                     {},
	"mail_spool_directory":                  {},
	"home_mailbox":                          {},
	"smtp_tcp_port":                         {valid: validPort},
	"smtp_bind_address":                     {valid: validIPv4},
	"smtp_bind_address6":                    {valid: validIPv6},
	"lmtp_bind_address":                     {valid: validIPv4}, // the lmtp client's (internal/master)
	"lmtp_bind_address6":                    {valid: validIPv6},
	"relay_bind_address":                    {valid: validIPv4}, // mailtee's (bindParams)
	"relay_bind_address6":                   {valid: validIPv6},
	"smtp_bind_address_enforce":             {}, // deliver.Client.BindEnforce
	"lmtp_bind_address_enforce":             {},
	"smtp_helo_name":                        {valid: validHostname},
	"smtp_connect_timeout":                  {},
	"smtp_tls_security_level":               {allowed: []string{"none", "may", "encrypt"}},
	"smtp_connection_reuse_count_limit":     {},                      // deliver.Client.MaxReuse
	"smtp_connection_reuse_time_limit":      {valid: validReuseTime}, // deliver.Client.MaxLifetime
	"smtpd_tls_security_level":              {allowed: []string{"", "none", "may", "encrypt"}},
	"smtpd_tls_cert_file":                   {},
	"smtpd_tls_key_file":                    {},
	"smtpd_tls_chain_files":                 {}, // see ServerCertificate
	"smtpd_tls_wrappermode":                 {}, // per master.cf listener (internal/master)
	"smtpd_starttls_timeout":                {},
	"lmtp_tcp_port":                         {valid: validPort},
	"default_destination_concurrency_limit": {},
	"smtp_destination_concurrency_limit":    {},
	"relay_destination_concurrency_limit":   {},
	"lmtp_destination_concurrency_limit":    {},
	// pacing (internal/pace; values checked by master's pacingTransports)
	"default_destination_rate_delay": {}, "smtp_destination_rate_delay": {},
	"relay_destination_rate_delay": {}, "lmtp_destination_rate_delay": {},
	"default_destination_recipient_limit": {}, "smtp_destination_recipient_limit": {},
	"relay_destination_recipient_limit": {}, "lmtp_destination_recipient_limit": {},
	"default_transport_rate_delay": {}, "smtp_transport_rate_delay": {},
	"relay_transport_rate_delay": {}, "lmtp_transport_rate_delay": {},
	// acceptance limits
	"message_size_limit": {}, "smtpd_recipient_limit": {}, "header_size_limit": {},
	"smtpd_timeout": {}, "smtpd_hard_error_limit": {}, "smtpd_soft_error_limit": {},
	"smtpd_client_connection_count_limit": {}, "line_length_limit": {},
	"header_address_token_limit": {},
	// client limits (anvil) and stress mode
	"smtpd_client_connection_rate_limit": {}, "smtpd_client_message_rate_limit": {},
	"smtpd_client_recipient_rate_limit": {}, "anvil_rate_time_unit": {},
	"smtpd_client_event_limit_exceptions": {kind: KindNetList},
	"smtpd_junk_command_limit":            {}, "smtpd_error_sleep_time": {},
	"default_process_limit": {}, "stress": {allowed: []string{"yes"}},
	// queue
	"minimal_backoff_time": {}, "maximal_backoff_time": {}, "maximal_queue_lifetime": {},
	"bounce_queue_lifetime": {}, "queue_run_delay": {}, "qmgr_message_recipient_limit": {},
	"double_bounce_sender": {valid: validAddress}, "bounce_notice_recipient": {valid: validAddress},
	"2bounce_notice_recipient": {valid: validAddress},
	"bounce_size_limit":        {},
	"compatibility_level":      {}, "maillog_file": {}, "notify_classes": {allowed: notifyWords},
	"syslog_name": {valid: validSyslogName}, "syslog_facility": {allowed: facilityWords},
	// local delivery as root: the identity of mailboxes with no passwd entry
	"default_privs": {},
	// local(8): .forward, mailbox_command, strict ownership (internal/local)
	"forward_path": {valid: validForwardPath}, "forward_expansion_filter": {},
	"mailbox_command": {}, "mailbox_command_maps": {kind: KindTables},
	"strict_mailbox_ownership":             {},
	"execution_directory_expansion_filter": {},
	// local(8): what master.LocalDeliveryFindings reads and check reports
	"mailbox_delivery_lock": {}, // checked by master with mbox.CheckLocks, the delivery's own rules
	"mailbox_size_limit":    {},
	"stale_lock_time":       {}, "deliver_lock_attempts": {}, "deliver_lock_delay": {},
	"allow_mail_to_commands": {allowed: []string{"alias", "forward", "include"}},
	"allow_mail_to_files":    {allowed: []string{"alias", "forward", "include"}},
	// delivery to commands (internal/command)
	"command_time_limit": {}, "export_environment": {valid: validEnvList}, "import_environment": {valid: validEnvList}, "local_command_shell": {valid: validShell}, "command_expansion_filter": {},
	"command_execution_directory": {valid: validForwardPath},
}

// minimum is the least value of a numeric parameter, as Postfix's
// get_mail_conf_int_table has it, for those mailtee checks.
var minimum = map[string]int64{
	"header_size_limit":          1,
	"header_address_token_limit": 1,
	"bounce_size_limit":          1, // bounce.c
	// smtp/smtp_params.c
	"smtp_connection_reuse_count_limit": 0,
	// global/mail_params.c
	"socketmap_max_reply_size": 1, "socketmap_max_query_size": 1,
}

// harmless lists Postfix parameters mailtee ignores because they cannot
// change where mail goes or what is accepted.
var harmless = map[string]bool{
	"biff": true, "append_dot_mydomain": true, "readme_directory": true,
	"alias_database": true, "mail_owner": true,
	"sendmail_path": true, "newaliases_path": true,
	"mailq_path":       true,
	"debugger_command": true, "delay_warning_time": true,
	"multi_instance_enable": true,
	"multi_instance_name":   true, "multi_instance_group": true,
	"multi_instance_directories": true, "multi_instance_wrapper": true,
	"maillog_file_prefixes": true, "smtp_tls_note_starttls_offer": true,
	"smtpd_tls_received_header": true, "tls_random_source": true,
	"show_user_unknown_table_name": true,
	// mailtee has no TLS session cache: every TLS session is new, and
	// smtpd_client_connection_rate_limit bounds them. Nor has it AUTH.
	"smtpd_client_new_tls_session_rate_limit": true, "smtpd_client_auth_rate_limit": true,
	"anvil_status_update_time": true,
	// Per recipient in Postfix; mailtee's local next hop is the domain,
	// with default_destination_concurrency_limit (README, item 7).
	"local_destination_concurrency_limit": true,
	// mailtee's lmtp client caches no connection: each carries one
	// message, within any reuse limit.
	"lmtp_connection_reuse_count_limit": true, "lmtp_connection_reuse_time_limit": true,
}

// harmlessPattern covers families of harmless parameters: installation
// paths, logging, caches, process and performance tuning, and TLS details
// where mailtee is always at least as strict (TLS 1.2+, modern ciphers,
// no session caches).
var harmlessPattern = regexp.MustCompile(`^(.*_directory|.*_path|debug_peer_.*|.*_loglevel|.*_log_level|` +
	`.*_tls_(ca_?file|ca_?path|capath|cafile|session_cache_.*|protocols|mandatory_protocols|ciphers|mandatory_ciphers|exclude_ciphers|mandatory_exclude_ciphers|eecdh_grade|dh1024_param_file|dh512_param_file)|` +
	`.*_process_limit|.*_service_name|.*_cache_database|.*_cache_timeout|.*_rate_delay|.*_destination_recipient_limit|` +
	`.*_watchdog_timeout|.*_idle|.*_use_timeout|ipc_.*|.*_buffer_size|` +
	`qmgr_.*|in_flow_delay|stress|daemon_timeout|.*_timeout)$`)

func init() {
	for name := range pacingNames() {
		implemented[name] = paramInfo{}
	}
}

// SupportOf says what mailtee does with a parameter.
func SupportOf(name string) Support {
	if _, ok := implemented[name]; ok {
		return Implemented
	}
	if harmless[name] {
		return Harmless
	}
	if harmlessPattern.MatchString(strings.ToLower(name)) && name != "queue_directory" {
		return Harmless
	}
	if harmlessReason(name) != "" {
		return Harmless
	}
	return Unsupported
}

// KindOf says how a parameter's value is read.
func KindOf(name string) Kind { return implemented[name].kind }

// Check returns every finding about the configuration: syntax (from
// Parse), unknown names with a suggestion, parameters mailtee does not
// honour, bad values and expansion errors. Tables are checked by the
// caller, which opens them (see TableRefs).
func (c *Config) Check() diag.List {
	out := append(diag.List(nil), c.Diags...)
	var feats featureUse
	for _, s := range c.Settings() {
		c.checkSetting(s, &out, &feats)
	}
	feats.report(c.File, &out)
	c.checkDerived(&out)
	c.checkOwnDirs(&out)
	c.checkTLSFiles(&out)
	sort.SliceStable(out, func(i, j int) bool { return out[i].Line < out[j].Line })
	return out
}

// checkDomainClasses warns of a domain named in two address classes, as
// trivial-rewrite's resolve.c does at each lookup ("do not list domain
// %s in BOTH %s and %s"): only the first class in its order counts, so
// the second listing does nothing. Names written in main.cf only;
// tables and files are looked up at run time.
func (c *Config) checkDomainClasses(out *diag.List) {
	classes := []string{"mydestination", "virtual_alias_domains", "virtual_mailbox_domains", "relay_domains"}
	first := map[string]string{} // domain: the class that has it
	for _, class := range classes {
		s, set := c.set[class]
		if !set {
			continue // a default ($virtual_mailbox_maps, empty) names none
		}
		for _, el := range c.List(class) {
			name := strings.TrimSuffix(strings.ToLower(el), ".")
			if strings.HasPrefix(name, "!") || strings.HasPrefix(name, "/") || pflist.IsTable(name) || name == "" {
				continue
			}
			// relay_domains = $mydestination is an old idiom (and
			// Postfix's default before compatibility level 2), which
			// resolve.c does not warn about.
			if prev, ok := first[name]; ok && prev != class && !(prev == "mydestination" && class == "relay_domains") {
				out.Warnf(c.File, s.Line, "do not list domain %s in BOTH %s and %s: it is %s's (the first in Postfix's order), so this listing does nothing", name, prev, class, prev)
				continue
			}
			first[name] = class
		}
	}
}

// checkDerived reports what is wrong with values derived from several
// settings, at the line of the setting that most likely needs a change.
func (c *Config) checkDerived(out *diag.List) {
	// Postfix's default relay_domains below compatibility_level 2 is
	// $mydestination, whose domains are local, not relayed: only an
	// explicit setting opens the door to backscatter.
	if s, set := c.set["relay_domains"]; set && len(c.List("relay_domains")) > 0 && len(c.List("relay_recipient_maps")) == 0 {
		out.Warnf(c.File, s.Line, "relay_domains is set but relay_recipient_maps is empty: every address in those domains is accepted, and when the next hop refuses one, mailtee bounces the message to its sender, often forged (backscatter); list the valid recipients in relay_recipient_maps (user@domain, or @domain to accept a whole domain) so that unknown ones get 550 at RCPT")
	}
	c.checkDomainClasses(out)
	if len(c.List("virtual_mailbox_domains")) > 0 && c.RunsVirtual() {
		// Postfix's default: virtual(8) writes the mailboxes.
		// At the line that sets it, else at the one that makes the
		// domains (virtual_mailbox_domains, or its default's maps).
		var name string
		var s Setting
		for _, name = range []string{"virtual_transport", "virtual_mailbox_domains", "virtual_mailbox_maps"} {
			var set bool
			if s, set = c.set[name]; set {
				break
			}
		}
		out.Errorf(c.File, s.Line, "%s: the virtual mailbox domains' mail goes to virtual_transport = %s, Postfix's virtual(8) delivery agent, which mailtee does not have; deliver it to the mail store over LMTP, as Dovecot takes it (virtual_transport = lmtp:unix:private/dovecot-lmtp), or to another server (virtual_transport = smtp:[store.example.com])",
			name, c.Get("virtual_transport"))
	}
	if _, set := c.set["mynetworks"]; !set {
		if _, err := c.Mynetworks(); err != nil {
			out.Errorf(c.File, c.set["inet_interfaces"].Line, "mynetworks: cannot compute its default from inet_interfaces, inet_protocols and mynetworks_style: %v (Postfix stops with this error too); set mynetworks, or list only this host's interface addresses in inet_interfaces", err)
		}
	}
}

func (c *Config) checkSetting(s Setting, out *diag.List, feats *featureUse) {
	file, line := c.File, s.Line
	name := s.Name // whose support applies: a legacy name's successor's
	def, known := defaults[s.Name]
	legacy := false
	if !known {
		if succ := legacyNames[s.Name]; succ != "" {
			name, def, known, legacy = succ, defaults[succ], true, true
		} else if c.checkBind(s, out) {
			return
		} else if g := c.serviceParam(s.Name); g != "" {
			if _, ok := pacingParams[strings.TrimPrefix(g, "default")]; ok {
				return // mailtee's, honoured; master's pacingTransports checks the value
			}
			out.Warnf(file, line, "%s: per-service form of %s for a master.cf service; not implemented by mailtee: ignored (delivery tuning, it does not change where mail goes or what is accepted)", s.Name, g)
			return
		}
	}
	if !known {
		if c.userDefs[s.Name] {
			return
		}
		if near := Suggest(s.Name); near != "" {
			out.Errorf(file, line, "%s: unknown parameter; did you mean %s?", s.Name, near)
		} else {
			out.Errorf(file, line, "%s: unknown parameter: neither Postfix nor mailtee has it; remove it, or refer to it as $%s from another parameter to make it a user-defined one", s.Name, s.Name)
		}
		return
	}
	e := expander{lookup: c.Raw, undefined: func(n string) {
		out.Warnf(file, line, "%s: undefined parameter $%s expands to nothing", s.Name, n)
	}}
	v, err := e.param(s.Name, s.Value, 0)
	if err != nil {
		out.Errorf(file, line, "%s: %v", s.Name, err)
		return
	}
	if strings.Contains(s.Value, " #") {
		out.Warnf(file, line, "%s: '#' starts a comment only at the beginning of a line; here it is part of the value", s.Name)
	}
	was := ""
	if legacy {
		was = fmt.Sprintf(" (the name %s had before Postfix renamed it)", name)
	}
	switch SupportOf(name) {
	case Harmless:
		if why := harmlessReason(name); why != "" {
			out.Warnf(file, line, "%s%s: not implemented by mailtee; ignored: %s", s.Name, was, why)
			return
		}
		out.Warnf(file, line, "%s%s: not implemented by mailtee; ignored (it does not change where mail goes or what is accepted)", s.Name, was)
		return
	case Unsupported:
		// A legacy name's successor's default refers to it: only its
		// own (empty) default is the same value.
		if !legacy && sameValue(c, s.Value, def) || legacy && strings.TrimSpace(s.Value) == "" {
			out.Warnf(file, line, "%s%s: not implemented by mailtee; set to its Postfix default, which is how mailtee behaves", s.Name, was)
			return
		}
		if v, ok := mailteeBehaves[name]; ok && strings.TrimSpace(s.Value) == v {
			out.Warnf(file, line, "%s: not implemented by mailtee; set to %s, which is how mailtee behaves", s.Name, v)
			return
		}
		if why := c.idleReason(name); why != "" {
			out.Warnf(file, line, "%s%s: not implemented by mailtee; ignored, as Postfix ignores it here: %s", s.Name, was, why)
			return
		}
		if f := featureOf(name); f != nil {
			feats.add(f, s)
			return
		}
		out.Errorf(file, line, "%s%s: not implemented by mailtee, and ignoring it could change %s; serve refuses to start until it is removed or set to its default (%s)",
			s.Name, was, consequence(name), quoteDefault(def))
		return
	}
	if c.restrictionsInPart(name, v, feats, s) {
		return
	}
	c.checkValue(name, v, def, file, line, out)
	if strings.Contains(s.Value, "stress") && s.Name != "stress" {
		// The value in stress mode is read too, when the server is
		// busy: it must be as valid as the normal one.
		st := c.Stressed()
		if sv, err := st.Expand(s.Value); err == nil && sv != v {
			var sd diag.List
			st.checkValue(s.Name, sv, def, file, line, &sd)
			for _, d := range sd {
				d.Msg += " (in stress mode)"
				*out = append(*out, d)
			}
		}
	}
}

// checkValue validates an implemented parameter's expanded value by the
// shape of its default and the allowed values, if any.
func (c *Config) checkValue(name, v, def, file string, line int, out *diag.List) {
	info := implemented[name]
	if strings.Contains(def, "$") {
		// A default such as ${stress?{1}:{20}} has the shape of its
		// values.
		if d, err := c.Expand(def); err == nil {
			def = d
		}
	}
	if info.allowed != nil {
		var bad []string
		near := ""
		for _, el := range SplitList(v) {
			if !contains(info.allowed, el) {
				bad = append(bad, fmt.Sprintf("%q", el))
				if w := nearestWord(el, info.allowed); w != "" && near == "" {
					near = fmt.Sprintf("; did you mean %s instead of %s?", w, el)
				}
			}
		}
		if bad != nil {
			out.Errorf(file, line, "%s: %s not supported by mailtee; it supports %s%s", name, strings.Join(bad, ", "), strings.Join(info.allowed, ", "), near)
		}
		return
	}
	if info.valid != nil && v != "" {
		if err := info.valid(v); err != nil {
			out.Errorf(file, line, "%s: %v", name, err)
			return
		}
	}
	if name == "myorigin" && strings.HasPrefix(v, "/") {
		if _, err := os.ReadFile(v); err != nil {
			out.Warnf(file, line, "%s: %v; Debian's Postfix reads myorigin from this file, and so does mailtee", name, err)
		}
		return
	}
	if name == "mailbox_transport" && v != "" && !strings.HasPrefix(v, "lmtp:") {
		out.Errorf(file, line, "%s: %q is not supported by mailtee; it delivers mailboxes itself (Maildir) or over LMTP (lmtp:unix:/path, lmtp:inet:host:port)", name, v)
		return
	}
	if name == "compatibility_level" {
		if _, err := parseLevel(v); err != nil {
			out.Errorf(file, line, "%s: %v", name, err)
		}
		return
	}
	switch info.kind {
	case KindNetList:
		for _, el := range SplitList(v) {
			if msg := checkNetwork(el); msg != "" {
				out.Errorf(file, line, "%s: %s", name, msg)
			}
		}
		return
	}
	if name == "inet_interfaces" {
		for _, el := range SplitList(v) {
			if _, err := netip.ParseAddr(strings.Trim(el, "[]")); err != nil && el != "all" && el != "loopback-only" && el != "localhost" {
				out.Warnf(file, line, "%s: %q is not an IP address; serve resolves it at start-up and refuses to start if it does not resolve to an address of this host", name, el)
			}
		}
	}
	switch {
	case def == "yes" || def == "no":
		if _, err := c.Bool(name); err != nil {
			out.Errorf(file, line, "%v", err)
		}
	case isNumber(def):
		if n, err := c.Int(name); err != nil {
			out.Errorf(file, line, "%v", err)
		} else if min, ok := minimum[name]; ok && n < min {
			// Postfix refuses to start: "invalid %s parameter value %d < %d".
			out.Errorf(file, line, "invalid %s parameter value %d < %d", name, n, min)
		}
	case def != "" && isNumber(def[:len(def)-1]) && strings.ContainsRune("smhdw", rune(def[len(def)-1])):
		if _, err := c.Duration(name); err != nil {
			out.Errorf(file, line, "%v", err)
		}
	}
}

// checkNetwork validates one mynetworks element: an address or
// network/prefix (IPv6 in brackets, as Postfix writes it), a "!" negation,
// a /file/name or a type:table. It returns "" when the element is good.
func checkNetwork(el string) string {
	el = strings.TrimLeft(el, "!")
	if pflist.IsTable(el) || strings.HasPrefix(el, "/") {
		return ""
	}
	if _, err := pflist.ParseNetwork(el); err != nil {
		return err.Error()
	}
	return ""
}

// TableRef is one lookup table named by a parameter.
type TableRef struct {
	Param, Spec string
	Line        int // 0 when the table comes from a default value
	// Alias is set when the source is an aliases(5) file: the table is
	// named in alias_maps (local_recipient_maps = $alias_maps names the
	// same files, and they are still alias files there).
	Alias bool
}

// AliasTables is the set of tables named in alias_maps: their sources
// are aliases(5) files wherever they are named (local_recipient_maps =
// $alias_maps names the same files).
func (c *Config) AliasTables() map[string]bool {
	out := map[string]bool{}
	for _, el := range c.List("alias_maps") {
		out[el] = true
	}
	return out
}

// TableRefs lists the lookup tables named by implemented parameters, in
// parameter order, so `check` and `serve` can open each one. Each is
// credited to the parameter whose value names it (see origin).
func (c *Config) TableRefs() []TableRef {
	var out []TableRef
	aliases := c.AliasTables()
	names := make([]string, 0, len(implemented))
	for n := range implemented {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		k := implemented[n].kind
		if k == KindText {
			continue
		}
		for _, el := range c.List(n) {
			if k == KindTables || pflist.IsTable(el) {
				param, line := c.origin(n, el)
				out = append(out, TableRef{Param: param, Spec: el, Line: line, Alias: aliases[el]})
			}
		}
	}
	return out
}

// consequence names what ignoring an unsupported parameter could change.
func consequence(name string) string {
	switch {
	case strings.Contains(name, "restrictions") || strings.Contains(name, "_access") || strings.HasPrefix(name, "smtpd_reject") || strings.Contains(name, "_checks"):
		return "what mail is accepted"
	case strings.Contains(name, "milter") || strings.Contains(name, "content_filter"):
		return "what filtering mail gets"
	case strings.Contains(name, "tls") || strings.Contains(name, "sasl"):
		return "TLS or authentication requirements"
	case strings.Contains(name, "transport") || strings.Contains(name, "relay") || strings.Contains(name, "fallback") || strings.Contains(name, "_maps"):
		return "where mail goes"
	}
	return "where mail goes or what is accepted"
}

func sameValue(c *Config, a, b string) bool {
	ea, err1 := c.Expand(a)
	eb, err2 := c.Expand(b)
	if err1 != nil || err2 != nil {
		return false
	}
	return strings.Join(SplitList(ea), " ") == strings.Join(SplitList(eb), " ")
}

func quoteDefault(def string) string {
	if def == "" {
		return "empty"
	}
	return fmt.Sprintf("%q", def)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func isNumber(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// ImplementedParams lists the parameters mailtee honours, sorted: the
// bad-configuration suite gives each a wrong value.
func ImplementedParams() []string {
	out := make([]string, 0, len(implemented))
	for n := range implemented {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
