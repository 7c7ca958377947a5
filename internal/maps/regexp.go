package maps

// Pattern tables: regexp_table(5) and pcre_table(5).
//
//	/pattern/flags result
//	!/pattern/flags result
//	if /pattern/flags
//	endif
//
// Postfix compiles regexp: patterns with the C library's POSIX regcomp()
// (glibc on the systems we compare with) and pcre: patterns with PCRE2.
// mailtee has neither: package retrans translates each pattern to RE2, Go's
// regexp syntax, when the table is loaded. What RE2 cannot express is an
// error on the pattern's line rather than a silent difference.
//
// The translations are written for the Latin-1 alphabet (one rune per
// byte, as Postfix's engines see bytes), so a key that is not plain ASCII
// is matched as retrans.ToRunes of itself, and matched substrings are
// turned back into the original bytes for $N.

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/mailtee/mailtee/internal/diag"
	"github.com/mailtee/mailtee/internal/pfline"
	"github.com/mailtee/mailtee/internal/retrans"
)

// ruleOp is what one rule of a pattern table does.
type ruleOp uint8

const (
	opMatch ruleOp = iota
	opIf
	opEndif
)

// reRule is one rule of a regexp: or pcre: table.
type reRule struct {
	op   ruleOp
	line int
	re   *regexp.Regexp
	neg  bool // the rule applies when re does not match
	// re2 is the second pattern of regexp:'s old "/p1/!/p2/ result" form.
	re2  *regexp.Regexp
	neg2 bool
	// value is the result when it has no $N; parts otherwise.
	value string
	parts []resultPart
	// endif is, for opIf, the index of the matching endif or -1.
	endif int
}

// resultPart is literal text (group 0) or a $N reference.
type resultPart struct {
	lit   string
	group int
}

// reTable is a parsed regexp: or pcre: table. It is read-only after
// parsing, and *regexp.Regexp is safe for concurrent use, so Lookup needs
// no locking.
type reTable struct {
	rules []reRule
	file  string // for Source
}

// Lookup applies the rules in order and returns the first match's result.
func (t *reTable) Lookup(_ context.Context, key string) (string, bool, error) {
	subject, latin := key, !retrans.IsASCII(key)
	if latin {
		subject = retrans.ToRunes(key)
	}
	for i := 0; i < len(t.rules); i++ {
		r := &t.rules[i]
		switch r.op {
		case opIf:
			if r.re.MatchString(subject) != r.neg {
				continue
			}
			if r.endif < 0 { // the rest of the table is inside the if
				return "", false, nil
			}
			i = r.endif
		case opMatch:
			var m []int
			if r.parts == nil {
				if r.re.MatchString(subject) == r.neg {
					continue
				}
			} else if m = r.re.FindStringSubmatchIndex(subject); m == nil {
				continue
			}
			if r.re2 != nil && r.re2.MatchString(subject) == r.neg2 {
				continue
			}
			if r.parts == nil {
				return r.value, true, nil
			}
			return expandResult(r.parts, subject, m, latin), true, nil
		}
	}
	return "", false, nil
}

func expandResult(parts []resultPart, subject string, m []int, latin bool) string {
	var b strings.Builder
	for _, p := range parts {
		if p.group == 0 {
			b.WriteString(p.lit)
			continue
		}
		lo, hi := m[2*p.group], m[2*p.group+1]
		if lo < 0 { // group did not take part in the match: Postfix adds nothing
			continue
		}
		if latin {
			b.WriteString(retrans.ToBytes(subject[lo:hi]))
		} else {
			b.WriteString(subject[lo:hi])
		}
	}
	return b.String()
}

// parseRegexp parses a regexp_table(5) source, or a pcre_table(5) source
// when pcre is set. Lines with errors are left out of the table; the
// findings say why.
func parseRegexp(file string, data []byte, pcre bool) (Table, diag.List) {
	p := reParser{file: file, pcre: pcre, t: &reTable{file: file}}
	pfline.Each(file, string(data), &p.diags, p.line)
	for _, i := range p.open {
		p.diags.Errorf(file, p.t.rules[i].line, "if has no matching endif; "+
			"when the if pattern does not apply, nothing after it is looked at")
	}
	return p.t, p.diags
}

type reParser struct {
	file  string
	pcre  bool
	t     *reTable
	diags diag.List
	open  []int // rule indexes of ifs still waiting for their endif
}

