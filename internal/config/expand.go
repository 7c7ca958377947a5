package config

import (
	"fmt"
	"strconv"
	"strings"
)

// maxDepth bounds recursive expansion; Postfix reports "unreasonable macro
// call nesting" at a similar depth. A loop such as a = $b, b = $a stops here.
const maxDepth = 30

// expander performs Postfix's $name expansion (postconf(5), "Parameter
// expansion"): $name, ${name}, $(name), ${name?value}, ${name:value},
// ${name?{value}:{value}}, $$ for a literal dollar, and the relational form
// ${{text} op {text} ? {value} : {value}} with ==, !=, <, <=, >, >= and
// their "level" variants for compatibility levels.
type expander struct {
	lookup    func(name string) (string, bool)
	undefined func(name string) // called for $name that has no value at all
	work      int               // bytes produced so far, see maxWork
}

// maxWork bounds the total text an expansion may produce. Depth alone does
// not: "a = $b $b", "b = $c $c", ... doubles at each level, and thirty
// levels would be a billion copies.
const maxWork = 1 << 20

func (e *expander) expand(s string, depth int) (string, error) {
	if depth > maxDepth {
		return "", fmt.Errorf("unreasonable macro call nesting: %q", s)
	}
	if e.work += len(s); e.work > maxWork {
		return "", fmt.Errorf("expansion produces more than %d bytes; is a parameter referring to itself through others?", maxWork)
	}
	if !strings.Contains(s, "$") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		c := s[i]
		if c != '$' {
			b.WriteByte(c)
			i++
			continue
		}
		i++
		if i >= len(s) {
			b.WriteByte('$') // a trailing '$' stays, as in Postfix
			break
		}
		switch s[i] {
		case '$':
			b.WriteByte('$')
			i++
		case '{', '(':
			end, err := matchClose(s, i)
			if err != nil {
				return "", err
			}
			out, err := e.expandBraced(s[i+1:end], s[i] == '{', depth)
			if err != nil {
				return "", err
			}
			b.WriteString(out)
			i = end + 1
		default:
			j := i
			for j < len(s) && isNameByte(s[j]) {
				j++
			}
			if j == i { // "$" followed by something else: literal
				b.WriteByte('$')
				continue
			}
			out, err := e.value(s[i:j], depth)
			if err != nil {
				return "", err
			}
			b.WriteString(out)
			i = j
		}
	}
	return b.String(), nil
}

func (e *expander) value(name string, depth int) (string, error) {
	v, ok := e.lookup(name)
	if !ok {
		if e.undefined != nil {
			e.undefined(name)
		}
		return "", nil
	}
	// A raw parameter's value is expanded when another refers to it, as
	// Postfix 3.7 does (3.12's postconf leaves it as written).
	return e.expand(v, depth+1)
}

// param expands v, the value of parameter name, unless name is raw.
func (e *expander) param(name, v string, depth int) (string, error) {
	if IsRaw(name) {
		return v, nil
	}
	return e.expand(v, depth)
}

// rawParams are the parameters that Postfix's programs read without
// $name expansion (the CONFIG_RAW_TABLEs of local.c, smtpd.c and
// postscreen.c): the program expands their $names itself, per delivery
// or per reply, from run-time attributes, local(8) in mailbox_command,
// forward_path, luser_relay and command_execution_directory ($user,
// $extension, $domain, $local, $recipient, $home, $shell,
// $recipient_delimiter, and their upper-case forms), smtpd(8) in
// default_rbl_reply and the reject footers ($rbl_code, $rbl_domain,
// $client_address, ...). Postfix's postconf -x shows them as written
// (postconf_main.c) and does not take their $names for user-defined
// parameters (postconf_user.c). So does mailtee, and no "undefined
// parameter" warning is given for them.
var rawParams = map[string]bool{
	"command_execution_directory": true,
	"forward_path":                true,
	"luser_relay":                 true,
	"mailbox_command":             true,
	"default_rbl_reply":           true,
	"smtpd_reject_footer":         true,
	"smtpd_expansion_filter":      true,
	"postscreen_reject_footer":    true,
	"postscreen_expansion_filter": true,
}

