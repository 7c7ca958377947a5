package smtpd

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// SMTP smuggling (CVE-2023-51764 and kin) hides a second message behind an
// end-of-data marker that one server sees and another does not:
// "\n.\r\n", "\r\n.\n", "\r.\r\n". go-smtp ends DATA only at
// "\r\n.\r\n" (its data.go state machine moves to end-of-data only from
// CR LF '.' CR LF), so mailtee itself is not fooled; but a message that
// kept such a sequence would carry it to the next hop. So what mailtee
// queues has CR LF line endings only, whatever smtpd_forbid_bare_newline
// says (Postfix 3.7.11 and 3.9, src/smtpd/smtpd.c, smtpd_forbid_bare_newline
// in postconf(5)):
//
//   - normalize (mailtee's default, Postfix 3.9's; "yes" is the same): a
//     bare LF ends a line as CR LF would, and is stored as CR LF. A line
//     "." that ends with a bare LF or follows one is dropped, as Postfix
//     drops it: it is neither the end of the data nor content. A dot at
//     the start of a line that follows a bare LF is removed, as from any
//     other line (go-smtp only does it after CR LF). BDAT content is not
//     dot-stuffed: there only the line ends change.
//   - reject: content with a bare LF is refused ("550 5.5.2 HOST Error:
//     bare <LF> received", smtpd_forbid_bare_newline_reject_code), and
//     the session goes on; a command line ending in a bare LF gets the
//     same reply and the session ends (conn.go, bareLFCommand).
//   - no: Postfix then also ends DATA at "\n.\n"; mailtee never does,
//     so it reads content as normalize does.
//
// Clients in smtpd_forbid_bare_newline_exclusions get "no" (so, in
// mailtee, normalize). mailtee refuses a bare CR in content in every
// mode, which Postfix stores as it is.
//
// One difference from Postfix remains: go-smtp has already removed the
// dot of a line "." that follows a CR LF and ends in a bare LF
// ("\r\n.\n"), which then reaches bodyReader as an empty line and is
// kept as one, where Postfix drops the line.
//
// go-smtp v0.25.1's data reader has two quirks with a bare CR (it misses
// the end of data after CR CR LF, and drops the CR of ".\r" at a line
// start); crfilter.go works around both on the plaintext stream, and
// bodyReader refuses what it records.
var (
	errBareLF = errors.New("bare <LF> received")
	errBareCR = errors.New("bare <CR> received")
)

// BareNewline is smtpd_forbid_bare_newline.
type BareNewline int

const (
	// BareNewlineNormalize: a bare LF is a line end (normalize, yes, and
	// no; see above).
	BareNewlineNormalize BareNewline = iota
	// BareNewlineReject refuses content and commands with a bare LF.
	BareNewlineReject
)

// ParseBareNewline reads a value of smtpd_forbid_bare_newline, as
// Postfix 3.7.11 knows them (src/smtpd/smtpd.c, bare_lf_mask_table):
// normalize, yes, reject, no.
func ParseBareNewline(v string) (BareNewline, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "normalize", "yes", "no":
		return BareNewlineNormalize, nil
	case "reject":
		return BareNewlineReject, nil
	}
	return 0, fmt.Errorf("invalid smtpd_forbid_bare_newline value %q: use normalize, yes, reject or no", v)
}

// bodyReader passes message content through, with bare LFs made CR LF
// (normalize) or refused (reject), and fails at the first bare CR. Its
// first error is kept: it, not what Enqueue returns, says what was
// wrong with the content.
type bodyReader struct {
	r      io.Reader
	reject bool  // smtpd_forbid_bare_newline = reject for this client
	bdat   bool  // BDAT content: no dot rules (nothing is dot-stuffed)
	n      int64 // bytes read from r
	err    error // the first error other than io.EOF
	eof    bool  // r reached its end cleanly, and out is empty
	// bareCR reports a bare CR that go-smtp hid from r (crfilter.go).
	bareCR func() bool

	out      []byte   // made, not yet returned (in bufs.out)
	bufs     *bodyBuf // from bodyBufs, until release
	cr       bool     // a CR was read and not yet passed on
	bareLF   bool     // the last line ended with a bare LF
	midLine  bool     // not at the start of a line
	dot      bool     // a '.' starts a line after a bare LF: held
	dotCR    bool     // ... followed by a CR: held
	finished bool     // r returned io.EOF
}

