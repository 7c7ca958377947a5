package smtpd

import (
	"errors"
	"io"
	"strings"
	"time"
	"unicode/utf8"
)

// SMTP smuggling (CVE-2023-51764 and kin) hides a second message behind an
// end-of-data marker that one server sees and another does not:
// "\n.\r\n", "\r\n.\n", "\r.\r\n". go-smtp ends DATA only at
// "\r\n.\r\n" (its data.go state machine moves to end-of-data only from
// CR LF '.' CR LF), so mailtee itself is not fooled; but a message that
// kept such a sequence would carry it to the next hop. Postfix's
// smtpd_forbid_bare_newline = reject refuses content with a bare LF;
// mailtee refuses a bare CR as well, so that what it queues has CR LF line
// endings only.
//
// go-smtp v0.25.1's data reader has two quirks with a bare CR (it misses
// the end of data after CR CR LF, and drops the CR of ".\r" at a line
// start); crfilter.go works around both on the plaintext stream, and
// bodyReader refuses what it records.
var (
	errBareLF = errors.New("bare <LF> received")
	errBareCR = errors.New("bare <CR> received")
)

// bodyReader passes message content through unchanged and fails at the
// first bare LF or bare CR. Its first error is kept: it, not what Enqueue
// returns, says what was wrong with the content.
type bodyReader struct {
	r   io.Reader
	cr  bool  // the last byte passed was CR
	n   int64 // bytes passed
	err error // the first error other than io.EOF
	eof bool  // r reached its end cleanly
	// bareCR reports a bare CR that go-smtp hid from r (crfilter.go).
	bareCR func() bool
}

func (b *bodyReader) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if b.eof {
		return 0, io.EOF
	}
	n, err := b.r.Read(p)
	for _, c := range p[:n] {
		if b.cr {
			b.cr = false
			if c == '\n' {
				continue
			}
			b.err = errBareCR
			return 0, b.err
		}
		switch c {
		case '\r':
			b.cr = true
		case '\n':
			b.err = errBareLF
			return 0, b.err
		}
	}
	b.n += int64(n)
	switch {
	case err == io.EOF && (b.cr || b.bareCR != nil && b.bareCR()):
		b.err = errBareCR
		return 0, b.err
	case err == io.EOF:
		b.eof = true
	case err != nil:
		b.err = err
	}
	return n, err
}

// receivedInfo is what the Received: header says. String formats it as
// Postfix's smtpd does (smtpd.c, data_cmd), naming the recipient only when
// there is one:
//
//	Received: from HELO (NAME [ADDR])
//		by HOSTNAME (MAIL_NAME) with ESMTP id QUEUEID
//		for <RCPT>; DATE
type receivedInfo struct {
	helo, name, addr string // addr as rfcAddr gives it
	host             string
	mailName         string // mail_name
	with             string // ESMTP, ESMTPS, SMTP, UTF8SMTP, UTF8SMTPS
	id               string
	rcpts            []string // external form
	date             time.Time
}

// dateLayout is RFC 5322 date-time with the zone name as a comment, as
// Postfix's mail_date writes it (with a two-digit day).
const dateLayout = "Mon, 02 Jan 2006 15:04:05 -0700 (MST)"

func (r receivedInfo) String() string {
	var b strings.Builder
	b.WriteString("Received: from ")
	b.WriteString(printable(r.helo))
	b.WriteString(" (" + r.name + " [" + r.addr + "])\r\n")
	b.WriteString("\tby " + r.host + " (" + r.mailName + ") with " + r.with + " id " + r.id)
	if len(r.rcpts) == 1 {
		b.WriteString("\r\n\tfor <" + r.rcpts[0] + ">; ")
	} else {
		b.WriteString(";\r\n\t")
	}
	b.WriteString(r.date.Format(dateLayout))
	b.WriteString("\r\n")
	return b.String()
}

// printable replaces control characters and invalid UTF-8 with '?', as
// Postfix does with the HELO name (printable(3)), so that what the client
// said cannot break the header.
func printable(s string) string {
	ok := utf8.ValidString(s)
	for i := 0; ok && i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			ok = false
		}
	}
	if ok {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if r == utf8.RuneError || r < 0x20 || r == 0x7f {
			r = '?'
		}
		b.WriteRune(r)
	}
	return b.String()
}
