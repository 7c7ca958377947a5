package maillog

import (
	"strconv"
	"strings"
)

// Postfix's smtpd_cmd_table order, which is the order of the tally in its
// "disconnect from" line; commands not in it count as "unknown".
var cmdOrder = []string{
	"helo", "ehlo", "xclient", "xforward", "starttls", "auth", "mail",
	"rcpt", "data", "bdat", "rset", "noop", "vrfy", "etrn", "quit", "help",
	"unknown",
}

// Counts tallies one SMTP session's commands for the "disconnect from"
// line, as Postfix 3.0 and later log them: "ehlo=1 mail=1 rcpt=0/1 quit=1
// commands=3/4" (a "/" means some invocations failed). The zero value is
// ready; a Counts belongs to one session and is not safe for concurrent
// use.
type Counts struct {
	ok, total [17]int // indexed like cmdOrder
}

// Add counts one command (case-insensitive verb) and whether it succeeded.
func (c *Counts) Add(verb string, ok bool) {
	i := len(cmdOrder) - 1
	for j, name := range cmdOrder {
		if strings.EqualFold(verb, name) {
			i = j
			break
		}
	}
	c.total[i]++
	if ok {
		c.ok[i]++
	}
}

// String formats the tally as Postfix does (smtpd_format_cmd_stats):
// commands used, in table order, then the total; "commands=0/0" for a
// client that sent nothing, so that every abnormal session has a "/".
func (c *Counts) String() string {
	var b []byte
	allOK, all := 0, 0
	for i, name := range cmdOrder {
		if c.total[i] == 0 {
			continue
		}
		if len(b) > 0 {
			b = append(b, ' ')
		}
		b = append(b, name...)
		b = append(b, '=')
		b = strconv.AppendInt(b, int64(c.ok[i]), 10)
		if c.ok[i] != c.total[i] {
			b = append(b, '/')
			b = strconv.AppendInt(b, int64(c.total[i]), 10)
		}
		allOK += c.ok[i]
		all += c.total[i]
	}
	if len(b) > 0 {
		b = append(b, ' ')
	}
	b = append(b, "commands="...)
	b = strconv.AppendInt(b, int64(allOK), 10)
	if allOK != all || all == 0 {
		b = append(b, '/')
		b = strconv.AppendInt(b, int64(all), 10)
	}
	return string(b)
}
