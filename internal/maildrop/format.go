package maildrop

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"
)

// Drop is one submission as `mailtee sendmail` writes it: the envelope
// as the user gave it (nothing rewritten, nothing looked up) and who
// gave it.
type Drop struct {
	UID     uint32    // the submitting user's real uid
	User    string    // that uid's login name, for the default sender
	Arrival time.Time // when sendmail ran
	From    string    // the sender as given, "" for the null sender
	Rcpts   []string  // the recipients as given (after -t extraction)
}

// magic is the first line of a file in format version 1. A future
// version gets another line, so that an old pickup refuses it whole.
const magic = "mailtee-maildrop 1\n"

// Limits of the envelope part of a file. They bound what a hostile
// local user can make pickup hold besides the message itself.
const (
	maxLine  = 4096       // one envelope line, key included
	maxRcpts = 100000     // recipients of one submission
	maxEnv   = 4 << 20    // the whole envelope part, magic to "body N\n"
	trailer  = "end\n"    // after the message: a truncated file lacks it
	minFile  = len(magic) // nothing shorter can be one
)

// EnvelopeOverhead is how much larger than the message itself a valid
// file can be: the bound pickup adds to message_size_limit.
const EnvelopeOverhead = maxEnv + len(trailer)

// Encode writes d and the message in format version 1:
//
//	mailtee-maildrop 1
//	uid 1000
//	user alice
//	time 1733500000123456789      (arrival, Unix nanoseconds)
//	from alice                    (empty value: the null sender)
//	rcpt bob@example.org          (one line each, at least one)
//	body 1234                     (the message's length in bytes)
//	<the message, exactly that many bytes>end
//
// Values are the rest of their line and hold no control characters;
// the message is length-counted, and the closing "end\n" tells a
// complete file from a truncated one.
func Encode(w io.Writer, d *Drop, msg []byte) error {
	if err := d.check(); err != nil {
		return err
	}
	var b bytes.Buffer
	b.WriteString(magic)
	fmt.Fprintf(&b, "uid %d\nuser %s\ntime %d\nfrom %s\n", d.UID, d.User, d.Arrival.UnixNano(), d.From)
	for _, r := range d.Rcpts {
		fmt.Fprintf(&b, "rcpt %s\n", r)
	}
	fmt.Fprintf(&b, "body %d\n", len(msg))
	if b.Len() > maxEnv {
		return fmt.Errorf("envelope too large (%d bytes, at most %d)", b.Len(), maxEnv)
	}
	if _, err := w.Write(b.Bytes()); err != nil {
		return err
	}
	if _, err := w.Write(msg); err != nil {
		return err
	}
	_, err := io.WriteString(w, trailer)
	return err
}

// check applies the rules Decode enforces, so that Encode never writes
// what pickup would refuse.
func (d *Drop) check() error {
	if len(d.Rcpts) == 0 {
		return errors.New("no recipients")
	}
	if len(d.Rcpts) > maxRcpts {
		return fmt.Errorf("%d recipients, at most %d", len(d.Rcpts), maxRcpts)
	}
	if d.User == "" {
		return errors.New("no user name")
	}
	for _, v := range append([]string{d.User, d.From}, d.Rcpts...) {
		if err := checkValue(v); err != nil {
			return err
		}
	}
	return nil
}

// checkValue refuses what would break a line or a log line.
func checkValue(v string) error {
	if len(v) > maxLine-8 {
		return fmt.Errorf("value of %d bytes, at most %d", len(v), maxLine-8)
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < ' ' || c == 0x7f {
			return fmt.Errorf("control character %#02x in %q", c, v)
		}
	}
	return nil
}

