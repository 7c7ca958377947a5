package config

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/mailtee/mailtee/internal/address"
	"github.com/mailtee/mailtee/internal/pflist"
)

// The value checks of the implemented parameters whose values are not
// numbers, times, yes/no or a set of known words (those are checked by
// the shape of their default and by paramInfo.allowed). Each says what
// is wrong with an expanded value, or returns nil; Check reports it at the
// parameter's line. The bad-configuration suite (test/badconfig) gives
// every implemented parameter a wrong value and expects one of these, or
// a shape check, to refuse it.

// validAddress: one address, as in bounce_notice_recipient = postmaster;
// a bare local part is completed with $myorigin later.
func validAddress(v string) error {
	if l := SplitList(v); len(l) != 1 {
		return fmt.Errorf("expected one address, got %d", len(l))
	}
	if _, err := address.Parse(v); err != nil {
		return err
	}
	return nil
}

// validHostname follows Postfix's valid_hostname(): labels of letters,
// digits, '-' and '_', a hyphen neither first nor last, no empty label.
// Bytes above ASCII are let through for internationalized names.
func validHostname(v string) error {
	if v == "" {
		return fmt.Errorf("empty host name")
	}
	if len(v) > 255 {
		return fmt.Errorf("host name longer than 255 characters")
	}
	for _, label := range strings.Split(v, ".") {
		switch {
		case label == "":
			return fmt.Errorf("%q: empty label in host name", v)
		case len(label) > 63:
			return fmt.Errorf("%q: label longer than 63 characters", v)
		case label[0] == '-' || label[len(label)-1] == '-':
			return fmt.Errorf("%q: misplaced hyphen", v)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c >= 0x80) {
				return fmt.Errorf("%q: invalid character %q in host name", v, c)
			}
		}
	}
	return nil
}

// validOrigin is myorigin: a domain, or Debian's /file/name holding one
// (checked, with a warning only, in checkValue).
func validOrigin(v string) error {
	if strings.HasPrefix(v, "/") {
		return nil
	}
	return validHostname(v)
}

// validDomains is masquerade_domains: domains, each optionally "!".
func validDomains(v string) error {
	for _, el := range SplitList(v) {
		if err := validHostname(strings.TrimPrefix(el, "!")); err != nil {
			return err
		}
	}
	return nil
}

// validLocalParts is masquerade_exceptions: user names, which Postfix
// compares with the local part only, so "user@domain" never matches.
func validLocalParts(v string) error {
	for _, el := range SplitList(v) {
		if strings.Contains(el, "@") {
			return fmt.Errorf("%q: expected a user name without @domain (the local part is what is compared)", el)
		}
	}
	return nil
}

// validPort is a TCP port number or a service name from /etc/services
// ("smtp"; "lmtp" is known to mailtee even where services lacks it).
func validPort(v string) error {
	if v == "smtp" || v == "lmtp" {
		return nil
	}
	if n, err := strconv.Atoi(v); err == nil {
		if n <= 0 || n > 65535 {
			return fmt.Errorf("bad network port: %s", v)
		}
		return nil
	}
	if _, err := net.LookupPort("tcp", v); err != nil {
		return fmt.Errorf("%q: not a port number nor a known service name", v)
	}
	return nil
}

// validInterfaces is inet_interfaces and proxy_interfaces: addresses (IPv6
// may be in brackets), host names, or inet_interfaces' keywords. A host
// name is resolved by serve at start-up (checkValue warns about that).
func validInterfaces(v string) error {
	for _, el := range SplitList(v) {
		if el == "all" || el == "loopback-only" || el == "localhost" {
			continue
		}
		if strings.HasPrefix(el, "[") != strings.HasSuffix(el, "]") {
			return fmt.Errorf("%q: unbalanced brackets", el)
		}
		if _, err := netip.ParseAddr(strings.Trim(el, "[]")); err == nil {
			continue
		}
		if err := validHostname(el); err != nil {
			return fmt.Errorf("%q: not an IP address nor a host name", el)
		}
	}
	return nil
}

