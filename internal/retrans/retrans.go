// Package retrans translates the regular expressions of Postfix's pattern
// tables into RE2, Go's regexp syntax: POSIX patterns as glibc's regcomp()
// reads them (regexp_table(5)) and PCRE2 patterns (pcre_table(5)).
//
// What RE2 cannot express (backreferences, lookaround, possessive and
// atomic groups, ...) is an error naming the construct rather than a
// silent difference.
//
// Both Postfix engines work on bytes: "." matches one byte, and only ASCII
// letters fold case. RE2 works on UTF-8 runes, so the translations are
// written for the Latin-1 alphabet, one rune per byte: a subject that is
// not plain ASCII must be matched as [ToRunes] of itself, and the matched
// text turned back with [ToBytes].
package retrans

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// IsASCII reports whether s needs no [ToRunes] before matching.
func IsASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// ToRunes maps each byte of s to the rune of the same value, so that RE2
// sees one rune per byte, as Postfix's engines see one character.
func ToRunes(s string) string {
	buf := make([]byte, 0, len(s)*2)
	for i := 0; i < len(s); i++ {
		buf = utf8.AppendRune(buf, rune(s[i]))
	}
	return string(buf)
}

// ToBytes undoes [ToRunes].
func ToBytes(s string) string {
	buf := make([]byte, 0, len(s))
	for _, r := range s {
		buf = append(buf, byte(r))
	}
	return string(buf)
}

const spaceChars = " \t\n\v\f\r"

func isSpace(c byte) bool { return strings.IndexByte(spaceChars, c) >= 0 }

