// Package pfqueue reads Postfix's queue files and their bounce/defer
// logs, so that mailtee can take over the mail a stopped Postfix left
// in its queue.
//
// A queue file is a sequence of records (src/global/record.c): a type
// byte, the length of the data as base-128 digits, least significant
// first, each but the last with its high bit set, then the data. The
// types are those of src/global/rec_type.h. cleanup(8) writes them in
// three segments:
//
//	envelope  C (SIZE) T (TIME) c (CTIME) F A S (FROM) ... O R D / n o i < W f p
//	content   M (MESG, the offset of X), then N (a line) and L (a line
//	          that goes on in the next record), and w (padding)
//	extracted X (XTRA), then recipients and attributes taken from the
//	          headers, then E (END)
//
// A recipient is an R record; the records before it that belong to it
// are O (the original recipient), and the DSN ORCPT and NOTIFY values,
// written as records (o, n) or as A records (dsn_orig_rcpt=,
// notify_flags=; rec_attr_map.c). Once delivered, deferred-then-bounced
// or cancelled, qmgr overwrites the R type byte with D (REC_TYPE_DONE)
// in place; / (REC_TYPE_DRCP) is a recipient cleanup cancelled
// (qmgr_message.c). Records rewritten in place by cleanup (a header
// changed by a milter, recipients appended) leave a p (PTR) record
// that jumps to their new place and back; a PTR of 0 is a placeholder.
// Files postdrop(1) wrote into maildrop have not been through cleanup:
// no SIZE record (or one of all ones that only carries sendopts), the
// sender's rewrite context as an attribute, and the recipients sendmail
// -t found in the headers after XTRA.
package pfqueue

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Record types, from src/global/rec_type.h.
const (
	TypeSize      = 'C'
	TypeTime      = 'T'
	TypeCTime     = 'c'
	TypeFull      = 'F'
	TypeInsp      = 'I'
	TypeFilt      = 'L' // in the envelope; in content, 'L' is TypeCont
	TypeFrom      = 'S'
	TypeDone      = 'D'
	TypeRcpt      = 'R'
	TypeOrcp      = 'O'
	TypeDrcp      = '/'
	TypeWarn      = 'W'
	TypeAttr      = 'A'
	TypeKill      = 'K'
	TypeRdr       = '>'
	TypeFlgs      = 'f'
	TypeDelay     = 'd'
	TypeMesg      = 'M'
	TypeCont      = 'L'
	TypeNorm      = 'N'
	TypeDtxt      = 'w'
	TypeXtra      = 'X'
	TypeRRTo      = 'r'
	TypeErrTo     = 'e'
	TypePrio      = 'P'
	TypePtr       = 'p'
	TypeVerp      = 'V'
	TypeDSNRet    = '<'
	TypeDSNEnvID  = 'i'
	TypeDSNOrcpt  = 'o'
	TypeDSNNotify = 'n'
	TypeMiltCount = 'm'
	TypeEnd       = 'E'
)

// DSN NOTIFY and RET bits, from src/global/dsn_mask.h.
const (
	NotifyNever   = 1 << 0
	NotifySuccess = 1 << 1
	NotifyFailure = 1 << 2
	NotifyDelay   = 1 << 3

	RetFull = 1 << 0
	RetHdrs = 1 << 1
)

// Limits against a damaged or hostile file: Postfix's own record
// reader takes at most an int's worth of length bits (record.c), and
// rec_goto allows 10000 reverse jumps.
const (
	maxRecord       = 1 << 30
	reverseJumpMax  = 10000
	forwardJumpsMax = 1 << 20
)

// ErrFormat marks a file that is not a well-formed queue file.
var ErrFormat = errors.New("malformed Postfix queue file")

// Record is one record: its type, its data and the offset of its type
// byte in the file.
type Record struct {
	Type byte
	Data []byte
	Off  int64
}

