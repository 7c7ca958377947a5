package maillog

import (
	"strconv"
	"time"
)

// Postfix logs delays with two significant digits and at most
// delay_logging_resolution_limit (default 2) decimals: "delay=0.12",
// "delay=1.2", "delay=12", "delays=0/0.01/0.05/0.1" (log_adhoc.c).
const (
	sigDigits = 2
	maxDigits = 2
)

// AppendDelay appends d in Postfix's delay format. Negative durations (a
// clock that jumped back) count as zero, as in Postfix.
func AppendDelay(b []byte, d time.Duration) []byte {
	if d < 0 {
		d = 0
	}
	sec := int64(d / time.Second)
	usec := int64(d%time.Second) / int64(time.Microsecond)
	return appendTV(b, sec, usec, sigDigits, maxDigits)
}

const million = 1000000

var pow10 = [...]int64{1, 10, 100, 1000, 10000, 100000, 1000000}

// appendTV is Postfix's format_tv (src/util/format_tv.c): print sec.usec
// with sigDig significant digits and at most maxDig decimals, rounding
// half up, without trailing zeros. Large values become whole seconds.
func appendTV(b []byte, sec, usec int64, sigDig, maxDig int) []byte {
	ures := million / pow10[maxDig] // resolution in microseconds
	wid := pow10[sigDig]

	// Coarsen the resolution so that only sigDig digits are significant.
	if ures < million {
		if sec > 0 {
			n := int64(1)
			for sec >= n && n <= wid/10 {
				n *= 10
			}
			ures = (million / wid) * n
		} else {
			for usec >= wid*ures {
				ures *= 10
			}
		}
	}

	// Round half up; what lies below the resolution is not printed.
	if ures > 1 {
		usec += ures / 2
		if usec >= million {
			sec++
			usec -= million
		}
	}

	b = strconv.AppendInt(b, sec, 10)
	if usec >= ures {
		b = append(b, '.')
		rem := usec
		for n := int64(million / 10); rem >= ures && n > 0; n /= 10 {
			b = append(b, byte('0'+rem/n))
			rem %= n
		}
	}
	return b
}
