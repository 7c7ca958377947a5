package config

import (
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/mailtee/mailtee/internal/diag"
)

// A feature is a Postfix facility that mailtee does not have and that
// several parameters configure. Check reports one error per feature
// naming every parameter set for it, not one per parameter: the fix is
// the same for all of them (a front end that has the feature, or
// removing it), and twenty errors for one postscreen hide the others.
type feature struct {
	name string
	// what ignoring the feature could change, for the message
	consequence string
	match       *regexp.Regexp
}

var features = []feature{
	{"postscreen", "which clients may send mail", regexp.MustCompile(`^postscreen_`)},
	{"SASL authentication (AUTH)", "who may relay", regexp.MustCompile(`^(smtpd_sasl_|broken_sasl_auth_clients$|cyrus_sasl_config_path$)`)},
	{"SASL authentication to the next hop (smtp_sasl_*)", "whether mail is delivered to a relayhost that demands AUTH", regexp.MustCompile(`^(smtp|lmtp)_sasl_|^smtp_sender_dependent_authentication$`)},
	{"milters", "what filtering mail gets and what is accepted", regexp.MustCompile(`(^|_)milters?(_|$)`)},
	{"SMTP access restrictions", "what mail is accepted", regexp.MustCompile(`^smtpd_(client|helo|sender|data|end_of_data|etrn|recipient)_restrictions$|^smtpd_restriction_classes$|^smtpd_helo_required$|^smtpd_reject_unlisted_(sender|recipient)$|^strict_rfc821_envelopes$|^smtpd_policy_service_|^smtpd_forbid_unauth_pipelining$|^smtpd_(client|helo|sender|recipient)_access_maps$`)},
	{"content inspection (header_checks, body_checks)", "what mail is accepted", regexp.MustCompile(`^(header|body|mime_header|nested_header)_checks$|^body_checks_size_limit$`)},
	{"content filters", "what filtering mail gets", regexp.MustCompile(`^content_filter$|^smtpd_proxy_`)},
	{"virtual(8), the virtual mailbox delivery agent", "where the virtual mailbox domains' mail goes", regexp.MustCompile(`^virtual_(mailbox_(base|limit|lock)|uid_maps|gid_maps|minimum_uid)$`)},
	{"TLS policy of the SMTP client", "where mail may go unencrypted", regexp.MustCompile(`^smtp_tls_(policy_maps|mandatory_.*|fingerprint_.*|verify_cert_match|secure_cert_match|wrappermode|enforce_peername)$|^smtp_use_tls$|^smtp_enforce_tls$|^smtp_dns_support_level$|^smtp_tls_dane_insecure_mx_policy$`)},
}

// featureOf returns the feature a parameter belongs to, or nil.
func featureOf(name string) *feature {
	for i := range features {
		if features[i].match.MatchString(name) {
			return &features[i]
		}
	}
	return nil
}

// featureUse collects the parameters set for features mailtee lacks.
type featureUse struct {
	order  []*feature
	by     map[*feature][]Setting
	detail map[string]string // by parameter: what in its value is missing
}

func (u *featureUse) add(f *feature, s Setting) {
	if u.by == nil {
		u.by = map[*feature][]Setting{}
	}
	if _, ok := u.by[f]; !ok {
		u.order = append(u.order, f)
	}
	u.by[f] = append(u.by[f], s)
}

// addPart records a parameter that mailtee implements in part, with the
// list elements it does not (smtpd_recipient_restrictions =
// permit_mynetworks, reject_rbl_client ...).
func (u *featureUse) addPart(f *feature, s Setting, missing []string) {
	if u.detail == nil {
		u.detail = map[string]string{}
	}
	u.detail[s.Name] = strings.Join(missing, " ")
	u.add(f, s)
}

