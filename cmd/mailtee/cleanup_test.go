package main

import (
	"context"
	"io"
	"strings"
	"testing"

	"github.com/mailtee/mailtee/internal/envelope"
	"github.com/mailtee/mailtee/internal/rewrite"
)

func testCleanup(copies bool) *cleanup {
	rw := rewrite.New(rewrite.Options{Myorigin: "example.org"})
	return &cleanup{external: rw, internal: rw, copies: copies, hopLimit: 3, maxHdr: 102400}
}

// postconf(5) hopcount_limit: "The maximal number of Received: message
// headers that is allowed in the primary message headers." Postfix's
// cleanup refuses at hops >= hopcount_limit, and its is_header() takes
// "Received :" (blanks before the colon) and any case as the same field.
func TestCleanupHopcount(t *testing.T) {
	c := testCleanup(false)
	env := &envelope.Envelope{From: "a@example.org", Rcpts: []envelope.Rcpt{{Addr: "b@example.org"}}}
	for _, received := range []string{"Received: ", "Received : ", "RECEIVED\t: ", "received:"} {
		hdr := strings.Repeat(received+"from x by y; date\r\n", 3) + "Subject: loop\r\n\r\nbody\r\n"
		_, _, err := c.process(context.Background(), env, strings.NewReader(hdr), true)
		if err == nil || !strings.Contains(err.Error(), "too many hops") {
			t.Errorf("3 %q headers at a limit of 3: got %v, want too many hops", received, err)
		}
	}
	ok := strings.Repeat("Received: from x by y; date\r\n", 2) + "X-Received: z\r\nReceivedx: z\r\nSubject: fine\r\n\r\nbody\r\n"
	_, r, err := c.process(context.Background(), env, strings.NewReader(ok), true)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := io.ReadAll(r); string(got) != ok {
		t.Errorf("content changed:\n%q", got)
	}
}

// dual_delivery_relay marks every recipient of outside mail as a copy;
// internal mail (forwards, notifications) keeps its own marks.
func TestCleanupRelayCopies(t *testing.T) {
	c := testCleanup(true)
	env := &envelope.Envelope{From: "a@outside.example", Rcpts: []envelope.Rcpt{{Addr: "u1@example.org"}, {Addr: "u2@example.org"}}}
	out, _, err := c.process(context.Background(), env, strings.NewReader("Subject: x\r\n\r\n"), true)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range out.Rcpts {
		if !r.Copy {
			t.Errorf("%s not marked as a copy", r.Addr)
		}
	}
	out, _, _ = c.process(context.Background(), env, strings.NewReader("Subject: x\r\n\r\n"), false)
	for _, r := range out.Rcpts {
		if r.Copy {
			t.Errorf("internal mail %s must not be marked by dual_delivery_relay", r.Addr)
		}
	}
}

func TestReadHeaderLimit(t *testing.T) {
	c := testCleanup(false)
	c.maxHdr = 40
	env := &envelope.Envelope{From: "a@example.org", Rcpts: []envelope.Rcpt{{Addr: "b@example.org"}}}
	long := "X-Long: " + strings.Repeat("a", 100) + "\r\nSubject: s\r\n\r\nbody\r\n"
	_, r, err := c.process(context.Background(), env, strings.NewReader(long), true)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := io.ReadAll(r); string(got) != long {
		t.Errorf("a header past header_size_limit must pass through unchanged")
	}
}
