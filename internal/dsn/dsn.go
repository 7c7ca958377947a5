// Package dsn builds delivery status notifications (bounces and delay
// warnings) in the format of RFC 3464, worded and laid out as Postfix's
// bounce(8) daemon does, so that senders, their mail clients and bounce
// processors see what they would from Postfix.
//
// A notification is a multipart/report; report-type=delivery-status
// message (RFC 6522) with three parts:
//
//  1. text/plain: Postfix's built-in template ("This is the mail system at
//     host X. I'm sorry to have to inform you ...") and one paragraph per
//     recipient, "<rcpt>: host mx[ip] said: ...", wrapped at 79 columns
//     with a four-blank indent;
//  2. message/delivery-status: the per-message fields (Reporting-MTA,
//     X-$mail_name-Queue-ID, as Postfix has X-Postfix-Queue-ID,
//     X-$mail_name-Sender, Arrival-Date), then per recipient Final-Recipient,
//     Original-Recipient, Action, Status, Remote-MTA, Diagnostic-Code and
//     the optional dates;
//  3. message/rfc822 with the returned message, or text/rfc822-headers
//     with its header section when the message is larger than the limit
//     (Postfix's bounce_size_limit) or was not supplied.
//
// When a recipient address is not ASCII (SMTPUTF8 mail) the report part is
// message/global-delivery-status and the address type "utf-8" (RFC 6533).
package dsn

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/textproto"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// DefaultMaxOriginal is Postfix's bounce_size_limit default: how much of
// the original message a notification may return.
const DefaultMaxOriginal = 50000

// Recipient is the delivery status of one recipient.
type Recipient struct {
	Final    string // the address delivery was attempted to
	Original string // the address as the sender gave it ("" if unknown)
	// Action is "failed" or "delayed" (or "delivered", "relayed",
	// "expanded" for success reports); "" means "failed" in a bounce and
	// "delayed" in a delay warning.
	Action string
	// Status is the RFC 3463 status code, "5.1.1".
	Status string
	// RemoteMTA is the host name of the server that answered, "" if none
	// did (connection failures, local errors).
	RemoteMTA string
	// Diagnostic is "type; text": "smtp; 550 5.1.1 <x>: user unknown".
	// Without a type it is reported as "X-$mail_name; text", as Postfix
	// reports its own errors ("X-Postfix; ...").
	Diagnostic string
	// Reason is the text for the human-readable part, as the log shows it
	// in parentheses: "host mx.example.com[192.0.2.1] said: 550 5.1.1
	// <x>: user unknown (in reply to RCPT TO command)". "" means one made
	// from RemoteMTA and Diagnostic.
	Reason      string
	LastAttempt time.Time // zero to leave Last-Attempt-Date out
	// ORcpt is the DSN ORCPT the client gave ("rfc822;addr"): reported
	// as Original-Recipient in preference to Original, as Postfix's
	// bounce_notify_util.c does.
	ORcpt string
}