// IsRaw reports whether Postfix leaves the $names of parameter name to
// be expanded at run time by the program that uses it (see rawParams).
func IsRaw(name string) bool { return rawParams[name] }

// expandBraced handles the inside of ${...} or $(...).
func (e *expander) expandBraced(in string, curly bool, depth int) (string, error) {
	if curly && strings.HasPrefix(in, "{") {
		return e.relational(in, depth)
	}
	j := 0
	for j < len(in) && isNameByte(in[j]) {
		j++
	}
	name := in[:j]
	if name == "" {
		return "", fmt.Errorf("bad macro name in \"${%s}\"", in)
	}
	rest := in[j:]
	if rest == "" {
		return e.value(name, depth)
	}
	op := rest[0]
	if op != '?' && op != ':' {
		return "", fmt.Errorf("unexpected %q after macro name %q", op, name)
	}
	raw, _ := e.lookup(name)
	val, err := e.expand(raw, depth+1)
	if err != nil {
		return "", err
	}
	set := val != ""
	text := rest[1:]
	// ${name?{a}:{b}} picks a or b; ${name?{a}} and ${name?a} give a or "".
	if strings.HasPrefix(text, "{") {
		parts, err := braceGroups(text)
		if err != nil {
			return "", fmt.Errorf("in \"${%s}\": %w", in, err)
		}
		t, f := parts[0], ""
		if len(parts) == 2 {
			f = parts[1]
		}
		if op == ':' {
			t, f = f, t
			if len(parts) == 1 {
				t, f = "", parts[0]
			}
		}
		if set {
			return e.expand(t, depth+1)
		}
		return e.expand(f, depth+1)
	}
	if (op == '?') == set {
		return e.expand(text, depth+1)
	}
	return "", nil
}

// relational evaluates "{text1} op {text2} ? {t} : {f}".
func (e *expander) relational(in string, depth int) (string, error) {
	bad := func(why string) error { return fmt.Errorf("bad expression \"${%s}\": %s", in, why) }
	left, rest, err := cutGroup(in)
	if err != nil {
		return "", bad(err.Error())
	}
	rest = strings.TrimLeft(rest, " \t")
	k := strings.IndexAny(rest, "{")
	if k < 0 {
		return "", bad("missing second operand")
	}
	op := strings.TrimSpace(rest[:k])
	right, rest, err := cutGroup(rest[k:])
	if err != nil {
		return "", bad(err.Error())
	}
	rest = strings.TrimSpace(rest)
	if !strings.HasPrefix(rest, "?") {
		return "", bad("missing '?'")
	}
	rest = strings.TrimSpace(rest[1:])
	t, rest, err := cutGroup(rest)
	if err != nil {
		return "", bad(err.Error())
	}
	rest = strings.TrimSpace(rest)
	f := ""
	if rest != "" {
		if !strings.HasPrefix(rest, ":") {
			return "", bad("expected ':' before the false value")
		}
		if f, rest, err = cutGroup(strings.TrimSpace(rest[1:])); err != nil {
			return "", bad(err.Error())
		}
		if strings.TrimSpace(rest) != "" {
			return "", bad("trailing text")
		}
	}
	l, err := e.expand(left, depth+1)
	if err != nil {
		return "", err
	}
	r, err := e.expand(right, depth+1)
	if err != nil {
		return "", err
	}
	// Postfix 3.7 compares the operands as they are: "{ a }" is not "{a}".
	res, err := compare(l, op, r)
	if err != nil {
		return "", bad(err.Error())
	}
	if res {
		return e.expand(t, depth+1)
	}
	return e.expand(f, depth+1)
}

