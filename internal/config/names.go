package config

import (
	"strings"
)

// Names Postfix accepts beyond those `postconf -d` lists: legacy names,
// per-service names of master.cf's delivery services, and user-defined
// names referenced from master.cf. Postfix's postconf knows all three
// (src/postconf/postconf_builtin.c, postconf_service.c, postconf_user.c);
// check must not call them unknown.

// legacyNames are Postfix 3.7's pcf_legacy_str_table
// (src/postconf/postconf_builtin.c): renamed parameters that Postfix
// still reads, each through its successor's default, which refers to it
// (virtual_alias_maps = $virtual_maps, postscreen_denylist_action =
// ${postscreen_blacklist_action?...}). A legacy name is checked as its
// successor.
var legacyNames = map[string]string{
	"virtual_maps":                             "virtual_alias_maps",
	"fallback_relay":                           "smtp_fallback_relay",
	"authorized_verp_clients":                  "smtpd_authorized_verp_clients",
	"smtpd_client_connection_limit_exceptions": "smtpd_client_event_limit_exceptions",
	"postscreen_dnsbl_ttl":                     "postscreen_dnsbl_max_ttl",
	"postscreen_blacklist_action":              "postscreen_denylist_action",
	"postscreen_dnsbl_whitelist_threshold":     "postscreen_dnsbl_allowlist_threshold",
	"postscreen_whitelist_interfaces":          "postscreen_allowlist_interfaces",
	"lmtp_per_record_deadline":                 "lmtp_per_request_deadline",
	"smtp_per_record_deadline":                 "smtp_per_request_deadline",
	"smtpd_per_record_deadline":                "smtpd_per_request_deadline",
	"tlsproxy_client_level":                    "tlsproxy_client_security_level",
	"tlsproxy_client_policy":                   "tlsproxy_client_policy_maps",
}

// LegacySuccessor returns the parameter that replaced a legacy name, or
// "" when name is not one.
func LegacySuccessor(name string) string { return legacyNames[name] }

// serviceSuffixes are the per-service parameters that postconf registers
// for a master.cf service, by its command (pcf_register_service_parameters
// in src/postconf/postconf_service.c, Postfix 3.7): SERVICE + suffix, with
// the default "$" + the global parameter. pipe(8) services also get
// SERVICE_time_limit, spawn(8) ones only that.
var serviceSuffixes = map[string]string{
	"_recipient_limit":                             "default_recipient_limit",
	"_extra_recipient_limit":                       "default_extra_recipient_limit",
	"_recipient_refill_limit":                      "default_recipient_refill_limit",
	"_recipient_refill_delay":                      "default_recipient_refill_delay",
	"_delivery_slot_cost":                          "default_delivery_slot_cost",
	"_delivery_slot_loan":                          "default_delivery_slot_loan",
	"_delivery_slot_discount":                      "default_delivery_slot_discount",
	"_minimum_delivery_slots":                      "default_minimum_delivery_slots",
	"_initial_destination_concurrency":             "initial_destination_concurrency",
	"_destination_concurrency_limit":               "default_destination_concurrency_limit",
	"_destination_recipient_limit":                 "default_destination_recipient_limit",
	"_destination_concurrency_positive_feedback":   "default_destination_concurrency_positive_feedback",
	"_destination_concurrency_negative_feedback":   "default_destination_concurrency_negative_feedback",
	"_destination_concurrency_failed_cohort_limit": "default_destination_concurrency_failed_cohort_limit",
	"_destination_rate_delay":                      "default_destination_rate_delay",
	"_transport_rate_delay":                        "default_transport_rate_delay",
	// mailtee's (pacingParams)
	"_recipient_rate_limit":        "default_recipient_rate_limit",
	"_destination_rate_limit":      "default_destination_rate_limit",
	"_destination_bandwidth_limit": "default_destination_bandwidth_limit",
	"_destination_profile":         "default_destination_profile",
	// mailtee's (bindParams): an lmtp service's default to
	// lmtp_bind_address(6) instead (transportBind)
	"_bind_address":  "smtp_bind_address",
	"_bind_address6": "smtp_bind_address6",
}

// serviceCommands are the master.cf commands whose services get
// per-service parameters (postconf_service.c's service_defs).
var serviceCommands = map[string]bool{
	"local": true, "error": true, "virtual": true, "smtp": true, "lmtp": true, "pipe": true, "spawn": true,
}

// MasterService is one master.cf entry, as Check needs it: its service
// name and type (the first two fields: "smtp", "inet") and its command
// (the eighth field, such as "postscreen", "smtpd", "pipe").
type MasterService struct {
	Name, Type, Command string
}

// SetMasterNames tells Check what master.cf defines, so that the names
// Postfix accepts because of it are not reported as unknown, and the
// settings of a daemon master.cf does not run are not reported as
// missing features. services are master.cf's entries; referenced lists
// the names that master.cf's "-o name=value" values refer to as $name,
// and those listed in an "-o smtpd_restriction_classes=" there. Postfix's
// postconf does the same (postconf_service.c, postconf_user.c). Without
// a call, Check knows nothing of master.cf and assumes every daemon may
// run.
func (c *Config) SetMasterNames(services []MasterService, referenced []string) {
	c.services = append([]MasterService{}, services...)
	for _, n := range referenced {
		if !Known(n) {
			c.userDefs[n] = true
		}
	}
}

// serviceParam returns the global parameter whose value a per-service
// parameter defaults to (dovecot_destination_recipient_limit →
// default_destination_recipient_limit) when name is one for a service
// that SetMasterNames gave, else "".
func (c *Config) serviceParam(name string) string {
	for _, e := range c.services {
		cmd := e.Command
		rest, ok := strings.CutPrefix(name, e.Name)
		if !ok || !serviceCommands[cmd] {
			continue
		}
		if rest == "_time_limit" && (cmd == "pipe" || cmd == "spawn") {
			return "command_time_limit"
		}
		if g, ok := serviceSuffixes[rest]; ok && cmd != "spawn" {
			return g
		}
	}
	return ""
}

// isListSep separates smtpd_restriction_classes' names (CHARS_COMMA_SP).
func isListSep(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' || r == '\r' }