// Report is a notification to build.
type Report struct {
	ReportingMTA string // myhostname
	// MailName is mail_name, which names the X-NAME-Queue-ID and
	// X-NAME-Sender fields and the X-NAME diagnostic type, as
	// Postfix's bounce_notify_util.c does; "" means mailtee's default,
	// "mailtee".
	MailName string
	QueueID  string // the original message's queue ID
	// From is the notification's sender address, MAILER-DAEMON@myhostname
	// if empty; it is shown as "Mail Delivery System".
	From string
	// To is who gets the notification: the original sender, or postmaster.
	To string
	// Sender is the original message's envelope sender, reported as
	// X-$mail_name-Sender and as the returned message's Return-Path; "" to
	// leave both out.
	Sender     string
	Arrival    time.Time // when the original was received; zero to omit
	Recipients []Recipient
	// Headers is the original message's header section, returned as
	// text/rfc822-headers when Original is nil or too large.
	Headers []byte
	// Original is the original message, returned whole as message/rfc822
	// when it is at most MaxOriginal bytes (Postfix's bounce_size_limit;
	// DefaultMaxOriginal if MaxOriginal <= 0); a larger one is returned
	// as its header section only, however long that is (up to 1 MB), so
	// that the MIME structure is never cut.
	Original    io.Reader
	MaxOriginal int64
	// Postmaster marks a notification to postmaster rather than to the
	// sender: Postfix's "Postmaster Copy: Undelivered Mail" subject and,
	// per RFC 3834, "Auto-Submitted: auto-generated".
	Postmaster bool
	// Delayed makes this a delay warning ("Delayed Mail (still being
	// retried)") rather than a bounce.
	Delayed bool
	// Threaded links the notification to the original message with
	// In-Reply-To: and References: (Postfix's enable_threaded_bounces,
	// off by default there: a reader who deletes the thread deletes the
	// original too).
	Threaded bool
	// WarnAfter and Lifetime are delay_warning_time and
	// maximal_queue_lifetime, quoted in a delay warning's text; Lifetime
	// also gives the Will-Retry-Until field. Zero leaves them out.
	WarnAfter, Lifetime time.Duration
	// EnvID is the DSN ENVID the client gave, reported as
	// Original-Envelope-Id; HeadersOnly is its RET=HDRS: only the
	// header section is returned (RFC 3461 4.3).
	EnvID       string
	HeadersOnly bool
}

// Postfix's default templates (src/bounce/bounce_templates.c).
const (
	subjectFailure    = "Undelivered Mail Returned to Sender"
	subjectFailurePM  = "Postmaster Copy: Undelivered Mail"
	subjectDelay      = "Delayed Mail (still being retried)"
	subjectDelayPM    = "Postmaster Warning: Delayed Mail"
	fromName          = "Mail Delivery System"
	defaultMailName   = "mailtee" // mail_name's default in mailtee
	wrapLength        = 79        // bounce_notify_util.c: LENGTH
	wrapIndent        = 4         // bounce_notify_util.c: INDENT
	dateLayout        = "Mon, 2 Jan 2006 15:04:05 -0700 (MST)"
	maxBoundaryLength = 70  // RFC 2046
	maxLine           = 900 // well within RFC 5322's 998
)

var failureBody = []string{
	"This is the mail system at host $myhostname.",
	"",
	"I'm sorry to have to inform you that your message could not",
	"be delivered to one or more recipients. It's attached below.",
	"",
	"For further assistance, please send mail to postmaster.",
	"",
	"If you do so, please include this problem report. You can",
	"delete your own text from the attached returned message.",
	"",
	"                   The mail system",
}

var delayBody = []string{
	"This is the mail system at host $myhostname.",
	"",
	"####################################################################",
	"# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #",
	"####################################################################",
	"",
	"$delay",
	"$lifetime",
	"",
	"For further assistance, please send mail to postmaster.",
	"",
	"If you do so, please include this problem report. You can",
	"delete your own text from the attached returned message.",
	"",
	"                   The mail system",
}

// statusRE is RFC 3464's status-code: class "." subject "." detail, with
// class 2, 4 or 5 and up to three digits each (RFC 3463).
var statusRE = regexp.MustCompile(`^[245]\.[0-9]{1,3}\.[0-9]{1,3}$`)

var actions = map[string]bool{"failed": true, "delayed": true, "delivered": true, "relayed": true, "expanded": true}

