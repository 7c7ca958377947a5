// Package address parses, quotes and normalizes RFC 5321 mail addresses the
// way Postfix does.
//
// An Address holds the local part in internal (unquoted) form, as Postfix
// keeps it in the queue and looks it up in tables; String gives the external
// (quoted) form for the wire and for logs. Parse reads what SMTP clients and
// command lines send:
//
//	user@example.com         <user@example.com>       <>  (the null sender)
//	"first last"@example.com "a\"b"@example.com       postmaster (no domain)
//	user@[192.0.2.1]         user@[IPv6:2001:db8::1]  jöran@bücher.example
//	<@relay1,@relay2:user@example.com>                (the route is dropped)
//
// Parse is a little more lenient than RFC 5321 where Postfix (with its default
// strict_rfc821_envelopes = no) is too, because real mail depends on it:
// unquoted local parts may have leading, trailing or doubled dots
// (first..last.@docomo.ne.jp) and may contain '@' (user@host@relay; the split
// is at the last '@'), and a domain may end in one dot. Such addresses come
// back quoted from String. It is stricter where leniency is a hazard: control
// characters (CR, LF, NUL, ...), invalid UTF-8, and address literals other
// than IPv4 and IPv6 are errors.
//
// Routing in the local part (user%host, host!user, user@host) is kept so
// that relay control can refuse it, as Postfix's resolver does with
// RESOLVE_FLAG_ROUTED; see Address.HasRouting. A source route is dropped
// (RFC 5321 Appendix C) and only recorded in Routed.
package address

import (
	"fmt"
	"net/netip"
	"strings"
	"unicode/utf8"
)

// Address is a mailbox. The zero Address is the null sender, <>.
type Address struct {
	// Local is the local part, unquoted: for "a b"@example.com it is a b.
	Local string
	// Domain is the domain as written, without the '@'; an address literal
	// keeps its brackets ("[192.0.2.1]"). It is empty for a bare local part.
	Domain string
	// Routed is set by Parse when the input carried a source route
	// (@a,@b:user@c), which Parse strips as Postfix does. Compare addresses
	// by Local and Domain, or by String, when the route does not matter.
	Routed bool
}

// SyntaxError is returned by Parse for input that is not an address. An SMTP
// server answers it with 501 5.1.3 (bad destination mailbox address syntax)
// or 5.1.7 for a sender.
type SyntaxError struct {
	Input  string // the text given to Parse
	Reason string // what is wrong, e.g. "missing domain after @"
}

func (e *SyntaxError) Error() string {
	in := e.Input
	if len(in) > 200 { // keep log lines bounded whatever a client sends
		in = in[:200] + "..."
	}
	return fmt.Sprintf("bad address %q: %s", in, e.Reason)
}

// IsNull reports whether a is the null sender <>.
func (a Address) IsNull() bool { return a.Local == "" && a.Domain == "" }

// String returns the address in external form, quoting the local part when
// it is not an RFC 5321 dot-string, like Postfix's quote_822_local with
// 8-bit text (SMTPUTF8) taken as ordinary characters. The null sender is "";
// an address without domain is its (quoted) local part.
func (a Address) String() string {
	if a.Domain == "" {
		if a.Local == "" {
			return ""
		}
		return QuoteLocal(a.Local)
	}
	return QuoteLocal(a.Local) + "@" + a.Domain
}

// Internal returns the address in Postfix's internal form: local@domain with
// the local part unquoted. This is the form lookup tables are keyed by.
func (a Address) Internal() string {
	if a.Domain == "" {
		return a.Local
	}
	return a.Local + "@" + a.Domain
}

// Lower returns a with the local part lower-cased and the domain passed
// through NormalizeDomain: the form for case-insensitive comparison and for
// lookups in fixed-string tables, which Postfix folds to lower case.
func (a Address) Lower() Address {
	a.Local = strings.ToLower(a.Local)
	a.Domain = NormalizeDomain(a.Domain)
	return a
}

// HasRouting reports whether the address asks for routing beyond its domain:
// the local part contains '%' (user%host@relay), '!' (host!user@relay) or
// '@' (user@host@relay). Like Postfix (resolve.c, RESOLVE_FLAG_ROUTED),
// this looks at the unquoted local part and ignores the local percent_hack
// and swap_bangpath settings, because the next hop may honour them; relay
// control must not let such an address through to a domain it only relays
// for. A source route is not routing any more: Parse has stripped it, and
// as RFC 5321 (3.6.1, Appendix C) asks and Postfix's trivial-rewrite
// does, the mail goes to, and is judged by, the final address alone.
func (a Address) HasRouting() bool {
	return strings.ContainsAny(a.Local, "%!@")
}

// NeedsSMTPUTF8 reports whether the address has non-ASCII characters and so
// may only be sent to a server that offers SMTPUTF8 (RFC 6531).
func (a Address) NeedsSMTPUTF8() bool {
	return !isASCII(a.Local) || !isASCII(a.Domain)
}

