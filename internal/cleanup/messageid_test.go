package cleanup

import (
	"context"
	"io"
	"strings"
	"testing"

	"github.com/mailtee/mailtee/internal/envelope"
	"github.com/mailtee/mailtee/internal/rewrite"
)

// The Message-ID goes with the envelope to the ledger, and to the log
// as Postfix's cleanup writes it; the first field counts, folded or not,
// cut to 250 printable bytes (a client chooses it).
func TestMessageIDRecorded(t *testing.T) {
	var lines []string
	c, err := New(Options{Rewrite: rewrite.Options{Myorigin: "example.org"}, HeaderSizeLimit: 102400, Hostname: "mx.example.org",
		Log: func(l string) { lines = append(lines, l) }})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ hdr, want string }{
		{"Message-ID: <a1@example.org>\r\nMessage-ID: <second@x>\r\n", "<a1@example.org>"},
		{"message-id:\r\n  <folded@example.org>\r\n", "<folded@example.org>"},
		{"Message-Id: <" + strings.Repeat("x", 400) + ">\r\n", "<" + strings.Repeat("x", 249)},
		{"Subject: none\r\n", ""},
	} {
		lines = nil
		env := &envelope.Envelope{From: "a@example.org", Rcpts: []envelope.Rcpt{{Addr: "b@example.org"}}}
		out, r, err := c.Process(context.Background(), "ABC123", env, strings.NewReader(tc.hdr+"\r\nbody\r\n"), Source{})
		if err != nil {
			t.Fatal(err)
		}
		io.ReadAll(r)
		if out.MessageID != tc.want {
			t.Errorf("%q: MessageID %q, want %q", tc.hdr, out.MessageID, tc.want)
		}
		if tc.want != "" && (len(lines) != 1 || lines[0] != "ABC123: message-id="+tc.want) {
			t.Errorf("%q: log %q", tc.hdr, lines)
		}
	}
	// A local submission without one gets Postfix's, and that is recorded.
	env := &envelope.Envelope{From: "a@example.org", Rcpts: []envelope.Rcpt{{Addr: "b@example.org"}}}
	out, r, _ := c.Process(context.Background(), "DEF456", env, strings.NewReader("Subject: x\r\n\r\nbody\r\n"), Source{Pickup: true})
	io.ReadAll(r)
	if !strings.HasPrefix(out.MessageID, "<") || !strings.Contains(out.MessageID, ".DEF456@mx.example.org>") {
		t.Errorf("made Message-ID %q", out.MessageID)
	}
}