// Build returns the notification as a complete message with CRLF line
// endings, ready to be queued with the null sender. now is its Date: and
// msgID its Message-Id ("" makes one from the queue ID and host name).
func Build(r *Report, now time.Time, msgID string) ([]byte, error) {
	if err := r.check(); err != nil {
		return nil, err
	}
	from := r.From
	if from == "" {
		from = "MAILER-DAEMON@" + r.ReportingMTA
	}
	if msgID = strings.Trim(msgID, "<> "); msgID == "" {
		msgID = now.UTC().Format("20060102150405") + "." + r.QueueID + "@" + r.ReportingMTA
	}
	if err := checkHeaderText("message ID", msgID); err != nil {
		return nil, err
	}

	orig, err := r.original()
	if err != nil {
		return nil, err
	}

	global := false // SMTPUTF8: RFC 6533 report and address types
	for _, rc := range r.Recipients {
		if !isASCII(rc.Final) || !isASCII(rc.Original) {
			global = true
		}
	}

	text := r.textPart(now)
	status := r.statusPart(global)
	eightBit := !isASCII(string(text)) || !isASCII(string(status)) ||
		(orig != nil && !isASCII(string(orig.body)))

	boundary := r.boundary(now, text, status, orig)

	var b bytes.Buffer
	w := func(lines ...string) {
		for _, l := range lines {
			b.WriteString(l)
			b.WriteString("\r\n")
		}
	}
	subject := subjectFailure
	switch {
	case r.Delayed && r.Postmaster:
		subject = subjectDelayPM
	case r.Delayed:
		subject = subjectDelay
	case r.Postmaster:
		subject = subjectFailurePM
	}
	w("From: "+fromName+" <"+quoteAddr(from)+">",
		"To: "+quoteAddr(r.To),
		"Subject: "+subject,
		"Date: "+now.Format(dateLayout),
		"Message-Id: <"+msgID+">")
	if r.Threaded && orig != nil && orig.msgID != "" {
		w("In-Reply-To: "+orig.msgID, "References: "+orig.msgID)
	}
	if r.Postmaster {
		w("Auto-Submitted: auto-generated")
	} else {
		w("Auto-Submitted: auto-replied")
	}
	w("MIME-Version: 1.0",
		"Content-Type: multipart/report; report-type=delivery-status;",
		"\tboundary=\""+boundary+"\"")
	if eightBit {
		w("Content-Transfer-Encoding: 8bit")
	} else {
		w("Content-Transfer-Encoding: 7bit")
	}
	w("", "This is a MIME-encapsulated message.", "")

	w("--"+boundary, "Content-Description: Notification")
	if isASCII(string(text)) {
		w("Content-Type: text/plain; charset=us-ascii")
	} else {
		w("Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 8bit")
	}
	w("")
	b.Write(text)

	w("", "--"+boundary, "Content-Description: Delivery report")
	if global {
		w("Content-Type: message/global-delivery-status", "Content-Transfer-Encoding: 8bit")
	} else {
		w("Content-Type: message/delivery-status")
	}
	w("")
	b.Write(status)

	if orig != nil {
		w("", "--"+boundary)
		if orig.headersOnly {
			w("Content-Description: Undelivered Message Headers")
			if orig.utf8Headers {
				w("Content-Type: message/global-headers")
			} else {
				w("Content-Type: text/rfc822-headers")
			}
		} else {
			w("Content-Description: Undelivered Message")
			if orig.utf8Headers {
				w("Content-Type: message/global")
			} else {
				w("Content-Type: message/rfc822")
			}
		}
		if isASCII(string(orig.body)) {
			w("Content-Transfer-Encoding: 7bit")
		} else {
			w("Content-Transfer-Encoding: 8bit")
		}
		w("")
		b.Write(orig.body)
	}
	w("", "--"+boundary+"--")
	return b.Bytes(), nil
}

