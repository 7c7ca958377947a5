package maps

import (
	"context"
	"strings"
	"testing"

	"github.com/mailtee/mailtee/internal/diag"
)

// cidrExample is the EXAMPLE SMTPD ACCESS MAP of cidr_table(5).
const cidrExample = `# Rule order matters. Put more specific allowlist entries
# before more general denylist entries.
192.168.1.1             OK
192.168.0.0/16          REJECT
2001:db8::1             OK
2001:db8::/32           REJECT
`

// cidrCases are checked against the installed postmap by
// TestCIDRCasesAgainstPostmap; they record Postfix 3.7.11's behaviour.
var cidrCases = []struct {
	doc   string
	table string
	key   string
	want  string
	ok    bool
}{
	{`EXAMPLE: "192.168.1.1 OK"`, cidrExample, "192.168.1.1", "OK", true},
	{`EXAMPLE: "192.168.0.0/16 REJECT"`, cidrExample, "192.168.1.2", "REJECT", true},
	{`EXAMPLE: "2001:db8::1 OK"`, cidrExample, "2001:db8::1", "OK", true},
	{`EXAMPLE: "2001:db8::/32 REJECT"`, cidrExample, "2001:db8:1::1", "REJECT", true},
	{`EXAMPLE: no rule matches`, cidrExample, "10.0.0.1", "", false},
	{`"IPv6 patterns will be matched regardless of leading zeros"`, cidrExample, "2001:0db8:0000::0001", "OK", true},
	{`"The pattern 0.0.0.0/0 matches every IPv4 address"`, "0.0.0.0/0 V4\n", "203.0.113.9", "V4", true},
	{`"0.0.0.0/0 matches every IPv4 address", and no IPv6 address`, "0.0.0.0/0 V4\n", "::1", "", false},
	{`"::/0 matches every IPv6 address"`, "::/0 V6\n", "::1", "V6", true},
	{`"::/0 matches every IPv6 address", and no IPv4 address`, "::/0 V6\n", "127.0.0.1", "", false},
	{`"address information may be enclosed inside "[]"": [addr]`, "[1.2.3.4] X\n", "1.2.3.4", "X", true},
	{`"address information may be enclosed inside "[]"": [addr]/len`, "[1.2.3.0]/24 X\n", "1.2.3.4", "X", true},
	{`"address information may be enclosed inside "[]"": [addr/len]`, "[1.2.3.0/24] X\n", "1.2.3.4", "X", true},
	{`"address information may be enclosed inside "[]"": [IPv6]/len`, "[::1]/128 X\n", "::1", "X", true},
	{`a key in brackets is not an address`, "1.2.3.4 X\n", "[1.2.3.4]", "", false},
	{`a key that is not an address matches nothing`, "0.0.0.0/0 X\n::/0 Y\n", "mail.example.com", "", false},
	{`an IPv6 key with a zone matches nothing (inet_pton)`, "::/0 Y\n", "fe80::1%eth0", "", false},
	{`an IPv4 key with a leading zero matches nothing (inet_pton)`, "1.2.3.0/24 X\n", "1.2.3.04", "", false},
	{`an IPv4-mapped key is IPv6: it does not match an IPv4 pattern`, "1.2.3.0/24 X\n", "::ffff:1.2.3.4", "", false},
	{`an IPv4-mapped key is IPv6: it matches ::ffff:0:0/96`, "1.2.3.0/24 X\n::ffff:0:0/96 M\n", "::ffff:1.2.3.4", "M", true},
	{`an IPv4-mapped pattern does not match the IPv4 key`, "::ffff:1.2.3.0/120 M\n", "1.2.3.4", "", false},
	{`"!pattern result: When a search string does not match the specified pattern"`, "!1.2.3.0/24 X\n", "1.2.4.4", "X", true},
	{`"!pattern result"`, "!1.2.3.0/24 X\n", "1.2.3.4", "", false},
	{`"!pattern": an address of the other family never matches`, "!1.2.3.0/24 X\n", "::1", "", false},
	{`"!" may be repeated and followed by spaces`, "! !1.2.3.0/24 X\n", "1.2.3.4", "X", true},
	{`"Patterns are applied in the order as specified in the table"`, "1.2.3.0/24 FIRST\n1.2.3.4 SECOND\n", "1.2.3.4", "FIRST", true},
	{`"if pattern ... endif"`, "if 10.0.0.0/8\n10.1.0.0/16 INNER\nendif\n0.0.0.0/0 OUTER\n", "10.1.2.3", "INNER", true},
	{`"if pattern ... endif"`, "if 10.0.0.0/8\n10.1.0.0/16 INNER\nendif\n0.0.0.0/0 OUTER\n", "10.2.2.3", "OUTER", true},
	{`"if pattern ... endif"`, "if 10.0.0.0/8\n0.0.0.0/0 INNER\nendif\n0.0.0.0/0 OUTER\n", "11.0.0.1", "OUTER", true},
	{`"if !pattern ... endif"`, "if !10.0.0.0/8\n0.0.0.0/0 NOT10\nendif\n", "11.0.0.1", "NOT10", true},
	{`"if !pattern": an address of the other family skips the block`, "if !10.0.0.0/8\n::/0 V6\nendif\n", "::1", "", false},
	{`"The if..endif can nest"`, "if 10.0.0.0/8\nif 10.1.0.0/16\n10.1.1.0/24 DEEP\nendif\n10.0.0.0/8 TEN\nendif\n", "10.1.1.1", "DEEP", true},
	{`"The if..endif can nest"`, "if 10.0.0.0/8\nif 10.1.0.0/16\n10.1.1.0/24 DEEP\nendif\n10.0.0.0/8 TEN\nendif\n", "10.1.2.1", "TEN", true},
	{`IF and ENDIF in any case`, "If 1.2.3.0/24\n0.0.0.0/0 V4\nENDIF\n::/0 V6\n", "::1", "V6", true},
	{`the result keeps its inner whitespace`, "1.2.3.4\tX  Y\n", "1.2.3.4", "X  Y", true},
	{`a prefix length with leading zeros (atoi)`, "1.2.3.0/0000024 X\n", "1.2.3.4", "X", true},
	{`a pattern with an error is skipped, the rest works`, "1.2.3.4/24 BAD\n0.0.0.0/0 GOOD\n", "1.2.3.4", "GOOD", true},
	{`a bare IPv6 address needs all 128 bits`, "2001:db8::1 X\n", "2001:db8::2", "", false},
	{`an IPv4-compatible IPv6 address`, "::1.2.3.4 X\n", "::102:304", "X", true},
}