// ReadRecord reads the record at off in data and returns it with the
// offset of the next one.
func ReadRecord(data []byte, off int64) (Record, int64, error) {
	if off < 0 || off >= int64(len(data)) {
		return Record{}, off, fmt.Errorf("%w: offset %d: unexpected end of file", ErrFormat, off)
	}
	r := Record{Type: data[off], Off: off}
	p := off + 1
	var n int64
	for shift := uint(0); ; shift += 7 {
		if shift+7 >= 32 { // record.c: NBBY * sizeof(int)
			return r, p, fmt.Errorf("%w: offset %d: too many length bits, record type %q", ErrFormat, off, r.Type)
		}
		if p >= int64(len(data)) {
			return r, p, fmt.Errorf("%w: offset %d: unexpected end of file in the length of a record of type %q", ErrFormat, off, r.Type)
		}
		b := data[p]
		p++
		n |= int64(b&0x7f) << shift
		if b&0x80 == 0 {
			break
		}
	}
	if n > maxRecord || p+n > int64(len(data)) {
		return r, p, fmt.Errorf("%w: offset %d: record of type %q: length %d past the end of the file", ErrFormat, off, r.Type, n)
	}
	r.Data = data[p : p+n]
	return r, p + n, nil
}

// Rcpt is one envelope recipient of a queue file.
type Rcpt struct {
	Addr string // the address to deliver to ("" is a valid, if odd, recipient)
	Orig string // the original recipient (O record), "" when not recorded
	// DSNOrcpt is the DSN ORCPT, as Postfix keeps it: "type;address"
	// (rfc822;user@example.com), xtext decoded.
	DSNOrcpt string
	Notify   int // NOTIFY bits (Notify*), 0 when not given
	// Done marks a recipient Postfix has finished with (delivered,
	// bounced into the bounce log, or cancelled): a D or / record.
	Done bool
	// Extracted marks a recipient of the extracted segment (after
	// XTRA): sendmail -t's, before cleanup.
	Extracted bool
	Off       int64 // the offset of its record, which the bounce/defer logs name
}

// Message is what a queue file says.
type Message struct {
	Arrival  time.Time // T: when Postfix accepted it
	Created  time.Time // c (or A create_time): zero when absent
	Sender   string    // S: "" for the null sender
	HasFrom  bool
	FullName string // F
	// ContentSize is the message content's size from the SIZE record;
	// -1 when there is none (a maildrop file).
	ContentSize int64
	// SendOpts is the SIZE record's sixth field (SMTPUTF8 request bits).
	SendOpts int
	Rcpts    []Rcpt
	EnvID    string // DSN ENVID ("" when not given)
	Ret      int    // DSN RET bits (RetFull, RetHdrs), 0 when not given
	// Attrs are the named attributes (A records) that are not mapped to
	// record types: rewrite_context, encoding, log_client_name, ...; a
	// later one overrides an earlier (the extracted segment overrides
	// the envelope, as in qmgr_message.c).
	Attrs    map[string]string
	Flags    int       // f: cleanup flags (postdrop's, or HOLD etc.)
	Warn     time.Time // W: when a delay warning is due; zero when none
	Filter   string    // L in the envelope: content_filter in force
	Redirect string    // >: a redirect address (access table REDIRECT)
	Verp     string    // V: VERP delimiters
	ErrorsTo string    // e
	// Content is the message, header and body, with LF line endings,
	// as the N and L records spell it.
	Content []byte
	// Complete says an END record was found.
	Complete bool
	// Warnings are the oddities Postfix too would log and skip.
	Warnings []string
}

// Pending are the recipients still to deliver.
func (m *Message) Pending() []Rcpt {
	var out []Rcpt
	for _, r := range m.Rcpts {
		if !r.Done {
			out = append(out, r)
		}
	}
	return out
}

