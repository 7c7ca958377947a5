package header

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// fields reads all the fields of msg with a Reader over a bufio.Reader of
// size bufSize, and returns them, what each lost, and the rest of the
// input (the body).
func fields(t testing.TB, msg string, limit, bufSize int) (got []string, discarded []int64, body string) {
	t.Helper()
	br := bufio.NewReaderSize(iotest.HalfReader(strings.NewReader(msg)), bufSize)
	r := NewReader(br, limit)
	for {
		f, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		got = append(got, string(f))
		discarded = append(discarded, r.Discarded())
	}
	rest, err := io.ReadAll(br)
	if err != nil {
		t.Fatal(err)
	}
	return got, discarded, string(rest)
}

// The field boundaries: is_header(3) for the first line of a field, a
// space or tab for a continuation line, and the end of the primary header
// at the first line that is neither (mime_state.c).
func TestReaderFields(t *testing.T) {
	cases := []struct {
		name, msg string
		fields    []string
		body      string
	}{
		{"plain", "From: a\r\nTo: b,\r\n\tc\r\n\r\nbody\r\n",
			[]string{"From: a\r\n", "To: b,\r\n\tc\r\n"}, "\r\nbody\r\n"},
		{"blanks before the colon", "Received : x\r\nSubject\t: y\r\n\r\n",
			[]string{"Received : x\r\n", "Subject\t: y\r\n"}, "\r\n"},
		{"a non-header line starts the body", "Subject: s\r\nthis is text\r\nTo: b\r\n",
			[]string{"Subject: s\r\n"}, "this is text\r\nTo: b\r\n"},
		{"a body without header", "hello there: you\r\n",
			nil, "hello there: you\r\n"},
		{"a first line that continues nothing", " x: y\r\n\r\n",
			nil, " x: y\r\n\r\n"},
		{"8-bit in a name", "Sübject: s\r\n",
			nil, "Sübject: s\r\n"},
		{"an empty name", ": s\r\n", nil, ": s\r\n"},
		{"no empty line, no line break at the end", "A: 1\r\nB: 2",
			[]string{"A: 1\r\n", "B: 2"}, ""},
		{"bare LF line breaks", "A: 1\n\t2\nB: 3\n\nbody",
			[]string{"A: 1\n\t2\n", "B: 3\n"}, "\nbody"},
		{"empty input", "", nil, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, _, body := fields(t, tc.msg, 102400, 16)
			if strings.Join(got, "|") != strings.Join(tc.fields, "|") || body != tc.body {
				t.Errorf("got %q, body %q\nwant %q, body %q", got, body, tc.fields, tc.body)
			}
		})
	}
}

// header_size_limit as Postfix applies it (mime_state.c stops adding to a
// field at the limit; cleanup_out_header, cleanup_out.c, cuts "at the
// last line boundary before the header size limit. If this would
// undershoot the limit by more than 10%, we truncate between line
// boundaries"). Sizes count a line break between lines as one byte.
func TestReaderLimit(t *testing.T) {
	const limit = 100
	a := func(n int) string { return strings.Repeat("a", n) }
	cases := []struct {
		name, field string
		want        string
	}{
		{"exactly the limit", "X: " + a(97) + "\r\n", "X: " + a(97) + "\r\n"},
		{"one over: unkind cut of the only line", "X: " + a(98) + "\r\n", "X: " + a(97) + "\r\n"},
		{"a line that ends at the limit, and more lines",
			"X: " + a(46) + "\r\n\t" + a(49) + "\r\n\tmore\r\n\tand more\r\n",
			"X: " + a(46) + "\r\n\t" + a(49) + "\r\n"},
		{"the crossing line starts under 90%: cut at the limit",
			"X: " + a(80) + "\r\n\t" + a(50) + "\r\n",
			"X: " + a(80) + "\r\n\t" + a(15) + "\r\n"},
		{"the crossing line starts at 90%: still cut",
			"X: " + a(86) + "\r\n\t" + a(50) + "\r\n",
			"X: " + a(86) + "\r\n\t" + a(9) + "\r\n"},
		{"the crossing line starts past 90%: dropped (nice cut)",
			"X: " + a(87) + "\r\n\t" + a(50) + "\r\n\tmore\r\n",
			"X: " + a(87) + "\r\n"},
		{"a line after one that ends at the limit is dropped",
			"X: " + a(97) + "\r\n\tb\r\n", "X: " + a(97) + "\r\n"},
		{"bare LF kept as it came", "X: " + a(87) + "\n\t" + a(50) + "\n", "X: " + a(87) + "\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, size := range []int{16, 64, 4096} {
				got, disc, body := fields(t, tc.field+"Next: field\r\n\r\nbody", limit, size)
				if len(got) != 2 || got[0] != tc.want || got[1] != "Next: field\r\n" || body != "\r\nbody" {
					t.Fatalf("buffer %d: got %q, body %q; want %q, then Next:", size, got, body, tc.want)
				}
				if want := int64(len(tc.field) - len(tc.want)); disc[0] != want || disc[1] != 0 {
					t.Errorf("buffer %d: discarded %v, want %d then 0", size, disc, want)
				}
				if cut, _ := Cut([]byte(tc.field), limit); string(cut) != tc.want {
					t.Errorf("Cut: %q, want %q", cut, tc.want)
				}
			}
		})
	}
}