// NormalizeDomain lower-cases d and strips one trailing dot, as Postfix does
// before it compares domains ("example.COM." becomes "example.com"). Like
// Postfix it leaves "a.." alone so the error shows the domain as written.
// Internationalized domains are lower-cased but not converted to A-labels.
func NormalizeDomain(d string) string {
	if n := len(d); n > 1 && d[n-1] == '.' && d[n-2] != '.' {
		d = d[:n-1]
	}
	return strings.ToLower(d)
}

// Split splits an address in internal form at its last '@', without
// validation; domain is empty when there is no '@'. It is for hot lookup
// paths that already hold a parsed address as a string. A domain never
// contains '@', so the last one is the separator even when the local part
// has one.
func Split(addr string) (local, domain string) {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return addr[:i], addr[i+1:]
	}
	return addr, ""
}

// QuoteLocal returns local as it must be written in an address: unchanged
// when it is a dot-string (atoms of RFC 5322 atext, or UTF-8 per RFC 6531,
// separated by single dots), otherwise as a quoted string with '"' and '\'
// escaped. The empty local part is "\"\"".
func QuoteLocal(local string) string {
	if isDotString(local) {
		return local
	}
	var b strings.Builder
	b.Grow(len(local) + 2)
	b.WriteByte('"')
	for i := 0; i < len(local); i++ {
		c := local[i]
		if c == '"' || c == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(c)
	}
	b.WriteByte('"')
	return b.String()
}

// isDotString is Postfix's is_822_dot_string with QUOTE_FLAG_8BITCLEAN.
func isDotString(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= utf8.RuneSelf || isAtext(c):
		case c == '.':
			if s[i+1] == '.' { // safe: s does not end in '.'
				return false
			}
		default:
			return false
		}
	}
	return true
}

// isAtext reports whether c is RFC 5322 atext: the printable ASCII
// characters other than specials and space.
func isAtext(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

func isControl(c byte) bool { return c < 0x20 || c == 0x7f }

// Parse parses a mailbox as given in MAIL FROM or RCPT TO, or on a command
// line: with or without angle brackets; "<>" and "" are the null sender.
// A source route is stripped and recorded in Routed. The local part and the
// domain may be UTF-8 (SMTPUTF8). Errors are *SyntaxError.
func Parse(s string) (Address, error) {
	in := s
	fail := func(reason string) (Address, error) {
		return Address{}, &SyntaxError{Input: in, Reason: reason}
	}
	s = trimBlanks(s)
	if !utf8.ValidString(s) {
		return fail("invalid UTF-8")
	}
	if s != "" && s[0] == '<' {
		end := closingAngle(s)
		if end < 0 {
			return fail("missing closing '>'")
		}
		if end != len(s)-1 {
			return fail("unexpected text after '>'")
		}
		s = trimBlanks(s[1:end])
	} else if s != "" && s[len(s)-1] == '>' {
		return fail("'>' without '<'")
	}
	if s == "" {
		return Address{}, nil
	}

	var a Address
	if s[0] == '@' {
		colon := routeEnd(s)
		if colon < 0 {
			return fail("missing local part before @")
		}
		if reason := checkRoute(s[:colon]); reason != "" {
			return fail(reason)
		}
		s = s[colon+1:]
		if s == "" {
			return fail("missing mailbox after source route")
		}
		a.Routed = true
	}

	at, reason := lastAt(s)
	if reason != "" {
		return fail(reason)
	}
	rawLocal := s
	if at >= 0 {
		rawLocal = s[:at]
		a.Domain = s[at+1:]
		if rawLocal == "" {
			return fail("missing local part before @")
		}
		if a.Domain == "" {
			return fail("missing domain after @")
		}
	}
	a.Local, reason = parseLocal(rawLocal)
	if reason != "" {
		return fail(reason)
	}
	if at >= 0 {
		if reason := checkDomain(a.Domain); reason != "" {
			return fail(reason)
		}
	}
	return a, nil
}

// trimBlanks trims spaces and tabs only: other Unicode spaces are text.
func trimBlanks(s string) string {
	for s != "" && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for s != "" && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// closingAngle returns the index of the first '>' in s that is not inside a
// quoted string, or -1. s[0] is the opening '<'.
func closingAngle(s string) int {
	inQuote := false
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			inQuote = !inQuote
		case '>':
			if !inQuote {
				return i
			}
		}
	}
	return -1
}

// routeEnd returns the index of the ':' that ends a source route, skipping
// address literals, whose IPv6 form has colons of its own; -1 if none.
func routeEnd(s string) int {
	inLiteral := false
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '[':
			inLiteral = true
		case ']':
			inLiteral = false
		case ':':
			if !inLiteral {
				return i
			}
		}
	}
	return -1
}

// checkRoute checks an RFC 5321 A-d-l: "@" domain *("," "@" domain).
func checkRoute(route string) string {
	for _, hop := range strings.Split(route, ",") {
		if hop == "" || hop[0] != '@' {
			return "invalid source route: each hop must be @domain"
		}
		if hop == "@" {
			return "invalid source route: missing domain after @"
		}
		if reason := checkDomain(hop[1:]); reason != "" {
			return "invalid source route: " + reason
		}
	}
	return ""
}

