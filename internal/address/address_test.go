package address

import (
	"errors"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in   string
		want Address
		rule string
	}{
		// RFC 5321 4.1.2 Path = "<" [ A-d-l ":" ] Mailbox ">"
		{"user@example.com", Address{Local: "user", Domain: "example.com"}, "bare mailbox, as on a command line"},
		{"<user@example.com>", Address{Local: "user", Domain: "example.com"}, "RFC 5321 Path"},
		{"  <user@example.com>\t", Address{Local: "user", Domain: "example.com"}, "blanks around the path are ignored"},
		{"< user@example.com >", Address{Local: "user", Domain: "example.com"}, "Postfix tolerates blanks inside <> (strict_rfc821_envelopes = no)"},
		{"<>", Address{}, "RFC 5321 4.5.5: <> is the null reverse-path"},
		{"", Address{}, "empty argument (sendmail -f '') is the null sender"},
		{`<"">`, Address{}, "Postfix rewrite_tree: an empty quoted string is the empty address"},
		{"postmaster", Address{Local: "postmaster"}, "RFC 5321 4.1.1.3: RCPT TO:<Postmaster> without domain"},
		{"<Postmaster>", Address{Local: "Postmaster"}, "case is kept; Lower folds it"},
		{"User.Name+tag@Example.COM", Address{Local: "User.Name+tag", Domain: "Example.COM"}, "Parse keeps case; Lower folds it"},
		{"a!#$%&'*+-/=?^_`{|}~b@example.com", Address{Local: "a!#$%&'*+-/=?^_`{|}~b", Domain: "example.com"}, "RFC 5322 atext"},

		// RFC 5321 Quoted-string, quoted-pairSMTP
		{`"first last"@example.com`, Address{Local: "first last", Domain: "example.com"}, "quoted local part with space"},
		{`"a\"b\\c"@example.com`, Address{Local: `a"b\c`, Domain: "example.com"}, "quoted-pair escapes quote and backslash"},
		{`"\a\b"@example.com`, Address{Local: "ab", Domain: "example.com"}, "quoted-pair of an ordinary character is that character"},
		{`"a@b"@example.com`, Address{Local: "a@b", Domain: "example.com"}, "split at the last '@' outside quotes"},
		{`"user"@example.com`, Address{Local: "user", Domain: "example.com"}, "needless quotes are removed (Postfix internal form)"},
		{`""@example.com`, Address{Local: "", Domain: "example.com"}, "RFC 5321 allows an empty Quoted-string"},
		{`<"a>b"@example.com>`, Address{Local: "a>b", Domain: "example.com"}, "'>' inside quotes does not close the path"},
		{`"first last"`, Address{Local: "first last"}, "quoted local part without domain"},

		// Postfix leniency (strict_rfc821_envelopes = no)
		{"first..last.@docomo.ne.jp", Address{Local: "first..last.", Domain: "docomo.ne.jp"}, "Postfix accepts non-RFC dot placement (Japanese mobile carriers)"},
		{".user@example.com", Address{Local: ".user", Domain: "example.com"}, "leading dot accepted, quoted on output"},
		{"user@example.com.", Address{Local: "user", Domain: "example.com."}, "trailing dot kept; NormalizeDomain strips it"},
		{"user@host@relay.example", Address{Local: "user@host", Domain: "relay.example"}, "split at the last '@'; HasRouting reports it"},

		// Source routes: Postfix rewrite_tree strips them, keeping user@c.
		{"<@a.example,@b.example:user@c.example>", Address{Local: "user", Domain: "c.example", Routed: true}, "RFC 5321 A-d-l, stripped as Postfix does"},
		{"@a.example:user@c.example", Address{Local: "user", Domain: "c.example", Routed: true}, "source route without <>"},
		{"<@[IPv6:2001:db8::1]:user@c.example>", Address{Local: "user", Domain: "c.example", Routed: true}, "colons inside an address literal do not end the route"},
		{`<@a.example:"x y"@c.example>`, Address{Local: "x y", Domain: "c.example", Routed: true}, "route before a quoted local part"},

		// Percent hack and bang paths are kept in the local part.
		{"user%host@relay.example", Address{Local: "user%host", Domain: "relay.example"}, "percent hack is atext"},
		{"host!user@relay.example", Address{Local: "host!user", Domain: "relay.example"}, "bang path is atext"},

		// Address literals, RFC 5321 4.1.3
		{"user@[192.0.2.1]", Address{Local: "user", Domain: "[192.0.2.1]"}, "IPv4 address literal"},
		{"user@[IPv6:2001:db8::1]", Address{Local: "user", Domain: "[IPv6:2001:db8::1]"}, "IPv6 address literal"},
		{"user@[ipv6:::ffff:192.0.2.1]", Address{Local: "user", Domain: "[ipv6:::ffff:192.0.2.1]"}, "the IPv6 tag is case-insensitive; IPv4-mapped form"},

		// SMTPUTF8, RFC 6531
		{"jöran@bücher.example", Address{Local: "jöran", Domain: "bücher.example"}, "UTF-8 local part and U-label domain"},
		{"用户@例子.广告", Address{Local: "用户", Domain: "例子.广告"}, "non-Latin UTF-8"},
		{`"jö ran"@example.com`, Address{Local: "jö ran", Domain: "example.com"}, "UTF-8 in a quoted string"},

		// Domains as Postfix's valid_hostname sees them
		{"user@my_host.example", Address{Local: "user", Domain: "my_host.example"}, "valid_hostname allows '_'"},
		{"user@xn--bcher-kva.example", Address{Local: "user", Domain: "xn--bcher-kva.example"}, "adjacent hyphens inside a label are fine"},
		{"user@localhost", Address{Local: "user", Domain: "localhost"}, "single-label domain"},
		{"user@3com.example", Address{Local: "user", Domain: "3com.example"}, "labels may start with a digit"},
	}
	for _, tt := range tests {
		got, err := Parse(tt.in)
		if err != nil {
			t.Errorf("Parse(%q) (%s): %v", tt.in, tt.rule, err)
			continue
		}
		if got != tt.want {
			t.Errorf("Parse(%q) (%s) = %#v, want %#v", tt.in, tt.rule, got, tt.want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		in     string
		reason string
	}{
		{"user@", "missing domain after @"},
		{"<user@>", "missing domain after @"},
		{"@example.com", "missing local part before @"},
		{"@", "missing local part before @"},
		{`"first last@example.com`, "unbalanced quote"},
		{`first last"@example.com`, "unbalanced quote"},
		{`"abc\"@example.com`, "unbalanced quote"},
		{"<user@example.com", "missing closing '>'"},
		{"user@example.com>", "'>' without '<'"},
		{"<user@example.com> SIZE=100", "unexpected text after '>'"},
		{"first last@example.com", "space in local part must be quoted"},
		{`a"b"c@example.com`, "quote inside local part: quote the whole local part"},
		{`"a"b@example.com`, "text after closing quote in local part"},
		{`"john".doe@example.com`, "text after closing quote in local part"},
		{`a\b@example.com`, "backslash outside quotes in local part"},
		{"a,b@example.com", `invalid character ',' in local part: quote the local part`},
		{"a<b@example.com", `invalid character '<' in local part: quote the local part`},
		{"us\ner@example.com", "control character in local part"},
		{"\"us\r\"@example.com", "control character in local part"},
		{"\"us\\\n\"@example.com", "control character in local part"},
		{"user\x00@example.com", "control character in local part"},
		{"us\xffer@example.com", "invalid UTF-8"},
		{"user@exa mple.com", `invalid character ' ' in domain`},
		{"user@example..com", "empty label in domain"},
		{"user@.example.com", "empty label in domain"},
		{"user@.", "empty label in domain"},
		{"user@-example.com", "misplaced hyphen in domain"},
		{"user@example-.com", "misplaced hyphen in domain"},
		{"user@1.2.3.4", "numeric domain: write an address literal such as [192.0.2.1]"},
		{"user@" + strings.Repeat("a", 64) + ".example", "domain label longer than 63 octets"},
		{"user@" + strings.Repeat("abcdefg.", 32) + "example", "domain longer than 255 octets"},
		{"user@[192.0.2.1", "missing ']' after address literal"},
		{"user@[192.0.2.256]", "invalid IPv4 address literal"},
		{"user@[2001:db8::1]", "unsupported address literal: only [IPv4] and [IPv6:...] are allowed"},
		{"user@[IPv6:192.0.2.1]", "invalid IPv6 address literal"},
		{"user@[IPv6:fe80::1%eth0]", "invalid IPv6 address literal"},
		{"user@[x400:foo]", "unsupported address literal: only [IPv4] and [IPv6:...] are allowed"},
		{"user@ex\x01ample.com", "control character in domain"},
		{"<@a.example:>", "missing mailbox after source route"},
		{"<@a.example,b.example:user@c.example>", "invalid source route: each hop must be @domain"},
		{"<@:user@c.example>", "invalid source route: missing domain after @"},
		{"<@a..example:user@c.example>", "invalid source route: empty label in domain"},
	}
	for _, tt := range tests {
		a, err := Parse(tt.in)
		var se *SyntaxError
		if !errors.As(err, &se) {
			t.Errorf("Parse(%q) = %#v, %v; want SyntaxError %q", tt.in, a, err, tt.reason)
			continue
		}
		if se.Reason != tt.reason {
			t.Errorf("Parse(%q): reason %q, want %q", tt.in, se.Reason, tt.reason)
		}
		if se.Input != tt.in {
			t.Errorf("Parse(%q): SyntaxError.Input = %q", tt.in, se.Input)
		}
	}
}

func TestSyntaxErrorMessage(t *testing.T) {
	_, err := Parse("user@")
	if got, want := err.Error(), `bad address "user@": missing domain after @`; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	_, err = Parse(strings.Repeat("x", 1000) + "@")
	if n := len(err.Error()); n > 300 {
		t.Errorf("Error() is %d bytes long; want it bounded", n)
	}
}

func TestString(t *testing.T) {
	// Postfix quote_822_local: a local part that is not a dot-string is
	// quoted, with '"' and '\' escaped; 8-bit text is ordinary (SMTPUTF8).
	tests := []struct {
		a    Address
		want string
	}{
		{Address{}, ""},
		{Address{Local: "user", Domain: "example.com"}, "user@example.com"},
		{Address{Local: "postmaster"}, "postmaster"},
		{Address{Local: "first last", Domain: "example.com"}, `"first last"@example.com`},
		{Address{Local: "first last"}, `"first last"`},
		{Address{Local: `a"b\c`, Domain: "example.com"}, `"a\"b\\c"@example.com`},
		{Address{Local: "", Domain: "example.com"}, `""@example.com`},
		{Address{Local: "a@b", Domain: "example.com"}, `"a@b"@example.com`},
		{Address{Local: "first..last.", Domain: "docomo.ne.jp"}, `"first..last."@docomo.ne.jp`},
		{Address{Local: ".user", Domain: "example.com"}, `".user"@example.com`},
		{Address{Local: "a.b.c", Domain: "example.com"}, "a.b.c@example.com"},
		{Address{Local: "user%host", Domain: "example.com"}, "user%host@example.com"},
		{Address{Local: "a(b)", Domain: "example.com"}, `"a(b)"@example.com`},
		{Address{Local: "a:b;c,d<e>[f]", Domain: "example.com"}, `"a:b;c,d<e>[f]"@example.com`},
		{Address{Local: "jöran", Domain: "bücher.example"}, "jöran@bücher.example"},
		{Address{Local: "user", Domain: "c.example", Routed: true}, "user@c.example"},
		{Address{Local: "user", Domain: "[IPv6:2001:db8::1]"}, "user@[IPv6:2001:db8::1]"},
	}
	for _, tt := range tests {
		if got := tt.a.String(); got != tt.want {
			t.Errorf("%#v.String() = %q, want %q", tt.a, got, tt.want)
		}
	}
}

func TestInternal(t *testing.T) {
	a := Address{Local: "first last", Domain: "example.com"}
	if got := a.Internal(); got != "first last@example.com" {
		t.Errorf("Internal() = %q", got)
	}
	if got := (Address{Local: "postmaster"}).Internal(); got != "postmaster" {
		t.Errorf("Internal() = %q", got)
	}
}

func TestSplit(t *testing.T) {
	tests := []struct{ in, local, domain string }{
		{"user@example.com", "user", "example.com"},
		{"user", "user", ""},
		{"", "", ""},
		{"@example.com", "", "example.com"},
		{"user@", "user", ""},
		{"a@b@example.com", "a@b", "example.com"},
	}
	for _, tt := range tests {
		l, d := Split(tt.in)
		if l != tt.local || d != tt.domain {
			t.Errorf("Split(%q) = %q, %q; want %q, %q", tt.in, l, d, tt.local, tt.domain)
		}
	}
}

func TestSplitExt(t *testing.T) {
	// Postfix split_addr.c and strip_addr.c; recipient_delimiter in
	// postconf(5): "the extension includes the delimiter" when propagated.
	tests := []struct {
		local, delims, user, ext string
		rule                     string
	}{
		{"user+foo", "+", "user", "+foo", "ext keeps its delimiter (strip_addr)"},
		{"user+foo+bar", "+", "user", "+foo+bar", "split at the first delimiter"},
		{"user-foo+bar", "+-", "user", "-foo+bar", "delims is a set (Postfix 2.11)"},
		{"user+foo-bar", "+-", "user", "+foo-bar", "first of any delimiter wins"},
		{"user", "+", "user", "", "no delimiter"},
		{"user+foo", "", "user+foo", "", "empty recipient_delimiter: no split"},
		{"+foo", "+", "+foo", "", "no split that leaves an empty user"},
		{"user+", "+", "user", "+", "trailing delimiter splits with an empty extension"},
		{"owner-list", "-", "owner-list", "", "owner_request_special: owner-xxx"},
		{"OWNER-list", "-", "OWNER-list", "", "owner- is matched case-insensitively"},
		{"list-request", "-", "list-request", "", "owner_request_special: xxx-request"},
		{"List-REQUEST", "+-", "List-REQUEST", "", "-request is matched case-insensitively"},
		{"-request", "-", "-request", "", "exactly -request: leading delimiter, no split"},
		{"owner-list", "+", "owner-list", "", "no '-' in delims: nothing to split"},
		{"owner+foo", "+", "owner", "+foo", "the owner- rule needs '-' among the delimiters"},
		{"list-request+foo", "+", "list-request", "+foo", "the -request rule needs '-' among the delimiters"},
		{"postmaster", "+", "postmaster", "", "reserved name"},
		{"Postmaster+x", "+", "Postmaster", "+x", "only the exact reserved name is exempt"},
		{"MAILER-DAEMON", "-", "MAILER-DAEMON", "", "reserved name, any case"},
		{"double-bounce", "-", "double-bounce", "", "double_bounce_sender default"},
		{"postmaſter", "ſ", "postma", "ſter", "reserved names compare as ASCII, like strcasecmp"},
		{"jöran+ext", "+", "jöran", "+ext", "UTF-8 user"},
	}
	for _, tt := range tests {
		user, ext := SplitExt(tt.local, tt.delims)
		if user != tt.user || ext != tt.ext {
			t.Errorf("SplitExt(%q, %q) (%s) = %q, %q; want %q, %q",
				tt.local, tt.delims, tt.rule, user, ext, tt.user, tt.ext)
		}
		if user+ext != tt.local {
			t.Errorf("SplitExt(%q, %q): %q + %q does not rebuild the local part", tt.local, tt.delims, user, ext)
		}
	}
}

func TestExtRules(t *testing.T) {
	r := ExtRules{Delims: "-"} // owner_request_special = no
	if user, ext := r.Split("owner-list"); user != "owner" || ext != "-list" {
		t.Errorf("owner_request_special=no: Split(owner-list) = %q, %q", user, ext)
	}
	r = ExtRules{Delims: "-", OwnerRequestSpecial: true, DoubleBounce: "bounce-back"}
	if user, ext := r.Split("bounce-back"); user != "bounce-back" || ext != "" {
		t.Errorf("double_bounce_sender=bounce-back: Split(bounce-back) = %q, %q", user, ext)
	}
	if user, ext := r.Split("double-bounce"); user != "double" || ext != "-bounce" {
		t.Errorf("double_bounce_sender=bounce-back: Split(double-bounce) = %q, %q", user, ext)
	}
}

func TestLower(t *testing.T) {
	a := Address{Local: "User.Name", Domain: "Example.COM.", Routed: true}
	want := Address{Local: "user.name", Domain: "example.com", Routed: true}
	if got := a.Lower(); got != want {
		t.Errorf("Lower() = %#v, want %#v", got, want)
	}
	if got := (Address{Local: "JÖRAN", Domain: "BÜCHER.example"}).Lower(); got.Local != "jöran" || got.Domain != "bücher.example" {
		t.Errorf("Lower() of UTF-8 = %#v", got)
	}
}

func TestNormalizeDomain(t *testing.T) {
	tests := []struct{ in, want string }{
		{"Example.COM", "example.com"},
		{"example.com.", "example.com"},
		{"example.com..", "example.com.."}, // Postfix: not dot-dot
		{".", "."},                         // nor @-dot
		{"", ""},
		{"[IPv6:2001:DB8::1]", "[ipv6:2001:db8::1]"},
	}
	for _, tt := range tests {
		if got := NormalizeDomain(tt.in); got != tt.want {
			t.Errorf("NormalizeDomain(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestHasRouting(t *testing.T) {
	// Postfix resolve.c sets RESOLVE_FLAG_ROUTED when any of @!% occurs in
	// the unquoted local part, whatever percent_hack and swap_bangpath say.
	tests := []struct {
		in   string
		want bool
	}{
		{"user@example.com", false},
		{"user+ext@example.com", false},
		{"user%host@relay.example", true},
		{"host!user@relay.example", true},
		{"user@host@relay.example", true},
		{`"user@host"@relay.example`, true},
		{`"user%host"@relay.example`, true},
		{"<@a.example:user@relay.example>", false}, // RFC 5321 Appendix C: the route is ignored
		{"<@a.example:user%host@relay.example>", true},
		{"<>", false},
	}
	for _, tt := range tests {
		a, err := Parse(tt.in)
		if err != nil {
			t.Fatalf("Parse(%q): %v", tt.in, err)
		}
		if got := a.HasRouting(); got != tt.want {
			t.Errorf("Parse(%q).HasRouting() = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestNeedsSMTPUTF8(t *testing.T) {
	for in, want := range map[string]bool{
		"user@example.com":      false,
		"jöran@example.com":     true,
		"user@bücher.example":   true,
		`"first last"@example`:  false,
		"xn--bcher-kva@example": false,
	} {
		a, err := Parse(in)
		if err != nil {
			t.Fatalf("Parse(%q): %v", in, err)
		}
		if got := a.NeedsSMTPUTF8(); got != want {
			t.Errorf("Parse(%q).NeedsSMTPUTF8() = %v, want %v", in, got, want)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"user@example.com", "<>", `"a b"@example.com`,
		"<@a,@b:user@c.example>", "user@[IPv6:::1]",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := Parse(s)
		if err != nil {
			return
		}
		out := a.String()
		b, err := Parse(out)
		if err != nil {
			t.Fatalf("Parse(%q) = %#v, but Parse of its String %q: %v", s, a, out, err)
		}
		if b.Local != a.Local || b.Domain != a.Domain {
			t.Fatalf("Parse(%q) = %#v; String %q parses to %#v", s, a, out, b)
		}
		if b.HasRouting() != strings.ContainsAny(a.Local, "%!@") {
			t.Fatalf("Parse(%q): routing in the local part is not kept by String %q", s, out)
		}
		if out2 := b.String(); out2 != out {
			t.Fatalf("String is not stable: %q then %q", out, out2)
		}
		if a.Domain != "" {
			if l, d := Split(a.Internal()); l != a.Local || d != a.Domain {
				t.Fatalf("Split(%q) = %q, %q; want %q, %q", a.Internal(), l, d, a.Local, a.Domain)
			}
		}
		user, ext := SplitExt(a.Local, "+-")
		if user+ext != a.Local {
			t.Fatalf("SplitExt(%q) = %q, %q", a.Local, user, ext)
		}
		_ = a.Lower()
	})
}

var benchAddrs = []string{
	"user@example.com",
	"<first.last+tag@mail.example.org>",
	`"first last"@example.com`,
	"user@[IPv6:2001:db8::1]",
}

func BenchmarkSplit(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		for _, s := range benchAddrs {
			Split(s)
		}
	}
}

func BenchmarkParse(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		for _, s := range benchAddrs {
			if _, err := Parse(s); err != nil {
				b.Fatal(err)
			}
		}
	}
}