// Read parses a whole queue file. It follows PTR records as rec_goto
// does, and returns an error that wraps ErrFormat when the file is
// damaged or incomplete (no END record).
func Read(data []byte) (*Message, error) {
	m := &Message{ContentSize: -1, Attrs: map[string]string{}}
	var (
		off          int64
		seg          = 'e' // envelope, content, extracted
		orig, dorcpt string
		notify       int
		savedJump    int64
		reverse      int
		forward      int
		pending      []byte // content of L records not ended yet
	)
	warn := func(format string, args ...any) {
		if len(m.Warnings) < 100 {
			m.Warnings = append(m.Warnings, fmt.Sprintf(format, args...))
		}
	}
	clearRcpt := func() { orig, dorcpt, notify = "", "", 0 }
	for {
		r, next, err := ReadRecord(data, off)
		if err != nil {
			return m, err
		}
		off = next
		typ, val := r.Type, r.Data
		if typ == TypePtr {
			to, err := strconv.ParseInt(strings.TrimSpace(string(val)), 10, 64)
			if err != nil || to < 0 {
				return m, fmt.Errorf("%w: offset %d: malformed pointer record %q", ErrFormat, r.Off, val)
			}
			if to == 0 {
				continue // a placeholder
			}
			if to <= savedJump {
				if reverse++; reverse > reverseJumpMax {
					return m, fmt.Errorf("%w: too many reverse jump records", ErrFormat)
				}
			} else if forward++; forward > forwardJumpsMax {
				return m, fmt.Errorf("%w: too many jump records", ErrFormat)
			}
			savedJump, off = to, to
			continue
		}
		if typ == TypeDtxt {
			continue
		}
		if typ == TypeEnd {
			m.Complete = true
			break
		}
		if seg == 'c' {
			switch typ {
			case TypeNorm:
				m.Content = append(m.Content, pending...)
				m.Content = append(m.Content, val...)
				m.Content = append(m.Content, '\n')
				pending = pending[:0]
			case TypeCont:
				pending = append(pending, val...)
			case TypeXtra:
				if len(pending) > 0 {
					// A last line without newline: Postfix writes it
					// with one (smtp's and local's output do).
					m.Content = append(append(m.Content, pending...), '\n')
					pending = pending[:0]
				}
				seg = 'x'
			default:
				return m, fmt.Errorf("%w: offset %d: record type %q in the message content", ErrFormat, r.Off, typ)
			}
			continue
		}
		if typ == TypeAttr {
			name, value, ok := splitNameval(string(val))
			if !ok {
				warn("offset %d: bad attribute record %q", r.Off, val)
				continue
			}
			switch name { // rec_attr_map.c
			case "dsn_orig_rcpt":
				typ, val = TypeDSNOrcpt, []byte(value)
			case "notify_flags":
				typ, val = TypeDSNNotify, []byte(value)
			case "envelope_id":
				typ, val = TypeDSNEnvID, []byte(value)
			case "ret_flags":
				typ, val = TypeDSNRet, []byte(value)
			case "create_time":
				typ, val = TypeCTime, []byte(value)
			default:
				m.Attrs[name] = value
				continue
			}
		}
		switch typ {
		case TypeRcpt, TypeDone, TypeDrcp:
			m.Rcpts = append(m.Rcpts, Rcpt{Addr: string(val), Orig: orig, DSNOrcpt: dorcpt, Notify: notify,
				Done: typ != TypeRcpt, Extracted: seg == 'x', Off: r.Off})
			clearRcpt()
		case TypeOrcp:
			if orig != "" {
				warn("offset %d: out-of-order original recipient <%s>", r.Off, orig)
			}
			orig = string(val)
		case TypeDSNOrcpt:
			if dorcpt != "" {
				warn("offset %d: out-of-order DSN original recipient <%s>", r.Off, dorcpt)
			}
			dorcpt = string(val)
		case TypeDSNNotify:
			n, err := strconv.Atoi(string(val))
			if err != nil || !notifyOK(n) {
				warn("offset %d: ignoring malformed DSN notify flags <%s>", r.Off, val)
				continue
			}
			notify = n
		case TypeDSNEnvID:
			m.EnvID = string(val)
		case TypeDSNRet:
			n, err := strconv.Atoi(string(val))
			if err != nil || (n != RetFull && n != RetHdrs) {
				warn("offset %d: ignoring malformed DSN RET flags <%s>", r.Off, val)
				continue
			}
			m.Ret = n
		case TypeSize:
			f := strings.Fields(string(val))
			if len(f) >= 1 {
				// postdrop's sendopts-only record has every field ~0.
				if n, err := strconv.ParseInt(f[0], 10, 64); err == nil && n >= 0 && m.ContentSize < 0 {
					m.ContentSize = n
					if len(f) >= 5 {
						if c, err := strconv.ParseInt(f[4], 10, 64); err == nil && c > 0 {
							m.ContentSize = c
						}
					}
				}
			}
			if len(f) >= 6 {
				if n, err := strconv.Atoi(f[5]); err == nil && n > 0 {
					m.SendOpts = n
				}
			}
		case TypeTime:
			if m.Arrival.IsZero() {
				m.Arrival = parseTime(string(val))
			}
		case TypeCTime:
			if m.Created.IsZero() {
				if n, err := strconv.ParseInt(strings.TrimSpace(string(val)), 10, 64); err == nil && n > 0 {
					m.Created = time.Unix(n, 0)
				}
			}
		case TypeFrom:
			if !m.HasFrom {
				m.Sender, m.HasFrom = string(val), true
			}
		case TypeFull:
			m.FullName = string(val)
		case TypeFlgs:
			if n, err := strconv.Atoi(strings.TrimSpace(string(val))); err == nil {
				m.Flags = n
			}
		case TypeWarn:
			if n, err := strconv.ParseInt(strings.TrimSpace(string(val)), 10, 64); err == nil && n > 0 {
				m.Warn = time.Unix(n, 0)
			}
		case TypeFilt:
			m.Filter = string(val)
		case TypeRdr:
			m.Redirect = string(val)
		case TypeVerp:
			m.Verp = string(val)
		case TypeErrTo:
			m.ErrorsTo = string(val)
		case TypeMesg:
			if seg != 'e' {
				return m, fmt.Errorf("%w: offset %d: second message content", ErrFormat, r.Off)
			}
			seg = 'c'
		case TypeXtra:
			seg = 'x' // a file without content (cannot come from cleanup)
		case TypeKill, TypeInsp, TypeDelay, TypeRRTo, TypePrio, TypeMiltCount:
			// Nothing mailtee keeps: a killed record, a content
			// inspector, cleanup's delay, return-receipt, priority.
		default:
			warn("offset %d: unknown record type %q", r.Off, typ)
		}
	}
	if orig != "" || dorcpt != "" {
		warn("dangling original recipient <%s> without recipient", orig+dorcpt)
	}
	return m, nil
}

