package maps

// CIDR tables: cidr_table(5).
//
//	network/prefix   result
//	address          result
//	!pattern         result
//	if [!]pattern
//	endif
//
// The parsing follows Postfix's dict_cidr.c and cidr_match.c: an address
// may be written in [brackets], an address without a prefix length needs
// all its bits to match, a prefix whose host bits are not zero is
// refused, and addresses of one family never match patterns of the other
// (not even with "!"). As in Postfix, an IPv4-mapped IPv6 key such as
// ::ffff:192.0.2.1 is an IPv6 address: it matches ::ffff:0:0/96, not
// 192.0.2.0/24.

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/mailtee/mailtee/internal/diag"
	"github.com/mailtee/mailtee/internal/pfline"
)

// cidrRule is one rule of a cidr: table.
type cidrRule struct {
	op     ruleOp
	line   int
	prefix netip.Prefix
	neg    bool
	value  string
	endif  int // for opIf: index of the matching endif, or -1
}

// matches reports whether the rule applies to addr. A rule never applies
// to an address of the other family, negated or not.
func (r *cidrRule) matches(addr netip.Addr) bool {
	if addr.Is4() != r.prefix.Addr().Is4() {
		return false
	}
	return r.prefix.Contains(addr) != r.neg
}

// cidrTable is a parsed cidr: table; read-only after parsing.
type cidrTable struct {
	rules []cidrRule
}

// Lookup returns the result of the first rule that matches key, an IP
// address as Postfix prints it. A key that is not an address matches
// nothing.
func (t *cidrTable) Lookup(_ context.Context, key string) (string, bool, error) {
	addr, ok := parseCIDRAddr(key)
	if !ok {
		return "", false, nil
	}
	for i := 0; i < len(t.rules); i++ {
		r := &t.rules[i]
		switch r.op {
		case opMatch:
			if r.matches(addr) {
				return r.value, true, nil
			}
		case opIf:
			if r.matches(addr) {
				continue
			}
			if r.endif < 0 {
				return "", false, nil
			}
			i = r.endif
		}
	}
	return "", false, nil
}

// parseCIDRAddr parses an address the way inet_pton() does, choosing the
// family by the presence of a colon: no zones, no leading zeros in IPv4.
func parseCIDRAddr(s string) (netip.Addr, bool) {
	addr, err := netip.ParseAddr(s)
	if err != nil || addr.Zone() != "" || addr.Is6() != strings.Contains(s, ":") {
		return netip.Addr{}, false
	}
	return addr, true
}

// parseCIDR parses a cidr_table(5) source. Lines with errors are left out
// of the table; the findings say why, in Postfix's words where it has
// them.
func parseCIDR(file string, data []byte) (Table, diag.List) {
	var (
		diags diag.List
		t     = &cidrTable{}
		open  []int // rule indexes of ifs waiting for their endif
	)
	for _, ln := range pfline.Lines(file, data, &diags) {
		text := ln.Text
		switch {
		case keyword(text, "if"):
			neg, rest := cidrNegation(text[2:])
			if rest == "" {
				diags.Errorf(file, ln.Num, "no address pattern after if")
				continue
			}
			// As in Postfix, everything after "if" is the pattern, so
			// trailing text makes the pattern invalid.
			prefix, err := parseCIDRPattern(rest)
			if err != "" {
				diags.Errorf(file, ln.Num, "%s", err)
				continue
			}
			open = append(open, len(t.rules))
			t.rules = append(t.rules, cidrRule{op: opIf, line: ln.Num, prefix: prefix, neg: neg, endif: -1})
		case keyword(text, "endif"):
			if rest := strings.TrimLeft(text[5:], spaceChars); rest != "" {
				diags.Errorf(file, ln.Num, "text after endif: %q", rest)
				continue
			}
			if len(open) == 0 {
				diags.Errorf(file, ln.Num, "endif without matching if")
				continue
			}
			t.rules[open[len(open)-1]].endif = len(t.rules)
			open = open[:len(open)-1]
			t.rules = append(t.rules, cidrRule{op: opEndif, line: ln.Num})
		default:
			neg, rest := cidrNegation(text)
			pattern, value := rest, ""
			if i := strings.IndexAny(rest, spaceChars); i >= 0 {
				pattern, value = rest[:i], strings.TrimLeft(rest[i:], spaceChars)
			}
			if pattern == "" {
				diags.Errorf(file, ln.Num, "no address pattern")
				continue
			}
			prefix, err := parseCIDRPattern(pattern)
			if err != "" {
				diags.Errorf(file, ln.Num, "%s", err)
				continue
			}
			if value == "" {
				diags.Errorf(file, ln.Num, "no lookup result after %q", pattern)
				continue
			}
			t.rules = append(t.rules, cidrRule{op: opMatch, line: ln.Num, prefix: prefix, neg: neg, value: value})
		}
	}
	for _, i := range open {
		diags.Errorf(file, t.rules[i].line, "if has no matching endif; "+
			"when the if pattern does not apply, nothing after it is looked at")
	}
	return t, diags
}

// cidrNegation strips leading '!'s and whitespace, counting the '!'s.
func cidrNegation(s string) (neg bool, rest string) {
	i := 0
	for ; i < len(s) && (s[i] == '!' || isSpace(s[i])); i++ {
		if s[i] == '!' {
			neg = !neg
		}
	}
	return neg, s[i:]
}

// parseCIDRPattern parses address, address/len, [address], [address]/len
// or [address/len], as cidr_match_parse() does.
func parseCIDRPattern(pattern string) (netip.Prefix, string) {
	addrText, maskSearch := pattern, pattern
	if rest, ok := strings.CutPrefix(pattern, "["); ok {
		inside, after, found := strings.Cut(rest, "]")
		switch {
		case !found:
			return netip.Prefix{}, fmt.Sprintf("missing ']' character after %q", pattern)
		case after != "" && after[0] != '/':
			return netip.Prefix{}, fmt.Sprintf("garbage after \"[%s]\"", inside)
		case after != "":
			addrText, maskSearch = inside, after
		default:
			addrText, maskSearch = inside, inside
		}
	}
	// The mask starts at the first '/' of maskSearch; what precedes it
	// there is part of the address.
	slash := strings.IndexByte(maskSearch, '/')
	if slash < 0 {
		addr, ok := parseCIDRAddr(addrText)
		if !ok {
			return netip.Prefix{}, fmt.Sprintf("bad address pattern: %q", addrText)
		}
		return netip.PrefixFrom(addr, addr.BitLen()), ""
	}
	mask := maskSearch[slash+1:]
	if maskSearch == addrText {
		addrText = addrText[:slash]
	}
	bits := 32
	if strings.Contains(addrText, ":") {
		bits = 128
	}
	quoted := fmt.Sprintf("%q", addrText+"/"+mask)
	if mask == "" || strings.Trim(mask, "0123456789") != "" {
		return netip.Prefix{}, "bad mask value in " + quoted
	}
	n, err := strconv.Atoi(mask)
	if err != nil || n > bits {
		return netip.Prefix{}, "bad mask length in " + quoted
	}
	addr, ok := parseCIDRAddr(addrText)
	if !ok {
		return netip.Prefix{}, "bad network value in " + quoted
	}
	prefix := netip.PrefixFrom(addr, n)
	if masked := prefix.Masked(); masked.Addr() != addr {
		return netip.Prefix{}, fmt.Sprintf("non-null host address bits in %s, "+
			"perhaps you should use \"%s/%d\" instead", quoted, masked.Addr(), n)
	}
	return prefix, ""
}
