// Package header reads the primary header section of a message one field
// at a time, within the bound Postfix's cleanup(8) puts on a field, so
// that what a client sends never makes a field in memory larger than
// header_size_limit, however far it is folded.
//
// The rules are Postfix's (src/global/is_header.c, src/global/mime_state.c,
// src/cleanup/cleanup_out.c, cleanup_out_header):
//
//   - A field starts with a line "name:", the name printable ASCII, with
//     optional blanks before the colon (is_header(3)); a line that starts
//     with a space or a tab continues it.
//   - The primary header ends at the first line that neither starts nor
//     continues a field: normally the empty line, but any other line too,
//     which is then the first line of the body.
//   - A field's size is counted as Postfix stores it: the text of its
//     lines, plus one byte for each line break between them.
//   - Of a field larger than header_size_limit, lines are kept whole while
//     they end within the limit; the line that crosses it is cut at the
//     limit, or dropped when the field already holds more than 90% of
//     the limit (Postfix's "nice cut"); the rest of the field, all its
//     remaining continuation lines, is discarded. It does not become
//     body: the next field, or the body, follows as sent.
//
// Postfix's cleanup logs nothing when it cuts a field; mailtee's caller
// does (Reader.Discarded says when).
package header

import (
	"bufio"
	"bytes"
	"io"
)

// Reader reads header fields from a bufio.Reader.
type Reader struct {
	br        *bufio.Reader
	limit     int
	buf       []byte
	discarded int64
	err       error // sticky: io.EOF at the end of the header
}

// NewReader reads the primary header at the start of br, keeping at
// most limit bytes of each field (no limit when limit <= 0).
func NewReader(br *bufio.Reader, limit int) *Reader {
	return &Reader{br: br, limit: limit}
}

// Next returns the next field of the primary header, its line breaks
// included; it is valid until the next call. At the end of the header it
// returns io.EOF, and br is then at the start of the body: the empty line
// that separates it from the header, or the first line of a body without
// one. Other errors are those of br.
func (r *Reader) Next() ([]byte, error) {
	r.buf, r.discarded = r.buf[:0], 0
	if r.err != nil {
		return nil, r.err
	}
	if ok, err := startsField(r.br); !ok {
		r.err = err
		if err == nil {
			r.err = io.EOF
		}
		return nil, r.err
	}
	f := fit{limit: r.limit}
	var read int64
	for first := true; ; first = false {
		if !first {
			b, _ := r.br.Peek(1) // an error shows at the next read
			if len(b) == 0 || b[0] != ' ' && b[0] != '\t' {
				break
			}
		}
		f.newLine(first)
		n, err := r.line(&f)
		read += n
		if err != nil {
			if err != io.EOF {
				r.err = err
				return nil, err
			}
			break
		}
	}
	r.discarded = read - int64(len(r.buf))
	return r.buf, nil
}

// Discarded is how many bytes of the field Next last returned were cut
// off (0 when it came whole).
func (r *Reader) Discarded() int64 { return r.discarded }

// line reads one line of a field, appending what f keeps of it to r.buf,
// and returns how many bytes it read. A CR counts as part of the line
// break only right before the LF; a line cut short still ends with the
// line break it had.
func (r *Reader) line(f *fit) (int64, error) {
	start := len(r.buf) // where this line starts in buf
	var (
		read      int64
		heldCR    bool     // a CR ended the last piece: line break or text?
		dropped   = f.full // nothing of this line is kept
		lineBreak []byte
	)
	keep := func(p []byte) {
		n, drop := f.take(len(p))
		if drop {
			r.buf, dropped = r.buf[:start], true
		}
		r.buf = append(r.buf, p[:n]...)
	}
	for {
		p, err := r.br.ReadSlice('\n')
		read += int64(len(p))
		if heldCR {
			heldCR = false
			if len(p) > 0 && p[0] == '\n' {
				lineBreak = crlf
				break
			}
			keep(cr)
		}
		switch {
		case err == nil: // p ends with LF
			text, lb := p[:len(p)-1], lf
			if len(text) > 0 && text[len(text)-1] == '\r' {
				text, lb = text[:len(text)-1], crlf
			}
			keep(text)
			lineBreak = lb
		case err == bufio.ErrBufferFull:
			if p[len(p)-1] == '\r' {
				p, heldCR = p[:len(p)-1], true
			}
			keep(p)
			continue
		default: // the input ends without a line break
			keep(p)
			return read, err
		}
		break
	}
	if !dropped {
		r.buf = append(r.buf, lineBreak...)
	}
	return read, nil
}

var (
	cr   = []byte("\r")
	lf   = []byte("\n")
	crlf = []byte("\r\n")
)

// fit applies header_size_limit to a field as Postfix does: mime_state
// stops adding to a field at the limit, and cleanup_out_header cuts the
// last line at the limit or drops it (src/cleanup/cleanup_out.c: "We
// prefer to truncate a header at the last line boundary before the
// header size limit. If this would undershoot the limit by more than
// 10%, we truncate between line boundaries").
type fit struct {
	limit     int
	size      int  // of the field so far, as Postfix counts it
	lineStart int  // size where the current line starts
	full      bool // the limit is reached: nothing more is kept
}

// newLine starts a line: in Postfix's count, the line break before a
// continuation line is one byte.
func (f *fit) newLine(first bool) {
	if !first && !f.full {
		f.size++
	}
	f.lineStart = f.size
}