// notifyOK is DSN_NOTIFY_OK: NEVER alone, or any of the others.
func notifyOK(n int) bool {
	return n == NotifyNever || (n != 0 && n&^(NotifySuccess|NotifyFailure|NotifyDelay) == 0)
}

// parseTime reads REC_TYPE_TIME's "seconds [microseconds]".
func parseTime(s string) time.Time {
	f := strings.Fields(s)
	if len(f) == 0 {
		return time.Time{}
	}
	sec, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil || sec <= 0 {
		return time.Time{}
	}
	var usec int64
	if len(f) > 1 {
		if u, err := strconv.ParseInt(f[1], 10, 64); err == nil && u >= 0 && u < 1e6 {
			usec = u
		}
	}
	return time.Unix(sec, usec*1000)
}

// splitNameval is split_nameval(3): "name = value" with blanks around
// both trimmed; the name must not be empty.
func splitNameval(s string) (name, value string, ok bool) {
	name, value, ok = strings.Cut(s, "=")
	if !ok {
		return "", "", false
	}
	name, value = strings.TrimSpace(name), strings.TrimSpace(value)
	return name, value, name != ""
}

// NotifyString renders NOTIFY bits as the SMTP parameter value:
// "NEVER" or a comma-separated list of SUCCESS, FAILURE, DELAY.
func NotifyString(n int) string {
	if n == 0 {
		return ""
	}
	if n&NotifyNever != 0 {
		return "NEVER"
	}
	var out []string
	for _, b := range []struct {
		bit  int
		name string
	}{{NotifySuccess, "SUCCESS"}, {NotifyFailure, "FAILURE"}, {NotifyDelay, "DELAY"}} {
		if n&b.bit != 0 {
			out = append(out, b.name)
		}
	}
	return strings.Join(out, ",")
}

