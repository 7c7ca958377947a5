package report

import (
	"testing"
	"time"
)

func TestParseTime(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	loc := time.FixedZone("IST", 5*3600+1800)
	for _, tc := range []struct {
		in   string
		want time.Time
	}{
		{"2026-12-07T10:00:00Z", time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)},
		{"2026-12-07T10:00:00.5+05:30", time.Date(2026, 12, 7, 4, 30, 0, 5e8, time.UTC)},
		{"2026-12-07", time.Date(2026, 12, 7, 0, 0, 0, 0, loc)},
		{"24h", now.Add(-24 * time.Hour)},
		{"7d", now.Add(-7 * 24 * time.Hour)},
		{"2w", now.Add(-14 * 24 * time.Hour)},
		{"1d12h", now.Add(-36 * time.Hour)},
		{"90m", now.Add(-90 * time.Minute)},
		{" 30s ", now.Add(-30 * time.Second)},
	} {
		got, err := ParseTime(tc.in, now, loc)
		if err != nil || !got.Equal(tc.want) {
			t.Errorf("ParseTime(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "yesterday", "7", "d", "7x", "-7d", "7d-", "2026-13-01", "1.5h", "99999999999999w", "5000000h5000000h"} {
		if got, err := ParseTime(bad, now, loc); err == nil {
			t.Errorf("ParseTime(%q) = %v, want an error", bad, got)
		}
	}
}

// FuzzParseTime: no panic, and an age is never negative nor beyond its
// bound, so that now minus it does not wrap.
func FuzzParseTime(f *testing.F) {
	for _, s := range []string{"2026-12-07T10:00:00Z", "2026-12-07", "7d", "1d12h", "90m", "9999999999999d", "1w1w1w"} {
		f.Add(s)
	}
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseTime(s, now, time.UTC)
		if err != nil {
			return
		}
		if d, err := ParseAge(s); err == nil {
			if d < 0 || d > maxAge || !got.Equal(now.Add(-d)) {
				t.Fatalf("%q: age %v, time %v", s, d, got)
			}
		}
	})
}