// lastAt returns the index of the last '@' outside quoted strings, or -1.
// A backslash escapes the next byte, inside quotes or not.
func lastAt(s string) (int, string) {
	at := -1
	inQuote := false
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			inQuote = !inQuote
		case '@':
			if !inQuote {
				at = i
			}
		}
	}
	if inQuote {
		return -1, "unbalanced quote"
	}
	return at, ""
}

// parseLocal returns the unquoted form of a local part: either one quoted
// string (RFC 5321 Quoted-string, with UTF-8 per RFC 6531) or unquoted text.
func parseLocal(raw string) (string, string) {
	if raw == "" {
		return "", ""
	}
	if raw[0] == '"' {
		return parseQuoted(raw)
	}
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch {
		case c >= utf8.RuneSelf || isAtext(c) || c == '.' || c == '@':
		case c == '"':
			return "", "quote inside local part: quote the whole local part"
		case c == ' ':
			return "", "space in local part must be quoted"
		case c == '\\':
			return "", "backslash outside quotes in local part"
		case isControl(c):
			return "", "control character in local part"
		default:
			return "", fmt.Sprintf("invalid character %q in local part: quote the local part", c)
		}
	}
	return raw, ""
}

func parseQuoted(raw string) (string, string) {
	// Most quoted local parts have no escapes: return a substring then.
	if i := strings.IndexAny(raw[1:], "\\\""); i >= 0 && raw[1+i] == '"' && 1+i == len(raw)-1 {
		body := raw[1 : len(raw)-1]
		for j := 0; j < len(body); j++ {
			if isControl(body[j]) {
				return "", "control character in local part"
			}
		}
		return body, ""
	}
	var b strings.Builder
	b.Grow(len(raw))
	for i := 1; i < len(raw); i++ {
		c := raw[i]
		switch {
		case c == '\\':
			if i+1 >= len(raw) {
				return "", "unbalanced quote"
			}
			i++
			if isControl(raw[i]) {
				return "", "control character in local part"
			}
			b.WriteByte(raw[i])
		case c == '"':
			if i != len(raw)-1 {
				return "", "text after closing quote in local part"
			}
			return b.String(), ""
		case isControl(c):
			return "", "control character in local part"
		default:
			b.WriteByte(c)
		}
	}
	return "", "unbalanced quote"
}

// checkDomain checks a domain as Postfix's valid_hostname and
// valid_hostliteral do, allowing one trailing dot (Postfix strips it) and
// UTF-8 labels (SMTPUTF8). It returns what is wrong, or "".
func checkDomain(d string) string {
	if d == "" {
		return "missing domain after @"
	}
	if d[0] == '[' {
		return checkLiteral(d)
	}
	name := d
	if len(name) > 1 && name[len(name)-1] == '.' {
		name = name[:len(name)-1]
	}
	ascii := isASCII(name)
	if ascii && len(name) > 255 {
		return "domain longer than 255 octets"
	}
	numeric := true
	for label := range strings.SplitSeq(name, ".") {
		if label == "" {
			return "empty label in domain"
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return "misplaced hyphen in domain"
		}
		labelASCII := true
		for i := 0; i < len(label); i++ {
			c := label[i]
			switch {
			case '0' <= c && c <= '9', c == '-':
			case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', c == '_':
				numeric = false
			case c >= utf8.RuneSelf:
				numeric = false
				labelASCII = false
			case isControl(c):
				return "control character in domain"
			default:
				return fmt.Sprintf("invalid character %q in domain", c)
			}
		}
		// A-label lengths of UTF-8 labels are for IDNA conversion to check.
		if labelASCII && len(label) > 63 {
			return "domain label longer than 63 octets"
		}
	}
	if numeric {
		return "numeric domain: write an address literal such as [192.0.2.1]"
	}
	return ""
}

// checkLiteral checks an RFC 5321 address literal. Only IPv4 and IPv6 are
// accepted, as by Postfix; a General-address-literal has no use in mail.
func checkLiteral(d string) string {
	if len(d) < 2 || d[len(d)-1] != ']' {
		return "missing ']' after address literal"
	}
	lit := d[1 : len(d)-1]
	const tag = "IPv6:"
	if len(lit) >= len(tag) && strings.EqualFold(lit[:len(tag)], tag) {
		ip, err := netip.ParseAddr(lit[len(tag):])
		if err != nil || !ip.Is6() || ip.Zone() != "" {
			return "invalid IPv6 address literal"
		}
		return ""
	}
	if strings.IndexByte(lit, ':') >= 0 {
		return "unsupported address literal: only [IPv4] and [IPv6:...] are allowed"
	}
	ip, err := netip.ParseAddr(lit)
	if err != nil || !ip.Is4() {
		return "invalid IPv4 address literal"
	}
	return ""
}