func isASCIIAlnum(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

func isWordByte(c byte) bool { return isASCIIAlnum(c) || c == '_' }

// unsupported builds the error for a construct RE2 lacks; what is plural.
func unsupported(construct, what string) error {
	return fmt.Errorf(`"%s": mailtee uses RE2 (Go's regexp), which does not support %s`,
		construct, what)
}

// byteSet is a set of byte values: a bracket expression, a class escape.
type byteSet [4]uint64

func (s *byteSet) add(c byte)      { s[c>>6] |= 1 << (c & 63) }
func (s *byteSet) has(c byte) bool { return s[c>>6]&(1<<(c&63)) != 0 }
func (s *byteSet) union(o byteSet) {
	s[0], s[1], s[2], s[3] = s[0]|o[0], s[1]|o[1], s[2]|o[2], s[3]|o[3]
}
func (s byteSet) complement() byteSet { return byteSet{^s[0], ^s[1], ^s[2], ^s[3]} }
func (s byteSet) subsetOf(o byteSet) bool {
	return s[0]&^o[0] == 0 && s[1]&^o[1] == 0 && s[2]&^o[2] == 0 && s[3]&^o[3] == 0
}
func (s byteSet) empty() bool { return s == byteSet{} }

func (s *byteSet) addRange(lo, hi byte) {
	for c := int(lo); c <= int(hi); c++ {
		s.add(byte(c))
	}
}

// fold adds the other case of every ASCII letter in s: both engines fold
// only ASCII in the C locale.
func (s byteSet) fold() byteSet {
	for c := byte('A'); c <= 'Z'; c++ {
		if s.has(c) || s.has(c+32) {
			s.add(c)
			s.add(c + 32)
		}
	}
	return s
}

func setOf(ranges ...byte) byteSet {
	var s byteSet
	for i := 0; i+1 < len(ranges); i += 2 {
		s.addRange(ranges[i], ranges[i+1])
	}
	return s
}

// The C locale's character classes.
var posixClasses = map[string]byteSet{
	"alpha":  setOf('A', 'Z', 'a', 'z'),
	"upper":  setOf('A', 'Z'),
	"lower":  setOf('a', 'z'),
	"digit":  setOf('0', '9'),
	"xdigit": setOf('0', '9', 'A', 'F', 'a', 'f'),
	"alnum":  setOf('0', '9', 'A', 'Z', 'a', 'z'),
	"space":  setOf('\t', '\r', ' ', ' '),
	"blank":  setOf('\t', '\t', ' ', ' '),
	"punct":  setOf('!', '/', ':', '@', '[', '`', '{', '~'),
	"print":  setOf(' ', '~'),
	"graph":  setOf('!', '~'),
	"cntrl":  setOf(0, 0x1f, 0x7f, 0x7f),
}

var (
	wordSet  = setOf('0', '9', 'A', 'Z', 'a', 'z', '_', '_')
	digitSet = posixClasses["digit"]
	spaceSet = posixClasses["space"]
	nlSet    = setOf('\n', '\n')
)

// emitLiteral writes byte c as an RE2 atom. Bytes above 0x7f are runes
// U+0080..U+00FF on the RE2 side; they must not fold case (RE2 would fold
// U+00E9 with U+00C9, which are unrelated bytes to Postfix).
func emitLiteral(out []byte, c byte, icase bool) []byte {
	switch {
	case c >= 0x80:
		if icase {
			return fmt.Appendf(out, `(?-i:\x{%x})`, c)
		}
		return fmt.Appendf(out, `\x{%x}`, c)
	case isWordByte(c):
		return append(out, c)
	case c > ' ' && c < 0x7f:
		if strings.IndexByte(`\.+*?()|[]{}^$`, c) >= 0 {
			out = append(out, '\\')
		}
		return append(out, c)
	default:
		return fmt.Appendf(out, `\x{%x}`, c)
	}
}

// emitSet writes s as an RE2 character class over U+0000..U+00FF. s is
// final: case folding, if any, is already in it, so under (?i) the class
// is shielded from RE2's own (Unicode) folding.
func emitSet(out []byte, s byteSet, icase bool) []byte {
	if s.empty() {
		return append(out, `[^\x00-\x{10FFFF}]`...)
	}
	n, only := 0, byte(0)
	for c := 0; c < 256; c++ {
		if s.has(byte(c)) {
			n++
			only = byte(c)
		}
	}
	if n == 1 && !(icase && unicode.IsLetter(rune(only))) {
		return emitLiteral(out, only, icase)
	}
	if icase {
		out = append(out, "(?-i:"...)
	}
	out = append(out, '[')
	for c := 0; c < 256; {
		if !s.has(byte(c)) {
			c++
			continue
		}
		lo := c
		for c < 256 && s.has(byte(c)) {
			c++
		}
		out = appendClassChar(out, byte(lo))
		if c-1 > lo {
			if c-1 > lo+1 {
				out = append(out, '-')
			}
			out = appendClassChar(out, byte(c-1))
		}
	}
	out = append(out, ']')
	if icase {
		out = append(out, ')')
	}
	return out
}

func appendClassChar(out []byte, c byte) []byte {
	if isASCIIAlnum(c) {
		return append(out, c)
	}
	return fmt.Appendf(out, `\x{%x}`, c)
}

// POSIX (regexp: tables) ---------------------------------------------------

// posixTok is one token of a POSIX regular expression.
type posixTok struct {
	kind     posixKind
	c        byte    // tLit
	set      byteSet // tSet
	min, max int     // tQuant; max -1 means no limit
	esc      string  // tEsc: RE2 text of a zero-width escape
}

type posixKind uint8

const (
	tLit posixKind = iota
	tSet
	tAny
	tOpen
	tClose
	tAlt
	tBOL
	tEOL
	tQuant
	tEsc       // \b \B \` \'
	tWordStart // \<
	tWordEnd   // \>
)

// POSIX turns a pattern of a regexp: table (the text between its
// delimiters, backslashes kept) and its flags into RE2 syntax. Flags as in
// dict_regexp.c: REG_EXTENDED and REG_ICASE on by default and toggled by x
// and i; m toggles REG_NEWLINE. POSIX prefers the longest of the leftmost
// matches, which decides what the groups hold: compile the result and call
// its Longest method.
func POSIX(pattern, flags string) (string, error) {
	icase, ere, newline := true, true, false
	for _, f := range []byte(flags) {
		switch f {
		case 'i':
			icase = !icase
		case 'x':
			ere = !ere
		case 'm':
			newline = !newline
		default:
			return "", fmt.Errorf("unknown regexp flag %q (regexp: tables know i, m and x)", f)
		}
	}
	toks, err := lexPOSIX(pattern, ere, icase, newline)
	if err != nil {
		return "", err
	}
	out := make([]byte, 0, len(pattern)*2+8)
	switch {
	case icase && newline:
		out = append(out, "(?im)"...)
	case icase:
		out = append(out, "(?is)"...)
	case newline:
		out = append(out, "(?m)"...)
	default:
		out = append(out, "(?s)"...)
	}
	type frame struct {
		start   int
		allWord bool
	}
	var (
		stack     []frame
		atom      = -1 // where the last quantifiable atom starts in out
		quantDone bool // the last atom already has a quantifier
		wordEnd   bool // what matched last is certainly a word character
	)
	beginAtom := func() {
		atom, quantDone = len(out), false
	}
	for k, tok := range toks {
		switch tok.kind {
		case tLit:
			beginAtom()
			out = emitLiteral(out, tok.c, icase)
			wordEnd = isWordByte(tok.c)
		case tSet:
			beginAtom()
			out = emitSet(out, tok.set, icase)
			wordEnd = !tok.set.empty() && tok.set.subsetOf(wordSet)
		case tAny:
			beginAtom()
			out = append(out, '.')
			wordEnd = false
		case tOpen:
			stack = append(stack, frame{start: len(out), allWord: true})
			out = append(out, '(')
			atom, wordEnd = -1, false
		case tAlt:
			if n := len(stack); n > 0 {
				stack[n-1].allWord = stack[n-1].allWord && wordEnd
			}
			out = append(out, '|')
			atom, wordEnd = -1, false
		case tClose:
			f := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			out = append(out, ')')
			atom, quantDone, wordEnd = f.start, false, f.allWord && wordEnd
		case tBOL, tEOL:
			if tok.kind == tBOL {
				out = append(out, '^')
			} else {
				out = append(out, '$')
			}
			atom, wordEnd = -1, false
		case tEsc:
			out = append(out, tok.esc...)
			atom = -1
		case tWordStart:
			if !posixStartsWord(toks, k+1) {
				return "", fmt.Errorf(`"\<" is supported only before a word character: ` +
					`mailtee uses RE2 (Go's regexp), which has no start-of-word assertion; ` +
					`it translates \< to \b where the two agree`)
			}
			out = append(out, `\b`...)
			atom = -1
		case tWordEnd:
			if !wordEnd {
				return "", fmt.Errorf(`"\>" is supported only after a word character: ` +
					`mailtee uses RE2 (Go's regexp), which has no end-of-word assertion; ` +
					`it translates \> to \b where the two agree`)
			}
			out = append(out, `\b`...)
			atom = -1
		case tQuant:
			if atom < 0 {
				return "", fmt.Errorf("repetition operator without anything to repeat")
			}
			if quantDone {
				if !ere {
					return "", fmt.Errorf("repetition operator after a repetition operator")
				}
				// "a**" and "a+?" are nested repetitions in POSIX; RE2 wants
				// them spelled out (and reads "+?" as non-greedy).
				inner := string(out[atom:])
				out = append(append(append(out[:atom], "(?:"...), inner...), ')')
			}
			if tok.min > 1000 || tok.max > 1000 {
				return "", fmt.Errorf("repetition count above 1000: mailtee uses RE2 (Go's regexp), "+
					"which allows at most 1000 (glibc allows %d)", posixDupMax)
			}
			switch {
			case tok.min == 0 && tok.max == -1:
				out = append(out, '*')
			case tok.min == 1 && tok.max == -1:
				out = append(out, '+')
			case tok.min == 0 && tok.max == 1:
				out = append(out, '?')
			case tok.max == -1:
				out = fmt.Appendf(out, "{%d,}", tok.min)
			case tok.min == tok.max:
				out = fmt.Appendf(out, "{%d}", tok.min)
			default:
				out = fmt.Appendf(out, "{%d,%d}", tok.min, tok.max)
			}
			quantDone = true
			if tok.min == 0 {
				wordEnd = false
			}
		}
	}
	return string(out), nil
}

const posixDupMax = 0x7fff // glibc's RE_DUP_MAX

// lexPOSIX splits a glibc POSIX regular expression (extended or basic
// syntax, with the GNU extensions glibc accepts) into tokens.
func lexPOSIX(p string, ere, icase, newline bool) ([]posixTok, error) {
	var toks []posixTok
	depth := 0
	// atStart: a position where BRE takes *, \+ and \? literally and ^ as
	// an anchor: the start, after \(, after \|, or after a leading ^ or \`.
	atStart := func() bool {
		if len(toks) == 0 {
			return true
		}
		switch last := toks[len(toks)-1]; last.kind {
		case tOpen, tAlt, tBOL:
			return true
		case tEsc:
			return last.esc == `\A`
		}
		return false
	}
	// BRE takes $ as an anchor only at the end, before \) and before \|.
	atEnd := func(i int) bool {
		return i == len(p) || strings.HasPrefix(p[i:], `\)`) || strings.HasPrefix(p[i:], `\|`)
	}
	lit := func(c byte) { toks = append(toks, posixTok{kind: tLit, c: c}) }
	quant := func(min, max int) { toks = append(toks, posixTok{kind: tQuant, min: min, max: max}) }
	for i := 0; i < len(p); {
		c := p[i]
		i++
		if c == '[' {
			s, next, err := lexPOSIXBracket(p, i, icase, newline)
			if err != nil {
				return nil, err
			}
			toks = append(toks, posixTok{kind: tSet, set: s})
			i = next
			continue
		}
		if c == '.' {
			if newline {
				toks = append(toks, posixTok{kind: tSet, set: nlSet.complement()})
			} else {
				toks = append(toks, posixTok{kind: tAny})
			}
			continue
		}
		if c != '\\' {
			switch {
			case c == '*':
				if !ere && atStart() {
					lit(c)
				} else {
					quant(0, -1)
				}
			case c == '^' && (ere || atStart()):
				toks = append(toks, posixTok{kind: tBOL})
			case c == '$' && (ere || atEnd(i)):
				toks = append(toks, posixTok{kind: tEOL})
			case ere && (c == '+' || c == '?'):
				if c == '+' {
					quant(1, -1)
				} else {
					quant(0, 1)
				}
			case ere && c == '{':
				min, max, next, err := lexInterval(p, i, "}")
				if err != nil {
					return nil, err
				}
				quant(min, max)
				i = next
			case ere && c == '(':
				depth++
				toks = append(toks, posixTok{kind: tOpen})
			case ere && c == ')' && depth > 0:
				depth--
				toks = append(toks, posixTok{kind: tClose})
			case ere && c == '|':
				toks = append(toks, posixTok{kind: tAlt})
			default:
				lit(c)
			}
			continue
		}
		if i == len(p) {
			return nil, fmt.Errorf("trailing backslash")
		}
		c = p[i]
		i++
		switch {
		case !ere && c == '(':
			depth++
			toks = append(toks, posixTok{kind: tOpen})
		case !ere && c == ')':
			if depth == 0 {
				return nil, fmt.Errorf(`unmatched "\)"`)
			}
			depth--
			toks = append(toks, posixTok{kind: tClose})
		case !ere && c == '|':
			toks = append(toks, posixTok{kind: tAlt})
		case !ere && c == '{':
			if atStart() {
				return nil, fmt.Errorf(`"\{" without anything to repeat`)
			}
			min, max, next, err := lexInterval(p, i, `\}`)
			if err != nil {
				return nil, err
			}
			quant(min, max)
			i = next
		case !ere && (c == '+' || c == '?'):
			switch {
			case atStart():
				lit(c)
			case c == '+':
				quant(1, -1)
			default:
				quant(0, 1)
			}
		case c == 'w' || c == 'W':
			s := wordSet
			if c == 'W' {
				s = s.complement()
			}
			toks = append(toks, posixTok{kind: tSet, set: s})
		case c == 's' || c == 'S':
			s := spaceSet
			if c == 'S' {
				s = s.complement()
			}
			toks = append(toks, posixTok{kind: tSet, set: s})
		case c == 'b':
			toks = append(toks, posixTok{kind: tEsc, esc: `\b`})
		case c == 'B':
			toks = append(toks, posixTok{kind: tEsc, esc: `\B`})
		case c == '`':
			toks = append(toks, posixTok{kind: tEsc, esc: `\A`})
		case c == '\'':
			toks = append(toks, posixTok{kind: tEsc, esc: `\z`})
		case c == '<':
			toks = append(toks, posixTok{kind: tWordStart})
		case c == '>':
			toks = append(toks, posixTok{kind: tWordEnd})
		case c >= '1' && c <= '9':
			return nil, unsupported(`\`+string(c), "backreferences")
		case isASCIIAlnum(c):
			hint := ""
			switch c {
			case 'd':
				hint = "; write [0-9] or [[:digit:]]"
			case 'n', 't', 'r':
				hint = "; write the character itself, or use a pcre: table"
			}
			return nil, fmt.Errorf(`"\%c" is not a POSIX regular expression escape; `+
				`with the default flags Postfix (glibc) never matches it%s`, c, hint)
		default:
			lit(c)
		}
	}
	if depth > 0 {
		return nil, fmt.Errorf("unmatched %q", map[bool]string{true: "(", false: `\(`}[ere])
	}
	return toks, nil
}

// lexInterval reads "m}", "m,}", "m,n}" or ",n}" (close is "}" or "\}")
// after the opening brace at p[i:].
func lexInterval(p string, i int, close string) (min, max, next int, err error) {
	num := func() int {
		n := -1
		for i < len(p) && p[i] >= '0' && p[i] <= '9' {
			if n < 0 {
				n = 0
			}
			if n = n*10 + int(p[i]-'0'); n > posixDupMax+1 {
				n = posixDupMax + 1
			}
			i++
		}
		return n
	}
	min = num()
	max = min
	if i < len(p) && p[i] == ',' {
		i++
		max = num()
		if min < 0 {
			min = 0
		}
	} else if min < 0 {
		return 0, 0, 0, fmt.Errorf("invalid repetition interval: unmatched %q", "{")
	}
	if !strings.HasPrefix(p[i:], close) {
		return 0, 0, 0, fmt.Errorf("invalid repetition interval: unmatched %q", "{")
	}
	if max >= 0 && max < min {
		return 0, 0, 0, fmt.Errorf("invalid repetition interval: %d is less than %d", max, min)
	}
	if min > posixDupMax || max > posixDupMax {
		return 0, 0, 0, fmt.Errorf("repetition count too large (more than %d)", posixDupMax)
	}
	return min, max, i + len(close), nil
}

// lexPOSIXBracket reads a bracket expression whose '[' ends at p[i-1]. A
// backslash is an ordinary character there.
func lexPOSIXBracket(p string, i int, icase, newline bool) (byteSet, int, error) {
	var s byteSet
	neg := i < len(p) && p[i] == '^'
	if neg {
		i++
	}
	unmatched := fmt.Errorf("unmatched %q", "[")
	// elem reads one element: a byte, [.c.], [=c=] (single character
	// only, as in the C locale) or [:class:].
	elem := func() (c byte, class *byteSet, err error) {
		if i >= len(p) {
			return 0, nil, unmatched
		}
		if p[i] == '[' && i+1 < len(p) && strings.IndexByte(".=:", p[i+1]) >= 0 {
			kind := p[i+1]
			end := strings.Index(p[i+2:], string(kind)+"]")
			if end < 0 {
				return 0, nil, unmatched
			}
			name := p[i+2 : i+2+end]
			i += 2 + end + 2
			if kind == ':' {
				cs, ok := posixClasses[name]
				if !ok {
					return 0, nil, fmt.Errorf("unknown character class [:%s:]", name)
				}
				return 0, &cs, nil
			}
			if len(name) != 1 {
				return 0, nil, fmt.Errorf("unknown collating element [%c%s%c]", kind, name, kind)
			}
			return name[0], nil, nil
		}
		c = p[i]
		i++
		return c, nil, nil
	}
	for first := true; ; first = false {
		if i >= len(p) {
			return s, 0, unmatched
		}
		if p[i] == ']' && !first {
			i++
			break
		}
		lo, class, err := elem()
		if err != nil {
			return s, 0, err
		}
		if class != nil {
			s.union(*class)
			if i+1 < len(p) && p[i] == '-' && p[i+1] != ']' {
				return s, 0, fmt.Errorf("invalid range: a range cannot start with a character class")
			}
			continue
		}
		if i+1 < len(p) && p[i] == '-' && p[i+1] != ']' {
			i++
			hi, class, err := elem()
			if err != nil {
				return s, 0, err
			}
			if class != nil || hi < lo {
				return s, 0, fmt.Errorf("invalid range end in bracket expression")
			}
			s.addRange(lo, hi)
			if i+1 < len(p) && p[i] == '-' && p[i+1] != ']' {
				return s, 0, fmt.Errorf("invalid range end in bracket expression")
			}
			continue
		}
		s.add(lo)
	}
	if icase {
		s = s.fold()
	}
	if neg {
		s = s.complement()
		if newline { // REG_NEWLINE: a non-matching list never matches a newline
			s[0] &^= 1 << '\n'
		}
	}
	return s, i, nil
}

// posixStartsWord reports whether whatever toks[k:] matches certainly
// starts with a word character, which makes \< there the same as \b.
func posixStartsWord(toks []posixTok, k int) bool {
	end, ok := posixAtomStartsWord(toks, k)
	if !ok {
		return false
	}
	// An atom that may repeat zero times proves nothing.
	if end < len(toks) && toks[end].kind == tQuant && toks[end].min == 0 {
		return false
	}
	return true
}

// posixAtomStartsWord examines the atom at toks[k] and returns the index
// after it.
func posixAtomStartsWord(toks []posixTok, k int) (end int, ok bool) {
	if k >= len(toks) {
		return k, false
	}
	switch t := toks[k]; t.kind {
	case tLit:
		return k + 1, isWordByte(t.c)
	case tSet:
		return k + 1, !t.set.empty() && t.set.subsetOf(wordSet)
	case tOpen:
		ok, depth, altStart := true, 0, k+1
		for j := k + 1; j < len(toks); j++ {
			switch toks[j].kind {
			case tOpen:
				depth++
			case tClose, tAlt:
				if depth > 0 {
					if toks[j].kind == tClose {
						depth--
					}
					continue
				}
				ok = ok && posixStartsWord(toks, altStart)
				if toks[j].kind == tClose {
					return j + 1, ok
				}
				altStart = j + 1
			}
		}
	}
	return k + 1, false
}

// PCRE (pcre: tables) -------------------------------------------------------

// pcreFlags are the options that change how a PCRE pattern reads.
type pcreFlags struct {
	i, m, s, x, xx, n, U bool
}

type pcreTr struct {
	p       string
	i       int
	out     []byte
	fl      pcreFlags
	stack   []pcreFlags
	endOnly bool // E: $ matches only at the very end
	ncap    int  // capturing groups opened so far
	// assert is set when the last thing written was an assertion, which
	// PCRE2 refuses to repeat (RE2 would accept "\b*").
	assert bool
}

// PCRE turns a pattern of a pcre: table (the text between its delimiters)
// and its flags into RE2 syntax, with warnings about flags it ignores.
// Flags as in dict_pcre.c: CASELESS and DOTALL on by default; i, m, s, x,
// A, E, U toggle; X is ignored with a warning, as Postfix built with PCRE2
// does.
func PCRE(pattern, flags string) (string, []string, error) {
	t := pcreTr{p: pattern, fl: pcreFlags{i: true, s: true}}
	var anchored bool
	var warns []string
	for _, f := range []byte(flags) {
		switch f {
		case 'i':
			t.fl.i = !t.fl.i
		case 'm':
			t.fl.m = !t.fl.m
		case 's':
			t.fl.s = !t.fl.s
		case 'x':
			t.fl.x = !t.fl.x
		case 'A':
			anchored = !anchored
		case 'E':
			t.endOnly = !t.endOnly
		case 'U':
			t.fl.U = !t.fl.U
		case 'X':
			warns = append(warns, `ignoring obsolete flag "X" (PCRE2, which Postfix uses, has no PCRE_EXTRA)`)
		default:
			return "", warns, fmt.Errorf("unknown pcre flag %q (pcre: tables know i, m, s, x, A, E, U and X)", f)
		}
	}
	var goFlags []byte
	for _, f := range []struct {
		on bool
		c  byte
	}{{t.fl.i, 'i'}, {t.fl.m, 'm'}, {t.fl.s, 's'}, {t.fl.U, 'U'}} {
		if f.on {
			goFlags = append(goFlags, f.c)
		}
	}
	if len(goFlags) > 0 {
		t.out = fmt.Appendf(t.out, "(?%s)", goFlags)
	}
	if anchored {
		t.out = append(t.out, `\A(?:`...)
	}
	if err := t.run(); err != nil {
		return "", warns, err
	}
	if anchored {
		t.out = append(t.out, ')')
	}
	return string(t.out), warns, nil
}

func (t *pcreTr) run() error {
	for t.i < len(t.p) {
		c := t.p[t.i]
		if t.fl.x {
			if isSpace(c) {
				t.i++
				continue
			}
			if c == '#' {
				for t.i < len(t.p) && t.p[t.i] != '\n' {
					t.i++
				}
				continue
			}
		}
		t.i++
		wasAssert, outLen := t.assert, len(t.out)
		t.assert = false
		if wasAssert && (c == '*' || c == '+' || c == '?' ||
			c == '{' && pcreIsInterval(t.p[t.i:])) {
			return fmt.Errorf("quantifier does not follow a repeatable item")
		}
		switch c {
		case '\\':
			if err := t.escape(); err != nil {
				return err
			}
		case '[':
			s, err := t.class()
			if err != nil {
				return err
			}
			t.out = emitSet(t.out, s, t.fl.i)
		case '(':
			if err := t.group(); err != nil {
				return err
			}
		case ')':
			if len(t.stack) == 0 {
				return fmt.Errorf("unmatched closing parenthesis")
			}
			t.fl = t.stack[len(t.stack)-1]
			t.stack = t.stack[:len(t.stack)-1]
			t.out = append(t.out, ')')
		case '|', '.':
			t.out = append(t.out, c)
		case '^':
			t.out = append(t.out, c)
			t.assert = true
		case '$':
			t.out = append(t.out, t.dollar()...)
			t.assert = true
		case '*', '+', '?':
			t.out = append(t.out, c)
			if err := t.quantSuffix(); err != nil {
				return err
			}
		case '{':
			q, n, ok := pcreInterval(t.p[t.i:])
			if !ok {
				t.out = append(t.out, `\{`...)
				break
			}
			if n > 65535 {
				return fmt.Errorf("number too big in {} quantifier")
			}
			if n > 1000 {
				return fmt.Errorf("repetition count %d above 1000: mailtee uses RE2 (Go's regexp), "+
					"which allows at most 1000", n)
			}
			t.out = append(append(t.out, '{'), q...)
			t.i += len(q)
			if err := t.quantSuffix(); err != nil {
				return err
			}
		default:
			t.out = emitLiteral(t.out, c, t.fl.i)
		}
		if len(t.out) == outLen { // a comment, \E: as if it were not there
			t.assert = wasAssert
		}
	}
	if len(t.stack) > 0 {
		return fmt.Errorf("missing closing parenthesis")
	}
	return nil
}

// dollar is PCRE's $: without multiline, the end or before a final
// newline (unless E); RE2's $ without (?m) is only the end.
func (t *pcreTr) dollar() string {
	switch {
	case t.fl.m:
		return `(?m:$)`
	case t.endOnly:
		return `\z`
	default:
		return `(?:\z|\n\z)`
	}
}

// pcreInterval recognizes "n}", "n,}" or "n,m}" (what follows '{') and
// returns it with the largest number in it. Anything else makes '{' a
// literal in PCRE2 10.42.
func pcreInterval(s string) (q string, largest int, ok bool) {
	i, commas, digits := 0, 0, 0
	n := 0
	for ; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			if digits++; n < 1<<20 {
				n = n*10 + int(c-'0')
			}
			largest = max(largest, n)
		case c == ',' && commas == 0 && digits > 0:
			commas++
			n = 0
		case c == '}' && digits > 0:
			return s[:i+1], largest, true
		default:
			return "", 0, false
		}
	}
	return "", 0, false
}

func pcreIsInterval(s string) bool {
	_, _, ok := pcreInterval(s)
	return ok
}

// quantSuffix handles what may follow a quantifier: ? (lazy) or + (possessive).
func (t *pcreTr) quantSuffix() error {
	if t.i < len(t.p) {
		switch t.p[t.i] {
		case '?':
			t.out = append(t.out, '?')
			t.i++
		case '+':
			return unsupported(t.p[max(0, t.i-1):t.i+1], "possessive quantifiers")
		}
	}
	return nil
}

func (t *pcreTr) group() error {
	p, i := t.p, t.i
	if i < len(p) && p[i] == '*' {
		end := strings.IndexByte(p[i:], ')')
		verb := p[i-1:]
		if end >= 0 {
			verb = p[i-1 : i+end+1]
		}
		return unsupported(verb, "backtracking control verbs or start-of-pattern options")
	}
	if i >= len(p) || p[i] != '?' {
		t.push()
		if t.fl.n {
			t.out = append(t.out, "(?:"...)
		} else {
			t.ncap++
			t.out = append(t.out, '(')
		}
		return nil
	}
	i++
	if i >= len(p) {
		return fmt.Errorf(`unterminated "(?"`)
	}
	switch c := p[i]; {
	case c == ':':
		t.i = i + 1
		t.push()
		t.out = append(t.out, "(?:"...)
		return nil
	case c == '#':
		end := strings.IndexByte(p[i:], ')')
		if end < 0 {
			return fmt.Errorf("missing ) after (?# comment")
		}
		t.i = i + end + 1
		return nil
	case c == '=' || c == '!':
		return unsupported("(?"+string(c), "lookahead")
	case c == '<' && i+1 < len(p) && (p[i+1] == '=' || p[i+1] == '!'):
		return unsupported(p[i-2:i+2], "lookbehind")
	case c == '>':
		return unsupported("(?>", "atomic groups")
	case c == '|':
		return unsupported("(?|", "branch reset groups")
	case c == '(':
		return unsupported("(?(", "conditional groups")
	case c == 'C':
		return unsupported("(?C", "callouts")
	case c == 'R' || c == '&' || c >= '0' && c <= '9' ||
		(c == '+' || c == '-') && i+1 < len(p) && p[i+1] >= '0' && p[i+1] <= '9' ||
		c == 'P' && i+1 < len(p) && p[i+1] == '>':
		return unsupported(p[i-2:min(len(p), i+2)], "recursion or subroutine calls")
	case c == 'P' && i+1 < len(p) && p[i+1] == '=':
		return unsupported("(?P=", "backreferences")
	case c == '<' || c == '\'' || c == 'P' && i+1 < len(p) && p[i+1] == '<':
		if c == 'P' {
			i++
		}
		close := byte('>')
		if p[i] == '\'' {
			close = '\''
		}
		end := strings.IndexByte(p[i+1:], close)
		if end < 0 {
			return fmt.Errorf("unterminated group name")
		}
		name := p[i+1 : i+1+end]
		if name == "" || name[0] >= '0' && name[0] <= '9' || strings.TrimFunc(name, func(r rune) bool {
			return r < utf8.RuneSelf && isWordByte(byte(r))
		}) != "" {
			return fmt.Errorf("bad group name %q", name)
		}
		t.i = i + 1 + end + 1
		t.push()
		t.ncap++
		t.out = fmt.Appendf(t.out, "(?P<%s>", name)
		return nil
	}
	return t.flagGroup(i)
}

// flagGroup reads "(?imnsxU-imnsxU)" or "(?...:" starting at the flags.
func (t *pcreTr) flagGroup(i int) error {
	p := t.p
	fl := t.fl
	var set, clear []byte
	neg := false
	if i < len(p) && p[i] == '^' { // PCRE2: unset i, m, n, s, x
		fl.i, fl.m, fl.n, fl.s, fl.x, fl.xx = false, false, false, false, false, false
		clear = append(clear, 'i', 'm', 's')
		i++
	}
	xs := 0
	for ; i < len(p) && p[i] != ')' && p[i] != ':'; i++ {
		c := p[i]
		if c == '-' && !neg {
			neg = true
			continue
		}
		on := !neg
		switch c {
		case 'i':
			fl.i = on
		case 'm':
			fl.m = on
		case 's':
			fl.s = on
		case 'U':
			fl.U = on
		case 'x':
			if on {
				xs++
				fl.x, fl.xx = true, xs > 1
			} else {
				fl.x, fl.xx = false, false
			}
			continue
		case 'n':
			fl.n = on
			continue
		case 'J':
			// Duplicate group names; RE2 rejects duplicates, which is
			// reported when they occur.
			continue
		default:
			return fmt.Errorf("unrecognized character %q after (? or (?-", c)
		}
		if on {
			set = append(set, c)
		} else {
			clear = append(clear, c)
		}
	}
	if i >= len(p) {
		return fmt.Errorf(`unterminated "(?" option setting`)
	}
	goFlags := string(set)
	if len(clear) > 0 {
		goFlags += "-" + string(clear)
	}
	if p[i] == ':' {
		t.push()
		t.fl = fl
		t.out = fmt.Appendf(t.out, "(?%s:", goFlags)
	} else {
		t.fl = fl
		if goFlags != "" {
			t.out = fmt.Appendf(t.out, "(?%s)", goFlags)
		}
	}
	t.i = i + 1
	return nil
}

func (t *pcreTr) push() { t.stack = append(t.stack, t.fl) }

// escape translates the escape after a backslash outside a class.
func (t *pcreTr) escape() error {
	if t.i >= len(t.p) {
		return fmt.Errorf(`"\" at end of pattern`)
	}
	c := t.p[t.i]
	t.i++
	if s, ok, err := t.classEscape(c); err != nil {
		return err
	} else if ok {
		t.out = emitSet(t.out, s, t.fl.i)
		return nil
	}
	switch c {
	case 'b', 'B', 'A', 'z':
		t.out = append(t.out, '\\', c)
		t.assert = true
	case 'G': // Postfix always matches from the start of the key
		t.out = append(t.out, `\A`...)
		t.assert = true
	case 'Z':
		t.out = append(t.out, `(?:\z|\n\z)`...)
		t.assert = true
	case 'C': // one code unit: one byte
		t.out = append(t.out, `(?s:.)`...)
	case 'R':
		t.out = append(t.out, `(?:\r\n|[\n\x0b\f\r\x{85}])`...)
	case 'X':
		return unsupported(`\X`, "extended grapheme clusters (\\X)")
	case 'K':
		return unsupported(`\K`, "resetting the match start (\\K)")
	case 'g', 'k':
		return unsupported(`\`+string(c), "backreferences")
	case 'Q':
		end := strings.Index(t.p[t.i:], `\E`)
		quoted := t.p[t.i:]
		if end >= 0 {
			quoted = t.p[t.i : t.i+end]
			t.i += end + 2
		} else {
			t.i = len(t.p)
		}
		for j := 0; j < len(quoted); j++ {
			t.out = emitLiteral(t.out, quoted[j], t.fl.i)
		}
	case 'E':
	default:
		if c >= '1' && c <= '9' {
			// PCRE2: \1..\9, \8.., \9.. and \n with n not above the groups
			// seen so far are backreferences; other numbers are octal.
			j := t.i
			for j < len(t.p) && t.p[j] >= '0' && t.p[j] <= '9' {
				j++
			}
			n, err := strconv.Atoi(t.p[t.i-1 : j])
			if err != nil || n < 10 || c >= '8' || n <= t.ncap {
				return unsupported(t.p[t.i-2:j], "backreferences")
			}
		}
		v, ok, err := t.charEscape(c)
		switch {
		case err != nil:
			return err
		case ok:
			t.out = emitLiteral(t.out, v, t.fl.i)
		case isASCIIAlnum(c):
			return fmt.Errorf(`unrecognized escape "\%c"`, c)
		default:
			t.out = emitLiteral(t.out, c, t.fl.i)
		}
	}
	return nil
}

// classEscape handles escapes that stand for a set of bytes.
func (t *pcreTr) classEscape(c byte) (byteSet, bool, error) {
	var s byteSet
	switch c {
	case 'd', 'D':
		s = digitSet
	case 'w', 'W':
		s = wordSet
	case 's', 'S':
		s = spaceSet
	case 'h', 'H':
		s = setOf('\t', '\t', ' ', ' ', 0xa0, 0xa0)
	case 'v', 'V':
		s = setOf('\n', '\r', 0x85, 0x85)
	case 'N':
		if t.i < len(t.p) && t.p[t.i] == '{' && !pcreIsInterval(t.p[t.i+1:]) {
			return s, false, fmt.Errorf(`"\N{name}" is not supported (PCRE2 has it only in UTF mode)`)
		}
		return nlSet.complement(), true, nil
	case 'p', 'P':
		s, err := t.property(c == 'P')
		return s, err == nil, err
	default:
		return s, false, nil
	}
	if c >= 'A' && c <= 'Z' {
		s = s.complement()
	}
	return s, true, nil
}

// property reads the name after \p or \P.
func (t *pcreTr) property(neg bool) (byteSet, error) {
	var name string
	switch {
	case t.i < len(t.p) && t.p[t.i] == '{':
		end := strings.IndexByte(t.p[t.i:], '}')
		if end < 0 {
			return byteSet{}, fmt.Errorf(`malformed \p or \P`)
		}
		name = t.p[t.i+1 : t.i+end]
		t.i += end + 1
	case t.i < len(t.p):
		name = t.p[t.i : t.i+1]
		t.i++
	default:
		return byteSet{}, fmt.Errorf(`malformed \p or \P`)
	}
	if strings.HasPrefix(name, "^") {
		neg, name = !neg, name[1:]
	}
	// In PCRE2's non-UTF mode, as Postfix uses it, a property applies to
	// the byte value taken as a code point.
	var in func(r rune) bool
	switch name {
	case "Any":
		in = func(rune) bool { return true }
	case "L&", "Lc":
		in = func(r rune) bool { return unicode.In(r, unicode.Lu, unicode.Ll, unicode.Lt) }
	case "Xan":
		in = func(r rune) bool { return unicode.In(r, unicode.L, unicode.N) }
	case "Xwd":
		in = func(r rune) bool { return r == '_' || unicode.In(r, unicode.L, unicode.N) }
	case "Xsp", "Xps":
		in = func(r rune) bool { return unicode.Is(unicode.Z, r) || r >= '\t' && r <= '\r' }
	case "Cn":
		in = func(r rune) bool {
			return !unicode.In(r, unicode.C, unicode.L, unicode.M, unicode.N, unicode.P, unicode.S, unicode.Z)
		}
	default:
		tab := unicode.Categories[name]
		if tab == nil {
			tab = unicode.Scripts[name]
		}
		if tab == nil {
			return byteSet{}, fmt.Errorf(`unknown property name %q after \p or \P`, name)
		}
		in = func(r rune) bool { return unicode.Is(tab, r) }
	}
	var s byteSet
	for c := 0; c < 256; c++ {
		if in(rune(c)) {
			s.add(byte(c))
		}
	}
	if neg {
		s = s.complement()
	}
	return s, nil
}

// charEscape handles escapes that stand for one byte.
func (t *pcreTr) charEscape(c byte) (byte, bool, error) {
	switch c {
	case 'a':
		return 7, true, nil
	case 'e':
		return 0x1b, true, nil
	case 'f':
		return '\f', true, nil
	case 'n':
		return '\n', true, nil
	case 'r':
		return '\r', true, nil
	case 't':
		return '\t', true, nil
	case 'c':
		if t.i >= len(t.p) || t.p[t.i] < ' ' || t.p[t.i] > '~' {
			return 0, false, fmt.Errorf(`"\c" must be followed by a printable ASCII character`)
		}
		v := t.p[t.i]
		t.i++
		if v >= 'a' && v <= 'z' {
			v -= 32
		}
		return v ^ 0x40, true, nil
	case 'x':
		if t.i < len(t.p) && t.p[t.i] == '{' {
			end := strings.IndexByte(t.p[t.i:], '}')
			if end < 0 {
				return 0, false, fmt.Errorf(`missing "}" after "\x{"`)
			}
			return t.codePoint(t.p[t.i+1:t.i+end], 16, end+1)
		}
		j := t.i
		for j < len(t.p) && j < t.i+2 && strings.IndexByte("0123456789abcdefABCDEF", t.p[j]) >= 0 {
			j++
		}
		if j == t.i {
			return 0, true, nil
		}
		return t.codePoint(t.p[t.i:j], 16, j-t.i)
	case 'o':
		if t.i >= len(t.p) || t.p[t.i] != '{' {
			return 0, false, fmt.Errorf(`missing "{" after "\o"`)
		}
		end := strings.IndexByte(t.p[t.i:], '}')
		if end < 0 {
			return 0, false, fmt.Errorf(`missing "}" after "\o{"`)
		}
		return t.codePoint(t.p[t.i+1:t.i+end], 8, end+1)
	}
	if c >= '0' && c <= '7' {
		j := t.i
		for j < len(t.p) && j < t.i+2 && t.p[j] >= '0' && t.p[j] <= '7' {
			j++
		}
		return t.codePoint(t.p[t.i-1:j], 8, j-t.i)
	}
	return 0, false, nil
}

func (t *pcreTr) codePoint(digits string, base, advance int) (byte, bool, error) {
	v, err := strconv.ParseUint(digits, base, 32)
	if err != nil {
		return 0, false, fmt.Errorf("bad number %q in escape", digits)
	}
	if v > 0xff {
		return 0, false, fmt.Errorf("character code point %#x is too large: "+
			"Postfix's PCRE matches bytes, so the largest is 0xff", v)
	}
	t.i += advance
	return byte(v), true, nil
}

// class reads a PCRE character class whose '[' is at t.p[t.i-1].
func (t *pcreTr) class() (byteSet, error) {
	var s byteSet
	p := t.p
	neg := t.i < len(p) && p[t.i] == '^'
	if neg {
		t.i++
	}
	fold := func(x byteSet) byteSet {
		if t.fl.i {
			return x.fold()
		}
		return x
	}
	// item reads one class item: a byte (single) or a set.
	item := func() (c byte, set *byteSet, err error) {
		ch := p[t.i]
		t.i++
		switch {
		case ch == '[' && t.i < len(p) && (p[t.i] == ':' || p[t.i] == '.' || p[t.i] == '='):
			kind := p[t.i]
			end := strings.Index(p[t.i+1:], string(kind)+"]")
			if end < 0 {
				return ch, nil, nil
			}
			name := p[t.i+1 : t.i+1+end]
			if kind != ':' {
				return 0, nil, fmt.Errorf("POSIX collating elements are not supported")
			}
			t.i += 1 + end + 2
			negClass := strings.HasPrefix(name, "^")
			name = strings.TrimPrefix(name, "^")
			cs, ok := posixClasses[name]
			switch name {
			case "word":
				cs, ok = wordSet, true
			case "ascii":
				cs, ok = setOf(0, 0x7f), true
			}
			if !ok {
				return 0, nil, fmt.Errorf("unknown POSIX class name %q", name)
			}
			cs = fold(cs)
			if negClass {
				cs = cs.complement()
			}
			return 0, &cs, nil
		case ch != '\\':
			return ch, nil, nil
		}
		if t.i >= len(p) {
			return 0, nil, fmt.Errorf(`"\" at end of pattern`)
		}
		e := p[t.i]
		t.i++
		if cs, ok, err := t.classEscape(e); err != nil {
			return 0, nil, err
		} else if ok {
			if e == 'N' {
				return 0, nil, fmt.Errorf(`"\N" is not allowed in a character class`)
			}
			return 0, &cs, nil
		}
		switch e {
		case 'b':
			return '\b', nil, nil
		case 'Q', 'E':
			return 0, nil, fmt.Errorf(`"\Q" or "\E" cannot end a range in a character class`)
		case '8', '9':
			return e, nil, nil
		}
		if e >= '1' && e <= '7' { // octal inside a class
			j := t.i
			for j < len(p) && j < t.i+2 && p[j] >= '0' && p[j] <= '7' {
				j++
			}
			v, _, err := t.codePoint(p[t.i-1:j], 8, j-t.i)
			return v, nil, err
		}
		v, ok, err := t.charEscape(e)
		if err != nil {
			return 0, nil, err
		}
		if ok {
			return v, nil, nil
		}
		if isASCIIAlnum(e) {
			return 0, nil, fmt.Errorf(`unrecognized escape "\%c" in a character class`, e)
		}
		return e, nil, nil
	}
	// A leading ']' is literal; \Q...\E quotes; with xx, spaces and tabs
	// are ignored.
	for first := true; ; first = false {
		if t.i >= len(p) {
			return s, fmt.Errorf("missing terminating ] for character class")
		}
		if t.fl.xx && (p[t.i] == ' ' || p[t.i] == '\t') {
			t.i++
			first = false
			continue
		}
		if p[t.i] == ']' && !first {
			t.i++
			break
		}
		if strings.HasPrefix(p[t.i:], `\Q`) {
			t.i += 2
			end := strings.Index(p[t.i:], `\E`)
			quoted := p[t.i:]
			if end >= 0 {
				quoted = p[t.i : t.i+end]
				t.i += end + 2
			} else {
				t.i = len(p)
			}
			var q byteSet
			for j := 0; j < len(quoted); j++ {
				q.add(quoted[j])
			}
			s.union(fold(q))
			continue
		}
		if strings.HasPrefix(p[t.i:], `\E`) {
			t.i += 2
			continue
		}
		lo, set, err := item()
		if err != nil {
			return s, err
		}
		isRange := t.i+1 < len(p) && p[t.i] == '-' && p[t.i+1] != ']'
		if set != nil {
			if isRange {
				return s, fmt.Errorf("invalid range in character class")
			}
			s.union(*set)
			continue
		}
		if !isRange {
			var one byteSet
			one.add(lo)
			s.union(fold(one))
			continue
		}
		t.i++
		hi, set, err := item()
		if err != nil {
			return s, err
		}
		if set != nil {
			return s, fmt.Errorf("invalid range in character class")
		}
		if hi < lo {
			return s, fmt.Errorf("range out of order in character class")
		}
		var r byteSet
		r.addRange(lo, hi)
		s.union(fold(r))
	}
	if neg {
		s = s.complement()
	}
	return s, nil
}