// check validates what goes into header fields and report fields: a
// notification with a broken structure would itself bounce, to nobody.
func (r *Report) check() error {
	if r.ReportingMTA == "" || strings.ContainsAny(r.ReportingMTA, " \t;\"") {
		return fmt.Errorf("dsn: bad reporting MTA name %q", r.ReportingMTA)
	}
	if r.To == "" {
		return errors.New("dsn: no recipient for the notification (null sender?)")
	}
	if len(r.Recipients) == 0 {
		return fmt.Errorf("dsn: %s: no recipients to report", r.QueueID)
	}
	for _, f := range [][2]string{{"reporting MTA", r.ReportingMTA}, {"queue ID", r.QueueID},
		{"From", r.From}, {"To", r.To}, {"sender", r.Sender}} {
		if err := checkHeaderText(f[0], f[1]); err != nil {
			return err
		}
	}
	for i, rc := range r.Recipients {
		if rc.Final == "" {
			return fmt.Errorf("dsn: %s: recipient %d has no final address", r.QueueID, i)
		}
		for _, f := range [][2]string{{"final recipient", rc.Final},
			{"original recipient", rc.Original}, {"remote MTA", rc.RemoteMTA}} {
			if err := checkHeaderText(f[0], f[1]); err != nil {
				return fmt.Errorf("%w (queue ID %s)", err, r.QueueID)
			}
		}
		if !statusRE.MatchString(rc.Status) {
			return fmt.Errorf("dsn: %s: <%s>: bad status code %q, want x.y.z with x 2, 4 or 5", r.QueueID, rc.Final, rc.Status)
		}
		if rc.Action != "" && !actions[rc.Action] {
			return fmt.Errorf("dsn: %s: <%s>: bad action %q", r.QueueID, rc.Final, rc.Action)
		}
	}
	return nil
}

// checkHeaderText refuses control characters (CR and LF above all) and
// invalid UTF-8 in what is written into a header or report field.
func checkHeaderText(what, s string) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("dsn: %s %q is not valid UTF-8", what, s)
	}
	for _, c := range s {
		if c < ' ' || c == 0x7f {
			return fmt.Errorf("dsn: %s %q contains a control character", what, s)
		}
	}
	return nil
}

// textPart is the human-readable notification.
func (r *Report) textPart(now time.Time) []byte {
	var b bytes.Buffer
	body := failureBody
	if r.Delayed {
		body = delayBody
	}
	for _, l := range body {
		switch l {
		case "$delay":
			d := r.WarnAfter
			if d <= 0 && !r.Arrival.IsZero() {
				d = now.Sub(r.Arrival)
			}
			if d <= 0 {
				continue
			}
			l = "Your message could not be delivered for more than " + units(d, time.Hour, "hour") + "."
		case "$lifetime":
			if r.Lifetime <= 0 {
				continue
			}
			l = "It will be retried until it is " + units(r.Lifetime, 24*time.Hour, "day") + " old."
		default:
			l = strings.ReplaceAll(l, "$myhostname", r.ReportingMTA)
		}
		b.WriteString(l)
		b.WriteString("\r\n")
	}
	for _, rc := range r.Recipients {
		var line string
		if rc.Original != "" && !strings.EqualFold(rc.Original, rc.Final) {
			line = fmt.Sprintf("<%s> (expanded from <%s>): %s", rc.Final, rc.Original, printable(rc.reason(), false))
		} else {
			line = fmt.Sprintf("<%s>: %s", rc.Final, printable(rc.reason(), false))
		}
		b.WriteString("\r\n")
		for _, l := range lineWrap(line, wrapLength, wrapIndent) {
			b.WriteString(l)
			b.WriteString("\r\n")
		}
	}
	return b.Bytes()
}

// units formats d as Postfix's bounce templates do with the _hours and
// _days suffixes (integer division), stepping down to the next smaller
// unit where that would print 0.
func units(d, unit time.Duration, name string) string {
	if d < unit {
		if unit == 24*time.Hour {
			unit, name = time.Hour, "hour"
		}
		if d < unit {
			unit, name = time.Minute, "minute"
		}
	}
	return strconv.FormatInt(int64(d/unit), 10) + " " + name + "(s)"
}

// reason is the recipient's paragraph text.
func (rc *Recipient) reason() string {
	if rc.Reason != "" {
		return rc.Reason
	}
	typ, text := splitDiagnostic(rc.Diagnostic)
	switch {
	case text != "" && rc.RemoteMTA != "" && strings.EqualFold(typ, "smtp"):
		return "host " + rc.RemoteMTA + " said: " + text
	case text != "":
		return text
	}
	return "delivery status " + rc.Status
}

