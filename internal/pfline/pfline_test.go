package pfline

import (
	"reflect"
	"testing"

	"github.com/mailtee/mailtee/internal/diag"
)

// Cases follow postconf(5): "A logical line starts with non-whitespace
// text. A line that starts with whitespace continues a logical line", and
// what Postfix 3.7's postmap -q returns for a continued value: only the
// newline goes ("value   \n  continued" is "value     continued").
func TestSplit(t *testing.T) {
	cases := []struct {
		in   string
		want []Line
	}{
		{"a = 1\nb = 2\n", []Line{{1, "a = 1", false}, {2, "b = 2", false}}},
		{"a = x,\n    y\n  # c\n\tz # not a comment\n", []Line{{1, "a = x,    y\tz # not a comment", false}}},
		{"long value   \n  continued here  \nb x\n", []Line{{1, "long value     continued here", false}, {3, "b x", false}}},
		{"# only\n\n   \n", nil},
		{"  orphan\nb\n", []Line{{1, "orphan", true}, {2, "b", false}}},
		{"a\r\n b\r\n", []Line{{1, "a b", false}}},
		{"last", []Line{{1, "last", false}}},
	}
	for _, c := range cases {
		var got []Line
		Scan(c.in, func(l Line) { got = append(got, l) })
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("Split(%q) = %+v, want %+v", c.in, got, c.want)
		}
	}
}

func TestEachDropsOrphans(t *testing.T) {
	var d diag.List
	got := Lines("f", []byte("  orphan\nb\n"), &d)
	if len(got) != 1 || got[0].Text != "b" || len(d) != 1 || d[0].Line != 1 {
		t.Errorf("Lines = %+v, diags %v", got, d)
	}
}
