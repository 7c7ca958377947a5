package config

import (
	"strings"
	"testing"
)

// FuzzExpand runs the expander on arbitrary text against parameters that
// refer to each other (loops included): it must end, with a value or an
// error, and never panic.
func FuzzExpand(f *testing.F) {
	for _, s := range []string{
		"$a ${b?{x}:{y}} $(c) $$ ${{$a} == {1}?{t}:f}",
		"${{3.6} <level {3.10}} ${ a } ${a:{x}:{y}} $",
		"${{a}==(b)?{x}} ${name?x:y}} ${{${a?b:c}} != {b:c}}",
		"$loop ${{$self} == {}}",
	} {
		f.Add(s)
	}
	vals := map[string]string{
		"a": "1", "b": "", "c": "${a?{$b}:{$c}}", "loop": "x $loop",
		"self": "${{$self} == {}}",
	}
	f.Fuzz(func(t *testing.T, s string) {
		e := expander{lookup: func(n string) (string, bool) {
			v, ok := vals[n]
			return v, ok
		}}
		out, err := e.expand(s, 0)
		if err == nil && !strings.Contains(s, "$") && out != s {
			t.Fatalf("%q without '$' expanded to %q", s, out)
		}
	})
}

// The forms the issue names, with what postconf 3.7.11 prints (see also
// cmd/mailtee's TestPostconfMacExpand, which asks postconf itself).
func TestExpandForms(t *testing.T) {
	c := parse(t, "name1 = v1\nempty =\nind = $empty\n")
	for in, want := range map[string]string{
		"${{a} == {b}}":          "",
		"${{a} == {a}}":          "true",
		"${{a} == {a}?{yes}}":    "yes",
		"${{a} == {b}:{no}}":     "no",
		"${name1?{a}:plain b}":   "a",
		"${name2?{a}:plain b}":   "plain b",
		"$( name1)":              "v1",
		"${ name1 }":             "v1",
		"${ind?set}":             "set", // tested as written: "$empty"
		"${{3.6} <level {3.10}}": "true",
	} {
		if got, err := c.Expand(in); err != nil || got != want {
			t.Errorf("%s = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"$", "abc $", "x$-y", "${name1:{a}:{b}}", "${}", "${name1?{a}x}",
		"${{a} = {b}}", "${{a} ==length {b}}", "${{x} ==level {2}}", "$(name1", "${{99999999999999999999} == {1}}"} {
		if got, err := c.Expand(in); err == nil {
			t.Errorf("%s = %q, want an error as postconf gives", in, got)
		}
	}
}

// A name referred to as "$( name )" is user-defined as much as "$name":
// Postfix allows the blanks (mac_expand.c), so check must not call it
// unknown.
func TestBlankReferenceIsUserDefined(t *testing.T) {
	c := parse(t, "smtpd_banner = $( site_banner ) ESMTP\nsite_banner = mx.example\n")
	if d := diagsMatching(c.Check(), "site_banner: unknown parameter"); len(d) != 0 {
		t.Errorf("site_banner is referred to, so user-defined: %v", d)
	}
	if got := c.Get("smtpd_banner"); got != "mx.example ESMTP" {
		t.Errorf("smtpd_banner = %q", got)
	}
}