func TestCIDRCases(t *testing.T) {
	for _, c := range cidrCases {
		t.Run(c.doc, func(t *testing.T) {
			tb, _ := parseCIDR("t", []byte(c.table))
			v, ok, err := tb.Lookup(context.Background(), c.key)
			if err != nil || v != c.want || ok != c.ok {
				t.Errorf("table %q key %q = %q, %v, %v; want %q, %v", c.table, c.key, v, ok, err, c.want, c.ok)
			}
		})
	}
}

func TestCIDRCasesAgainstPostmap(t *testing.T) {
	if testing.Short() {
		t.Skip("runs postmap")
	}
	for _, c := range cidrCases {
		t.Run(c.doc, func(t *testing.T) {
			v, ok := postmapQuery(t, "cidr", c.table, c.key)
			if v != c.want || ok != c.ok {
				t.Errorf("postmap: table %q key %q = %q, %v; the case says %q, %v", c.table, c.key, v, ok, c.want, c.ok)
			}
		})
	}
}

// The messages follow Postfix's, which postmap printed for these lines.
func TestCIDRDiags(t *testing.T) {
	for _, c := range []struct {
		table string
		line  int
		sev   diag.Severity
		msg   string
	}{
		{"1.2.3.4/24 X\n", 1, diag.Error, `non-null host address bits in "1.2.3.4/24", perhaps you should use "1.2.3.0/24" instead`},
		{"[2001:db8::1]/32 X\n", 1, diag.Error, `non-null host address bits in "2001:db8::1/32", perhaps you should use "2001:db8::/32" instead`},
		{"1.2.3.4\n", 1, diag.Error, `no lookup result after "1.2.3.4"`},
		{"1.2.3.0/ X\n", 1, diag.Error, `bad mask value in "1.2.3.0/"`},
		{"1.2.3.4/+24 X\n", 1, diag.Error, `bad mask value in "1.2.3.4/+24"`},
		{"1.2.3.4/32/5 X\n", 1, diag.Error, `bad mask value in "1.2.3.4/32/5"`},
		{"1.2.3.0/33 X\n", 1, diag.Error, `bad mask length in "1.2.3.0/33"`},
		{"1.2.3.0/99999999999 X\n", 1, diag.Error, `bad mask length in "1.2.3.0/99999999999"`},
		{"::/129 X\n", 1, diag.Error, `bad mask length in "::/129"`},
		{"1.2.3.4]/32 X\n", 1, diag.Error, `bad network value in "1.2.3.4]/32"`},
		{"01.2.3.4 X\n", 1, diag.Error, `bad address pattern: "01.2.3.4"`},
		{"fe80::1%eth0 X\n", 1, diag.Error, `bad address pattern: "fe80::1%eth0"`},
		{"abc X\n", 1, diag.Error, `bad address pattern: "abc"`},
		{"if1.2.3.4 X\n", 1, diag.Error, `bad address pattern: "if1.2.3.4"`},
		{"[1.2.3.4 X\n", 1, diag.Error, `missing ']' character after "[1.2.3.4"`},
		{"[1.2.3.4]x X\n", 1, diag.Error, `garbage after "[1.2.3.4]"`},
		{"! X\n", 1, diag.Error, `bad address pattern: "X"`},
		{"endif\n", 1, diag.Error, "endif without matching if"},
		{"if 1.2.3.0/24\nendif junk\n", 2, diag.Error, `text after endif: "junk"`},
		{"if 1.2.3.0/24\n0.0.0.0/0 X\n", 1, diag.Error, "if has no matching endif"},
		{"if\n", 1, diag.Error, "no address pattern after if"},
		{"if 1.2.3.0/24 junk\nendif\n", 1, diag.Error, `bad mask value in "1.2.3.0/24 junk"`},
		{"if 1.2.3.0/24 junk\nendif\n", 2, diag.Error, "endif without matching if"},
		{" 1.2.3.4 X\n", 1, diag.Warning, "must not start with whitespace"},
	} {
		_, diags := parseCIDR("t", []byte(c.table))
		found := false
		for _, d := range diags {
			if strings.Contains(d.Msg, c.msg) {
				found = true
				if d.Line != c.line || d.Severity != c.sev || d.File != "t" {
					t.Errorf("table %q: got %v; want %v on line %d", c.table, d, c.sev, c.line)
				}
			}
		}
		if !found {
			t.Errorf("table %q: want %q, got %v", c.table, c.msg, diags)
		}
	}
}

