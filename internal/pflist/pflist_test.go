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

func TestIsTable(t *testing.T) {
	for el, want := range map[string]bool{
		"hash:/etc/postfix/transport": true,
		"inline:{ a=b }":              true,
		"proxy_2:x":                   true,
		"example.com":                 false,
		"/etc/postfix/domains":        false,
		"[::1]:25":                    false,
		":x":                          false,
		"Hash:x":                      false,
	} {
		if got := IsTable(el); got != want {
			t.Errorf("IsTable(%q) = %v; want %v", el, got, want)
		}
	}
}

func TestParseNetwork(t *testing.T) {
	for el, want := range map[string]string{
		"1.2.3.4":          "1.2.3.4/32",
		"10.0.0.0/8":       "10.0.0.0/8",
		"[::1]/128":        "::1/128",
		"[fd00::]":         "fd00::/128",
		"::ffff:192.0.2.1": "192.0.2.1/32",
		"10.0.0.1/8":       "", // host bits set: Postfix refuses it too
		"example.com":      "",
		"10.0.0.0/33":      "",
	} {
		p, err := ParseNetwork(el)
		got := ""
		if err == nil {
			got = p.String()
		}
		if got != want {
			t.Errorf("ParseNetwork(%q) = %q, %v; want %q", el, got, err, want)
		}
	}
}