// RetString renders RET bits as the SMTP parameter value.
func RetString(n int) string {
	switch n {
	case RetFull:
		return "FULL"
	case RetHdrs:
		return "HDRS"
	}
	return ""
}

// LogEntry is one recipient's entry in a bounce, defer or trace log
// (src/global/bounce_log.c).
type LogEntry struct {
	Recipient string // as logged: quoted as RFC 822 local parts are, "<>" for the null address
	Orig      string
	Offset    int64 // the recipient's record in the queue file
	DSNOrcpt  string
	Notify    int
	Status    string // enhanced status code
	Action    string // failed, delayed, delivered, ...
	Reason    string
	DiagType  string
	DiagText  string
	MTAType   string
	MTAName   string
}

// ReadLog parses a bounce/defer/trace log: entries separated by blank
// lines, each a list of "name=value" lines, possibly preceded by an
// old-style "<recipient>: reason" line (bounce_log_read). Unknown names
// are ignored, as there; malformed lines are skipped.
func ReadLog(data []byte) []LogEntry {
	var out []LogEntry
	var cur *LogEntry
	for _, line := range bytes.Split(data, []byte("\n")) {
		s := string(line)
		if s == "" {
			cur = nil
			continue
		}
		if cur == nil {
			out = append(out, LogEntry{})
			cur = &out[len(out)-1]
		}
		if s[0] == '<' { // old style
			if i := strings.Index(s, ">: "); i > 0 {
				if cur.Recipient == "" {
					cur.Recipient = s[1:i]
				}
				if cur.Reason == "" {
					cur.Reason = strings.TrimLeft(s[i+2:], " \t")
				}
			}
			continue
		}
		name, value, ok := splitNameval(s)
		if !ok {
			continue
		}
		switch name {
		case "recipient":
			cur.Recipient = value
		case "original_recipient":
			cur.Orig = value
		case "offset":
			if n, err := strconv.ParseInt(value, 10, 64); err == nil && n > 0 {
				cur.Offset = n
			}
		case "dsn_orig_rcpt":
			cur.DSNOrcpt = value
		case "notify_flags":
			if n, err := strconv.Atoi(value); err == nil && notifyOK(n) {
				cur.Notify = n
			}
		case "status":
			cur.Status = value
		case "action":
			cur.Action = value
		case "reason":
			cur.Reason = value
		case "diag_type":
			cur.DiagType = value
		case "diag_text":
			cur.DiagText = value
		case "mta_type":
			cur.MTAType = value
		case "mta_mname":
			cur.MTAName = value
		}
	}
	// Entries without a recipient (a torn write) say nothing usable.
	keep := out[:0]
	for _, e := range out {
		if e.Recipient != "" {
			keep = append(keep, e)
		}
	}
	return keep
}

// UnquoteLogAddr undoes quote_822_local on a logged address, which
// quotes a local part with specials ("a b"@example.com), and maps
// "<>" to "".
func UnquoteLogAddr(s string) string {
	if s == "<>" {
		return ""
	}
	if !strings.HasPrefix(s, `"`) {
		return s
	}
	at := strings.LastIndex(s, `"@`)
	local, rest := s, ""
	if at > 0 {
		local, rest = s[:at+1], s[at+1:]
	}
	if len(local) < 2 || !strings.HasSuffix(local, `"`) {
		return s
	}
	var b strings.Builder
	in := local[1 : len(local)-1]
	for i := 0; i < len(in); i++ {
		if in[i] == '\\' && i+1 < len(in) {
			i++
		}
		b.WriteByte(in[i])
	}
	return b.String() + rest
}
