package maildrop

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// sendmail -t: To, Cc and Bcc are the recipients, and Bcc (with its
// continuation lines) leaves the header.
func TestExtractRecipients(t *testing.T) {
	hdr := "To: a@example.org, B <b@example.org>\r\nBcc: hidden@example.org,\r\n\tsecond@example.org\r\nCc: c@example.org\r\nSubject: s\r\n"
	rcpts, kept, err := ExtractRecipients([]byte(hdr))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"a@example.org", "b@example.org", "c@example.org", "hidden@example.org", "second@example.org"}; !reflect.DeepEqual(rcpts, want) {
		t.Errorf("recipients %q, want %q", rcpts, want)
	}
	if want := "To: a@example.org, B <b@example.org>\r\nCc: c@example.org\r\nSubject: s\r\n"; string(kept) != want {
		t.Errorf("header %q, want %q", kept, want)
	}
	if _, _, err := ExtractRecipients([]byte("To: <broken\r\n")); err == nil {
		t.Error("a To: that is no address list: no error")
	}
}

// Line ends become CRLF; a lone "." ends the message unless -i; the size
// limit is enforced while reading.
func TestReadMessage(t *testing.T) {
	in := "Subject: s\n\nline\r\n.\nafter\n"
	got, err := ReadMessage(strings.NewReader(in), true, 0)
	if err != nil || string(got) != "Subject: s\r\n\r\nline\r\n" {
		t.Errorf("dot ends: %q %v", got, err)
	}
	got, _ = ReadMessage(strings.NewReader(in), false, 0)
	if string(got) != "Subject: s\r\n\r\nline\r\n.\r\nafter\r\n" {
		t.Errorf("-i: %q", got)
	}
	if _, err := ReadMessage(strings.NewReader(strings.Repeat("x\n", 100)), false, 50); !errors.Is(err, ErrTooBig) {
		t.Errorf("over the limit: %v", err)
	}
}