// splitDiagnostic splits "type; text"; a value without a type has the
// type "".
func splitDiagnostic(s string) (typ, text string) {
	if t, x, ok := strings.Cut(s, ";"); ok && isAtom(strings.TrimSpace(t)) {
		return strings.TrimSpace(t), strings.TrimSpace(x)
	}
	return "", strings.TrimSpace(s)
}

// isAtom reports whether s is an RFC 5322 atom, as a diagnostic-type or
// address-type must be.
func isAtom(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`()<>@,;:\".[]`, c) >= 0 {
			return false
		}
	}
	return true
}

// statusPart is the message/delivery-status body (RFC 3464 section 2).
func (r *Report) statusPart(global bool) []byte {
	var b bytes.Buffer
	field := func(name, value string) {
		for _, l := range lineWrap(name+": "+value, wrapLength, wrapIndent) {
			b.WriteString(l)
			b.WriteString("\r\n")
		}
	}
	addrType := func(a string) string {
		if global && !isASCII(a) {
			return "utf-8; " + a
		}
		return "rfc822; " + a
	}

	field("Reporting-MTA", "dns; "+r.ReportingMTA)
	if r.EnvID != "" {
		field("Original-Envelope-Id", r.EnvID)
	}
	if r.QueueID != "" {
		field("X-"+r.dsnName()+"-Queue-ID", r.QueueID)
	}
	if r.Sender != "" {
		field("X-"+r.dsnName()+"-Sender", addrType(r.Sender))
	}
	if !r.Arrival.IsZero() {
		field("Arrival-Date", r.Arrival.Format(dateLayout))
	}
	for _, rc := range r.Recipients {
		b.WriteString("\r\n")
		field("Final-Recipient", addrType(rc.Final))
		if typ, addr, ok := strings.Cut(rc.ORcpt, ";"); ok && typ != "" && addr != "" {
			field("Original-Recipient", rc.ORcpt)
		} else if rc.Original != "" {
			field("Original-Recipient", addrType(rc.Original))
		}
		action := rc.Action
		if action == "" {
			action = "failed"
			if r.Delayed {
				action = "delayed"
			}
		}
		field("Action", action)
		field("Status", rc.Status)
		if rc.RemoteMTA != "" {
			field("Remote-MTA", "dns; "+rc.RemoteMTA)
		}
		if typ, text := splitDiagnostic(rc.Diagnostic); typ != "" && text != "" {
			field("Diagnostic-Code", typ+"; "+printable(text, !global))
		} else if text := rc.Diagnostic; text != "" || rc.Reason != "" {
			if text == "" {
				text = rc.Reason
			}
			field("Diagnostic-Code", "X-"+r.dsnName()+"; "+printable(text, !global))
		}
		if !rc.LastAttempt.IsZero() {
			field("Last-Attempt-Date", rc.LastAttempt.Format(dateLayout))
		}
		if action == "delayed" && r.Lifetime > 0 && !r.Arrival.IsZero() {
			field("Will-Retry-Until", r.Arrival.Add(r.Lifetime).Format(dateLayout))
		}
	}
	return b.Bytes()
}

// printable masks what must not reach a notification from a remote reply:
// control characters and invalid UTF-8, and non-ASCII text where only
// ASCII is allowed; as Postfix's printable(), with '?'.
func printable(s string, ascii bool) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == utf8.RuneError, r < ' ', r == 0x7f, ascii && r >= utf8.RuneSelf:
			return '?'
		}
		return r
	}, s)
}