// Decode parses a whole file. maxMsg bounds the message (0: no bound
// beyond the file's length). Every departure from the format is an
// error: the file comes from an untrusted local user.
func Decode(data []byte, maxMsg int64) (*Drop, []byte, error) {
	if len(data) < minFile || string(data[:len(magic)]) != magic {
		if i := bytes.IndexByte(data, '\n'); i >= 0 && i < 64 && bytes.HasPrefix(data, []byte("mailtee-maildrop ")) {
			return nil, nil, fmt.Errorf("unknown format version %q", data[:i])
		}
		return nil, nil, errors.New("not a maildrop file (bad first line)")
	}
	p := parser{data: data, off: len(magic)}
	d := &Drop{}
	uid, err := p.number("uid", 1<<32-1)
	if err != nil {
		return nil, nil, err
	}
	d.UID = uint32(uid)
	if d.User, err = p.value("user"); err != nil {
		return nil, nil, err
	}
	if d.User == "" {
		return nil, nil, errors.New("empty user")
	}
	ns, err := p.number("time", 1<<63-1)
	if err != nil {
		return nil, nil, err
	}
	d.Arrival = time.Unix(0, ns)
	if d.From, err = p.value("from"); err != nil {
		return nil, nil, err
	}
	for p.next("rcpt ") {
		if len(d.Rcpts) == maxRcpts {
			return nil, nil, fmt.Errorf("more than %d recipients", maxRcpts)
		}
		r, err := p.value("rcpt")
		if err != nil {
			return nil, nil, err
		}
		d.Rcpts = append(d.Rcpts, r)
	}
	if len(d.Rcpts) == 0 {
		return nil, nil, errors.New("no recipients")
	}
	n, err := p.number("body", 1<<63-1)
	if err != nil {
		return nil, nil, err
	}
	if maxMsg > 0 && n > maxMsg {
		return nil, nil, fmt.Errorf("message of %d bytes, larger than the limit of %d (message_size_limit)", n, maxMsg)
	}
	if p.off > maxEnv {
		return nil, nil, fmt.Errorf("envelope part of %d bytes, at most %d", p.off, maxEnv)
	}
	rest := data[p.off:]
	if int64(len(rest))-int64(len(trailer)) < n {
		return nil, nil, fmt.Errorf("truncated: message of %d bytes announced, %d bytes follow", n, len(rest))
	}
	msg, tail := rest[:n], rest[n:]
	if string(tail) != trailer {
		return nil, nil, fmt.Errorf("%d bytes after the message where %q should end the file", len(tail), trailer)
	}
	return d, msg, nil
}

type parser struct {
	data []byte
	off  int
}

// next says whether the next line starts with prefix.
func (p *parser) next(prefix string) bool {
	return bytes.HasPrefix(p.data[p.off:], []byte(prefix))
}

// value reads the line "KEY VALUE\n" and returns VALUE.
func (p *parser) value(key string) (string, error) {
	rest := p.data[p.off:]
	i := bytes.IndexByte(rest[:min(len(rest), maxLine)], '\n')
	if i < 0 {
		return "", fmt.Errorf("%s: line missing, unterminated or longer than %d bytes", key, maxLine)
	}
	line := rest[:i]
	v, ok := bytes.CutPrefix(line, []byte(key+" "))
	if !ok {
		return "", fmt.Errorf("expected %q, found %q", key, line[:min(len(line), 40)])
	}
	if err := checkValue(string(v)); err != nil {
		return "", fmt.Errorf("%s: %w", key, err)
	}
	p.off += i + 1
	return string(v), nil
}

// number reads a line "KEY N" with N a decimal in [0, max].
func (p *parser) number(key string, max int64) (int64, error) {
	v, err := p.value(key)
	if err != nil {
		return 0, err
	}
	// Digits only: no sign, no spaces, no leading zeros but "0".
	if v == "" || len(v) > 19 || v[0] == '0' && len(v) > 1 || bytes.ContainsFunc([]byte(v), func(r rune) bool { return r < '0' || r > '9' }) {
		return 0, fmt.Errorf("%s: %q is not a number", key, v)
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n > max {
		return 0, fmt.Errorf("%s: %s out of range (at most %d)", key, v, max)
	}
	return n, nil
}
