package ratelimit

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseWindows(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []Window
	}{
		{"", nil},
		{"none", nil},
		{"0", nil},
		{"60/1m, 3600/1h", []Window{{60, time.Minute}, {3600, time.Hour}}},
		{"60/m 3600/h", []Window{{60, time.Minute}, {3600, time.Hour}}},
		{"5/5", []Window{{5, 5 * time.Second}}},
		{"10/2d,1/1w", []Window{{10, 48 * time.Hour}, {1, 7 * 24 * time.Hour}}},
	} {
		got, err := ParseWindows(c.in)
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("ParseWindows(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
	for _, in := range []string{"60", "60/", "/1m", "0/1m", "-1/1m", "60/1x", "60/0s", "60/2w", "a/1m", "60/1m 5"} {
		if got, err := ParseWindows(in); err == nil {
			t.Errorf("ParseWindows(%q) = %v, want an error", in, got)
		} else if !strings.Contains(err.Error(), "bad rate") {
			t.Errorf("ParseWindows(%q) error %q does not say bad rate", in, err)
		}
	}
}

func TestFormatWindows(t *testing.T) {
	ws := []Window{{60, time.Minute}, {3600, time.Hour}, {5, 5 * time.Second}, {1, 90 * time.Second}, {2, 1500 * time.Millisecond}}
	if got, want := FormatWindows(ws), "60/1m, 3600/1h, 5/5s, 1/90s, 2/1.5s"; got != want {
		t.Errorf("FormatWindows = %q, want %q", got, want)
	}
}

// FuzzParseWindows: whatever parses formats back to the same windows.
func FuzzParseWindows(f *testing.F) {
	for _, s := range []string{"60/1m, 3600/1h", "5/5s", "none", "1/w", "3/", "x/y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ws, err := ParseWindows(s)
		if err != nil {
			return
		}
		for _, w := range ws {
			if w.N < 1 || w.Per <= 0 || w.Per > maxPer {
				t.Fatalf("ParseWindows(%q) gave %v", s, w)
			}
		}
		again, err := ParseWindows(FormatWindows(ws))
		if err != nil || !reflect.DeepEqual(again, ws) {
			t.Fatalf("ParseWindows(%q) = %v; formatted %q parses to %v, %v", s, ws, FormatWindows(ws), again, err)
		}
	})
}
