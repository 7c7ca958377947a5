package smtpd

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// A BDAT line longer than the watcher kept (white space between BDAT and
// its size) is still a BDAT to go-smtp, which reads its chunk as content:
// a STARTTLS line in that chunk is content, queued as such, and never
// starts TLS.
func TestStartTLSNotInPaddedBDATChunk(t *testing.T) {
	tlsOn, _ := withCert(t)
	// Leading zeros too: go-smtp's strconv.ParseUint takes any number.
	for _, pad := range []string{strings.Repeat(" ", 1100), strings.Repeat("\u00a0", 600), strings.Repeat("0", 1100)} {
		ts := start(t, tlsOn)
		c := ts.session(t)
		c.must("MAIL FROM:<s@remote.example>", "250 ")
		c.must("RCPT TO:<alice@example.com>", "250 ")
		chunk := "Subject: x\r\n\r\nSTARTTLS\r\n"
		sep := " "
		if pad[0] == '0' {
			sep = ""
		}
		c.send("BDAT " + pad + sep + strconv.Itoa(len(chunk)) + " LAST\r\n" + chunk)
		if got := c.reply(); !strings.HasPrefix(got, "250 2.0.0 Ok: queued as ") {
			t.Fatalf("BDAT with %d bytes of padding: %q", len(pad), got)
		}
		if m := ts.q.all(); len(m) != 1 || !strings.HasSuffix(m[0].body, "\r\nSTARTTLS\r\n") {
			t.Errorf("queued %+v", m)
		}
		c.must("NOOP", "250 2.0.0 Ok")
	}
}

// A DATA line that go-smtp takes, however long its trailing white space
// (U+00A0 is white space to go-smtp's strings.TrimSpace) and whatever
// precedes it in the same read, puts the watcher in content too: a
// STARTTLS line in the message is content, queued as such.
func TestStartTLSNotInPaddedDATA(t *testing.T) {
	tlsOn, _ := withCert(t)
	for _, pre := range []string{"", "NOOP\r\n"} {
		for _, pad := range []string{strings.Repeat(" ", 1100), strings.Repeat("\u00a0", 600)} {
			ts := start(t, tlsOn)
			c := ts.session(t)
			c.must("MAIL FROM:<s@remote.example>", "250 ")
			c.must("RCPT TO:<alice@example.com>", "250 ")
			c.send(pre + "DATA " + pad + "\r\nSubject: x\r\n\r\nSTARTTLS\r\n.\r\n")
			if pre != "" {
				c.expect("250 2.0.0 Ok")
			}
			c.expect("354 ")
			if got := c.reply(); !strings.HasPrefix(got, "250 2.0.0 Ok: queued as ") {
				t.Fatalf("DATA after %q with %d bytes of padding: %q", pre, len(pad), got)
			}
			if m := ts.q.all(); len(m) != 1 || !strings.HasSuffix(m[0].body, "\r\nSTARTTLS\r\n") {
				t.Errorf("queued %+v", m)
			}
			c.must("NOOP", "250 2.0.0 Ok")
		}
	}
}

// Sessions that send messages at the same time, by DATA and BDAT, each
// get their own content queued: bodyReader's pooled buffers are never
// shared between two readers. Run with -race, a buffer put back in
// bodyBufs while still referenced is reported here.
func TestConcurrentBodiesStayApart(t *testing.T) {
	ts := start(t, func(o *Options) { o.MaxMessageBytes = 10 << 20 })
	var wg sync.WaitGroup
	want := map[string]string{}
	var mu sync.Mutex
	for k := 0; k < 6; k++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := ts.session(t)
			for i := 0; i < 40; i++ {
				tag := fmt.Sprintf("c%d-m%d", k, i)
				line := strings.Repeat(tag+" ", 20) + "\r\n"
				content := "Subject: " + tag + "\r\n\r\n" + strings.Repeat(line, 1+(i*37)%400)
				var got string
				if i%2 == 0 {
					c.must("MAIL FROM:<s@remote.example>", "250 ")
					c.must("RCPT TO:<alice@example.com>", "250 ")
					c.send(fmt.Sprintf("BDAT %d LAST\r\n", len(content)) + content)
					got = c.reply()
				} else {
					got = c.mail("s@remote.example", []string{"alice@example.com"}, content)
				}
				if !strings.HasPrefix(got, "250 2.0.0 Ok: queued as ") {
					t.Errorf("%s: %q", tag, got)
					return
				}
				id := strings.TrimPrefix(got, "250 2.0.0 Ok: queued as ")
				mu.Lock()
				want[id] = content
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	msgs := ts.q.all()
	if len(msgs) != 240 {
		t.Fatalf("%d messages", len(msgs))
	}
	for _, m := range msgs {
		if !strings.HasSuffix(m.body, "\r\n"+want[m.id]) {
			t.Errorf("%s: body not its own", m.id)
		}
	}
}

// STARTTLS ends the transaction (the session starts afresh after the
// handshake, or ends when it fails), so a client that stalls in the
// handshake after MAIL and RCPT is not one whose transaction Shutdown
// waits for: it is let go at once, as the idle one in TestShutdownTLS.
func TestShutdownStartTLSInTransaction(t *testing.T) {
	tlsOn, _ := withCert(t)
	ts := start(t, tlsOn)
	stuck := ts.session(t)
	stuck.must("MAIL FROM:<s@remote.example>", "250 ")
	stuck.must("RCPT TO:<alice@example.com>", "250 ")
	stuck.must("STARTTLS", "220 ")

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	begun := time.Now()
	if err := ts.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v after %v, want nil at once", err, time.Since(begun))
	}
	stuck.closed()
	ts.log.waitFor(t, "lost connection after STARTTLS from localhost[127.0.0.1]")
}

// A Read with an empty buffer returns at once, as io.Reader asks: it
// looped for ever (fill read nothing into nothing), holding the session
// at full CPU, for an Enqueuer that happens to make one.
func TestBodyReaderEmptyRead(t *testing.T) {
	b := &bodyReader{r: strings.NewReader("x\r\n")}
	defer b.release()
	done := make(chan error, 1)
	go func() {
		_, err := b.Read(nil)
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Read(nil): %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Read(nil) does not return")
	}
	if got, err := io.ReadAll(b); string(got) != "x\r\n" || err != nil {
		t.Errorf("after Read(nil): %q, %v", got, err)
	}
}

// The pooled buffers do not grow with the reads an Enqueuer makes: read
// by io.ReadAll (whose reads grow with the message), a 4 MB message grew
// them to three times its size, kept in bodyBufs for the next messages.
func TestBodyReaderBuffersBounded(t *testing.T) {
	msg := strings.Repeat("a line of an ordinary message, nothing special in it\r\n", 4<<20/55)
	b := &bodyReader{r: strings.NewReader(msg)}
	defer b.release()
	got, err := io.ReadAll(b)
	if err != nil || string(got) != msg {
		t.Fatalf("read %d bytes, %v; want %d", len(got), err, len(msg))
	}
	if in, out := cap(b.bufs.in), cap(b.bufs.out); in > maxBodyRead || out > 2*maxBodyRead {
		t.Errorf("buffers of %d and %d bytes kept, want at most %d and %d", in, out, maxBodyRead, 2*maxBodyRead)
	}
}
