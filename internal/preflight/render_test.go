package preflight

import (
	"bytes"
	"strings"
	"testing"
)

// What a server says (its replies, its certificate's names) is printed
// on the administrator's terminal: its control characters must not
// reach it (an escape sequence can rewrite the screen, hide a FAIL).
func TestWriteTextControlCharacters(t *testing.T) {
	r := &Report{Rows: []Row{{Dest: "smtp:[mx.example]", Check: "account", Target: "u\x1b]0;x\x07@example",
		Status: OK, Seen: "250 2.1.5 ok\x1b[2K\x1b[1A\rOK\x00\x7f\u009b31m", Do: "nothing\x1b[0m"}}}
	var b bytes.Buffer
	if err := r.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, bad := range []string{"\x1b", "\x07", "\x00", "\x7f", "\r", "\u009b"} {
		if strings.Contains(out, bad) {
			t.Errorf("output has %q:\n%q", bad, out)
		}
	}
	if !strings.Contains(out, "250 2.1.5 ok") {
		t.Errorf("the reply is gone:\n%q", out)
	}
}
