package maps

import (
	"context"
	"strings"
	"testing"
)

// FuzzInlineSpec opens arbitrary brace text as each inline table type:
// no panic, and a table that opens answers a lookup.
func FuzzInlineSpec(f *testing.F) {
	for _, s := range []string{
		"{{/a/ b}, {/c/ d}}", "{ {a = b c}, d=e }", "{a=b, c}", "{ a=xx {x=y}x}",
		`{{"a b"=c}}`, "{a b", "{{if /b/}, {/a/ x}, {endif}}", "{{10.0.0.0/8 ok}}", "{=b}", `{a\ b=c}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !strings.HasPrefix(s, "{") {
			return // a file name for the pattern types
		}
		for _, typ := range []string{"inline", "static", "pcre", "regexp", "cidr"} {
			tb, _, err := Open(typ + ":" + s)
			if err == nil {
				tb.Lookup(context.Background(), "a")
			}
		}
	})
}

func TestInlineDuplicateLastWins(t *testing.T) {
	tb, _, err := Open("inline:{a=1, {A = 2}, b=3}")
	if err != nil {
		t.Fatal(err)
	}
	if v, ok, _ := tb.Lookup(context.Background(), "a"); !ok || v != "2" {
		t.Errorf("a = %q, %v; want 2, as dict_inline.c keeps the last", v, ok)
	}
	for _, bad := range []string{"inline:{a=b, c}", "inline:{}", "inline:{ }", `inline:{"a b"=c}`, "static:{a b", "pcre:{/a/ b}", "cidr:{{1.2.3.4 x}"} {
		if _, _, err := Open(bad); err == nil {
			t.Errorf("%s opened; Postfix refuses it", bad)
		}
	}
}