func (b *bodyReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		// fill(0) would read nothing, for ever.
		return 0, nil
	}
	for len(b.out) == 0 {
		if b.err != nil {
			return 0, b.err
		}
		if b.finished {
			b.eof = true
			return 0, io.EOF
		}
		b.fill(min(len(p), maxBodyRead))
	}
	n := copy(p, b.out)
	b.out = b.out[n:]
	return n, nil
}

// bodyBuf is a bodyReader's read buffer and the buffer it makes content
// into, kept across messages in bodyBufs: allocating 16 KB and growing
// the output byte by byte for every message cost a quarter of the SMTP
// server's time per message (issue 15's benchmark).
type bodyBuf struct{ in, out []byte }

var bodyBufs = sync.Pool{New: func() any { return new(bodyBuf) }}

// maxBodyRead bounds a read from the content, and so the buffers kept in
// bodyBufs: an Enqueuer's reads can be as large as the message
// (io.ReadAll's grow with it), and each buffer kept would then hold three
// times the largest message received.
const maxBodyRead = 64 << 10

// release returns the buffers; the reader gives no more content after it.
func (b *bodyReader) release() {
	if b.bufs != nil {
		bodyBufs.Put(b.bufs)
		b.bufs, b.out = nil, nil
	}
}

// fill reads up to max bytes from r and makes what they give into out.
func (b *bodyReader) fill(max int) {
	if b.bufs == nil {
		b.bufs = bodyBufs.Get().(*bodyBuf)
	}
	if cap(b.bufs.in) < max {
		b.bufs.in = make([]byte, max)
	}
	// Each byte read makes at most two (a bare LF becomes CR LF), so
	// out never grows while it is filled.
	if cap(b.bufs.out) < 2*max {
		b.bufs.out = make([]byte, 0, 2*max)
	}
	in := b.bufs.in[:max]
	n, err := b.r.Read(in)
	b.n += int64(n)
	b.out = b.bufs.out[:0]
	for i := 0; i < n; {
		if !b.cr && !b.dot && !b.dotCR {
			// Runs of ordinary bytes go through whole; step sees only
			// CR, LF and '.', and whatever follows a held one.
			j := i
			for j < n && in[j] != '\r' && in[j] != '\n' && in[j] != '.' {
				j++
			}
			if j > i {
				b.out = append(b.out, in[i:j]...)
				b.midLine = true
				i = j
				continue
			}
		}
		if e := b.step(in[i]); e != nil {
			b.err, b.out = e, nil
			return
		}
		i++
	}
	switch {
	case err == io.EOF && (b.cr || b.dotCR || b.bareCR != nil && b.bareCR()):
		b.err, b.out = errBareCR, nil
	case err == io.EOF:
		b.finished = true
	case err != nil:
		b.err = err
	}
}

// step takes one byte of content.
func (b *bodyReader) step(c byte) error {
	switch {
	case b.dotCR:
		// ".\r" at the start of a line after a bare LF: only a line "."
		// can follow, and it is dropped.
		b.dot, b.dotCR = false, false
		if c != '\n' {
			return errBareCR
		}
		b.bareLF, b.midLine = false, false
		return nil
	case b.dot:
		switch c {
		case '\n':
			if b.reject {
				return errBareLF
			}
			// The line "." ending in a bare LF: dropped.
			b.dot, b.bareLF, b.midLine = false, true, false
			return nil
		case '\r':
			b.dotCR = true
			return nil
		}
		// The leading dot of any other line is removed.
		b.dot, b.midLine = false, true
	case b.cr:
		b.cr = false
		if c != '\n' {
			return errBareCR
		}
		b.out = append(b.out, '\r', '\n')
		b.bareLF, b.midLine = false, false
		return nil
	}
	switch c {
	case '\r':
		b.cr = true
		return nil
	case '\n':
		if b.reject {
			return errBareLF
		}
		b.out = append(b.out, '\r', '\n')
		b.bareLF, b.midLine = true, false
		return nil
	case '.':
		if !b.midLine && b.bareLF && !b.bdat {
			b.dot = true
			return nil
		}
	}
	b.out = append(b.out, c)
	b.midLine = true
	return nil
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
	helo := r.helo
	if helo == "" {
		// No HELO since STARTTLS (smtpd.c: "state->helo_name ?
		// state->helo_name : state->name").
		helo = r.name
	}
	b.WriteString(printable(helo))
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
