package maps

import (
	"fmt"
	"strings"

	"github.com/mailtee/mailtee/internal/diag"
	"github.com/mailtee/mailtee/internal/pflist"
)

// This file reads the table "names" that Postfix 3.7 takes inline, in
// braces: inline:{...} (src/util/dict_inline.c), static:{...}
// (dict_static.c), and the pattern tables pcre:{...}, regexp:{...} and
// cidr:{...}, whose rules dict_stream.c turns into the lines of a file.
// The braces are parsed as extpar.c, balpar.c and mystrtokq() do, and
// inline's name=value pairs as split_qnameval.c does; the errors are
// Postfix's words.

// balpar returns the length of the balanced {...} at the start of s, 0
// when s does not start with '{' or the braces do not close.
func balpar(s string) int {
	if s == "" || s[0] != '{' {
		return 0
	}
	level := 1
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '}':
			if level--; level == 0 {
				return i + 1
			}
		case '{':
			level++
		}
	}
	return 0
}

// extpar strips the braces around s, and with strip the blanks inside
// them: "{ a b }" is "a b".
func extpar(s string, strip bool) (string, error) {
	var (
		inner string
		err   error
	)
	switch n := balpar(s); {
	case s == "" || s[0] != '{':
		return s, fmt.Errorf("no '{' at start of text in \"%s\"", s)
	case n == 0:
		inner, err = s[1:], fmt.Errorf("missing '}' in \"%s\"", s)
	case n != len(s):
		inner, err = s[1:n-1], fmt.Errorf("syntax error after '}' in \"%s\"", s)
	default:
		inner = s[1 : n-1]
	}
	if strip {
		inner = strings.TrimFunc(inner, func(r rune) bool { return r < 0x80 && isSpace(byte(r)) })
	}
	return inner, err
}

// inlineRules turns "{{rule}, {rule} ...}" into the text of a pattern
// table file, one rule a line (dict_inline_to_multiline()). Each rule must
// be in braces of its own: "pcre:{/a/ b}" is an error, as in Postfix.
func inlineRules(typ, spec string) ([]byte, error) {
	body, err := extpar(spec, false)
	if err != nil {
		return nil, fmt.Errorf("%s map: %v", typ, err)
	}
	var b strings.Builder
	for _, rule := range pflist.Split(body) {
		r, err := extpar(rule, true)
		if err != nil {
			return nil, fmt.Errorf("%s map: %v", typ, err)
		}
		b.WriteString(r)
		b.WriteByte('\n')
	}
	return []byte(b.String()), nil
}

// openStatic is dict_static_open(): "static:{ text }" is the text without
// its braces and the blanks inside them; unbraced, the name is the value.
func openStatic(name string) (Table, error) {
	if !strings.HasPrefix(name, "{") {
		return staticTable(name), nil
	}
	v, err := extpar(name, true)
	if err != nil {
		return nil, fmt.Errorf("bad static:name syntax: %v", err)
	}
	return staticTable(v), nil
}

// parseInline is dict_inline_open(): "inline:{ key=value, { key = value
// text }, ... }". Elements are separated by commas or blanks; an element
// in braces may hold blanks, trimmed around the '='. A key given twice
// takes its last value ("no duplicate checks", dict_inline.c), unlike a
// postmap file. An error anywhere makes the whole table unusable.
func parseInline(spec, body string) (*fixedTable, diag.List) {
	var diags diag.List
	need := "; need \"inline:{name=value...}\""
	n := balpar(body)
	if n == 0 || n != len(body) || n == 2 {
		diags.Errorf(spec, 0, "bad syntax%s", need)
		return nil, diags
	}
	t := newFixed(nil)
	for _, el := range pflist.Split(body[1 : n-1]) {
		if strings.HasPrefix(el, "{") {
			var err error
			if el, err = extpar(el, true); err != nil {
				diags.Errorf(spec, 0, "%v%s", err, need)
				return nil, diags
			}
		}
		k, v, err := splitQNameVal(el)
		if err != nil {
			diags.Errorf(spec, 0, "%v in %q%s", err, el, need)
			return nil, diags
		}
		t.m[foldKey(k)] = v
	}
	if len(t.m) == 0 {
		diags.Errorf(spec, 0, "empty table%s", need)
		return nil, diags
	}
	for k := range t.m {
		t.shapes |= shapeOf(k)
	}
	return t, diags
}

// splitQNameVal is split_qnameval(): "key = value", where the key ends at
// a blank or '=' outside double quotes (the quotes stay part of it) and a
// backslash protects the next character.
func splitQNameVal(s string) (key, value string, err error) {
	i := 0
	for i < len(s) && isSpace(s[i]) {
		i++
	}
	if i == len(s) {
		return "", "", fmt.Errorf("no key found; expected format: key = value")
	}
	start, quoted := i, false
	j := i
loop:
	for ; j < len(s); j++ {
		switch c := s[j]; {
		case c == '\\':
			if j++; j >= len(s) {
				break loop
			}
		case isSpace(c) || c == '=':
			if !quoted {
				break loop
			}
		case c == '"':
			quoted = !quoted
		}
	}
	if quoted {
		return "", "", fmt.Errorf("unbalanced '\"'")
	}
	j = min(j, len(s))
	key = s[start:j]
	v := j
	for v < len(s) && isSpace(s[v]) {
		v++
	}
	if v == len(s) || s[v] != '=' {
		return "", "", fmt.Errorf("missing '=' after attribute name")
	}
	v++
	for v < len(s) && isSpace(s[v]) {
		v++
	}
	return key, strings.TrimRightFunc(s[v:], func(r rune) bool { return r < 0x80 && isSpace(byte(r)) }), nil
}