// A CRLF split across two reads of a long line stays a line break: a cut
// never leaves a bare CR behind.
func TestReaderCRAtBufferEdge(t *testing.T) {
	for n := 1; n < 40; n++ {
		line := "X: " + strings.Repeat("b", n) + "\r\n"
		for _, limit := range []int{n, n + 1, n + 2, n + 3, n + 4, 0} {
			got, _, _ := fields(t, line+"\t"+strings.Repeat("c", n)+"\r\n\r\n", limit, 16)
			if len(got) != 1 || hasBareCR(got[0]) || !strings.HasSuffix(got[0], "\r\n") {
				t.Fatalf("n=%d limit=%d: %q", n, limit, got)
			}
		}
	}
}

func hasBareCR(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == '\r' && (i+1 == len(s) || s[i+1] != '\n') {
			return true
		}
	}
	return false
}

// A field of megabytes, folded or on one line, costs the reader no more
// than the limit: what it reads it drops.
func TestReaderMemory(t *testing.T) {
	const limit = 102400
	for _, sep := range []string{"\r\n\t", ""} {
		msg := "X-Big: " + strings.Repeat("0123456789abcdef"+sep, 5<<20/16) + "\r\nSubject: after\r\n\r\nbody"
		br := bufio.NewReaderSize(strings.NewReader(msg), 16<<10)
		r := NewReader(br, limit)
		f, err := r.Next()
		if err != nil {
			t.Fatal(err)
		}
		if len(f) > limit+2*(limit/16+1) || cap(r.buf) > 2*limit {
			t.Errorf("a field of %d bytes kept %d (buffer %d), limit %d", len(msg), len(f), cap(r.buf), limit)
		}
		if f, err := r.Next(); err != nil || string(f) != "Subject: after\r\n" {
			t.Errorf("the field after it: %q, %v", f, err)
		}
	}
}

// Errors of the input other than its end stop the reader, and stay.
func TestReaderError(t *testing.T) {
	boom := errors.New("boom")
	br := bufio.NewReaderSize(io.MultiReader(strings.NewReader("A: 1\r\n\tx"), iotest.ErrReader(boom)), 16)
	r := NewReader(br, 100)
	if _, err := r.Next(); !errors.Is(err, boom) {
		t.Fatalf("got %v, want boom", err)
	}
	if _, err := r.Next(); !errors.Is(err, boom) {
		t.Fatalf("then %v, want boom again", err)
	}
}

// Filter: each field through edit, the body as it is; a failing edit
// refuses after the whole input has been read.
func TestFilter(t *testing.T) {
	msg := "A: 1\r\nB: " + strings.Repeat("x", 50) + "\r\n\tyy\r\nC: 3\r\n\r\n" + strings.Repeat("body\r\n", 10000)
	var seen []int64
	out, err := io.ReadAll(iotest.OneByteReader(Filter(bufio.NewReaderSize(strings.NewReader(msg), 16), 20,
		func(f []byte, discarded int64) ([]byte, error) {
			seen = append(seen, discarded)
			return bytes.ToLower(f), nil
		})))
	want := "a: 1\r\nb: " + strings.Repeat("x", 17) + "\r\nc: 3\r\n\r\n" + strings.Repeat("body\r\n", 10000)
	if err != nil || string(out) != want {
		t.Errorf("got %q (%v)", out[:min(len(out), 80)], err)
	}
	if len(seen) != 3 || seen[0] != 0 || seen[1] != 38 || seen[2] != 0 {
		t.Errorf("discarded %v", seen)
	}

	refuse := errors.New("too many hops")
	in := strings.NewReader(msg)
	_, err = io.ReadAll(Filter(bufio.NewReader(in), 0, func(f []byte, _ int64) ([]byte, error) {
		if f[0] == 'B' {
			return nil, refuse
		}
		return f, nil
	}))
	if !errors.Is(err, refuse) || in.Len() != 0 {
		t.Errorf("refusal: %v with %d bytes unread", err, in.Len())
	}
}

