package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Issue 13, defect 1: what serve refuses, check refuses, naming the
// file, line and parameter. always_bcc = a b c @@ passed check (exit 0)
// and then failed every message with a 451; a typo in a class list was
// ignored without a word.
func TestCheckRefusesWhatServeRefuses(t *testing.T) {
	for _, tc := range []struct{ line, want string }{
		{"always_bcc = a b c @@", "main.cf, line 2: always_bcc: non-address result"},
		{"masquerade_classes = envelope_sendr", `main.cf, line 2: masquerade_classes: "envelope_sendr" not supported`},
		{"sender_canonical_classes = envelope_recipient", `main.cf, line 2: sender_canonical_classes: "envelope_recipient" not supported`},
	} {
		dir := t.TempDir()
		q := filepath.Join(dir, "queue")
		os.WriteFile(filepath.Join(dir, "main.cf"), []byte("queue_directory = "+q+"\n"+tc.line+"\nsmtpd_port = 2525\ninet_interfaces = loopback-only\n"), 0o644)
		code, out, _ := mailtee(t, "", "check", "-c", dir)
		if code != exitBadData || !strings.Contains(out, tc.want) {
			t.Errorf("check with %q: exit %d, want 1 and %q in:\n%s", tc.line, code, tc.want, out)
		}
		code, _, errs := mailtee(t, "", "serve", "-c", dir)
		if code != exitBadData || !strings.Contains(errs, tc.want) {
			t.Errorf("serve with %q: exit %d, want 1 and %q in:\n%s", tc.line, code, tc.want, errs)
		}
	}
}
