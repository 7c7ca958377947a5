package smtpd

import (
	"strings"
	"testing"
)

// The filter over a stream cut at every possible place gives the same
// bytes, the same length, and sees the same bare CRs.
func TestCRFilter(t *testing.T) {
	for _, tc := range []struct {
		in, out string
		bare    bool
	}{
		{"a\r\nb\r\n", "a\r\nb\r\n", false},
		{"a\r\r\n.\r\n", "a \r\n.\r\n", true},
		{"a\r\r\r\r\n", "a   \r\n", true},
		{".\rX\r\n", ".\rX\r\n", true},
		{"a\rb\r\n", "a\rb\r\n", true},
		{"a\r", "a\r", true}, // at the end of the stream
		{"", "", false},
	} {
		for cut := 0; cut <= len(tc.in); cut++ {
			var f crFilter
			var out strings.Builder
			for _, part := range []string{tc.in[:cut], tc.in[cut:]} {
				p := []byte(part)
				if f.held {
					p = append([]byte{'\r'}, p...)
					f.held = false
				}
				final := part == tc.in[cut:]
				n := f.filter(p, len(p), final)
				out.Write(p[:n])
			}
			if out.String() != tc.out || f.take() != tc.bare {
				t.Errorf("%q cut at %d: %q, bare %v; want %q, %v", tc.in, cut, out.String(), f.bare, tc.out, tc.bare)
			}
		}
	}
}
