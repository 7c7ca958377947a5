package retrans

import (
	"regexp"
	"strings"
	"testing"
)

// compile translates "/pattern/flags" as a table writes it and compiles
// the result the way package maps does.
func compile(t testing.TB, kind, written string) (*regexp.Regexp, error) {
	t.Helper()
	end := strings.LastIndexByte(written, '/')
	pattern, flags := written[1:end], written[end+1:]
	var (
		src string
		err error
	)
	if kind == "pcre" {
		src, _, err = PCRE(pattern, flags)
	} else {
		src, err = POSIX(pattern, flags)
	}
	if err != nil {
		return nil, err
	}
	re, err := regexp.Compile(src)
	if err != nil {
		return nil, err
	}
	if kind == "regexp" {
		re.Longest()
	}
	return re, nil
}

// Translations of POSIX and PCRE constructs, beyond what the table cases
// of package maps show. Keys are matched as Postfix sees them: bytes.
func TestTranslation(t *testing.T) {
	for _, c := range []struct {
		kind, pattern, key string
		match              bool
	}{
		{"regexp", `/^[]a]+$/`, "]a]", true},
		{"regexp", `/^[^]a]$/`, "]", false},
		{"regexp", `/^[[.-.]a]$/`, "-", true},
		{"regexp", `/^[[=e=]]$/`, "E", true},
		{"regexp", `/^[%--]$/`, ",", true},
		{"regexp", `/^a**$/`, "aaa", true},
		{"regexp", `/^a{1}{2}$/`, "aa", true},
		{"regexp", "/^\\`a\\'$/", "a", true},
		{"regexp", `/^\W\S$/`, " a", true},
		{"regexp", `/^\W\S$/`, "a ", false},
		{"regexp", `/^[\w]$/`, "w", true},
		{"regexp", `/^[\w]$/`, "a", false},
		{"regexp", `/a\|b/`, "a|b", true},
		{"regexp", `/^(é|x)$/`, "É", false},
		{"regexp", `/^[é]{2}$/`, "é", true},
		{"regexp", `/^[^a]{2}$/m`, "é", true},
		{"pcre", `/^[\d-]+$/`, "1-2", true},
		{"pcre", `/^[a\-z]+$/`, "-", true},
		{"pcre", `/^[a\-z]+$/`, "b", false},
		{"pcre", `/^[\Q]\E]$/`, "]", true},
		{"pcre", `/^[[:^alpha:]]$/`, "1", true},
		{"pcre", `/^[[:^alpha:]]$/`, "a", false},
		{"pcre", `/^[\x41-\x43]$/`, "b", true},
		{"pcre", `/^[\x41-\x43]$/i`, "b", false},
		{"pcre", `/^\cA\e\x{7f}$/`, "\x01\x1b\x7f", true},
		{"pcre", `/^\Ga\z/`, "a", true},
		{"pcre", `/^\C$/`, "\xe9", true},
		{"pcre", `/^.{2}$/`, "é", true},
		{"pcre", `/^\h\H$/`, "\ta", true},
		{"pcre", `/^\v$/`, "\v", true},
		{"pcre", `/^\N$/`, "\n", false},
		{"pcre", `/(?x) a b (?-x) c/`, "ab c", true},
		{"pcre", `/(?x: a ) b/`, "a b", true},
		{"pcre", `/(?^)a/`, "A", false},
		{"pcre", `/^\x{e9}$/i`, "\xc9", false},
		{"pcre", `/^\xe9$/`, "\xe9", true},
		{"pcre", `/^\101\0$/`, "A\x00", true},
		{"pcre", `/^[^\d\s]$/`, "\xe9", true},
		{"pcre", `/^a$/m`, "b\na\n", true},
		{"pcre", `/^\w+$/i`, "K", true},
	} {
		re, err := compile(t, c.kind, c.pattern)
		if err != nil {
			t.Errorf("%s %s: %v", c.kind, c.pattern, err)
			continue
		}
		if got := re.MatchString(ToRunes(c.key)); got != c.match {
			t.Errorf("%s %s on %q: match = %v; want %v", c.kind, c.pattern, c.key, got, c.match)
		}
	}
}

// What RE2 cannot express is an error that names the construct.
func TestUnsupported(t *testing.T) {
	for _, c := range []struct{ kind, pattern, sub string }{
		{"pcre", `/(?=a)/`, "lookahead"},
		{"pcre", `/(a)\1/`, "backreference"},
		{"pcre", `/a++/`, "possessive"},
		{"regexp", `/(a)\1/`, "backreference"},
		{"regexp", `/a{1001}/`, "at most 1000"},
	} {
		if _, err := compile(t, c.kind, c.pattern); err == nil || !strings.Contains(err.Error(), c.sub) {
			t.Errorf("%s %s: error %v; want one containing %q", c.kind, c.pattern, err, c.sub)
		}
	}
}

func TestToRunesRoundTrip(t *testing.T) {
	for _, s := range []string{"", "abc", "\xe9t\xe9", "\x00\xff", "é"} {
		if got := ToBytes(ToRunes(s)); got != s {
			t.Errorf("ToBytes(ToRunes(%q)) = %q", s, got)
		}
	}
	if !IsASCII("abc") || IsASCII("é") {
		t.Error("IsASCII is wrong")
	}
}

// FuzzTranslate feeds arbitrary patterns and flags to both translators:
// neither may panic, nor may matching with what they produce.
func FuzzTranslate(f *testing.F) {
	for _, s := range []string{`^[]a]+$`, `^[[.-.]a]$`, `a**`, "^\\`a\\'$", `\<a\>`,
		`^[\Q]\E]$`, `(?x) a b (?-x) c`, `^\cA\e\x{7f}$`, `(?=a)`, `(a)\1`, `\p{L}`, `[[:^alpha:]]`} {
		f.Add(s, "", false)
		f.Add(s, "", true)
		f.Add(s, "imx", true)
	}
	f.Fuzz(func(t *testing.T, pattern, flags string, pcre bool) {
		var (
			src string
			err error
		)
		if pcre {
			src, _, err = PCRE(pattern, flags)
		} else {
			src, err = POSIX(pattern, flags)
		}
		if err != nil {
			return
		}
		if re, err := regexp.Compile(src); err == nil {
			re.MatchString(ToRunes(pattern))
		}
	})
}
