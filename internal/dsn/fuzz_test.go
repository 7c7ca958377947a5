package dsn

import (
	"bytes"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"strings"
	"testing"
	"unicode/utf8"
)

// Whatever a remote server answers and whatever the original message
// holds, a notification either is refused or parses as a three-part
// multipart/report with CRLF line endings.
func FuzzBuild(f *testing.F) {
	f.Add("smtp; 550 5.1.1 <x@y>: user unknown", "host mx[1.2.3.4] said: 550 (in reply to RCPT TO command)", origMsg)
	f.Add("", "", "no header section at all")
	f.Add("x-unknown;", "\r\n.\r\n", "Subject: a\n\n--4F9D1.1764052200/students.iiit.ac.in--\n")
	f.Add("smtp; "+strings.Repeat("long-word", 40), strings.Repeat("w ", 200), "A: b\r\n\r\n\xff\xfe")
	f.Add("smtp; 550 "+strings.Repeat("x", 3000), strings.Repeat("é", 1000), "")
	f.Fuzz(func(t *testing.T, diag, reason, orig string) {
		r := bounce()
		r.Recipients[0].Diagnostic = diag
		r.Recipients[1].Reason = reason
		r.Original = strings.NewReader(orig)
		raw, err := Build(r, now, "id@x")
		if err != nil {
			t.Fatal(err) // nothing here is the caller's fault
		}
		if i := bytes.LastIndex(raw, []byte("Content-Description: Undelivered")); i < 0 || !utf8.Valid(raw[:i]) {
			t.Fatal("invalid UTF-8 in the notification's own text")
		}
		if bytes.Contains(bytes.ReplaceAll(raw, []byte("\r\n"), nil), []byte("\n")) {
			t.Fatal("bare LF")
		}
		for _, l := range strings.Split(string(raw), "\r\n") {
			if len(l) > 998 && !strings.Contains(orig, l) {
				t.Fatalf("line of %d bytes", len(l))
			}
		}
		msg, err := mail.ReadMessage(bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		_, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
		if err != nil {
			t.Fatal(err)
		}
		mr := multipart.NewReader(msg.Body, params["boundary"])
		n := 0
		for {
			p, err := mr.NextRawPart()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, p)
			n++
		}
		if n != 3 {
			t.Fatalf("%d parts", n)
		}
	})
}