// validNexthops is relayhost: "[host]", "[host]:port", "host" or
// "host:port" ("[...]" suppresses the MX lookup).
func validNexthops(v string) error {
	for _, el := range SplitList(v) {
		if err := validNexthop(el); err != nil {
			return err
		}
	}
	return nil
}

func validNexthop(el string) error {
	host, port := el, ""
	if strings.HasPrefix(el, "[") {
		end := strings.IndexByte(el, ']')
		if end < 0 {
			return fmt.Errorf("%q: missing ']'", el)
		}
		host, port = el[1:end], el[end+1:]
		if port != "" && !strings.HasPrefix(port, ":") {
			return fmt.Errorf("%q: unexpected text after ']'", el)
		}
		port = strings.TrimPrefix(port, ":")
		if a, ok := strings.CutPrefix(strings.ToLower(host), "ipv6:"); ok {
			host = a
		}
		if _, err := netip.ParseAddr(host); err == nil {
			host = ""
		}
	} else if h, p, ok := strings.Cut(el, ":"); ok {
		host, port = h, p
	}
	if host != "" {
		if err := validHostname(host); err != nil {
			return fmt.Errorf("%q: %v", el, err)
		}
	}
	if port != "" || strings.HasSuffix(el, ":") {
		if err := validPort(port); err != nil {
			return fmt.Errorf("%q: %v", el, err)
		}
	}
	return nil
}

// validIPv4 and validIPv6 are smtp_bind_address and smtp_bind_address6.
func validIPv4(v string) error {
	if a, err := netip.ParseAddr(v); err != nil || !a.Is4() {
		return fmt.Errorf("%q: not an IPv4 address", v)
	}
	return nil
}

func validIPv6(v string) error {
	if a, err := netip.ParseAddr(strings.Trim(v, "[]")); err != nil || !a.Is6() {
		return fmt.Errorf("%q: not an IPv6 address", v)
	}
	return nil
}

// validDNSServers is mailtee's dns_servers: "address:port" each, as the
// resolver dials them (a host name is resolved from /etc/hosts).
func validDNSServers(v string) error {
	for _, el := range SplitList(v) {
		h, p, err := net.SplitHostPort(el)
		if err != nil {
			return fmt.Errorf("%q: expected address:port, such as 127.0.0.1:53 or [::1]:53", el)
		}
		if _, err := netip.ParseAddr(h); err != nil && validHostname(h) != nil {
			return fmt.Errorf("%q: %q is not an IP address nor a host name", el, h)
		}
		if err := validPort(p); err != nil {
			return fmt.Errorf("%q: %v", el, err)
		}
	}
	return nil
}

// validParamNames is parent_domain_matches_subdomains: parameter names,
// and the pseudo-name smtpd_access_maps of Postfix's default.
func validParamNames(v string) error {
	for _, el := range SplitList(v) {
		if Known(el) || el == "smtpd_access_maps" {
			continue
		}
		if near := Suggest(el); near != "" {
			return fmt.Errorf("%q: unknown parameter name; did you mean %s?", el, near)
		}
		return fmt.Errorf("%q: unknown parameter name", el)
	}
	return nil
}

// validDelimiter is recipient_delimiter: a set of characters, none of
// which may be one that separates or delimits addresses.
func validDelimiter(v string) error {
	if i := strings.IndexAny(v, "@<>,\" \t"); i >= 0 {
		return fmt.Errorf("%q: %q cannot be a delimiter: it is part of address syntax", v, v[i])
	}
	return nil
}

// validRejectCode is an SMTP reply code for a rejection: 4XX or 5XX.
func validRejectCode(v string) error {
	if n, err := strconv.Atoi(v); err == nil && (n < 400 || n > 599) {
		return fmt.Errorf("%d: expected a 4XX or 5XX reply code", n)
	}
	return nil // a non-number is refused by the number check
}

// validAbsPath is a directory Postfix requires absolute
// (postfix_queue_directory: relative sockets are found under it, so a
// relative one would depend on where mailtee was started).
func validAbsPath(v string) error {
	if !strings.HasPrefix(v, "/") {
		return fmt.Errorf("%q: must be an absolute path, such as /var/spool/postfix", v)
	}
	return nil
}

