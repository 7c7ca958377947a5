package mailcopy

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

func TestCopyMbox(t *testing.T) {
	when := time.Date(2026, 12, 6, 9, 5, 3, 0, time.Local)
	in := "Subject: x\r\n\r\nFrom me\r\n>From you\r\nFromage\r\nlast"
	var out bytes.Buffer
	_, err := Copy(&out, strings.NewReader(in), Envelope{Sender: "a b@x.example", OrigRcpt: "list@x", DeliveredTo: "u@x", Time: when}, Mbox)
	if err != nil {
		t.Fatal(err)
	}
	want := "From \"a b\"@x.example  Sun Dec  6 09:05:03 2026\n" +
		"Return-Path: <\"a b\"@x.example>\nX-Original-To: list@x\nDelivered-To: u@x\n" +
		"Subject: x\n\n>From me\n>From you\nFromage\nlast\n\n"
	if out.String() != want {
		t.Errorf("got\n%q\nwant\n%q", out.String(), want)
	}
}

func TestCopyNullSenderAndFlags(t *testing.T) {
	var out bytes.Buffer
	if _, err := Copy(&out, strings.NewReader("A: b\r\n\r\nFrom x\r\n"), Envelope{DeliveredTo: "u@x"}, Command); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	if !strings.HasPrefix(got, "From MAILER-DAEMON  ") || !strings.Contains(got, "Return-Path: <>\nDelivered-To: u@x\nA: b\n\nFrom x\n") || strings.Contains(got, "X-Original-To") || strings.HasSuffix(got, "\n\n") {
		t.Errorf("got %q", got)
	}
	out.Reset()
	Copy(&out, strings.NewReader("A: b\r\n"), Envelope{Sender: "s@x", DeliveredTo: "u@x"}, Maildir)
	if out.String() != "Return-Path: <s@x>\nDelivered-To: u@x\nA: b\n" {
		t.Errorf("maildir: %q", out.String())
	}
}

// Lines longer than the read buffer, a CRLF split across reads and lone
// CRs come out as they went in, with only CRLF turned into LF.
func TestCopyLongLinesAndCR(t *testing.T) {
	long := strings.Repeat("x", 32<<10-1) + "\r\n" + "From " + strings.Repeat("y", 70000) + "\r\na\rb\r\n\r"
	var out bytes.Buffer
	if _, err := Copy(&out, iotest.OneByteReader(strings.NewReader(long)), Envelope{}, Quote); err != nil {
		t.Fatal(err)
	}
	want := strings.Repeat("x", 32<<10-1) + "\n" + ">From " + strings.Repeat("y", 70000) + "\na\rb\n\r\n"
	if out.String() != want {
		t.Errorf("long lines: got %d bytes, want %d", out.Len(), len(want))
	}
}

func TestCopyReadError(t *testing.T) {
	boom := errors.New("disk gone")
	_, err := Copy(io.Discard, io.MultiReader(strings.NewReader("a\r\n"), iotest.ErrReader(boom)), Envelope{}, Mbox)
	var re *ErrRead
	if !errors.As(err, &re) || !errors.Is(err, boom) {
		t.Fatalf("got %v, want an ErrRead of %v", err, boom)
	}
}

func FuzzCopy(f *testing.F) {
	f.Add([]byte("From x\r\n\r\nbody\rFrom y\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		var a, b bytes.Buffer
		Copy(&a, bytes.NewReader(in), Envelope{}, Quote)
		Copy(&b, iotest.OneByteReader(bytes.NewReader(in)), Envelope{}, Quote)
		if a.String() != b.String() {
			t.Fatalf("depends on read sizes: %q vs %q", a.String(), b.String())
		}
		if want := reference(string(in)); a.String() != want {
			t.Fatalf("got %q, want %q", a.String(), want)
		}
	})
}

// reference is Copy with Quote, written the obvious way.
func reference(in string) string {
	if in == "" {
		return ""
	}
	lines := strings.Split(in, "\n")
	last := lines[len(lines)-1]
	lines = lines[:len(lines)-1]
	var b strings.Builder
	put := func(l string) {
		if strings.HasPrefix(l, "From ") {
			b.WriteByte('>')
		}
		b.WriteString(l)
		b.WriteByte('\n')
	}
	for _, l := range lines {
		put(strings.TrimSuffix(l, "\r"))
	}
	if last != "" {
		put(last)
	}
	return b.String()
}
