package config

import (
	"fmt"
	"strconv"
	"strings"
)

// maxLevel is mac_expand.c's bound on nested $name references: a loop
// such as a = $b, b = $a fails with "unreasonable macro call nesting".
const maxLevel = 100

// maxDepth bounds how far origin (config.go) follows references.
const maxDepth = maxLevel

// maxCalls bounds the nesting across relational operands too, which
// mac_expand.c expands with a fresh level count: a = ${{$a} == {}} would
// otherwise recurse until the stack runs out (Postfix itself crashes).
const maxCalls = 1000

// maxWork bounds the total text an expansion may read and produce. Depth
// alone does not: "a = $b $b", "b = $c $c", ... doubles at each level,
// and a hundred levels would never end. Postfix has no such bound.
const maxWork = 1 << 20

// whitespace is Postfix's CHARS_SPACE (src/util/sys_defs.h).
const whitespace = " \t\r\n"

// expander performs Postfix's $name expansion as src/util/mac_parse.c and
// mac_expand.c of Postfix 3.7 do with MAC_EXP_FLAG_RECURSE, which is how
// postconf -x and the daemons read main.cf:
//
//   - $name, ${name}, $(name); blanks around the name inside the braces
//     are allowed ("$( name )"); $$ is a literal '$'; a '$' followed by
//     neither a name nor a bracket (a lone or trailing '$') is an error.
//   - ${name?text}, ${name:text}, ${name?{text}}, ${name?{t}:{f}} and
//     ${name?{t}:f}: unbraced text runs to the closing brace, ':' and '?'
//     included (Postfix 2.11 compatibility). Whether name is "set" is
//     decided on its value as written, before expansion: with a = $e and
//     e empty, ${a?yes} is "yes" (postconf 3.7 does so).
//   - ${{text1} op {text2}}, with op one of == != < <= > >= (numeric when
//     both sides are all digits) or their "level" forms that compare
//     compatibility levels; alone it yields "true" or "", and it may be
//     followed by ?... and :... exactly as a name is.
//   - Postfix's errors: unbalanced brackets, a bad name, a missing or
//     unknown operator, text after the last branch ("${name:{a}:{b}}"),
//     nesting beyond 100 levels. postconf exits 1 on each.
//
// Branches that are not taken are not parsed, as in Postfix: an error in
// them goes unnoticed.
type expander struct {
	lookup    func(name string) (string, bool)
	undefined func(name string) // called for $name that has no value at all
	// literal: lookup results are inserted as they are, not expanded in
	// turn (mac_expand without MAC_EXP_FLAG_RECURSE, as local(8) expands
	// its attributes in local_expand.c).
	literal bool
	work    int // bytes read and produced so far, see maxWork
	level   int // mac_expand.c's mc->level
	calls   int // see maxCalls
}

// expand expands s. depth is the nesting level to start from.
func (e *expander) expand(s string, depth int) (string, error) {
	saved := e.level
	e.level = depth
	defer func() { e.level = saved }()
	var b strings.Builder
	err := e.parse(s, &b)
	return b.String(), err
}

// param expands v, the value of parameter name, unless name is raw.
func (e *expander) param(name, v string, depth int) (string, error) {
	if IsRaw(name) {
		return v, nil
	}
	return e.expand(v, depth)
}

// parse is mac_parse(): it splits s into literal text and $-expressions
// and hands each to e.callback.
func (e *expander) parse(s string, out *strings.Builder) error {
	if e.work += len(s); e.work > maxWork {
		return fmt.Errorf("expansion produces more than %d bytes; is a parameter referring to itself through others?", maxWork)
	}
	e.calls++
	defer func() { e.calls-- }()
	if e.calls > maxCalls {
		return fmt.Errorf("unreasonable macro call nesting: %q", s)
	}
	var lit strings.Builder
	for i := 0; i < len(s); {
		if s[i] != '$' {
			lit.WriteByte(s[i])
			i++
			continue
		}
		if i+1 < len(s) && s[i+1] == '$' {
			lit.WriteByte('$')
			i += 2
			continue
		}
		if lit.Len() > 0 {
			if err := e.callback(false, lit.String(), out); err != nil {
				return err
			}
			lit.Reset()
		}
		i++
		var expr string
		if i < len(s) && (s[i] == '{' || s[i] == '(') {
			open, closing := s[i], byte('}')
			if open == '(' {
				closing = ')'
			}
			level, j := 1, i+1
			for ; level > 0; j++ {
				if j >= len(s) {
					return fmt.Errorf("truncated macro reference: %q", s)
				}
				switch s[j] {
				case open:
					level++
				case closing:
					level--
				}
			}
			expr, i = s[i+1:j-1], j
		} else {
			j := i
			for j < len(s) && isNameByte(s[j]) {
				j++
			}
			expr, i = s[i:j], j
		}
		if expr == "" {
			return fmt.Errorf("empty macro name: %q (write $$ for a literal '$')", s)
		}
		if err := e.callback(true, expr, out); err != nil {
			return err
		}
	}
	if lit.Len() > 0 {
		return e.callback(false, lit.String(), out)
	}
	return nil
}

