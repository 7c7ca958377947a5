package sqltable

import (
	"fmt"
	"strings"

	"github.com/mailtee/mailtee/internal/pfline"
)

// domainList is the "domain" parameter, a string_list(3): names compared
// whole and without regard to case (no subdomains), "!name" to exclude,
// and /file/name for a file of names; the first element that matches
// decides.
type domainList []domainPattern

type domainPattern struct {
	name string // lower case
	neg  bool
}

// parseDomains reads the list; depth guards against a file that names
// itself.
func parseDomains(value string, read func(string) ([]byte, error), depth int) (domainList, error) {
	var l domainList
	for _, item := range strings.FieldsFunc(value, func(r rune) bool { return strings.ContainsRune(", \t\r\n", r) }) {
		neg := false
		for strings.HasPrefix(item, "!") {
			neg = !neg
			item = item[1:]
		}
		switch {
		case item == "":
			return nil, fmt.Errorf("a lone '!' in the list")
		case item[0] == '/':
			if depth > 8 {
				return nil, fmt.Errorf("%s: files nested too deep", item)
			}
			data, err := read(item)
			if err != nil {
				return nil, err
			}
			var text strings.Builder
			pfline.Scan(string(data), func(ln pfline.Line) { text.WriteString(ln.Text + " ") })
			sub, err := parseDomains(text.String(), read, depth+1)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", item, err)
			}
			for _, p := range sub {
				l = append(l, domainPattern{p.name, p.neg != neg})
			}
		case strings.Contains(item, ":"):
			return nil, fmt.Errorf("%q: a type:table in domain is not supported by mailtee; list the domains, or name a file of them (/path/to/file)", item)
		default:
			l = append(l, domainPattern{strings.ToLower(item), neg})
		}
	}
	return l, nil
}

// match is match_list_match() for a domain.
func (l domainList) match(domain string) bool {
	domain = strings.ToLower(domain)
	for _, p := range l {
		if p.name == domain {
			return !p.neg
		}
	}
	return false
}
