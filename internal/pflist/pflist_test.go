package pflist

import (
	"strings"
	"testing"
)

func TestSplit(t *testing.T) {
	got := Split("a, b\tc,,d inline:{ x=1, y=2 } e")
	want := []string{"a", "b", "c", "d", "inline:{ x=1, y=2 }", "e"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("Split = %q, want %q", got, want)
	}
}

// An element is a table when a lower-case type name and a colon start it.
func TestIsTable(t *testing.T) {
	tables := []string{"hash:/etc/postfix/transport", "inline:{ a=b }", "proxy_2:x"}
	others := []string{"example.com", "/etc/postfix/domains", "[::1]:25", ":x", "Hash:x"}
	for _, el := range tables {
		if !IsTable(el) {
			t.Errorf("IsTable(%q) = false", el)
		}
	}
	for _, el := range others {
		if IsTable(el) {
			t.Errorf("IsTable(%q) = true", el)
		}
	}
}

// mynetworks elements as postconf(5) writes them; host bits set below the
// prefix are an error, as Postfix's "non-null host address bits".
func TestParseNetwork(t *testing.T) {
	cases := [][2]string{
		{"1.2.3.4", "1.2.3.4/32"},
		{"10.0.0.0/8", "10.0.0.0/8"},
		{"[::1]/128", "::1/128"},
		{"[fd00::]", "fd00::/128"},
		{"::ffff:192.0.2.1", "192.0.2.1/32"},
		{"10.0.0.1/8", ""},
		{"example.com", ""},
		{"10.0.0.0/33", ""},
	}
	for _, c := range cases {
		p, err := ParseNetwork(c[0])
		if (err == nil) != (c[1] != "") || err == nil && p.String() != c[1] {
			t.Errorf("ParseNetwork(%q) = %v, %v; want %q", c[0], p, err, c[1])
		}
	}
}
