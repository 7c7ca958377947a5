// Package pflist reads the syntax of Postfix's list-valued parameters,
// shared by the configuration (which checks values) and the tables (which
// match them): splitting a list, telling a type:table element from a
// domain or file, reading a network element of mynetworks, and time
// values.
package pflist

import (
	"fmt"
	"net/netip"
	"strings"
)

// Split splits a Postfix list: elements are separated by commas
// and/or whitespace, and an element in braces {...} (such as
// inline:{ a=b, c=d }) keeps its commas and spaces.
func Split(s string) []string {
	var out []string
	start, depth := -1, 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '{':
			depth++
		case c == '}' && depth > 0:
			depth--
		case depth == 0 && strings.IndexByte(", \t\r\n", c) >= 0:
			if start >= 0 {
				out = append(out, s[start:i])
				start = -1
			}
			continue
		}
		if start < 0 {
			start = i
		}
	}
	if start >= 0 {
		out = append(out, s[start:])
	}
	return out
}

// ParseNetwork reads "1.2.3.4", "10.0.0.0/8", "[::1]/128" or "[fd00::]".
// Host bits set below the prefix are an error, as in Postfix.
func ParseNetwork(el string) (netip.Prefix, error) {
	plain := strings.NewReplacer("[", "", "]", "").Replace(el)
	if !strings.Contains(plain, "/") {
		a, err := netip.ParseAddr(plain)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not an IP address or network/prefix", el)
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(plain)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a network/prefix: %v", el, err)
	}
	if p.Masked() != p {
		return netip.Prefix{}, fmt.Errorf("non-null host address bits in %q, perhaps you should use %q instead", el, p.Masked().String())
	}
	return p, nil
}

// IsTable reports whether a list element names a lookup table
// ("type:name") rather than a domain, network or file.
func IsTable(el string) bool {
	i := strings.IndexByte(el, ':')
	if i <= 0 || strings.HasPrefix(el, "[") {
		return false
	}
	for _, c := range el[:i] {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}
