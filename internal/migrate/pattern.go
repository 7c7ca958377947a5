package migrate

import (
	"fmt"
	"strings"
)

// Pattern is a --copy-to pattern: the copy address of a mailbox, with %u
// for its user (the local part), %d for its domain and %% for a '%'.
// "%u@relay.students.iiit.ac.in" gives user1@students.iiit.ac.in the copy
// user1@relay.students.iiit.ac.in.
type Pattern struct {
	text  string
	parts []patternPart
}

type patternPart struct {
	lit  string
	verb byte // 'u', 'd', or 0 for lit
}

// ParsePattern checks a --copy-to pattern. It must name the user (%u:
// without it every mailbox would copy to one address) and have a domain
// after its last '@' (a copy is never delivered locally, and a bare local
// part would be). Blanks, commas, quotes and angle brackets are refused:
// the result is written unquoted into a table value or an alias list.
func ParsePattern(s string) (Pattern, error) {
	p := Pattern{text: s}
	var lit strings.Builder
	hasUser := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '%':
			if i+1 == len(s) {
				return Pattern{}, fmt.Errorf("copy-to pattern %q ends in a lone %%; write %%%% for a %% sign", s)
			}
			i++
			switch s[i] {
			case '%':
				lit.WriteByte('%')
			case 'u', 'd':
				if lit.Len() > 0 {
					p.parts = append(p.parts, patternPart{lit: lit.String()})
					lit.Reset()
				}
				p.parts = append(p.parts, patternPart{verb: s[i]})
				hasUser = hasUser || s[i] == 'u'
			default:
				return Pattern{}, fmt.Errorf("copy-to pattern %q: unknown %%%c; use %%u (user), %%d (domain) or %%%%", s, s[i])
			}
		case c <= ' ' || c == 0x7f || strings.IndexByte(",;:\"<>()[]\\", c) >= 0:
			return Pattern{}, fmt.Errorf("copy-to pattern %q: %q cannot be part of an address written into a table", s, c)
		default:
			lit.WriteByte(c)
		}
	}
	if lit.Len() > 0 {
		p.parts = append(p.parts, patternPart{lit: lit.String()})
	}
	if !hasUser {
		return Pattern{}, fmt.Errorf("copy-to pattern %q has no %%u: every mailbox would copy to the same address; write for example %%u@relay.example.com", s)
	}
	// The domain must be literal or %d, after the last '@'.
	last := -1
	for i, pt := range p.parts {
		if pt.verb == 0 && strings.Contains(pt.lit, "@") {
			last = i
		}
	}
	if last < 0 {
		return Pattern{}, fmt.Errorf("copy-to pattern %q has no '@domain': a copy must go to an address elsewhere, for example %%u@relay.example.com", s)
	}
	for _, pt := range p.parts[last+1:] {
		if pt.verb == 'u' {
			return Pattern{}, fmt.Errorf("copy-to pattern %q puts %%u in the domain; write %%u@domain", s)
		}
	}
	lp := p.parts[last].lit
	if after := lp[strings.LastIndexByte(lp, '@')+1:]; after == "" && last == len(p.parts)-1 {
		return Pattern{}, fmt.Errorf("copy-to pattern %q has an empty domain after '@'", s)
	}
	return p, nil
}

// String returns the pattern as given.
func (p Pattern) String() string { return p.text }

// Expand returns the copy address of user@domain.
func (p Pattern) Expand(user, domain string) string {
	var b strings.Builder
	for _, pt := range p.parts {
		switch pt.verb {
		case 'u':
			b.WriteString(user)
		case 'd':
			b.WriteString(domain)
		default:
			b.WriteString(pt.lit)
		}
	}
	return b.String()
}