// postfixField is what Postfix's cleanup stores of one header field,
// given its lines without line breaks, transcribed from mime_state.c
// (records of at most line_length_limit bytes; a record is added to the
// field while the field is shorter than the limit) and cleanup_out.c
// (cleanup_out_header's nice and unkind cut).
func postfixField(lines []string, limit int) []string {
	const recordLen = 2048 // line_length_limit
	var buf []byte
	for i, line := range lines {
		for j := 0; j == 0 || j < len(line); j += recordLen {
			rec := line[j:min(j+recordLen, len(line))]
			switch {
			case i == 0 && j == 0:
				buf = append(buf, rec...)
			case len(buf) < limit && j == 0:
				buf = append(append(buf, '\n'), rec...)
			case len(buf) < limit:
				buf = append(buf, rec...)
			}
		}
	}
	var out []string
	start := 0
	for _, line := range strings.Split(string(buf), "\n") {
		if start+len(line) > limit {
			if 10*start > 9*limit {
				break
			}
			out = append(out, line[:limit-start])
			break
		}
		out = append(out, line)
		start += len(line) + 1
	}
	return out
}

// The Reader and Cut cut a field where Postfix does, for fields of many
// shapes: the model above is the reference.
func TestCutAsPostfix(t *testing.T) {
	for limit := 1; limit < 300; limit += 7 {
		for _, shape := range [][]int{{5}, {300}, {3000}, {10, 10, 10}, {40, 70, 1}, {2, 200, 5, 2}, {60, 25, 25, 25, 25}, {90, 3000, 4}} {
			checkAsPostfix(t, shape, limit)
		}
	}
	checkAsPostfix(t, []int{5000, 99000, 20, 30000}, 102400)
	checkAsPostfix(t, []int{102000, 398, 20, 30000}, 102400)
}

func checkAsPostfix(t *testing.T, shape []int, limit int) {
	t.Helper()
	lines := make([]string, len(shape))
	for i, n := range shape {
		prefix := "\t"
		if i == 0 {
			prefix = "X:"
		}
		lines[i] = prefix + strings.Repeat(string(rune('a'+i%26)), n)
	}
	field := strings.Join(lines, "\r\n") + "\r\n"
	want := strings.Join(postfixField(lines, limit), "\r\n") + "\r\n"
	got, _, _ := fields(t, field+"\r\n", limit, 16)
	if len(got) != 1 || got[0] != want {
		t.Fatalf("limit %d, lines %v: Reader kept %d bytes, Postfix %d", limit, shape, len(strings.Join(got, "")), len(want))
	}
	if cut, _ := Cut([]byte(field), limit); string(cut) != want {
		t.Fatalf("limit %d, lines %v: Cut kept %d bytes, Postfix %d", limit, shape, len(cut), len(want))
	}
}

func FuzzReader(f *testing.F) {
	f.Add("From: a\r\nTo: b,\r\n\tc\r\n\r\nbody\r\n", 10)
	f.Add("X: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\tbbbbbbbbbbbbbbbbbbbbbbbbb\r\nY: c\r\n", 30)
	f.Add("A: 1\r\r\n\t2\n\r\n", 3)
	f.Fuzz(func(t *testing.T, msg string, limit int) {
		limit %= 1000
		got, disc, body := fields(t, msg, limit, 16)
		total := len(body)
		for i, g := range got {
			total += len(g) + int(disc[i])
			if limit > 0 && postfixSize(g) > limit {
				t.Fatalf("field of %d bytes (%q) over the limit %d", postfixSize(g), g, limit)
			}
			at := msg[total-len(body)-len(g)-int(disc[i]):]
			if !strings.HasPrefix(at, g[:min(len(g), 1)]) {
				t.Fatalf("field %q is not where it was", g)
			}
			if ok, _ := isHeader([]byte(at)); !ok {
				t.Fatalf("%q does not start a header field", at)
			}
			orig := at[:len(g)+int(disc[i])]
			if plain := strings.ReplaceAll(orig, "\r\n", ""); limit > 0 && !strings.ContainsAny(plain, "\r\n") {
				// Compared line by line: Postfix stores lines, not
				// line breaks.
				lines := func(f string) string { return strings.TrimSuffix(f, "\r\n") }
				want := strings.Join(postfixField(strings.Split(lines(orig), "\r\n"), limit), "\r\n")
				if lines(g) != want {
					t.Fatalf("field %q cut to %q, Postfix cuts it to %q", orig, g, want)
				}
			}
		}
		if total != len(msg) {
			t.Fatalf("fields, discarded bytes and body make %d bytes of %d", total, len(msg))
		}
		if !strings.HasSuffix(msg, body) {
			t.Fatalf("body %q is not the end of the input", body)
		}
	})
}

// postfixSize is a field's size as Postfix counts it: its lines without
// their line breaks, plus one byte between lines.
func postfixSize(f string) int {
	f = strings.TrimSuffix(strings.TrimSuffix(f, "\n"), "\r")
	return len(strings.ReplaceAll(f, "\r\n", "\n"))
}