// An if without endif encloses the rest of the table, as in Postfix.
func TestCIDRIfWithoutEndif(t *testing.T) {
	tb, _ := parseCIDR("t", []byte("if 1.2.3.0/24\n0.0.0.0/0 IN\n"))
	if v, ok, _ := tb.Lookup(context.Background(), "1.2.3.4"); !ok || v != "IN" {
		t.Errorf("1.2.3.4 = %q, %v; want IN", v, ok)
	}
	if _, ok, _ := tb.Lookup(context.Background(), "1.2.4.4"); ok {
		t.Error("1.2.4.4 must not match: it is outside the if")
	}
}

// FuzzCIDRTable parses arbitrary sources and looks up a key in whatever
// came out: neither may panic.
func FuzzCIDRTable(f *testing.F) {
	for _, c := range cidrCases {
		f.Add([]byte(c.table), c.key)
	}
	f.Fuzz(func(t *testing.T, src []byte, key string) {
		tb, diags := parseCIDR("fuzz", src)
		for _, d := range diags {
			if d.Line < 1 || d.File != "fuzz" || d.Msg == "" {
				t.Fatalf("bad finding %#v", d)
			}
		}
		tb.Lookup(context.Background(), key)
		tb.Lookup(context.Background(), "::ffff:10.0.0.1")
		tb.Lookup(context.Background(), "10.0.0.1")
	})
}
