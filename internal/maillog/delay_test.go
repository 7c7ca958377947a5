package maillog

import (
	"testing"
	"time"
)

// TestFormatTV replays Postfix's own test of format_tv: the input and
// expected output of src/util/format_tv.in and format_tv.ref ("value
// significant-digits max-decimals" in, formatted value out). As in the C
// test driver, the value is split with sec = (int) tval and usec = (tval -
// sec) * 1000000, truncating.
func TestFormatTV(t *testing.T) {
	cases := []struct {
		in       float64
		sig, max int
		want     string
	}{
		// Three digits in, 2/6 digits out, rounding down.
		{1110, 2, 6, "1110"}, {111, 2, 6, "111"}, {11.1, 2, 6, "11"},
		{1.11, 2, 6, "1.1"}, {0.111, 2, 6, "0.11"}, {0.0111, 2, 6, "0.011"},
		{0.00111, 2, 6, "0.0011"}, {0.000111, 2, 6, "0.00011"},
		{0.0000111, 2, 6, "0.000011"},
		// One digit in. Must not produce spurious digits or trailing nulls.
		{1000, 2, 6, "1000"}, {100, 2, 6, "100"}, {10, 2, 6, "10"},
		{1, 2, 6, "1"}, {0.1, 2, 6, "0.1"}, {0.01, 2, 6, "0.01"},
		{0.001, 2, 6, "0.001"}, {0.0001, 2, 6, "0.0001"},
		{0.00001, 2, 6, "0.00001"}, {0.0000011, 2, 6, "0.000001"},
		// Three digits in, 2/6 digits out, rounding up.
		{996, 2, 6, "996"}, {99.6, 2, 6, "100"}, {9.96, 2, 6, "10"},
		{.996, 2, 6, "1"}, {.0996, 2, 6, "0.1"}, {.00996, 2, 6, "0.01"},
		{.000996, 2, 6, "0.001"},
		// Three digits in, 1/6 digits out, rounding down.
		{1110, 1, 6, "1110"}, {111, 1, 6, "111"}, {11.1, 1, 6, "11"},
		{1.11, 1, 6, "1"}, {0.111, 1, 6, "0.1"}, {0.0111, 1, 6, "0.01"},
		{0.00111, 1, 6, "0.001"}, {0.000111, 1, 6, "0.0001"},
		{0.000011, 1, 6, "0.00001"},
		// One digit in. Must not produce trailing nulls.
		{1000, 1, 6, "1000"}, {100, 1, 6, "100"}, {10, 1, 6, "10"},
		{1, 1, 6, "1"}, {0.1, 1, 6, "0.1"}, {0.01, 1, 6, "0.01"},
		{0.001, 1, 6, "0.001"}, {0.0001, 1, 6, "0.0001"},
		{0.00001, 1, 6, "0.00001"}, {0.0000011, 1, 6, "0.000001"},
		// Three digits in, 1/6 digits out, rounding up.
		{996, 1, 6, "996"}, {99.6, 1, 6, "100"}, {9.96, 1, 6, "10"},
		{.996, 1, 6, "1"}, {.0996, 1, 6, "0.1"}, {.00996, 1, 6, "0.01"},
		{.000996, 1, 6, "0.001"},
	}
	for _, c := range cases {
		sec := int64(c.in)
		usec := int64((c.in - float64(sec)) * million)
		if got := string(appendTV(nil, sec, usec, c.sig, c.max)); got != c.want {
			t.Errorf("format_tv(%v, %d, %d) = %s, want %s", c.in, c.sig, c.max, got, c.want)
		}
	}
}

// With Postfix's defaults (2 significant digits, delay_logging_resolution_limit
// = 2) as they show in the delay= and delays= fields of real logs.
func TestAppendDelay(t *testing.T) {
	cases := []struct {
		d    time.Duration
		want string
	}{
		{0, "0"},
		{-time.Second, "0"}, // clock jumped back
		{4 * time.Millisecond, "0"},
		{4999 * time.Microsecond, "0"},
		{5 * time.Millisecond, "0.01"},
		{10 * time.Millisecond, "0.01"},
		{70 * time.Millisecond, "0.07"},
		{123 * time.Millisecond, "0.12"},
		{995 * time.Millisecond, "1"},
		{1260 * time.Millisecond, "1.3"},
		{8300 * time.Millisecond, "8.3"},
		{9960 * time.Millisecond, "10"},
		{12400 * time.Millisecond, "12"},
		{99600 * time.Millisecond, "100"},
		{86217 * time.Second, "86217"},
	}
	for _, c := range cases {
		if got := string(AppendDelay(nil, c.d)); got != c.want {
			t.Errorf("AppendDelay(%v) = %s, want %s", c.d, got, c.want)
		}
	}
}
