package maps

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/diag"
)

// reCase is one lookup in a regexp: or pcre: table. Unless noPostmap says
// why not, TestRegexpCasesAgainstPostmap checks the expectation against
// the installed Postfix, so every case below records what Postfix 3.7.11
// (glibc regcomp, PCRE2 10.42) does.
type reCase struct {
	doc       string // the manual line followed, or what Postfix was seen to do
	kind      string // "regexp" or "pcre"
	table     string
	key       string
	want      string
	ok        bool
	noPostmap string
}

var reCases = []reCase{
	// regexp_table(5)
	{doc: `EXAMPLE SMTPD ACCESS MAP: "/^postmaster@/ OK"`,
		kind: "regexp", table: "/[%!@].*[%!@]/ 550 Sender-specified routing rejected\n/^postmaster@/ OK\n",
		key: "postmaster@example.com", want: "OK", ok: true},
	{doc: `"Patterns are applied in the order as specified in the table, until a pattern is found that matches"`,
		kind: "regexp", table: "/[%!@].*[%!@]/ 550 Sender-specified routing rejected\n/^postmaster@/ OK\n",
		key: "postmaster%other@example.com", want: "550 Sender-specified routing rejected", ok: true},
	{doc: `"By default, matching is case-insensitive"`,
		kind: "regexp", table: "/^abc$/ R\n", key: "ABC", want: "R", ok: true},
	{doc: `"i (default: on) Toggles the case sensitivity flag"`,
		kind: "regexp", table: "/^abc$/i R\n", key: "ABC"},
	{doc: `"i" toggles: "ii" is case-insensitive again`,
		kind: "regexp", table: "/^abc$/ii R\n", key: "ABC", want: "R", ok: true},
	{doc: `"!/pattern/flags result: When pattern does not match the input string"`,
		kind: "regexp", table: "!/^owner-/ R\n", key: "list@example.com", want: "R", ok: true},
	{doc: `"!/pattern/flags result"`,
		kind: "regexp", table: "!/^owner-/ R\n", key: "owner-list@example.com"},
	{doc: `dict_regexp_get_pat(): every "!" toggles, spaces between are skipped`,
		kind: "regexp", table: "! ! /^a$/ R\n", key: "a", want: "R", ok: true},
	{doc: `EXAMPLE: "if !/^owner-/" ... "550 Use ${1}@${2} instead"`,
		kind: "regexp", table: "if !/^owner-/\n/^(.*)-outgoing@(.*)$/  550 Use ${1}@${2} instead\nendif\n",
		key: "list-outgoing@example.com", want: "550 Use list@example.com instead", ok: true},
	{doc: `EXAMPLE: "if !/^owner-/" skips the block for owner-*`,
		kind: "regexp", table: "if !/^owner-/\n/^(.*)-outgoing@(.*)$/  550 Use ${1}@${2} instead\nendif\n",
		key: "owner-list-outgoing@example.com"},
	{doc: `"The if..endif can nest"`,
		kind: "regexp", table: "if /a/\nif /b/\n/c/ ABC\nendif\n/./ A\nendif\n/./ OTHER\n",
		key: "ac", want: "A", ok: true},
	{doc: `"The if..endif can nest"`,
		kind: "regexp", table: "if /a/\nif /b/\n/c/ ABC\nendif\n/./ A\nendif\n/./ OTHER\n",
		key: "abc", want: "ABC", ok: true},
	{doc: `"The if..endif can nest"`,
		kind: "regexp", table: "if /a/\nif /b/\n/c/ ABC\nendif\n/./ A\nendif\n/./ OTHER\n",
		key: "x", want: "OTHER", ok: true},
	{doc: `IF and ENDIF are recognized in any case and need no space before the pattern`,
		kind: "regexp", table: "IF/a/\n/b/ B\nENDIF\n", key: "ab", want: "B", ok: true},
	{doc: `EXAMPLE BODY FILTER MAP: "~^[[:alnum:]+/]{60,}$~ OK" (any delimiter)`,
		kind: "regexp", table: "~^[[:alnum:]+/]{60,}$~ OK\n", key: strings.Repeat("QUJD", 16), want: "OK", ok: true},
	{doc: `a backslash escapes the delimiter and stays in the pattern`,
		kind: "regexp", table: `/^a\/b$/ R` + "\n", key: "a/b", want: "R", ok: true},
	{doc: `POSIX: a backslash in a bracket expression is an ordinary character`,
		kind: "regexp", table: `/^[\.]$/ R` + "\n", key: `\`, want: "R", ok: true},
	{doc: `"specify $$ to produce a $ character as output"`,
		kind: "regexp", table: "/^(a)$/ $$1=$1 cost $$5\n", key: "a", want: "$1=a cost $5", ok: true},
	{doc: `"The macros in the result string may need to be written as ${n} or $(n)"`,
		kind: "regexp", table: "/^(a)(b)$/ ${1}x$(2)y\n", key: "ab", want: "axby", ok: true},
	{doc: `a group that did not take part in the match substitutes as nothing`,
		kind: "regexp", table: "/^(x)?y$/ [$1]\n", key: "y", want: "[]", ok: true},
	{doc: `the result keeps its inner whitespace`,
		kind: "regexp", table: "/a/ 550  two\tspaces\n", key: "a", want: "550  two\tspaces", ok: true},
	{doc: `POSIX leftmost-longest decides what the groups hold`,
		kind: "regexp", table: "/(a|ab)(c|bcd)(d*)/ [$1][$2][$3]\n", key: "abcd", want: "[a][bcd][]", ok: true},
	{doc: `POSIX leftmost-longest`,
		kind: "regexp", table: "/(a*)(ab)*(b*)/ [$1][$2][$3]\n", key: "ab", want: "[a][][b]", ok: true},
	{doc: `POSIX ERE "+?" is two repetitions, not a lazy one`,
		kind: "regexp", table: "/^(a+?)(a*)$/ [$1][$2]\n", key: "aaa", want: "[aaa][]", ok: true},
	{doc: `"x (default: on) Toggles the extended expression syntax flag": x gives basic syntax`,
		kind: "regexp", table: `/^a\{2\}\(b\)$/x $1` + "\n", key: "aab", want: "b", ok: true},
	{doc: `basic syntax: braces, + and | are literal`,
		kind: "regexp", table: "/^a{2}+|$/x R\n", key: "a{2}+|", want: "R", ok: true},
	{doc: `basic syntax: a leading * is literal`,
		kind: "regexp", table: "/^*a/x R\n", key: "*a", want: "R", ok: true},
	{doc: `"newlines are not treated as special characters": . matches a newline`,
		kind: "regexp", table: "/a.b/ R\n", key: "a\nb", want: "R", ok: true},
	{doc: `"newlines are not treated as special characters": $ only at the end`,
		kind: "regexp", table: "/a$/ R\n", key: "a\n"},
	{doc: `"m (default: off) ... ^ and $ metacharacters match immediately after and immediately before a newline"`,
		kind: "regexp", table: "/^b$/m R\n", key: "a\nb", want: "R", ok: true},
	{doc: `REG_NEWLINE: . does not match a newline`,
		kind: "regexp", table: "/a.b/m R\n", key: "a\nb"},
	{doc: `REG_NEWLINE: a non-matching list does not match a newline`,
		kind: "regexp", table: "/^[^a]$/m R\n", key: "\n"},
	{doc: `glibc: [[:upper:]] matches lower case when case-insensitive`,
		kind: "regexp", table: "/^[[:upper:]]$/ R\n", key: "a", want: "R", ok: true},
	{doc: `glibc GNU extensions \w and \b`,
		kind: "regexp", table: `/\w\b/ R` + "\n", key: "a-", want: "R", ok: true},
	{doc: `glibc GNU extensions \< and \>`,
		kind: "regexp", table: `/\<(ab|cd)\>/ R` + "\n", key: "x cd y", want: "R", ok: true},
	{doc: `glibc GNU extensions \< and \>`,
		kind: "regexp", table: `/\<(ab|cd)\>/ R` + "\n", key: "xab"},
	{doc: `an unmatched ) is literal in POSIX extended syntax`,
		kind: "regexp", table: "/a)/ R\n", key: "a)", want: "R", ok: true},
	{doc: `a{,2} is a repetition in glibc`,
		kind: "regexp", table: "/^a{,2}$/ R\n", key: "aa", want: "R", ok: true},
	{doc: `the C locale: . is one byte, so é (two bytes in UTF-8) is two characters`,
		kind: "regexp", table: "/^.$/ one\n/^..$/ two\n", key: "é", want: "two", ok: true},
	{doc: `the C locale: only ASCII letters fold case`,
		kind: "regexp", table: "/^é$/ R\n", key: "É"},
	{doc: `the C locale: matching bytes, $1 gives bytes back`,
		kind: "regexp", table: "/^(.)(.*)$/ [$2]\n", key: "éa", want: "[\xa9a]", ok: true,
		noPostmap: "postmap refuses a result that is not UTF-8"},
	{doc: `"/pattern1/!/pattern2/" (still read by dict_regexp.c)`,
		kind: "regexp", table: "/a/!/b/ R\n", key: "ac", want: "R", ok: true},
	{doc: `"/pattern1/!/pattern2/" (still read by dict_regexp.c)`,
		kind: "regexp", table: "/a/!/b/ R\n", key: "ab"},
	{doc: `a key is matched as given: no case folding (the i flag does that)`,
		kind: "regexp", table: "/^ABC$/i R\n", key: "ABC", want: "R", ok: true},

	// pcre_table(5)
	{doc: `EXAMPLE: "A multi-line entry. The text is sent as one line."`,
		kind: "pcre", table: "/^noddy@my\\.domain$/\n 550 This user is a funny one. You really don't want to send mail to\n them as it only makes their head spin.\n",
		key: "noddy@my.domain", want: "550 This user is a funny one. You really don't want to send mail to them as it only makes their head spin.", ok: true},
	{doc: `"By default, matching is case-insensitive"`,
		kind: "pcre", table: "/^abc$/ R\n", key: "ABC", want: "R", ok: true},
	{doc: `"i (default: on) Toggles the case sensitivity flag"`,
		kind: "pcre", table: "/^abc$/i R\n", key: "ABC"},
	{doc: `"s (default: on) Toggles the pcre DOTALL flag"`,
		kind: "pcre", table: "/^a.b$/ R\n", key: "a\nb", want: "R", ok: true},
	{doc: `"s (default: on) Toggles the pcre DOTALL flag"`,
		kind: "pcre", table: "/^a.b$/s R\n", key: "a\nb"},
	{doc: `"m (default: off) Toggles the pcre MULTILINE flag"`,
		kind: "pcre", table: "/^b$/m R\n", key: "a\nb", want: "R", ok: true},
	{doc: `"x (default: off) ... whitespace characters in the pattern ... are ignored"`,
		kind: "pcre", table: "/^a b # comment$/x R\n", key: "ab", want: "R", ok: true},
	{doc: `"A (default: off) ... constrained to match only at the start of the string"`,
		kind: "pcre", table: "/b/A R\n", key: "ab"},
	{doc: `"A (default: off)"`,
		kind: "pcre", table: "/b/A R\n", key: "ba", want: "R", ok: true},
	{doc: `"Without this flag, a dollar also matches immediately before the final character if it is a newline"`,
		kind: "pcre", table: "/a$/ R\n", key: "a\n", want: "R", ok: true},
	{doc: `"E (default: off) Toggles the pcre DOLLAR_ENDONLY flag"`,
		kind: "pcre", table: "/a$/E R\n", key: "a\n"},
	{doc: `PCRE \Z: the end or before a final newline`,
		kind: "pcre", table: `/a\Z/ R` + "\n", key: "a\n", want: "R", ok: true},
	{doc: `"U (default: off) Toggles the pcre UNGREEDY flag"`,
		kind: "pcre", table: "/^(a+)/U [$1]\n", key: "aaa", want: "[a]", ok: true},
	{doc: `"X ... This feature is not supported with PCRE2": ignored`,
		kind: "pcre", table: "/^a$/X R\n", key: "a", want: "R", ok: true},
	{doc: `PCRE lazy quantifier`,
		kind: "pcre", table: "/^(a+?)(a*)$/ [$1][$2]\n", key: "aaa", want: "[a][aa]", ok: true},
	{doc: `PCRE leftmost-first alternation`,
		kind: "pcre", table: "/(a|ab)(c|bcd)(d*)/ [$1][$2][$3]\n", key: "abcd", want: "[a][bcd][]", ok: true},
	{doc: `PCRE \d and \s (which includes VT)`,
		kind: "pcre", table: `/^\d\s$/ R` + "\n", key: "1\v", want: "R", ok: true},
	{doc: `PCRE named groups count as numbered groups`,
		kind: "pcre", table: "/^(?<first>a)(?'second'b)(?P<third>c)$/ $3$2$1\n", key: "abc", want: "cba", ok: true},
	{doc: `PCRE2 (?n): plain groups do not capture, named ones do`,
		kind: "pcre", table: "/(?n)(a)(?<x>b)/ [$1]\n", key: "ab", want: "[b]", ok: true},
	{doc: `PCRE \Q...\E quotes`,
		kind: "pcre", table: `/^\Qa.b\E$/ R` + "\n", key: "axb"},
	{doc: `PCRE \Q...\E quotes`,
		kind: "pcre", table: `/^\Qa.b\E$/ R` + "\n", key: "a.b", want: "R", ok: true},
	{doc: `PCRE character escapes: octal \12 (fewer than 12 groups), \x41, \o{102}`,
		kind: "pcre", table: `/^\12\x41\o{102}$/i R` + "\n", key: "\nAB", want: "R", ok: true},
	{doc: `PCRE inline options`,
		kind: "pcre", table: "/^(?i)a(?-i)b$/i R\n", key: "Ab", want: "R", ok: true},
	{doc: `PCRE inline options`,
		kind: "pcre", table: "/^(?i)a(?-i)b$/i R\n", key: "AB"},
	{doc: `PCRE comments`,
		kind: "pcre", table: "/^a(?#note)b$/ R\n", key: "ab", want: "R", ok: true},
	{doc: `PCRE2 10.42: {,2} is literal`,
		kind: "pcre", table: "/^a{,2}$/ R\n", key: "a{,2}", want: "R", ok: true},
	{doc: `PCRE: a { that starts no quantifier is literal`,
		kind: "pcre", table: "/a{1/ R\n", key: "a{1", want: "R", ok: true},
	{doc: `PCRE non-UTF mode: \p applies to byte values (é is C3 A9: L and So)`,
		kind: "pcre", table: `/^\p{L}\p{So}$/ R` + "\n", key: "é", want: "R", ok: true},
	{doc: `PCRE non-UTF mode: \w is ASCII`,
		kind: "pcre", table: `/^\w+$/ R` + "\n", key: "é"},
	{doc: `PCRE: caseless matching does not affect \p, even in a class`,
		kind: "pcre", table: `/^[\p{Lu}]$/ R` + "\n", key: "a"},
	{doc: `PCRE: caseless matching folds [:upper:]`,
		kind: "pcre", table: "/^[[:upper:]]$/ R\n", key: "a", want: "R", ok: true},
	{doc: `PCRE non-UTF mode: only ASCII folds`,
		kind: "pcre", table: "/^é$/ R\n", key: "É"},
	{doc: `PCRE \R`,
		kind: "pcre", table: `/^\R$/ R` + "\n", key: "\r\n", want: "R", ok: true},
	{doc: `PCRE2 xx: spaces in a class are ignored`,
		kind: "pcre", table: "/(?xx)^[a b]$/ R\n", key: " "},
	{doc: `pcre tables have no "/p1/!/p2/" form; "!" is a flag there`,
		kind: "pcre", table: "/a/ R\n", key: "A", want: "R", ok: true},
}

func TestRegexpCases(t *testing.T) {
	for _, c := range reCases {
		t.Run(c.kind+"/"+c.doc, func(t *testing.T) {
			tb, diags := parseRegexp("t", []byte(c.table), c.kind == "pcre")
			for _, d := range diags {
				if d.Severity == diag.Error {
					t.Fatalf("table %q: %v", c.table, d)
				}
			}
			v, ok, err := tb.Lookup(context.Background(), c.key)
			if err != nil || v != c.want || ok != c.ok {
				t.Errorf("table %q key %q = %q, %v, %v; want %q, %v", c.table, c.key, v, ok, err, c.want, c.ok)
			}
		})
	}
}

// postmapQuery runs the installed postmap on table and key. It skips the
// test when postmap, or its support for kind, is missing.
func postmapQuery(t *testing.T, kind, table, key string) (string, bool) {
	t.Helper()
	postmapOnce.Do(func() {
		out, err := exec.Command("postconf", "-m").Output()
		if err == nil {
			postmapTypes = strings.Fields(string(out))
		}
	})
	found := false
	for _, typ := range postmapTypes {
		found = found || typ == kind
	}
	if !found {
		t.Skipf("postmap with %s: support is not installed", kind)
	}
	p := filepath.Join(t.TempDir(), "table")
	if err := os.WriteFile(p, []byte(table), 0o644); err != nil {
		t.Fatal(err)
	}
	// Postfix waits while a table is younger than a second, in case it is
	// still being written; an older time spares every case that wait.
	old := time.Now().Add(-time.Minute)
	if err := os.Chtimes(p, old, old); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("postmap", "-q", key, kind+":"+p).Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() == 1 {
			return "", false
		}
		t.Fatalf("postmap: %v", err)
	}
	return strings.TrimSuffix(string(out), "\n"), true
}

var (
	postmapOnce  sync.Once
	postmapTypes []string
)

// TestRegexpCasesAgainstPostmap checks the expectations of reCases with
// the real Postfix, where one is installed.
func TestRegexpCasesAgainstPostmap(t *testing.T) {
	if testing.Short() {
		t.Skip("runs postmap")
	}
	for _, c := range reCases {
		t.Run(c.kind+"/"+c.doc, func(t *testing.T) {
			if c.noPostmap != "" {
				t.Skip(c.noPostmap)
			}
			v, ok := postmapQuery(t, c.kind, c.table, c.key)
			if v != c.want || ok != c.ok {
				t.Errorf("postmap: table %q key %q = %q, %v; the case says %q, %v", c.table, c.key, v, ok, c.want, c.ok)
			}
		})
	}
}

// reDiagCase is a table source and the finding it must produce.
type reDiagCase struct {
	doc      string
	kind     string
	table    string
	line     int
	sev      diag.Severity
	sub      string // in the message
	checkKey string // if set, a key that must still find checkVal
	checkVal string
}

var reDiagCases = []reDiagCase{
	// Postfix warns "no replacement text: using empty string", and then
	// every user of the table refuses the empty result.
	{doc: "missing result", kind: "regexp", table: "/a/\n", line: 1, sev: diag.Error, sub: "no result after /a/"},
	{doc: "missing result", kind: "pcre", table: "/b/ B\n/a/i\n", line: 2, sev: diag.Error, sub: "no result",
		checkKey: "b", checkVal: "B"},
	{doc: `Postfix: "no closing regexp delimiter"`, kind: "regexp", table: "/a R\n", line: 1, sev: diag.Error, sub: "no closing pattern delimiter '/'"},
	{doc: `Postfix: "unknown regexp option"`, kind: "regexp", table: "/a/q R\n", line: 1, sev: diag.Error, sub: `unknown regexp flag 'q'`},
	{doc: `Postfix: "unknown regexp option" for pcre's "!"`, kind: "pcre", table: "/a/!/b/ R\n", line: 1, sev: diag.Error, sub: `unknown pcre flag '!'`},
	{doc: `pcre X: "ignoring obsolete regexp option"`, kind: "pcre", table: "/a/X R\n", line: 1, sev: diag.Warning, sub: `obsolete flag "X"`,
		checkKey: "a", checkVal: "R"},
	{doc: `"substitutions are not available for negated patterns"`, kind: "regexp", table: "!/(a)/ $1\n", line: 1, sev: diag.Error, sub: "negated"},
	{doc: `Postfix: "out of range replacement index"`, kind: "regexp", table: "/(a)/ $2\n", line: 1, sev: diag.Error, sub: "uses $2 but /(a)/ has only 1 group"},
	{doc: `Postfix: "out of range replacement index"`, kind: "pcre", table: "/(?:a)/ $1\n", line: 1, sev: diag.Error, sub: "has only 0 group"},
	{doc: `Postfix: "non-numeric replacement index"`, kind: "regexp", table: "/(a)/ $1a\n", line: 1, sev: diag.Error, sub: "$1a is not a group number"},
	{doc: `Postfix: "out-of-range replacement index "0""`, kind: "pcre", table: "/(a)/ $0\n", line: 1, sev: diag.Error, sub: "$0 is not available"},
	{doc: `Postfix: "empty macro name"`, kind: "regexp", table: "/(a)/ x$\n", line: 1, sev: diag.Error, sub: `"$" must be followed by a group number`},
	{doc: `Postfix: "truncated macro reference"`, kind: "regexp", table: "/(a)/ ${1\n", line: 1, sev: diag.Error, sub: "unterminated"},
	{doc: `Postfix: "ignoring ENDIF without matching IF"`, kind: "regexp", table: "/a/ A\nendif\n", line: 2, sev: diag.Error, sub: "endif without matching if",
		checkKey: "a", checkVal: "A"},
	{doc: `Postfix: "IF has no matching ENDIF"`, kind: "pcre", table: "/b/ B\nif /a/\n/c/ C\n", line: 2, sev: diag.Error, sub: "if has no matching endif",
		checkKey: "ac", checkVal: "C"},
	{doc: `Postfix: "ignoring extra text after IF statement"`, kind: "regexp", table: "if /a/ junk\n/b/ B\nendif\n", line: 1, sev: diag.Warning, sub: `extra text after if /a/: "junk"`,
		checkKey: "ab", checkVal: "B"},
	{doc: `Postfix: "ignoring unrecognized request"`, kind: "regexp", table: "abc def\n", line: 1, sev: diag.Error, sub: "unrecognized line"},
	{doc: `readllines(): "logical line must not start with whitespace"`, kind: "regexp", table: " /a/ A\n", line: 1, sev: diag.Warning, sub: "must not start with whitespace"},

	// What RE2 cannot do.
	{doc: "backreference", kind: "regexp", table: `/(a)\1/ R` + "\n", line: 1, sev: diag.Error, sub: `"\1": mailtee uses RE2 (Go's regexp), which does not support backreferences`},
	{doc: "backreference in basic syntax", kind: "regexp", table: `/\(a\)\1/x R` + "\n", line: 1, sev: diag.Error, sub: "which does not support backreferences"},
	{doc: "backreference", kind: "pcre", table: `/(a)\1/ R` + "\n", line: 1, sev: diag.Error, sub: "which does not support backreferences"},
	{doc: "backreference", kind: "pcre", table: `/(?<n>a)\k<n>/ R` + "\n", line: 1, sev: diag.Error, sub: "which does not support backreferences"},
	{doc: "backreference", kind: "pcre", table: `/(a)\g{1}/ R` + "\n", line: 1, sev: diag.Error, sub: "which does not support backreferences"},
	{doc: "pcre_table(5) EXAMPLE uses lookahead", kind: "pcre", table: "/^(?!owner-)(.*)-outgoing@(.*)/ 550 Use ${1}@${2} instead\n", line: 1, sev: diag.Error, sub: `"(?!": mailtee uses RE2 (Go's regexp), which does not support lookahead`},
	{doc: "lookahead", kind: "pcre", table: "/a(?=b)/ R\n", line: 1, sev: diag.Error, sub: "does not support lookahead"},
	{doc: "lookbehind", kind: "pcre", table: "/(?<=a)b/ R\n", line: 1, sev: diag.Error, sub: `"(?<=": mailtee uses RE2 (Go's regexp), which does not support lookbehind`},
	{doc: "lookbehind", kind: "pcre", table: "/(?<!a)b/ R\n", line: 1, sev: diag.Error, sub: "does not support lookbehind"},
	{doc: "atomic group", kind: "pcre", table: "/(?>a+)b/ R\n", line: 1, sev: diag.Error, sub: "does not support atomic groups"},
	{doc: "possessive quantifier", kind: "pcre", table: "/a*+b/ R\n", line: 1, sev: diag.Error, sub: "does not support possessive quantifiers"},
	{doc: "possessive quantifier", kind: "pcre", table: "/a{2}+b/ R\n", line: 1, sev: diag.Error, sub: "does not support possessive quantifiers"},
	{doc: `\K`, kind: "pcre", table: `/a\Kb/ R` + "\n", line: 1, sev: diag.Error, sub: `resetting the match start`},
	{doc: "recursion", kind: "pcre", table: `/a(?R)?b/ R` + "\n", line: 1, sev: diag.Error, sub: "recursion"},
	{doc: "conditional", kind: "pcre", table: `/(a)?(?(1)b|c)/ R` + "\n", line: 1, sev: diag.Error, sub: "conditional groups"},
	{doc: "branch reset", kind: "pcre", table: `/(?|(a)|(b))/ R` + "\n", line: 1, sev: diag.Error, sub: "branch reset"},
	{doc: "verbs", kind: "pcre", table: `/(*UTF)a/ R` + "\n", line: 1, sev: diag.Error, sub: `"(*UTF)": mailtee uses RE2`},
	{doc: `\X`, kind: "pcre", table: `/\X/ R` + "\n", line: 1, sev: diag.Error, sub: "grapheme"},
	{doc: "RE2 repeat limit", kind: "pcre", table: "/a{1001}/ R\n", line: 1, sev: diag.Error, sub: "mailtee uses RE2 (Go's regexp), which allows at most 1000"},
	{doc: "RE2 repeat limit", kind: "regexp", table: "/a{1001}/ R\n", line: 1, sev: diag.Error, sub: "mailtee uses RE2 (Go's regexp), which allows at most 1000"},
	{doc: `\< where RE2's \b differs`, kind: "regexp", table: `/\<-/ R` + "\n", line: 1, sev: diag.Error, sub: `"\<" is supported only before a word character: mailtee uses RE2`},
	{doc: `\> where RE2's \b differs`, kind: "regexp", table: `/a*\>/ R` + "\n", line: 1, sev: diag.Error, sub: `"\>" is supported only after a word character`},

	// Pattern errors Postfix reports too.
	{doc: `glibc: \d is no escape (and never matches)`, kind: "regexp", table: `/\d+/ R` + "\n", line: 1, sev: diag.Error, sub: `"\d" is not a POSIX regular expression escape`},
	{doc: `glibc: "Invalid preceding regular expression"`, kind: "regexp", table: "/*a/ R\n", line: 1, sev: diag.Error, sub: "without anything to repeat"},
	{doc: `glibc: "Unmatched \{"`, kind: "regexp", table: "/a{x/ R\n", line: 1, sev: diag.Error, sub: "invalid repetition interval"},
	{doc: `glibc: "Unmatched ( or \("`, kind: "regexp", table: "/(a/ R\n", line: 1, sev: diag.Error, sub: `unmatched "("`},
	{doc: `glibc: "Invalid character class name"`, kind: "regexp", table: "/[[:word:]]/ R\n", line: 1, sev: diag.Error, sub: "unknown character class [:word:]"},
	{doc: `glibc: "Trailing backslash"`, kind: "regexp", table: `/a\/ R` + "\n", line: 1, sev: diag.Error, sub: "no closing pattern delimiter"},
	{doc: `PCRE2: "unrecognized character follows \"`, kind: "pcre", table: `/\q/ R` + "\n", line: 1, sev: diag.Error, sub: `unrecognized escape "\q"`},
	{doc: `PCRE2: "unmatched closing parenthesis"`, kind: "pcre", table: "/a)/ R\n", line: 1, sev: diag.Error, sub: "unmatched closing parenthesis"},
	{doc: `PCRE2: "quantifier does not follow a repeatable item"`, kind: "pcre", table: "/*a/ R\n", line: 1, sev: diag.Error, sub: "mailtee uses RE2 (Go's regexp), which cannot compile it"},
	{doc: `PCRE2: "POSIX collating elements are not supported"`, kind: "pcre", table: "/[[.a.]]/ R\n", line: 1, sev: diag.Error, sub: "collating"},
	{doc: `PCRE2: "character code point value in \x{} or \o{} is too large"`, kind: "pcre", table: `/\x{100}/ R` + "\n", line: 1, sev: diag.Error, sub: "too large"},
}

func TestRegexpDiags(t *testing.T) {
	for _, c := range reDiagCases {
		t.Run(c.kind+"/"+c.doc, func(t *testing.T) {
			tb, diags := parseRegexp("t", []byte(c.table), c.kind == "pcre")
			var got *diag.Diag
			for i, d := range diags {
				if strings.Contains(d.Msg, c.sub) {
					got = &diags[i]
				}
			}
			if got == nil {
				t.Fatalf("table %q: want a finding containing %q, got %v", c.table, c.sub, diags)
			}
			if got.Line != c.line || got.Severity != c.sev || got.File != "t" {
				t.Errorf("table %q: got %v; want %v on line %d", c.table, got, c.sev, c.line)
			}
			if c.checkKey != "" {
				if v, ok, _ := tb.Lookup(context.Background(), c.checkKey); !ok || v != c.checkVal {
					t.Errorf("table %q key %q = %q, %v; want %q", c.table, c.checkKey, v, ok, c.checkVal)
				}
			}
		})
	}
}

// A rule with an error is left out; the rest of the table works, in
// order, as Postfix does after "skipping this rule".
func TestRegexpSkipsBadRules(t *testing.T) {
	tb, diags := parseRegexp("t", []byte("/(?=a)/ LOOK\n/a/ A\n"), true)
	if !diags.HasErrors() {
		t.Fatal("want an error for the lookahead")
	}
	if v, ok, _ := tb.Lookup(context.Background(), "a"); !ok || v != "A" {
		t.Errorf("a = %q, %v; want A", v, ok)
	}
}

func TestRegexpConcurrentLookups(t *testing.T) {
	tb, _ := parseRegexp("t", []byte("/^(.*)@(.*)$/ $2 $1\n"), true)
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for j := 0; j < 200; j++ {
				key := fmt.Sprintf("u%dé%d@example.org", i, j)
				want := fmt.Sprintf("example.org u%dé%d", i, j)
				if v, ok, _ := tb.Lookup(context.Background(), key); !ok || v != want {
					t.Errorf("%q = %q, %v", key, v, ok)
					return
				}
			}
		}(i)
	}
	wg.Wait()
}