// report adds one error per feature, at the line of its first setting.
func (u *featureUse) report(file string, out *diag.List) {
	for _, f := range u.order {
		set := u.by[f]
		sort.SliceStable(set, func(i, j int) bool { return set[i].Line < set[j].Line })
		var names []string
		line := set[0].Line
		for _, s := range set {
			if d := u.detail[s.Name]; d != "" {
				names = append(names, fmt.Sprintf("%s (line %d: %s)", s.Name, s.Line, d))
				continue
			}
			names = append(names, fmt.Sprintf("%s (line %d)", s.Name, s.Line))
			line = min(line, s.Line)
		}
		they := "it is"
		if len(set) > 1 {
			they = "they are"
		}
		out.Errorf(file, line, "%s: not implemented by mailtee, and ignoring it could change %s; set: %s; serve refuses to start until %s removed or set to the Postfix default",
			f.name, f.consequence, strings.Join(names, ", "), they)
	}
}

// idleReason says why a Postfix parameter that mailtee does not honour
// cannot matter with this configuration, or "" when it may. Postfix
// itself ignores these: SASL details while smtpd_sasl_auth_enable = no,
// milter details with no milters, postscreen's settings when master.cf
// runs no postscreen.
func (c *Config) idleReason(name string) string {
	switch {
	case name == "smtpd_sasl_auth_enable":
		return ""
	case (strings.HasPrefix(name, "smtpd_sasl_") || name == "broken_sasl_auth_clients" || name == "cyrus_sasl_config_path") && c.Get("smtpd_sasl_auth_enable") != "yes":
		return "smtpd_sasl_auth_enable = no: AUTH is off, as it always is in mailtee"
	case strings.HasPrefix(name, "milter_") && len(c.List("smtpd_milters")) == 0 && len(c.List("non_smtpd_milters")) == 0:
		return "no milters are configured (smtpd_milters and non_smtpd_milters are empty)"
	case strings.HasPrefix(name, "postscreen_") && c.services != nil && !c.runs("postscreen"):
		return "master.cf runs no postscreen service"
	case featureOf(name) == virtualFeature && !c.RunsVirtual():
		return "only virtual(8) reads it, and virtual_transport = " + c.Get("virtual_transport") + " sends the virtual mailbox domains' mail elsewhere"
	case name == "smtpd_tls_req_ccert" && c.Get("smtpd_tls_security_level") != "encrypt":
		// With encrypt it refuses clients without a trusted
		// certificate, which mailtee would accept: not harmless.
		return "it takes effect only with smtpd_tls_security_level = encrypt (smtpd.c: \"Can't require client certs unless TLS is required\")"
	}
	return ""
}

// mailteeBehaves are values of unimplemented parameters that describe
// what mailtee does anyway, though they are not Postfix's defaults.
var mailteeBehaves = map[string]string{
	// mailtee never rewrites user%domain or site!user: such an address
	// keeps its local part (see address.HasRouting).
	"allow_percent_hack": "no", "swap_bangpath": "no",
}

// runs reports whether master.cf (as given to SetMasterNames) has a
// service with this command.
func (c *Config) runs(command string) bool {
	for _, e := range c.services {
		if e.Command == command {
			return true
		}
	}
	return false
}