func (p *reParser) errorf(line int, format string, args ...any) {
	p.diags.Errorf(p.file, line, format, args...)
}

func (p *reParser) line(ln pfline.Line) {
	text := ln.Text
	switch {
	case !isASCIIAlnum(text[0]):
		p.matchRule(ln.Num, text)
	case keyword(text, "if"):
		p.ifRule(ln.Num, text[2:])
	case keyword(text, "endif"):
		rest := strings.TrimLeft(text[5:], spaceChars)
		if len(p.open) == 0 {
			p.errorf(ln.Num, "endif without matching if")
			return
		}
		if rest != "" {
			p.diags.Warnf(p.file, ln.Num, "ignoring extra text after endif: %q", rest)
		}
		i := p.open[len(p.open)-1]
		p.open = p.open[:len(p.open)-1]
		p.t.rules[i].endif = len(p.t.rules)
		p.t.rules = append(p.t.rules, reRule{op: opEndif, line: ln.Num})
	default:
		p.errorf(ln.Num, "unrecognized line: expected /pattern/ result, if /pattern/ or endif")
	}
}

// keyword reports whether text starts with word, in any case, followed by
// something other than a letter or digit (as Postfix's parsers test it).
func keyword(text, word string) bool {
	return len(text) >= len(word) && strings.EqualFold(text[:len(word)], word) &&
		(len(text) == len(word) || !isASCIIAlnum(text[len(word)]))
}

func (p *reParser) matchRule(line int, text string) {
	pat, rest, err := getPattern(text, p.pcre)
	if err != "" {
		p.errorf(line, "%s", err)
		return
	}
	var pat2 *patternSpec
	if !p.pcre && strings.HasPrefix(rest, "!") {
		// Postfix still reads "/p1/!/p2/ result", meaning p1 matches and
		// p2 does not; regexp_table(5) no longer documents it.
		var second patternSpec
		if second, rest, err = getPattern(rest, false); err != "" {
			p.errorf(line, "%s", err)
			return
		}
		pat2 = &second
	}
	result := strings.TrimLeft(rest, spaceChars)
	if result == "" {
		p.errorf(line, "no result after %s (Postfix would use an empty string, "+
			"which no Postfix feature accepts)", pat.written)
		return
	}
	parts, maxSub, err := parseResult(result)
	if err != "" {
		p.errorf(line, "result %q: %s", result, err)
		return
	}
	if maxSub > 0 && pat.neg {
		p.errorf(line, "result %q uses $%d but the pattern is negated: "+
			"a rule that applies when nothing matched has no groups to take text from",
			result, maxSub)
		return
	}
	re, ok := p.compile(line, pat)
	if !ok {
		return
	}
	if n := re.NumSubexp(); maxSub > n {
		p.errorf(line, "result %q uses $%d but %s has only %d group(s)",
			result, maxSub, pat.written, n)
		return
	}
	r := reRule{op: opMatch, line: line, re: re, neg: pat.neg, endif: -1}
	if pat2 != nil {
		if r.re2, ok = p.compile(line, *pat2); !ok {
			return
		}
		r.neg2 = pat2.neg
	}
	if maxSub == 0 {
		for _, part := range parts {
			r.value += part.lit
		}
	} else {
		r.parts = parts
	}
	p.t.rules = append(p.t.rules, r)
}

func (p *reParser) ifRule(line int, text string) {
	pat, rest, err := getPattern(strings.TrimLeft(text, spaceChars), p.pcre)
	if err != "" {
		p.errorf(line, "%s", err)
		return
	}
	if rest = strings.TrimLeft(rest, spaceChars); rest != "" {
		p.diags.Warnf(p.file, line, "ignoring extra text after if %s: %q "+
			"(lines inside if..endif must not start with whitespace)", pat.written, rest)
	}
	re, ok := p.compile(line, pat)
	if !ok {
		return
	}
	p.open = append(p.open, len(p.t.rules))
	p.t.rules = append(p.t.rules, reRule{op: opIf, line: line, re: re, neg: pat.neg, endif: -1})
}

