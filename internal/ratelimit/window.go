package ratelimit

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/mailtee/mailtee/internal/pflist"
)

// Window is one sliding window: at most N events in any span of Per.
type Window struct {
	N   int
	Per time.Duration
}

func (w Window) String() string { return strconv.Itoa(w.N) + "/" + formatDuration(w.Per) }

// maxPer bounds a window's span: a limit longer than a week is a
// mistake (and would keep a week of history per key in memory).
const maxPer = 7 * 24 * time.Hour

// ParseWindows parses a list of windows as TRANSPORT_recipient_rate_limit
// and TRANSPORT_destination_rate_limit take them: "60/1m, 3600/1h",
// separated by commas and/or whitespace; an interval is a Postfix time
// value (s, m, h, d, w; seconds without a unit), and a unit alone means
// one of it ("60/m"). The empty string, "0" and "none" mean no limit.
func ParseWindows(s string) ([]Window, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "0" || strings.EqualFold(s, "none") {
		return nil, nil
	}
	var out []Window
	for _, el := range pflist.Split(s) {
		n, per, ok := strings.Cut(el, "/")
		if !ok {
			return nil, fmt.Errorf("bad rate %q: expected N/INTERVAL, such as 60/1m", el)
		}
		count, err := strconv.Atoi(n)
		if err != nil || count < 1 {
			return nil, fmt.Errorf("bad rate %q: the count before / must be a whole number of at least 1", el)
		}
		if per != "" && (per[0] < '0' || per[0] > '9') && len(per) == 1 {
			per = "1" + per
		}
		d, err := pflist.ParseTime(per, 's')
		if err != nil {
			return nil, fmt.Errorf("bad rate %q: %v", el, err)
		}
		if d <= 0 || d > maxPer {
			return nil, fmt.Errorf("bad rate %q: the interval must be more than 0s and at most 1w", el)
		}
		out = append(out, Window{N: count, Per: d})
	}
	return out, nil
}

// FormatWindows writes windows back in ParseWindows' syntax.
func FormatWindows(ws []Window) string {
	parts := make([]string, len(ws))
	for i, w := range ws {
		parts[i] = w.String()
	}
	return strings.Join(parts, ", ")
}

// formatDuration writes d in the largest Postfix unit that divides it.
func formatDuration(d time.Duration) string {
	for _, u := range []struct {
		d time.Duration
		s string
	}{{7 * 24 * time.Hour, "w"}, {24 * time.Hour, "d"}, {time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}} {
		if d >= u.d && d%u.d == 0 {
			return strconv.FormatInt(int64(d/u.d), 10) + u.s
		}
	}
	return d.String()
}
