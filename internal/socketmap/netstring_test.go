package socketmap

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"
)

func TestReadNetstring(t *testing.T) {
	for _, c := range []struct {
		in, want string
		limit    int
		err      error
	}{
		{"0:,", "", 0, nil},
		{"12:hello world!,", "hello world!", 0, nil},
		{"5:a,b,c,", "a,b,c", 5, nil},
		{"6:a,b,c,", "", 5, ErrSize},
		{"5:abcde;", "", 0, ErrFormat},
		{":abc,", "", 0, ErrFormat},
		{"-1:,", "", 0, ErrFormat},
		{" 1:a,", "", 0, ErrFormat},
		{"1234567890123456789:", "", 0, ErrSize},
		{"", "", 0, io.EOF},
		{"12", "", 0, io.ErrUnexpectedEOF},
		{"5:abc", "", 0, io.ErrUnexpectedEOF},
		{"5:abcde", "", 0, io.ErrUnexpectedEOF},
	} {
		got, err := ReadNetstring(bufio.NewReader(strings.NewReader(c.in)), c.limit)
		if !errors.Is(err, c.err) || string(got) != c.want {
			t.Errorf("ReadNetstring(%q) = %q, %v; want %q, %v", c.in, got, err, c.want, c.err)
		}
	}
}

// FuzzNetstring: the reader never panics, never returns more than the
// limit, and what it accepts is exactly one netstring: digits giving the
// length, ':', the data it returns, ','.
func FuzzNetstring(f *testing.F) {
	for _, s := range []string{"0:,", "3:abc,", "5:OK x,", "4:OK x;", "x:", "99999999999999999999:", "3:ab", "2:ab,2:cd,", "003:abc,"} {
		f.Add([]byte(s), 10)
	}
	f.Fuzz(func(t *testing.T, in []byte, limit int) {
		br := bytes.NewReader(in)
		r := bufio.NewReader(br)
		got, err := ReadNetstring(r, limit)
		if err != nil {
			return
		}
		if limit > 0 && len(got) > limit {
			t.Fatalf("%d bytes over a limit of %d", len(got), limit)
		}
		used := in[:len(in)-br.Len()-r.Buffered()]
		head, rest, ok := bytes.Cut(used, []byte(":"))
		n, err := strconv.Atoi(string(head))
		if !ok || err != nil || n != len(got) || head[0] == '-' || head[0] == '+' ||
			!bytes.Equal(rest, append(append([]byte(nil), got...), ',')) {
			t.Fatalf("accepted %q from %q (consumed %q)", got, in, used)
		}
	})
}
