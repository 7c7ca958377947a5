package main

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"
)

// Inline tables and static:, malformed ones included: `mailtee postmap
// -q KEY SPEC` must answer as `postmap -q KEY SPEC` of Postfix 3.7.11,
// whose answers these are (status, and the value when found). Where
// postmap is installed it is asked too, so the expectations stay its.
func TestPostmapInlineLikePostfix(t *testing.T) {
	cases := []struct {
		key, spec string
		status    int
		value     string
	}{
		{"a", "inline:{a=b, c=d}", 0, "b"},
		{"a", "inline:{a=1, a=2}", 0, "2"}, // the last one wins
		{"A", "inline:{a=1, A=2}", 0, "2"},
		{"a", "inline:{a=b, c}", 1, ""},
		{"a", "inline:{ }", 1, ""},
		{"a", "inline:{}", 1, ""},
		{"a", "inline:{ a=xx }x", 1, ""},
		{"a", "inline:{ a=xx x", 1, ""},
		{"a", "inline:{ a=xx {x=y}x}", 1, ""},
		{"a", "inline:{ {a = b c}, d=e }", 0, "b c"},
		{"a", `inline:{"a b"=c}`, 1, ""}, // unbalanced '"'
		{`"a b"`, `inline:{{"a b"=c}}`, 0, "c"},
		{"", "inline:{=b}", 0, "b"},
		{"x", "inline:{=b}", 1, ""},
		{"a", "inline:{a = b}", 1, ""},
		{"a", "inline:{{a = b}", 1, ""},
		{"a", "inline:{ {a=b}} }", 1, ""},
		{"x", "static:{a b", 1, ""},
		{"x", "static:{ a b }", 0, "a b"},
		{"x", "static:{a}x", 1, ""},
		{"x", "static:a b", 0, "a b"},
		{"x", "static:{{a}}", 0, "{a}"},
		{"x", "static:", 1, ""},
		{"a", "pcre:{{/a/ b}, {/c/ d}}", 0, "b"},
		{"c", "pcre:{{/a/ b}, {/c/ d}}", 0, "d"},
		{"a", "pcre:{/a/ b}", 1, ""},
		{"a", "pcre:{{/a/ b}x}", 1, ""},
		{"a", "pcre:{{/a/ b}", 1, ""},
		{"a", "pcre:{}", 1, ""},
		{"ab", "pcre:{ {/a/   b  c }, {/b/ d} }", 0, "b  c"},
		{"b", "pcre:{{if /b/}, {/a/ x}, {endif}, {/b/ y}}", 0, "y"},
		{"a", "pcre:{{/(a)/ got $1}}", 0, "got a"},
		{"ab", "regexp:{{/^a/ b}, {!/x/ y}}", 0, "b"},
		{"x", "regexp:{{/^a/ b}, {!/x/ y}}", 1, ""},
		{"z", "regexp:{{/^a/ b}, {!/x/ y}}", 0, "y"},
		{"10.1.2.3", "cidr:{{10.0.0.0/8 ok}, {192.168.1.1 local}}", 0, "ok"},
		{"192.168.1.1", "cidr:{{10.0.0.0/8 ok}, {192.168.1.1 local}}", 0, "local"},
		{"10.1.2.3", "cidr:{10.0.0.0/8 ok}", 1, ""},
	}
	// Postfix's postmap sleeps a second before a fatal exit: ask it about
	// all the cases at once.
	type answer struct {
		cmd *exec.Cmd
		out bytes.Buffer
	}
	real := make([]*answer, len(cases))
	if path, err := exec.LookPath("postmap"); err == nil {
		for i, tc := range cases {
			a := &answer{cmd: exec.Command(path, "-q", tc.key, tc.spec)}
			a.cmd.Stdout = &a.out
			if err := a.cmd.Start(); err != nil {
				t.Fatal(err)
			}
			real[i] = a
		}
	}
	for i, tc := range cases {
		var stdout, stderr bytes.Buffer
		code := run([]string{"postmap", "-q", tc.key, tc.spec}, &stdout, &stderr)
		got := strings.TrimSuffix(stdout.String(), "\n")
		if code != tc.status || got != tc.value {
			t.Errorf("postmap -q %q '%s': status %d %q (%s), want %d %q", tc.key, tc.spec, code, got, strings.TrimSpace(stderr.String()), tc.status, tc.value)
		}
		if a := real[i]; a != nil {
			err := a.cmd.Wait()
			status := 0
			if ee, ok := err.(*exec.ExitError); ok {
				status = ee.ExitCode()
			}
			if v := strings.TrimSuffix(a.out.String(), "\n"); status != tc.status || v != tc.value {
				t.Errorf("Postfix's postmap -q %q '%s': status %d %q, the test expects %d %q", tc.key, tc.spec, status, v, tc.status, tc.value)
			}
		}
	}
}
