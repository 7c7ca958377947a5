package cleanup

import (
	"bufio"
	"context"
	"io"
	"strings"
	"testing"

	"github.com/mailtee/mailtee/internal/envelope"
	"github.com/mailtee/mailtee/internal/rewrite"
)

func testCleanup(copies bool) *Cleanup {
	c, err := New(Options{Rewrite: rewrite.Options{Myorigin: "example.org"}, RelayCopies: copies, HopcountLimit: 3, HeaderSizeLimit: 102400})
	if err != nil {
		panic(err)
	}
	return c
}

// postconf(5) hopcount_limit: "The maximal number of Received: message
// headers that is allowed in the primary message headers." Postfix's
// cleanup refuses at hops >= hopcount_limit, and its is_header() takes
// "Received :" (blanks before the colon) and any case as the same field.
// The content streams: the refusal comes from the reader, once the rest
// is read.
func TestCleanupHopcount(t *testing.T) {
	c := testCleanup(false)
	env := &envelope.Envelope{From: "a@example.org", Rcpts: []envelope.Rcpt{{Addr: "b@example.org"}}}
	for _, received := range []string{"Received: ", "Received : ", "RECEIVED\t: ", "received:"} {
		hdr := strings.Repeat(received+"from x by y; date\r\n", 3) + "Subject: loop\r\n\r\nbody\r\n"
		in := strings.NewReader(hdr)
		_, r, err := c.Process(context.Background(), "", env, in, Source{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadAll(r); err == nil || !strings.Contains(err.Error(), "too many hops") {
			t.Errorf("3 %q headers at a limit of 3: got %v, want too many hops", received, err)
		}
		if in.Len() != 0 {
			t.Errorf("%d bytes of the refused message left unread: the client could not finish DATA", in.Len())
		}
	}
	ok := strings.Repeat("Received: from x by y; date\r\n", 2) + "X-Received: z\r\nReceivedx: z\r\nSubject: fine\r\n\r\nbody\r\n"
	_, r, err := c.Process(context.Background(), "", env, strings.NewReader(ok), Source{})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := io.ReadAll(r); err != nil || string(got) != ok {
		t.Errorf("content changed (%v):\n%q", err, got)
	}
}

// dual_delivery_relay marks every recipient of outside mail as a copy;
// internal mail (forwards, notifications) keeps its own marks.
func TestCleanupRelayCopies(t *testing.T) {
	c := testCleanup(true)
	env := &envelope.Envelope{From: "a@outside.example", Rcpts: []envelope.Rcpt{{Addr: "u1@example.org"}, {Addr: "u2@example.org"}}}
	out, _, err := c.Process(context.Background(), "", env, strings.NewReader("Subject: x\r\n\r\n"), Source{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range out.Rcpts {
		if !r.Copy {
			t.Errorf("%s not marked as a copy", r.Addr)
		}
	}
	out, _, _ = c.Process(context.Background(), "", env, strings.NewReader("Subject: x\r\n\r\n"), Source{Internal: true})
	for _, r := range out.Rcpts {
		if r.Copy {
			t.Errorf("internal mail %s must not be marked by dual_delivery_relay", r.Addr)
		}
	}
}

// header_size_limit (postconf(5): "The maximal amount of memory in bytes
// for storing a message header. If a header is larger, the excess is
// discarded."): the field over the limit is cut and logged, its
// continuation lines do not become body, the fields after it and the
// body pass whole, and a field rewriting made longer is cut again.
func TestCleanupHeaderSizeLimit(t *testing.T) {
	c := testCleanup(false)
	c.o.HeaderSizeLimit = 40
	var logged []string
	c.o.Log = func(line string) { logged = append(logged, line) }
	env := &envelope.Envelope{From: "a@example.org", Rcpts: []envelope.Rcpt{{Addr: "b@example.org"}},
		ClientName: "client.example", ClientAddr: "192.0.2.1", Protocol: "ESMTP", Helo: "client.example"}
	long := "X-Long: " + strings.Repeat("a", 100) + "\r\n\tmore\r\nSubject: s\r\n\r\nbody\r\n"
	_, r, err := c.Process(context.Background(), "4ABC", env, strings.NewReader(long), Source{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	want := "X-Long: " + strings.Repeat("a", 32) + "\r\nSubject: s\r\n\r\nbody\r\n"
	if err != nil || string(got) != want {
		t.Errorf("got %q (%v), want %q", got, err, want)
	}
	wantLog := "4ABC: warning: header X-Long: " + strings.Repeat("a", 32) + "? from client.example[192.0.2.1]; from=<a@example.org> to=<b@example.org> proto=ESMTP helo=<client.example>: header field exceeds header_size_limit (40 bytes); 75 bytes discarded"
	if len(logged) != 1 || logged[0] != wantLog {
		t.Errorf("logged %q, want %q", logged, wantLog)
	}

	// To: u1, u2, ... within the limit, each address then qualified
	// with @example.org: cut again. The second line starts at byte 68
	// (Postfix counts a line break as one), under 90% of the limit, so
	// it is cut at byte 100 ("unkind cut").
	c.o.HeaderSizeLimit = 100
	to := "To: u1, u2, u3, u4, u5, u6, u7, u8, u9, u10, u11, u12, u13, u14, u15, u16\r\n"
	_, r, _ = c.Process(context.Background(), "", &envelope.Envelope{From: "a@example.org", Rcpts: env.Rcpts}, strings.NewReader(to+"\r\n"), Source{})
	got, _ = io.ReadAll(r)
	if want := "To: u1@example.org, u2@example.org, u3@example.org, u4@example.org,\r\n u5@example.org, u6@example.org,\r\n\r\n"; string(got) != want {
		t.Errorf("rewritten past the limit: got %q, want %q", got, want)
	}
}

// BenchmarkCleanup is the acceptance path through cleanup: a message of
// 20 header fields (addresses rewritten, as for a loopback client) and a
// 4 KB body, read to its end.
func BenchmarkCleanup(b *testing.B) {
	c := testCleanup(false)
	env := &envelope.Envelope{From: "a@example.org", Rcpts: []envelope.Rcpt{{Addr: "b@example.org"}}}
	msg := "Received: from client.example (client.example [192.0.2.1])\r\n\tby mx.example.org (mailtee) with ESMTP id 4ABC\r\n\tfor <b@example.org>; Mon, 01 Jan 2024 00:00:00 +0000 (UTC)\r\n" +
		"From: Joe <joe>\r\nTo: ann@example.org, bob, \"Carl C\" <carl@remote.example>\r\nCc: dora@example.org\r\nSubject: benchmark\r\n" +
		"Date: Mon, 01 Jan 2024 00:00:00 +0000\r\nMessage-ID: <1@example.org>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n" +
		strings.Repeat("X-Filler: some header text that is not an address\r\n", 10) + "\r\n" + strings.Repeat("body text of a line of about 60 bytes for the benchmark\r\n", 70)
	br := bufio.NewReaderSize(nil, readerSize)
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		br.Reset(strings.NewReader(msg))
		_, r, err := c.Process(context.Background(), "4ABC", env, br, Source{})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, r); err != nil {
			b.Fatal(err)
		}
	}
}
