package maps

import (
	"reflect"
	"testing"
)

func sourceOf(t *testing.T, spec string) []SourceEntry {
	t.Helper()
	tb, _, err := Open(spec)
	if err != nil {
		t.Fatal(err)
	}
	s, ok := tb.(Sourced)
	if !ok {
		t.Fatalf("%s: not Sourced", spec)
	}
	var out []SourceEntry
	s.Source(func(e SourceEntry) { out = append(out, e) })
	return out
}

// Source lists what lookups can return, each where it is written: the
// first of duplicate keys only, continuation lines at their first line.
func TestSource(t *testing.T) {
	f := writeFile(t, "transport", "# comment\nA.example  smtp:[a]\nb.example\n  relay:[b]\na.example  smtp:[dup]\nnovalue\n")
	want := []SourceEntry{
		{File: f, Line: 2, Key: "a.example", Value: "smtp:[a]"},
		{File: f, Line: 3, Key: "b.example", Value: "relay:[b]"},
	}
	if got := sourceOf(t, "hash:"+f); !reflect.DeepEqual(got, want) {
		t.Errorf("hash: got %+v, want %+v", got, want)
	}
	r := writeFile(t, "re", "/^a/  smtp:[a]\nif /b/\n/^(.)b/  relay:[$1]x\nendif\n/^(c)/  $1:[c]\n")
	want = []SourceEntry{
		{File: r, Line: 1, Value: "smtp:[a]"},
		{File: r, Line: 3, Value: "relay:[", Partial: true},
		{File: r, Line: 5, Value: "", Partial: true},
	}
	if got := sourceOf(t, "pcre:"+r); !reflect.DeepEqual(got, want) {
		t.Errorf("pcre: got %+v, want %+v", got, want)
	}
	want = []SourceEntry{{Key: "x", Value: "smtp:[x]"}}
	if got := sourceOf(t, "inline:{ X=smtp:[x] }"); !reflect.DeepEqual(got, want) {
		t.Errorf("inline: got %+v, want %+v", got, want)
	}
	want = []SourceEntry{{Value: "relay:[gw]"}}
	if got := sourceOf(t, "static:relay:[gw]"); !reflect.DeepEqual(got, want) {
		t.Errorf("static: got %+v, want %+v", got, want)
	}
}
