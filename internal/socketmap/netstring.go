package socketmap

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// Netstring errors, as netstring_strerror(3) names them: a socketmap
// lookup that meets any of them is an error (the mail is deferred).
var (
	ErrFormat = errors.New("input format error")
	ErrSize   = errors.New("input exceeds size limit")
)

// maxDigits bounds the length prefix: more digits than any int holds is
// a format error, not an overflow (netstring_get_length's check).
const maxDigits = 18

// ReadNetstring reads one netstring, "LEN:DATA,", from r: LEN decimal
// digits, a colon, exactly LEN bytes and a comma (netstring.c's
// netstring_get). A length above limit (when limit > 0) is ErrSize before
// anything more is read, so a hostile length costs no memory. A stream
// that ends part-way is io.ErrUnexpectedEOF; one that ends before the
// first byte is io.EOF (the peer closed an idle connection).
func ReadNetstring(r *bufio.Reader, limit int) ([]byte, error) {
	n, digits := 0, 0
	for {
		c, err := r.ReadByte()
		if err != nil {
			if err == io.EOF && digits > 0 {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		if c == ':' {
			break
		}
		if c < '0' || c > '9' {
			return nil, fmt.Errorf("%w: %q in the length", ErrFormat, c)
		}
		if digits++; digits > maxDigits {
			return nil, fmt.Errorf("%w: length has more than %d digits", ErrSize, maxDigits)
		}
		n = n*10 + int(c-'0')
	}
	if digits == 0 {
		return nil, fmt.Errorf("%w: no length before ':'", ErrFormat)
	}
	if limit > 0 && n > limit {
		return nil, fmt.Errorf("%w: %d bytes, the limit is %d", ErrSize, n, limit)
	}
	// The buffer grows with what arrives, not with what the length
	// claims: without a limit, "99999999999999:" must not allocate.
	var b bytes.Buffer
	b.Grow(min(n+1, 4096))
	if _, err := io.CopyN(&b, r, int64(n)+1); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	buf := b.Bytes()
	if buf[n] != ',' {
		return nil, fmt.Errorf("%w: %q where ',' ends the netstring", ErrFormat, buf[n])
	}
	return buf[:n], nil
}

// AppendNetstring appends s as a netstring to b.
func AppendNetstring(b []byte, s string) []byte {
	b = strconv.AppendInt(b, int64(len(s)), 10)
	b = append(b, ':')
	b = append(b, s...)
	return append(b, ',')
}
