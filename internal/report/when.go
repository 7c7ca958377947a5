package report

import (
	"fmt"
	"strings"
	"time"

	"github.com/mailtee/mailtee/internal/pflist"
)

// maxAge bounds an age so that now-age cannot overflow.
const maxAge = 100 * 365 * 24 * time.Hour

// ParseTime reads a --since/--until value: an RFC 3339 time
// (2026-12-07T10:00:00Z), a date (2026-12-07: its midnight in loc), or
// an age (24h, 7d, 2w, 1d12h, 90m: that long before now).
func ParseTime(s string, now time.Time, loc *time.Location) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, fmt.Errorf("empty time: want RFC 3339 (2026-12-07T10:00:00Z), a date (2026-12-07) or an age (24h, 7d)")
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if t, err := time.ParseInLocation(time.DateOnly, s, loc); err == nil {
		return t, nil
	}
	if d, err := ParseAge(s); err == nil {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("%q: want RFC 3339 (2026-12-07T10:00:00Z), a date (2026-12-07) or an age (24h, 7d)", s)
}

// ParseAge reads an age: one or more NUMBER UNIT pairs, UNIT one of
// s, m, h, d (24h), w (7d); "7d", "1d12h", "90m".
func ParseAge(s string) (time.Duration, error) {
	if s == "" {
		return 0, fmt.Errorf("empty age")
	}
	var total time.Duration
	rest := s
	for rest != "" {
		i := 0
		for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
			i++
		}
		if i == 0 || i == len(rest) || i > 12 {
			return 0, fmt.Errorf("age %q: want NUMBER UNIT pairs, units s, m, h, d, w (7d, 1d12h)", s)
		}
		if !strings.ContainsRune("smhdw", rune(rest[i])) {
			return 0, fmt.Errorf("age %q: unknown unit %q; use s, m, h, d or w", s, rest[i])
		}
		// Each pair is a Postfix time value (main.cf's units).
		d, err := pflist.ParseTime(rest[:i+1], 's')
		if err != nil {
			return 0, fmt.Errorf("age %q: more than 100 years", s)
		}
		if total += d; d > maxAge || total > maxAge {
			return 0, fmt.Errorf("age %q: more than 100 years", s)
		}
		rest = rest[i+1:]
	}
	return total, nil
}