// callback is mac_expand_callback(): text is literal, or the inside of
// $name, ${...} or $(...).
func (e *expander) callback(isExpr bool, text string, out *strings.Builder) error {
	if e.level > maxLevel {
		return fmt.Errorf("unreasonable macro call nesting: %q", text)
	}
	e.level++
	defer func() { e.level-- }()
	if !isExpr {
		if e.work += len(text); e.work > maxWork {
			return fmt.Errorf("expansion produces more than %d bytes; is a parameter referring to itself through others?", maxWork)
		}
		out.WriteString(text)
		return nil
	}
	var (
		name    string
		val     string
		defined bool
		op      byte // '?', ':' or 0 for a plain reference
		cp      string
	)
	if k := blanks(text); k < len(text) && text[k] == '{' {
		// Relational expression: its value is "true" or "".
		res, rest, err := e.relational(text[k:])
		if err != nil {
			return err
		}
		val, defined, cp = res, true, rest
		if cp != "" {
			if op = cp[0]; op != '?' && op != ':' {
				return fmt.Errorf("\"?\" or \":\" expected at: \"...}>>>%s\"", first20(cp))
			}
			cp = cp[1:]
		}
	} else {
		start := blanks(text)
		cp = text[start:]
		for i := 0; ; i++ {
			k := i + blanks(cp[i:])
			if k == len(cp) {
				name, cp = cp[:i], ""
				break
			}
			if c := cp[k]; c == '?' || c == ':' {
				name, op, cp = cp[:i], c, cp[k+1:]
				break
			}
			if !isNameByte(cp[i]) {
				return fmt.Errorf("attribute name syntax error at: \"...%s>>>%s\"", text[:start+i], first20(cp[i:]))
			}
		}
		val, defined = e.lookup(name)
	}
	set := defined && val != ""
	switch op {
	case 0:
		switch {
		case !defined:
			if e.undefined != nil {
				e.undefined(name)
			}
		case val == "":
		case e.literal:
			if e.work += len(val); e.work > maxWork {
				return fmt.Errorf("expansion produces more than %d bytes", maxWork)
			}
			out.WriteString(val)
		default:
			return e.parse(val, out)
		}
		return nil
	case '?':
		branch, rest, err := e.operand(cp)
		if err != nil {
			return err
		}
		if set {
			if err := e.parse(branch, out); err != nil {
				return err
			}
		}
		if rest == "" {
			return nil
		}
		if rest[0] != ':' {
			return fmt.Errorf("\":\" expected at: \"...%s}>>>%s\"", branch, first20(rest))
		}
		cp = rest[1:]
	}
	// ':' or what follows "?{text}:".
	branch, rest, err := e.operand(cp)
	if err != nil {
		return err
	}
	if !set {
		if err := e.parse(branch, out); err != nil {
			return err
		}
	}
	if rest != "" {
		return fmt.Errorf("unexpected input at: \"...%s}>>>%s\"", branch, first20(rest))
	}
	return nil
}

// operand returns the result text after '?' or ':': the payload of
// "{text}" (blanks around it skipped) and what follows, or, unbraced, all
// of s.
func (e *expander) operand(s string) (text, rest string, err error) {
	if k := blanks(s); k < len(s) && s[k] == '{' {
		return curly(s[k:])
	}
	return s, "", nil
}

// curly is mac_exp_extract_curly_payload(): s starts with '{'; it returns
// the text up to the matching '}' and the rest after the blanks that
// follow it.
func curly(s string) (payload, rest string, err error) {
	level := 1
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '{':
			level++
		case '}':
			if level--; level == 0 {
				rest = s[i+1:]
				return s[1:i], rest[blanks(rest):], nil
			}
		}
	}
	return "", "", fmt.Errorf("unbalanced {} in attribute expression: %q", s)
}

// relOps are the characters mac_exp_parse_relational() takes for an
// operator, so that "=" or "===" is reported whole.
const relOps = "<>!=?+-*/~&|%"

