package pflog

import (
	"strconv"
	"strings"
	"time"
)

// Line is one log line taken apart: the syslog header and, when the
// text starts with a queue ID, that ID and what follows it.
type Line struct {
	// Time is the line's time. A classic syslog stamp has no year:
	// Time then has year 0 and Yearless is set; Load supplies the year.
	Time     time.Time
	Yearless bool
	Host     string
	// Program is the syslog tag without the pid: "postfix/smtp",
	// "postfix/submission/smtpd", "postfix-out/smtp".
	Program string
	// Daemon is the tag's last component (smtpd, cleanup, qmgr, smtp,
	// local, ...): the program that wrote the line, whatever
	// syslog_name says.
	Daemon string
	// QueueID is the ID before the first ": " of the text, when it has
	// the shape of a Postfix queue ID (short or long form); "" else.
	QueueID string
	// Text is what follows "QUEUEID: " (or the whole message text when
	// there is no queue ID).
	Text string
}

var months = map[string]time.Month{
	"Jan": 1, "Feb": 2, "Mar": 3, "Apr": 4, "May": 5, "Jun": 6,
	"Jul": 7, "Aug": 8, "Sep": 9, "Oct": 10, "Nov": 11, "Dec": 12,
}

// rfc3339Layouts are the year-full stamps found in mail logs:
// rsyslog's RFC3339 high-precision format, and journalctl's short-iso
// (no colon in the zone).
var rfc3339Layouts = []string{
	time.RFC3339Nano,
	"2006-01-02T15:04:05.999999999Z0700",
}

// ParseLine takes a log line apart. ok is false when the line is not a
// syslog line with a program tag ("Dec  7 01:02:03 host prog[pid]: text"
// or the same with an RFC 3339 stamp). loc is the time zone of classic
// stamps (which carry none).
func ParseLine(s string, loc *time.Location) (l Line, ok bool) {
	s = strings.TrimRight(s, "\r\n")
	// A priority some relays keep ("<22>Dec  7 ...").
	if strings.HasPrefix(s, "<") {
		if i := strings.IndexByte(s, '>'); i > 0 && i <= 4 {
			s = s[i+1:]
		}
	}
	if len(s) < 16 {
		return l, false
	}
	var rest string
	if s[0] >= '0' && s[0] <= '9' {
		sp := strings.IndexByte(s, ' ')
		if sp < 0 {
			return l, false
		}
		var err error
		for _, layout := range rfc3339Layouts {
			if l.Time, err = time.Parse(layout, s[:sp]); err == nil {
				break
			}
		}
		if err != nil {
			return l, false
		}
		rest = s[sp+1:]
	} else {
		mon, found := months[s[:3]]
		if !found || s[3] != ' ' {
			return l, false
		}
		// "Dec  7 01:02:03" or "Dec 17 01:02:03", maybe with a fraction.
		day, err := strconv.Atoi(strings.TrimLeft(s[4:6], " "))
		if err != nil || day < 1 || day > 31 || s[6] != ' ' {
			return l, false
		}
		end := strings.IndexByte(s[7:], ' ')
		if end < 0 {
			return l, false
		}
		clock := s[7 : 7+end]
		rest = s[7+end+1:]
		hms, frac, _ := strings.Cut(clock, ".")
		if len(hms) != 8 || hms[2] != ':' || hms[5] != ':' {
			return l, false
		}
		h, e1 := strconv.Atoi(hms[:2])
		m, e2 := strconv.Atoi(hms[3:5])
		sec, e3 := strconv.Atoi(hms[6:])
		if e1 != nil || e2 != nil || e3 != nil || h > 23 || m > 59 || sec > 60 || h < 0 || m < 0 || sec < 0 {
			return l, false
		}
		ns := 0
		if frac != "" {
			if len(frac) > 9 {
				frac = frac[:9]
			}
			n, err := strconv.Atoi(frac)
			if err != nil || n < 0 {
				return l, false
			}
			ns = n
			for i := len(frac); i < 9; i++ {
				ns *= 10
			}
		}
		// Year 0 is a leap year, so Feb 29 survives until Load sets
		// the real one.
		l.Time = time.Date(0, mon, day, h, m, sec, ns, loc)
		l.Yearless = true
	}
	host, rest, found := strings.Cut(rest, " ")
	if !found || host == "" {
		return l, false
	}
	l.Host = host
	tag, text, found := strings.Cut(rest, ": ")
	if !found {
		// "prog[1]:" with nothing after it.
		tag, found = strings.CutSuffix(rest, ":")
		if !found {
			return l, false
		}
	}
	if i := strings.IndexByte(tag, '['); i >= 0 {
		if !strings.HasSuffix(tag, "]") {
			return l, false
		}
		tag = tag[:i]
	}
	if tag == "" || strings.ContainsAny(tag, " \t") {
		return l, false
	}
	l.Program = tag
	l.Daemon = tag[strings.LastIndexByte(tag, '/')+1:]
	if l.Daemon == "" {
		return l, false
	}
	l.Text = text
	if id, after, found := strings.Cut(text, ": "); found && IsQueueID(id) {
		l.QueueID, l.Text = id, after
	} else if id, found := strings.CutSuffix(text, ":"); found && IsQueueID(id) {
		l.QueueID, l.Text = id, ""
	}
	return l, true
}

// IsQueueID reports whether s has the shape of a Postfix queue ID: the
// short form (hexadecimal, upper case: "3F1A2B4C5D") or the long form of
// enable_long_queue_ids ("4Zx1Yz2kPNz3Qw1": safe_ultostr's alphabet, without
// vowels, so that no English word such as "warning" or "NOQUEUE" looks
// like one). mailtee's own IDs are of the short form.
func IsQueueID(s string) bool {
	if len(s) < 5 || len(s) > 24 {
		return false
	}
	hex := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9', c >= 'A' && c <= 'F':
		case strings.IndexByte(longAlphabet, c) >= 0:
			hex = false
		default:
			return false
		}
	}
	// A long ID has 10 characters of time, the 'z' separator and the
	// inode number; all-hex is the short form.
	return hex || len(s) >= 12
}

// longAlphabet is the characters of a long queue ID beyond the
// hexadecimal digits (Postfix's mail_queue.h: 0-9, B-Z, b-z without
// vowels).
const longAlphabet = "BCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxyz"