// validGroupName is setgid_group: a group name as useradd(8) takes one
// (whether the group exists is the server's to say: check may run
// elsewhere).
func validGroupName(v string) error {
	for i, r := range v {
		ok := r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || i > 0 && (r == '-' || r == '.' || r >= '0' && r <= '9')
		if !ok {
			return fmt.Errorf("%q: not a group name (letters, digits, '_', '-' and '.', starting with a letter or '_'), such as postdrop", v)
		}
	}
	if v == "" {
		return fmt.Errorf("empty: sendmail for users other than root needs a group, such as postdrop")
	}
	return nil
}

// validAbsPaths is a list of directories that must be absolute
// (alternate_config_directories: compared with what a user gives -c).
func validAbsPaths(v string) error {
	for _, el := range pflist.Split(v) {
		if err := validAbsPath(el); err != nil {
			return err
		}
	}
	return nil
}

// localAttrs are the names local(8) expands in forward_path and
// command_execution_directory (local_expand.c), with example values.
var localAttrs = map[string]string{
	"user": "u", "home": "/home/u", "shell": "/bin/sh", "domain": "example.com",
	"local": "u+ext", "mailbox": "u+ext", "recipient": "u+ext@example.com",
	"extension": "ext", "recipient_delimiter": "+",
}

// validForwardPath checks forward_path: each element must name only
// local(8)'s attributes and be an absolute path once they are expanded
// (a relative one would be looked up in mailtee's working directory).
func validForwardPath(v string) error {
	for _, el := range SplitList(v) {
		var unknown []string
		out, _, err := ExpandAttrs(el, func(name string) (string, bool) {
			val, ok := localAttrs[strings.ToLower(name)]
			if !ok {
				unknown = append(unknown, "$"+name)
			}
			return val, ok
		})
		switch {
		case err != nil:
			return fmt.Errorf("%q: %v", el, err)
		case len(unknown) > 0:
			return fmt.Errorf("%q: %s is none of local(8)'s attributes ($user, $home, $shell, $domain, $local, $recipient, $extension, $recipient_delimiter)", el, strings.Join(unknown, ", "))
		case !strings.HasPrefix(out, "/"):
			return fmt.Errorf("%q is not an absolute path; write it from $home, as in $home/.forward", el)
		}
	}
	return nil
}

// validEnvList checks export_environment and import_environment: each
// element is NAME or NAME=value (clean_env.c refuses "=value").
func validEnvList(v string) error {
	for _, el := range SplitList(v) {
		name, _, _ := strings.Cut(el, "=")
		if name == "" {
			return fmt.Errorf("%q: missing variable name before '='", el)
		}
		for i, r := range name {
			if !(r == '_' || r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || i > 0 && r >= '0' && r <= '9') {
				return fmt.Errorf("%q: %q is not an environment variable name", el, name)
			}
		}
	}
	return nil
}

// validShell checks local_command_shell: empty (commands run directly
// or with /bin/sh -c), or a program given by its absolute path that
// exists, with its arguments; the command is appended.
func validShell(v string) error {
	f := strings.Fields(v)
	if len(f) == 0 {
		return nil
	}
	if !strings.HasPrefix(f[0], "/") {
		return fmt.Errorf("%q: give the shell's absolute path, such as /bin/sh -c", v)
	}
	st, err := os.Stat(f[0])
	if err != nil {
		return fmt.Errorf("%q: %v", v, err)
	}
	if st.IsDir() || st.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%q: %s is not an executable file", v, f[0])
	}
	return nil
}

// validReuseTime refuses what Postfix refuses (smtp/smtp_params.c: at
// least 1s); in mailtee's client 0 would mean no limit, the opposite of
// what someone who writes it wants.
func validReuseTime(v string) error {
	if d, err := ParseDuration(v, 's'); err == nil && d < time.Second {
		return fmt.Errorf("%s is less than 1s, which Postfix refuses; to reuse connections less, lower smtp_connection_reuse_count_limit", v)
	}
	return nil
}