// relational is mac_exp_parse_relational(): s is "{left} op {right}..."
// and the result is "true" or "" and the text after the right operand.
func (e *expander) relational(s string) (result, rest string, err error) {
	left, cp, err := curly(s)
	if err != nil {
		return "", "", err
	}
	n := 0
	for n < len(cp) && strings.IndexByte(relOps, cp[n]) >= 0 {
		n++
	}
	op := cp[:n]
	switch op {
	case "==", "!=", "<", "<=", ">=", ">":
	default:
		return "", "", fmt.Errorf("\"==\" or \"!=\" or \"<\" or \"<=\" or \">=\" or \">\" expected at: \"...%s}>>>%s\"", left, first20(cp))
	}
	cp = cp[n:]
	level := false
	if cp != "" && isAlnum(cp[0]) {
		// An operator suffix: postconf registers only "level"
		// (src/global/compat_level.c).
		m := 1
		for m < len(cp) && isAlnum(cp[m]) {
			m++
		}
		if cp[:m] != "level" {
			return "", "", fmt.Errorf("bad operator suffix at: \"...%s>>>%s\"", op, cp[:m])
		}
		level, cp = true, cp[m:]
	}
	k := blanks(cp)
	if k == len(cp) || cp[k] != '{' {
		return "", "", fmt.Errorf("\"{expression}\" expected at: \"...{%s} %s>>>%s\"", left, op, first20(cp))
	}
	right, cp, err := curly(cp[k:])
	if err != nil {
		return "", "", err
	}
	// Postfix expands each operand with a fresh mac_expand() call.
	l, err := e.expand(left, 0)
	if err != nil {
		return "", "", err
	}
	r, err := e.expand(right, 0)
	if err != nil {
		return "", "", err
	}
	var c int
	if level {
		lv, err := compatLevel(l)
		if err != nil {
			return "", "", err
		}
		rv, err := compatLevel(r)
		if err != nil {
			return "", "", err
		}
		c = cmpInt(lv, rv)
	} else if allDigits(l) && allDigits(r) {
		ln, err1 := strconv.ParseInt(l, 10, 64)
		rn, err2 := strconv.ParseInt(r, 10, 64)
		if err1 != nil || err2 != nil {
			// atol_or_die() in mac_expand.c: postconf stops.
			bad := l
			if err1 == nil {
				bad = r
			}
			return "", "", fmt.Errorf("mac_exp_eval: bad conversion: %s", bad)
		}
		c = cmpInt(ln, rn)
	} else {
		c = strings.Compare(l, r)
	}
	var ok bool
	switch op {
	case "==":
		ok = c == 0
	case "!=":
		ok = c != 0
	case "<":
		ok = c < 0
	case "<=":
		ok = c <= 0
	case ">=":
		ok = c >= 0
	case ">":
		ok = c > 0
	}
	if ok {
		return "true", cp, nil
	}
	return "", cp, nil
}

// parseLevel reads a compatibility level as the compatibility_level
// parameter is read.
func parseLevel(s string) (int64, error) { return compatLevel(s) }

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// compatLevel is compat_level_from_string() (src/global/compat_level.c):
// major[.minor[.patch]], each read by strtol (so blanks and a sign may
// lead), minor and patch at most 1023, encoded into one comparable number.
func compatLevel(s string) (int64, error) {
	bad := fmt.Errorf("malformed compatibility level syntax: %q", s)
	var res int64
	rest := s
	for i, limit := range []int64{1<<43 - 1, 1023, 1023} {
		n, r, ok := strtol(rest)
		if !ok || n < 0 || n > limit || (r != "" && (r[0] != '.' || i == 2)) {
			return 0, bad
		}
		res |= n << (20 - 10*i)
		if r == "" {
			return res, nil
		}
		rest = r[1:]
	}
	return 0, bad
}

// strtol reads a base-10 number as C's strtol: optional blanks, an
// optional sign, at least one digit; ok is false without digits or when
// the number does not fit in 64 bits (ERANGE).
func strtol(s string) (n int64, rest string, ok bool) {
	i := 0
	for i < len(s) && (s[i] == ' ' || s[i] >= '\t' && s[i] <= '\r') {
		i++
	}
	j := i
	if j < len(s) && (s[j] == '+' || s[j] == '-') {
		j++
	}
	k := j
	for k < len(s) && s[k] >= '0' && s[k] <= '9' {
		k++
	}
	if k == j {
		return 0, s, false
	}
	n, err := strconv.ParseInt(s[i:k], 10, 64)
	return n, s[k:], err == nil
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// blanks returns the number of whitespace bytes at the start of s.
func blanks(s string) int {
	i := 0
	for i < len(s) && strings.IndexByte(whitespace, s[i]) >= 0 {
		i++
	}
	return i
}

// first20 is "%.20s", as Postfix quotes where an error is.
func first20(s string) string {
	if len(s) > 20 {
		return s[:20]
	}
	return s
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
	e := expander{lookup: lookup, literal: true, undefined: func(n string) { undefined = append(undefined, n) }}
	out, err = e.expand(s, 0)
	return out, undefined, err
}