func compare(l, op, r string) (bool, error) {
	var c int
	switch {
	case strings.HasSuffix(op, "level"):
		op = strings.TrimSuffix(op, "level")
		lv, err1 := parseLevel(l)
		rv, err2 := parseLevel(r)
		if err1 != nil {
			return false, err1
		}
		if err2 != nil {
			return false, err2
		}
		c = compareLevels(lv, rv)
	default:
		ln, err1 := strconv.ParseInt(l, 10, 64)
		rn, err2 := strconv.ParseInt(r, 10, 64)
		if err1 == nil && err2 == nil {
			c = cmpInt(ln, rn)
		} else {
			c = strings.Compare(l, r)
		}
	}
	switch op {
	case "==":
		return c == 0, nil
	case "!=":
		return c != 0, nil
	case "<":
		return c < 0, nil
	case "<=":
		return c <= 0, nil
	case ">":
		return c > 0, nil
	case ">=":
		return c >= 0, nil
	}
	return false, fmt.Errorf("unknown operator %q", op)
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// parseLevel reads a compatibility level: "0", "2", "3.6", "3.6.1".
func parseLevel(s string) ([3]int64, error) {
	var v [3]int64
	parts := strings.Split(s, ".")
	if len(parts) > 3 || s == "" {
		return v, fmt.Errorf("bad compatibility level %q", s)
	}
	for i, p := range parts {
		n, err := strconv.ParseInt(p, 10, 64)
		if err != nil || n < 0 {
			return v, fmt.Errorf("bad compatibility level %q", s)
		}
		v[i] = n
	}
	return v, nil
}

func compareLevels(a, b [3]int64) int {
	for i := range a {
		if c := cmpInt(a[i], b[i]); c != 0 {
			return c
		}
	}
	return 0
}

// cutGroup takes "{text} rest" and returns text and rest.
func cutGroup(s string) (string, string, error) {
	if !strings.HasPrefix(s, "{") {
		return "", "", fmt.Errorf("expected '{' at %q", s)
	}
	end, err := matchClose(s, 0)
	if err != nil {
		return "", "", err
	}
	return s[1:end], s[end+1:], nil
}

// braceGroups splits "{a}:{b}" or "{a}" into its groups.
func braceGroups(s string) ([]string, error) {
	first, rest, err := cutGroup(s)
	if err != nil {
		return nil, err
	}
	rest = strings.TrimSpace(rest)
	if rest == "" {
		return []string{first}, nil
	}
	if !strings.HasPrefix(rest, ":") {
		return nil, fmt.Errorf("expected ':' after {%s}", first)
	}
	second, rest, err := cutGroup(strings.TrimSpace(rest[1:]))
	if err != nil {
		return nil, err
	}
	if strings.TrimSpace(rest) != "" {
		return nil, fmt.Errorf("trailing text after {%s}", second)
	}
	return []string{first, second}, nil
}

// matchClose returns the index of the bracket closing the one at s[open].
func matchClose(s string, open int) (int, error) {
	o := s[open]
	c := byte('}')
	if o == '(' {
		c = ')'
	}
	depth := 0
	for i := open; i < len(s); i++ {
		switch s[i] {
		case o:
			depth++
		case c:
			depth--
			if depth == 0 {
				return i, nil
			}
		}
	}
	return 0, fmt.Errorf("missing %q in %q", c, s[open:])
}

func isNameByte(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// ExpandAttrs expands $name, ${name}, ${name?value} and ${name:value} in
// s with lookup, as local(8)'s local_expand() does for forward_path and
// command_execution_directory: lookup returns a run-time attribute
// ($user, $home, $extension, ...), ok false when it has no value, and
// Undefined lists the names that had none (Postfix skips such a
// forward_path element). The caller filters what lookup returns: its
// values are not expanded further only when they hold no '$'.
func ExpandAttrs(s string, lookup func(name string) (string, bool)) (out string, undefined []string, err error) {
	e := expander{lookup: lookup, undefined: func(n string) { undefined = append(undefined, n) }}
	out, err = e.expand(s, 0)
	return out, undefined, err
}
