package sqltable

import (
	"fmt"
	"strings"
)

// Flags of a template set, as db_common.c's context accumulates them
// over the query and the result_format: what a key or a result must
// contain for the lookup (or the result) not to be skipped.
const (
	keyDomain   = 1 << iota // %d in the query, %D or %[1-9] anywhere
	keyUser                 // %u in the query, %U anywhere
	valueDomain             // %d in result_format
	valueUser               // %u in result_format
)

// templates is db_common.c's DB_COMMON_CTX: the query and result_format
// and what their '%' specifiers need.
type templates struct {
	query, result string
	flags         int
	nparts        int // highest %[1-9]
}

// parseTemplate is db_common_parse(): it validates format and adds what
// it needs to t. Postfix makes an unknown specifier fatal.
func (t *templates) parse(format string, query bool) error {
	for i := 0; i < len(format); i++ {
		if format[i] != '%' {
			continue
		}
		i++
		if i == len(format) {
			return fmt.Errorf("a %% at the end: write %%%% for a literal %%")
		}
		switch c := format[i]; c {
		case '%', 's', 'S':
		case 'u':
			if query {
				t.flags |= keyUser
			} else {
				t.flags |= valueUser
			}
		case 'd':
			if query {
				t.flags |= keyDomain
			} else {
				t.flags |= valueDomain
			}
		case 'U':
			t.flags |= keyUser
		case '1', '2', '3', '4', '5', '6', '7', '8', '9':
			if n := int(c - '0'); n > t.nparts {
				t.nparts = n
			}
			t.flags |= keyDomain
		case 'D':
			t.flags |= keyDomain
		default:
			return fmt.Errorf("invalid specifier %%%c: use %%s %%u %%d %%[1-9] %%S %%U %%D or %%%%", c)
		}
	}
	return nil
}

// expand is db_common_expand(): it appends format with its specifiers
// replaced to out, after a comma when out is not empty. For the query,
// value is the lookup key and key is empty (hasKey false); for
// result_format, value is one column of one row and key the lookup key.
// quote escapes what is substituted (nil: as is). It returns false when
// the key or value lacks a part the templates need: the query is then
// not run (the key is not found), the result skipped. warn receives
// Postfix's warnings for the skips it logs.
func (t *templates) expand(out *strings.Builder, format, value string, key string, hasKey bool, quote func(string) string, warn func(string)) bool {
	if value == "" {
		if warn != nil {
			if hasKey {
				warn(fmt.Sprintf("empty lookup result for: %q -- ignored", key))
			} else {
				warn("empty query string -- ignored")
			}
		}
		return false
	}
	// vat and kat are the indexes of the last '@' of value and key, -1
	// for none; a domain "exists" when something follows it.
	vat, kat := -1, -1
	if hasKey {
		if t.flags&(valueDomain|valueUser) != 0 {
			vat = strings.LastIndexByte(value, '@')
		}
		if (vat < 0 || vat == len(value)-1) && t.flags&valueDomain != 0 || vat == 0 && t.flags&valueUser != 0 {
			return false
		}
		if t.flags&(keyDomain|keyUser) != 0 {
			kat = strings.LastIndexByte(key, '@')
		}
		if (kat < 0 || kat == len(key)-1) && t.flags&keyDomain != 0 || kat == 0 && t.flags&keyUser != 0 {
			if warn != nil {
				warn(fmt.Sprintf("lookup key '%s' skipped after query", value))
			}
			return false
		}
	} else {
		if t.flags&(keyDomain|keyUser) != 0 {
			vat = strings.LastIndexByte(value, '@')
		}
		if (vat < 0 || vat == len(value)-1) && t.flags&keyDomain != 0 || vat == 0 && t.flags&keyUser != 0 {
			return false
		}
	}
	var parts []string
	if t.nparts > 0 {
		d := ""
		if hasKey {
			d = key[kat+1:]
		} else {
			d = value[vat+1:]
		}
		// argv_split() skips empty fields: "a..b" has two labels.
		parts = strings.FieldsFunc(d, func(r rune) bool { return r == '.' })
		if len(parts) < t.nparts {
			return false
		}
	}
	if out.Len() > 0 {
		out.WriteByte(',')
	}
	q := func(s string) {
		if quote != nil {
			s = quote(s)
		}
		out.WriteString(s)
	}
	for i := 0; i < len(format); i++ {
		c := format[i]
		if c != '%' || i+1 == len(format) {
			out.WriteByte(c)
			continue
		}
		i++
		switch format[i] {
		case '%':
			out.WriteByte('%')
		case 's':
			q(value)
		case 'u':
			if vat >= 0 {
				q(value[:vat])
			} else {
				q(value)
			}
		case 'd':
			q(value[vat+1:])
		case 'S':
			if hasKey {
				q(key)
			} else {
				q(value)
			}
		case 'U':
			switch {
			case hasKey && kat >= 0:
				q(key[:kat])
			case hasKey:
				q(key)
			case vat >= 0:
				q(value[:vat])
			default:
				q(value)
			}
		case 'D':
			if hasKey {
				q(key[kat+1:])
			} else {
				q(value[vat+1:])
			}
		case '1', '2', '3', '4', '5', '6', '7', '8', '9':
			q(parts[len(parts)-int(format[i]-'0')])
		}
	}
	return true
}