// compile translates and compiles one pattern, reporting problems.
func (p *reParser) compile(line int, pat patternSpec) (*regexp.Regexp, bool) {
	var (
		src   string
		err   error
		warns []string
	)
	if p.pcre {
		src, warns, err = retrans.PCRE(pat.text, pat.flags)
	} else {
		src, err = retrans.POSIX(pat.text, pat.flags)
	}
	for _, w := range warns {
		p.diags.Warnf(p.file, line, "%s: %s", pat.written, w)
	}
	if err != nil {
		p.errorf(line, "%s: %v", pat.written, err)
		return nil, false
	}
	re, err := regexp.Compile(src)
	if err != nil {
		p.errorf(line, "%s: mailtee uses RE2 (Go's regexp), which cannot compile it: %v",
			pat.written, err)
		return nil, false
	}
	if !p.pcre {
		// POSIX prefers the longest of the leftmost matches, which decides
		// what the groups hold.
		re.Longest()
	}
	return re, true
}

const spaceChars = " \t\n\v\f\r"

func isSpace(c byte) bool { return strings.IndexByte(spaceChars, c) >= 0 }

func isASCIIAlnum(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

func isWordByte(c byte) bool { return isASCIIAlnum(c) || c == '_' }

// patternSpec is one "/pattern/flags" as written in the table.
type patternSpec struct {
	text    string // between the delimiters, backslashes kept
	flags   string
	neg     bool
	written string // for messages
}

// getPattern reads [!]/pattern/flags from s the way Postfix's
// dict_regexp_get_pat() and dict_pcre_get_pattern() do: any number of '!'
// and spaces, then a delimiter (any character), the pattern up to the next
// unescaped delimiter, and flag letters up to whitespace (or, in regexp:
// tables, up to a '!' that starts a second pattern).
func getPattern(s string, pcre bool) (pat patternSpec, rest string, err string) {
	i := 0
	for ; i < len(s) && (s[i] == '!' || isSpace(s[i])); i++ {
		if s[i] == '!' {
			pat.neg = !pat.neg
		}
	}
	if i == len(s) {
		return pat, "", "no pattern"
	}
	start := i
	delim := s[i]
	i++
	for ; i < len(s) && s[i] != delim; i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
	}
	if i >= len(s) {
		return pat, "", fmt.Sprintf("no closing pattern delimiter %q in %q", delim, s[start:])
	}
	pat.text = s[start+1 : i]
	i++
	f := i
	for ; i < len(s) && !isSpace(s[i]) && (pcre || s[i] != '!'); i++ {
	}
	pat.flags = s[f:i]
	pat.written = s[start:i]
	if pat.neg {
		pat.written = "!" + pat.written
	}
	return pat, s[i:], ""
}

// parseResult splits a result at its $N references, following Postfix's
// mac_parse(): $$ is a dollar sign, $name, ${name} and $(name) are
// references, and every reference must be a group number from 1 up.
func parseResult(s string) (parts []resultPart, maxSub int, err string) {
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			parts = append(parts, resultPart{lit: lit.String()})
			lit.Reset()
		}
	}
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
		i++
		var name string
		if i < len(s) && (s[i] == '{' || s[i] == '(') {
			open, close := s[i], byte('}')
			if open == '(' {
				close = ')'
			}
			level, j := 1, i+1
			for ; j < len(s); j++ {
				if s[j] == open {
					level++
				} else if s[j] == close {
					if level--; level == 0 {
						break
					}
				}
			}
			if j >= len(s) {
				return nil, 0, fmt.Sprintf("unterminated %q", s[i-1:])
			}
			name, i = s[i+1:j], j+1
		} else {
			j := i
			for j < len(s) && isWordByte(s[j]) {
				j++
			}
			name, i = s[i:j], j
		}
		if name == "" {
			return nil, 0, `"$" must be followed by a group number; write "$$" for a dollar sign`
		}
		if strings.Trim(name, "0123456789") != "" {
			return nil, 0, fmt.Sprintf("$%s is not a group number "+
				"(write ${1}x, not $1x, when text follows)", name)
		}
		n, convErr := strconv.Atoi(name)
		if convErr != nil || n > 1<<20 {
			n = 1 << 20 // larger than any pattern's group count
		}
		if n < 1 {
			return nil, 0, "$0 is not available; groups are numbered from $1"
		}
		flush()
		parts = append(parts, resultPart{group: n})
		maxSub = max(maxSub, n)
	}
	flush()
	return parts, maxSub, ""
}