// take says how many of n more bytes of the current line's text to
// keep; drop says that the part of the line kept so far goes as well.
func (f *fit) take(n int) (keep int, drop bool) {
	switch {
	case f.full:
		return 0, false
	case f.limit <= 0 || f.size+n <= f.limit:
		f.size += n
		return n, false
	}
	f.full = true
	if 10*f.lineStart > 9*f.limit { // lineStart > 0.9 * limit
		return 0, true
	}
	keep = f.limit - f.size
	f.size = f.limit
	return keep, false
}

// Cut returns field (one header field, with its line breaks) cut to limit
// bytes as Postfix's cleanup_out_header cuts every field it writes, and
// whether anything was cut. Cut bounds a field that rewriting made longer
// than the Reader had kept.
func Cut(field []byte, limit int) ([]byte, bool) {
	if limit <= 0 || len(field) <= limit {
		return field, false
	}
	f := fit{limit: limit}
	out := make([]byte, 0, limit+2)
	for pos, first := 0, true; pos < len(field) && !f.full; first = false {
		end := pos
		for end < len(field) && field[end] != '\n' {
			end++
		}
		text := field[pos:end]
		if len(text) > 0 && text[len(text)-1] == '\r' {
			text = text[:len(text)-1]
		}
		lineBreak := field[pos+len(text) : min(end+1, len(field))]
		f.newLine(first)
		n, drop := f.take(len(text))
		if drop {
			break
		}
		out = append(out, text[:n]...)
		out = append(out, lineBreak...)
		pos = end + 1
	}
	return out, len(out) < len(field)
}

// Name returns the name of a header field, without the blanks that may
// precede the colon ("Received :" is a Received: field, as Postfix's
// is_header reads it).
func Name(field []byte) []byte {
	colon := bytes.IndexByte(field, ':')
	if colon < 0 {
		return nil
	}
	return bytes.TrimRight(field[:colon], " \t")
}

// startsField reports whether the next line in br starts a header field,
// as is_header(3) decides: a name of printable ASCII other than ':',
// optional blanks, then a colon. It looks at most br.Size() bytes ahead.
func startsField(br *bufio.Reader) (bool, error) {
	n := max(br.Buffered(), 1)
	for {
		p, err := br.Peek(n)
		if ok, known := isHeader(p); known {
			return ok, nil
		}
		if err != nil {
			if err == io.EOF || err == bufio.ErrBufferFull {
				return false, nil
			}
			return false, err
		}
		if n >= br.Size() {
			return false, nil
		}
		n = min(2*n, br.Size())
	}
}

// isHeader is is_header_buf(3) on the start of a line; known is false
// when p ends before the answer.
func isHeader(p []byte) (ok, known bool) {
	const (
		initial = iota
		inName
		inSpace
	)
	state := initial
	for _, c := range p {
		switch {
		case c == ':':
			return state != initial, true
		case c == ' ' || c == '\t':
			if state == initial {
				return false, true
			}
			state = inSpace
		case c <= ' ' || c >= 0x7f: // control, NUL or 8-bit
			return false, true
		case state == inSpace:
			return false, true
		default:
			state = inName
		}
	}
	return false, false
}

// Edit is what Filter does to each header field: it returns the field to
// write in its place (field itself, or a new one), or an error that
// refuses the message. field is only valid during the call; discarded is
// how many bytes of it were cut off at the limit.
type Edit func(field []byte, discarded int64) ([]byte, error)

// Filter returns the content br holds with each field of its primary
// header read by a Reader (limit bytes at most) and replaced by what edit
// returns; the body follows as it is. Its memory is that of one field.
//
// When edit fails, Filter reads br to its end, discarding it (an SMTP
// client must be allowed to finish DATA before it hears the refusal), and
// returns edit's error.
func Filter(br *bufio.Reader, limit int, edit Edit) io.Reader {
	return &filter{hr: NewReader(br, limit), edit: edit}
}

// FilterEnd is Filter, with the fields end returns added at the end of
// the primary header (cleanup's missing From:, Date:, Message-Id:),
// followed by an empty line if the body did not start with one.
func FilterEnd(br *bufio.Reader, limit int, edit Edit, end func() []byte) io.Reader {
	return &filter{hr: NewReader(br, limit), edit: edit, end: end}
}

type filter struct {
	hr   *Reader
	edit Edit
	end  func() []byte // fields to add after the last one; may be nil
	out  []byte        // of the last field, not read yet
	body bool          // the header has been read
	err  error
}

func (f *filter) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		switch {
		case len(f.out) > 0:
			c := copy(p[n:], f.out)
			f.out = f.out[c:]
			n += c
			continue
		case f.err != nil:
			if n > 0 {
				return n, nil
			}
			return 0, f.err
		case f.body:
			m, err := f.hr.br.Read(p[n:])
			return n + m, err
		}
		field, err := f.hr.Next()
		switch {
		case err == io.EOF:
			f.body = true
			if f.end != nil {
				f.out = f.end()
				// A header ended by a line that is no field rather
				// than by an empty line: the added fields must not
				// run into the body, so an empty line ends them.
				if p, _ := f.hr.br.Peek(1); len(p) > 0 && p[0] != '\r' && p[0] != '\n' {
					f.out = append(f.out, '\r', '\n')
				}
			}
		case err != nil:
			f.err = err
		default:
			if f.out, err = f.edit(field, f.hr.Discarded()); err != nil {
				io.Copy(io.Discard, f.hr.br)
				f.out, f.err = nil, err
			}
		}
	}
	return n, nil
}