// lineWrap is Postfix's line_wrap (src/util/line_wrap.c): break s at
// blanks into lines of at most length columns, continuation lines indented
// by indent; a word longer than a line stays whole.
func lineWrap(s string, length, indent int) []string {
	var out []string
	curIndent, curLen := 0, length
	if indent < 0 {
		curIndent, curLen = -indent, length+indent
	}
	emit := func(line string) {
		line = strings.Repeat(" ", curIndent) + strings.TrimRight(line, " \t\r\n\v\f")
		// Unlike Postfix, cut a word that would make the line longer
		// than RFC 5322 allows (998), rather than send a broken message.
		for len(line) > maxLine {
			cut := maxLine
			for !utf8.RuneStart(line[cut]) {
				cut--
			}
			out = append(out, line[:cut])
			line = strings.Repeat(" ", curIndent+indent) + line[cut:]
		}
		out = append(out, line)
	}
	start, word := 0, 0
	for word >= 0 {
		nextSpace := strings.IndexAny(s[word:], " \t")
		if nextSpace < 0 {
			nextSpace = len(s)
		} else {
			nextSpace += word
		}
		if word > start && nextSpace-start > curLen {
			emit(s[start:word])
			for word < len(s) && isSpace(s[word]) {
				word++
			}
			if start == 0 {
				curIndent += indent
				curLen -= indent
			}
			start = word
		}
		if nextSpace < len(s) {
			word = nextSpace + 1
		} else {
			word = -1
		}
	}
	emit(s[start:])
	return out
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f'
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// quoteAddr writes an address for a header: as is when its local part is
// a dot-atom, else with the local part quoted (RFC 5322 section 3.4.1).
func quoteAddr(a string) string {
	i := strings.LastIndexByte(a, '@')
	local, domain := a, ""
	if i >= 0 {
		local, domain = a[:i], a[i:]
	}
	if isDotAtom(local) {
		return a
	}
	var b strings.Builder
	b.WriteByte('"')
	for _, c := range local {
		if c == '"' || c == '\\' {
			b.WriteByte('\\')
		}
		b.WriteRune(c)
	}
	b.WriteByte('"')
	return b.String() + domain
}

func isDotAtom(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for _, c := range s {
		if c < utf8.RuneSelf && c != '.' && !isAtom(string(c)) {
			return false
		}
	}
	return true
}

// returned is the third part's content.
type returned struct {
	body        []byte // CRLF line endings, ending in CRLF
	headersOnly bool
	utf8Headers bool   // SMTPUTF8 headers: message/global(-headers)
	msgID       string // the original's Message-ID, for In-Reply-To
}

// original reads what will be returned of the original message.
func (r *Report) original() (*returned, error) {
	max := r.MaxOriginal
	if max <= 0 {
		max = DefaultMaxOriginal
	}
	var data []byte
	headersOnly := true
	switch {
	case r.Original != nil:
		var err error
		data, err = io.ReadAll(io.LimitReader(r.Original, max+1))
		if err != nil {
			return nil, fmt.Errorf("dsn: %s: reading the original message: %w", r.QueueID, err)
		}
		if int64(len(data)) <= max && !r.HeadersOnly {
			headersOnly = false
		} else if r.Headers != nil {
			data = r.Headers
		} else if data, err = readHeaderSection(data, r.Original); err != nil {
			return nil, fmt.Errorf("dsn: %s: reading the original message: %w", r.QueueID, err)
		}
	case r.Headers != nil:
		data = r.Headers
	default:
		return nil, nil
	}
	if headersOnly {
		data = headerSection(data)
	}
	body := crlf(data)
	if r.Sender != "" && !bytes.HasPrefix(bytes.ToLower(body), []byte("return-path:")) {
		body = append([]byte("Return-Path: <"+r.Sender+">\r\n"), body...)
	}
	hdr := headerSection(body)
	ret := &returned{body: body, headersOnly: headersOnly, utf8Headers: !isASCII(string(hdr))}
	if h, err := textproto.NewReader(bufio.NewReader(bytes.NewReader(append(hdr, "\r\n"...)))).ReadMIMEHeader(); err == nil {
		if id := strings.TrimSpace(h.Get("Message-Id")); strings.HasPrefix(id, "<") && strings.HasSuffix(id, ">") &&
			!strings.ContainsAny(id, " \t\r\n") {
			ret.msgID = id
		}
	}
	return ret, nil
}

// maxHeaderSection bounds the header section returned when the message is
// too large to return whole: Postfix returns every header record, which
// its cleanup has bounded; this keeps a notification's memory bounded
// whatever the queue file holds.
const maxHeaderSection = 1 << 20

// readHeaderSection returns head, the start of a message, extended from
// rest up to the blank line that ends the header section (or
// maxHeaderSection bytes), when head does not reach it: a limit smaller
// than the header section must not cut it.
func readHeaderSection(head []byte, rest io.Reader) ([]byte, error) {
	buf := head
	chunk := make([]byte, 32<<10)
	for !endsHeader(buf) && len(buf) < maxHeaderSection {
		n, err := rest.Read(chunk[:min(len(chunk), maxHeaderSection-len(buf))])
		buf = append(buf, chunk[:n]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	return buf, nil
}

// endsHeader reports whether msg holds the blank line after its header
// section.
func endsHeader(msg []byte) bool {
	return bytes.HasPrefix(msg, []byte("\n")) || bytes.HasPrefix(msg, []byte("\r\n")) ||
		bytes.Contains(msg, []byte("\n\n")) || bytes.Contains(msg, []byte("\n\r\n"))
}

// headerSection returns the header lines of a message, without the blank
// line that ends them; when no blank line is found (a cut message), the
// complete lines.
func headerSection(msg []byte) []byte {
	for i := 0; i < len(msg); {
		j := bytes.IndexByte(msg[i:], '\n')
		if j < 0 {
			break
		}
		line := msg[i : i+j]
		if len(line) == 0 || (len(line) == 1 && line[0] == '\r') {
			return msg[:i]
		}
		i += j + 1
	}
	if i := bytes.LastIndexByte(msg, '\n'); i >= 0 {
		return msg[:i+1]
	}
	return nil
}

// crlf returns data with every line ending in CRLF.
func crlf(data []byte) []byte {
	out := make([]byte, 0, len(data)+len(data)/32+2)
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		var line []byte
		if i < 0 {
			line, data = data, nil
		} else {
			line, data = data[:i], data[i+1:]
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		out = append(out, line...)
		out = append(out, '\r', '\n')
	}
	return out
}

// boundary is Postfix's "QUEUEID.TIME/HOST", made unique against the
// content it separates.
func (r *Report) boundary(now time.Time, parts ...any) string {
	id := r.QueueID
	if id == "" {
		id = "mailtee"
	}
	base := id + "." + strconv.FormatInt(now.Unix(), 10) + "/" + r.ReportingMTA
	if len(base) > maxBoundaryLength-4 {
		base = base[:maxBoundaryLength-4]
	}
	base = strings.Map(func(c rune) rune {
		// RFC 2046 bchars, less the blank.
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			strings.ContainsRune("'()+_,-./:=?", c) {
			return c
		}
		return '_'
	}, base)
	var content [][]byte
	for _, p := range parts {
		switch p := p.(type) {
		case []byte:
			content = append(content, p)
		case *returned:
			if p != nil {
				content = append(content, p.body)
			}
		}
	}
	b := base
	for n := 1; ; n++ {
		clash := false
		for _, c := range content {
			if bytes.Contains(c, []byte("--"+b)) {
				clash = true
				break
			}
		}
		if !clash {
			return b
		}
		b = base + "." + strconv.Itoa(n)
	}
}

// OwnDiagnostic is a Recipient's Diagnostic for an error of this
// system's own: "X-$mail_name; text", mailName ("" for mailtee's
// default) made an atom as in Report.
func OwnDiagnostic(mailName, text string) string {
	return "X-" + atomName(mailName) + "; " + text
}

func (r *Report) dsnName() string { return atomName(r.MailName) }

// atomName is mail_name made an RFC 822 atom, as bounce_notify_util.c
// transliterates it: specials and blanks become '-'.
func atomName(n string) string {
	if n == "" {
		n = defaultMailName
	}
	return strings.Map(func(c rune) rune {
		if strings.ContainsRune(" \t\r\n()<>@,;:\\\".[]", c) {
			return '-'
		}
		return c
	}, n)
}