// FuzzRegexpTable parses arbitrary sources as both table types and looks
// up a key in whatever came out: neither may panic.
func FuzzRegexpTable(f *testing.F) {
	for _, c := range reCases {
		f.Add([]byte(c.table), c.key, c.kind == "pcre")
	}
	for _, c := range reDiagCases {
		f.Add([]byte(c.table), "abc", c.kind == "pcre")
	}
	f.Fuzz(func(t *testing.T, src []byte, key string, pcre bool) {
		tb, diags := parseRegexp("fuzz", src, pcre)
		for _, d := range diags {
			if d.Line < 1 || d.File != "fuzz" || d.Msg == "" {
				t.Fatalf("bad finding %#v", d)
			}
		}
		tb.Lookup(context.Background(), key)
		tb.Lookup(context.Background(), "")
	})
}

// BenchmarkRegexpLookup looks up a key that only the last of 100 rules
// matches, the worst case of a header_checks-sized table.
func BenchmarkRegexpLookup(b *testing.B) {
	for _, kind := range []string{"regexp", "pcre"} {
		var src strings.Builder
		for i := 0; i < 99; i++ {
			fmt.Fprintf(&src, "/^Subject:.*\\bspam%03d\\b/ REJECT rule %d\n", i, i)
		}
		src.WriteString("/^(.*)@(example\\.org)$/ FILTER smtp:[$2] $1\n")
		tb, diags := parseRegexp("bench", []byte(src.String()), kind == "pcre")
		if diags.HasErrors() {
			b.Fatal(diags)
		}
		b.Run(kind, func(b *testing.B) {
			ctx := context.Background()
			for b.Loop() {
				if _, ok, _ := tb.Lookup(ctx, "someone.with.a.long.name@example.org"); !ok {
					b.Fatal("no match")
				}
			}
		})
	}
}
