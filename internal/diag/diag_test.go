package diag

import "testing"

// A driver's multi-line error stays on its finding's one line, each
// address it tried once.
func TestOneLine(t *testing.T) {
	for in, want := range map[string]string{
		"plain": "plain",
		"failed to connect to `user=u`:\n\t127.0.0.1:5999: refused\n\t127.0.0.1:5999: refused": "failed to connect to `user=u`: 127.0.0.1:5999: refused",
		"a\nb\r\n\nc\n": "a; b; c",
	} {
		if got := OneLine(in); got != want {
			t.Errorf("OneLine(%q) = %q, want %q", in, got, want)
		}
	}
	var l List
	l.Warnf("main.cf", 3, "x: %v", "one\n  two")
	if got := l[0].String(); got != "warning: main.cf, line 3: x: one; two" {
		t.Errorf("finding %q", got)
	}
}