// harmlessReason says why an unimplemented Postfix parameter cannot
// change where mail goes, what is accepted or who may relay, for those
// whose reason is worth more than the generic one; "" otherwise.
func harmlessReason(name string) string {
	switch {
	case name == "smtpd_tls_req_ccert":
		return "" // with encrypt, who may send: see idleReason
	case name == "disable_vrfy_command":
		return "mailtee never discloses whether an address exists: VRFY gets 252 whatever this says"
	case strings.HasPrefix(name, "tls_"), strings.Contains(name, "_tls_") && harmlessTLS.MatchString(name):
		return "a TLS library setting: mailtee offers TLS 1.2 and later with Go's modern cipher suites, whatever this says"
	case replyCodes.MatchString(name):
		return "a reply code or text for a refusal: mailtee's own refusals keep Postfix's default codes"
	case name == "proxy_read_maps" || name == "proxy_write_maps":
		return "proxymap(8)'s list of tables it may open; mailtee opens proxy: tables itself"
	case name == "smtpd_discard_ehlo_keywords":
		return "mailtee announces its own extensions; which ones a client may use does not change what is accepted or where it goes"
	case name == "smtpd_use_tls":
		return "mailtee offers STARTTLS whenever smtpd_tls_cert_file is set (smtpd_tls_security_level may), as smtpd_use_tls = yes does"
	case name == "smtp_tls_cert_file" || name == "smtp_tls_key_file" || name == "smtp_tls_chain_files" || name == "smtp_tls_eccert_file" || name == "smtp_tls_eckey_file":
		return "a client certificate for outgoing TLS: mailtee presents none, which next hops accept unless they demand one"
	case name == "address_verify_map":
		return "address verification's cache; mailtee does no address verification (reject_unverified_* restrictions are reported themselves)"
	case name == "smtpd_sender_login_maps":
		return "read only by the reject_*sender_login_mismatch restrictions, which check reports themselves"
	case name == "enable_long_queue_ids":
		return "the shape of queue IDs only: mailtee's are long, unique and never reused"
	case outgoingChecks.MatchString(name):
		return "outgoing content edits only (smtp(8) cannot reject or redirect with them): mail leaves with the headers or body these would change"
	}
	return ""
}

var (
	harmlessTLS    = regexp.MustCompile(`_tls_(ciphers|mandatory_ciphers|exclude_ciphers|mandatory_exclude_ciphers|protocols|mandatory_protocols|eecdh_grade|ask_ccert|req_ccert|ccert_verifydepth|received_header|auth_only|fingerprint_digest|dh1024_param_file|dh512_param_file|CAfile|CApath|ca_?file|ca_?path|security_options|always_issue_session_ids|session_cache_.*)$`)
	replyCodes     = regexp.MustCompile(`_(reject|defer|reply)_code$|_reject_reason$|^(reject|defer)_code$|_reject_footer(_maps)?$|^smtpd_reject_filter_maps$|^smtpd_expansion_filter$`)
	outgoingChecks = regexp.MustCompile(`^(smtp|lmtp)_(header|mime_header|nested_header|body)_checks$`)
)

// restrictionsInPart reports the restrictions of smtpd_recipient_restrictions
// or smtpd_relay_restrictions that mailtee lacks, so that they join the
// one finding about SMTP access restrictions (their table and service
// arguments, such as check_policy_service's inet:..., left out), and an
// smtp_tls_security_level that authenticates the next hop, which joins
// the one about the client's TLS policy.
func (c *Config) restrictionsInPart(name, v string, feats *featureUse, s Setting) bool {
	if name == "smtp_tls_security_level" {
		// Levels that authenticate the next hop belong with the rest
		// of the client's TLS policy (DANE wants
		// smtp_dns_support_level = dnssec too).
		switch v {
		case "dane", "dane-only", "verify", "secure", "fingerprint":
			feats.addPart(tlsClientFeature, s, []string{v})
			return true
		}
		return false
	}
	if name != "smtpd_recipient_restrictions" && name != "smtpd_relay_restrictions" {
		return false
	}
	var missing []string
	for _, el := range SplitList(v) {
		if !contains(implemented[name].allowed, el) && restrictionName.MatchString(el) && !contains(missing, el) {
			missing = append(missing, el)
		}
	}
	if missing == nil {
		return false
	}
	feats.addPart(restrictionFeature, s, missing)
	return true
}

var restrictionName = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

var (
	restrictionFeature = featureOf("smtpd_client_restrictions")
	virtualFeature     = featureOf("virtual_uid_maps")
	tlsClientFeature   = featureOf("smtp_tls_policy_maps")
)

// RunsVirtual says whether virtual_transport names Postfix's virtual(8)
// delivery agent, which mailtee does not have: the transport "virtual"
// (Postfix's default), or a master.cf service that runs it.
func (c *Config) RunsVirtual() bool {
	t, _, _ := strings.Cut(c.Get("virtual_transport"), ":")
	if c.services == nil {
		return t == "virtual"
	}
	for _, e := range c.services {
		if e.Name == t && e.Type == "unix" {
			return e.Command == "virtual"
		}
	}
	return false
}
