package pflist

import (
	"fmt"
	"strconv"
	"time"
)

// ParseTime parses a Postfix time value (a number and an optional unit
// s, m, h, d or w); unit applies when v has none.
func ParseTime(v string, unit byte) (time.Duration, error) {
	if v == "" {
		return 0, fmt.Errorf("empty time value")
	}
	num := v
	if u := v[len(v)-1]; u < '0' || u > '9' {
		unit, num = u, v[:len(v)-1]
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("bad time value: expected a number and a unit s, m, h, d or w")
	}
	var d time.Duration
	switch unit {
	case 's':
		d = time.Second
	case 'm':
		d = time.Minute
	case 'h':
		d = time.Hour
	case 'd':
		d = 24 * time.Hour
	case 'w':
		d = 7 * 24 * time.Hour
	default:
		return 0, fmt.Errorf("bad time unit %q: expected s, m, h, d or w", unit)
	}
	if n > int64(1<<62)/int64(d) {
		return 0, fmt.Errorf("time value too large")
	}
	return time.Duration(n) * d, nil
}
