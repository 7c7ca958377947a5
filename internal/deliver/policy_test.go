package deliver

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// perConnection is how many messages each connection to s carried, in
// the order the connections were first used.
func perConnection(s *sink) []int {
	var order []string
	n := map[string]int{}
	for _, m := range s.messages() {
		if n[m.Remote] == 0 {
			order = append(order, m.Remote)
		}
		n[m.Remote]++
	}
	out := make([]int, len(order))
	for i, r := range order {
		out[i] = n[r]
	}
	return out
}

// deliverN delivers n messages one after the other and returns the
// ConnUse of each.
func deliverN(t *testing.T, ctx context.Context, c *Client, nexthop string, n int) []int {
	t.Helper()
	var uses []int
	for i := range n {
		r := c.Deliver(ctx, nexthop, testMessage(body), []string{fmt.Sprintf("r%d@example.com", i)})[0]
		delivered(t, r)
		uses = append(uses, r.ConnUse)
	}
	return uses
}

func idleCount(c *Client) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, l := range c.idle {
		n += len(l)
	}
	return n
}

// postconf(5): "With a reuse count limit of N, a connection is used up
// to N+1 times" (smtp.h, THIS_SESSION_IS_EXPIRED: reuse_count >= limit,
// checked at the end of each transaction).
func TestReuseCountLimit(t *testing.T) {
	for _, tc := range []struct {
		limit      int
		want, uses string
	}{
		{0, "[7]", "[1 2 3 4 5 6 7]"},
		{1, "[2 2 2 1]", "[1 2 1 2 1 2 1]"},
		{2, "[3 3 1]", "[1 2 3 1 2 3 1]"},
		{6, "[7]", "[1 2 3 4 5 6 7]"},
	} {
		t.Run(fmt.Sprint(tc.limit), func(t *testing.T) {
			s := startSink(t, nil)
			c := testClient(s.Port)
			c.MaxIdle = 10 * time.Second
			c.MaxReuse = tc.limit
			defer c.Close()
			uses := deliverN(t, context.Background(), c, literal(s), 7)
			if got := fmt.Sprint(perConnection(s)); got != tc.want {
				t.Errorf("messages per connection %s, want %s", got, tc.want)
			}
			// Postfix's conn_use=N.
			if got := fmt.Sprint(uses); got != tc.uses {
				t.Errorf("ConnUse %s, want %s", got, tc.uses)
			}
		})
	}
}

// At the limit the session ends with QUIT after its last transaction, as
// Postfix's SMTP_STATE_DOT goes on to SMTP_STATE_QUIT (smtp_proto.c),
// without waiting for a next message.
func TestReuseCountLimitQuits(t *testing.T) {
	port, cmds := scripted(t, nil)
	c := testClient(port)
	c.MaxIdle = 10 * time.Second
	c.MaxReuse = 1
	defer c.Close()
	deliverN(t, context.Background(), c, "[127.0.0.1]", 1)
	if n := idleCount(c); n != 1 {
		t.Fatalf("%d cached after the first message, want 1", n)
	}
	deliverN(t, context.Background(), c, "[127.0.0.1]", 1)
	if n := idleCount(c); n != 0 {
		t.Errorf("%d cached after the second message with smtp_connection_reuse_count_limit = 1, want 0", n)
	}
	for deadline := time.Now().Add(5 * time.Second); !strings.HasSuffix(strings.Join(cmds(), "|"), "|QUIT"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no QUIT at the limit: %s", strings.Join(cmds(), "|"))
		}
	}
	if got := strings.Count(strings.Join(cmds(), "|"), "MAIL FROM"); got != 2 {
		t.Errorf("%d transactions, want 2", got)
	}
}

// smtp_connection_reuse_time_limit: the timer starts when the connection
// is initiated; a connection older than that is not reused.
func TestReuseTimeLimit(t *testing.T) {
	s := startSink(t, nil)
	c := testClient(s.Port)
	c.MaxIdle = 10 * time.Second
	c.MaxLifetime = time.Second
	defer c.Close()
	deliverN(t, context.Background(), c, literal(s), 2)
	time.Sleep(1100 * time.Millisecond) // past the limit: a lower bound only
	deliverN(t, context.Background(), c, literal(s), 1)
	if got := fmt.Sprint(perConnection(s)); got != "[2 1]" {
		t.Errorf("messages per connection %s, want [2 1]", got)
	}

	// Past the limit when the transaction ends: not cached at all
	// (smtp_proto.c checks at the end of DATA).
	c2 := testClient(s.Port)
	c2.MaxIdle = 10 * time.Second
	c2.MaxLifetime = time.Nanosecond
	defer c2.Close()
	deliverN(t, context.Background(), c2, literal(s), 1)
	if n := idleCount(c2); n != 0 {
		t.Errorf("%d cached past the time limit, want 0", n)
	}
}

// A delivery that requires TLS never goes over a cached plaintext
// session, and defers with Postfix's words (smtp_proto.c: "TLS is
// required, but was not offered by host %s", 4.7.4); the plaintext
// session stays cached for deliveries without that requirement.
func TestPolicyTLSRequired(t *testing.T) {
	s := startSink(t, nil)
	c := testClient(s.Port)
	c.MaxIdle = 10 * time.Second
	defer c.Close()
	deliverN(t, context.Background(), c, literal(s), 1)
	enc := WithPolicy(context.Background(), Policy{TLSLevel: "encrypt"})
	r := c.Deliver(enc, literal(s), testMessage(body), []string{"a@example.com"})[0]
	wantErr(t, r, false, "4.7.4", "TLS is required, but was not offered by host 127.0.0.1[127.0.0.1]")
	if n := len(s.messages()); n != 1 {
		t.Errorf("%d messages, want 1: sent in plaintext with TLS required", n)
	}
	if n := len(s.connections()); n != 2 {
		t.Errorf("%d connections, want 2 (a new one for TLS)", n)
	}
	deliverN(t, context.Background(), c, literal(s), 1)
	if got := fmt.Sprint(perConnection(s)); got != "[2]" {
		t.Errorf("messages per connection %s, want [2]: the plaintext session was not kept", got)
	}

	// The policy never lowers the client's level.
	c2 := testClient(s.Port)
	c2.TLSLevel = "encrypt"
	r = c2.Deliver(WithPolicy(context.Background(), Policy{TLSLevel: "may"}), literal(s), testMessage(body), []string{"a@example.com"})[0]
	wantErr(t, r, false, "4.7.4", "TLS is required, but was not offered by host 127.0.0.1[127.0.0.1]")
	// It raises "none" too.
	c2.TLSLevel = "none"
	r = c2.Deliver(enc, literal(s), testMessage(body), []string{"a@example.com"})[0]
	wantErr(t, r, false, "4.7.4", "TLS is required, but was not offered by host 127.0.0.1[127.0.0.1]")
	// A level it does not know defers.
	r = c2.Deliver(WithPolicy(context.Background(), Policy{TLSLevel: "dane"}), literal(s), testMessage(body), []string{"a@example.com"})[0]
	wantErr(t, r, false, "4.7.0", `client TLS configuration problem: unsupported TLS level "dane" in the delivery policy`)
}

// A session that got TLS under "may" is good for a delivery that
// requires it; the message goes encrypted over the cached connection.
func TestPolicyTLSReusesEncrypted(t *testing.T) {
	s := startSink(t, nil, withTLS(0))
	c := testClient(s.Port)
	c.MaxIdle = 10 * time.Second
	defer c.Close()
	deliverN(t, context.Background(), c, literal(s), 1)
	deliverN(t, WithPolicy(context.Background(), Policy{TLSLevel: "encrypt"}), c, literal(s), 1)
	if got := fmt.Sprint(perConnection(s)); got != "[2]" {
		t.Errorf("messages per connection %s, want [2]", got)
	}
	for _, m := range s.messages() {
		if !m.TLS {
			t.Error("a message went in plaintext")
		}
	}
}

// Policy.MaxReuse counts messages per connection, the first included;
// the stricter of it and Client.MaxReuse applies.
func TestPolicyMaxReuse(t *testing.T) {
	for _, tc := range []struct {
		client, policy int
		want           string
	}{
		{0, 2, "[2 2 1]"},
		{0, 1, "[1 1 1 1 1]"},
		{0, 5, "[5]"},
		{1, 3, "[2 2 1]"},
		{3, 2, "[2 2 1]"},
	} {
		t.Run(fmt.Sprint(tc.client, tc.policy), func(t *testing.T) {
			s := startSink(t, nil)
			c := testClient(s.Port)
			c.MaxIdle = 10 * time.Second
			c.MaxReuse = tc.client
			defer c.Close()
			deliverN(t, WithPolicy(context.Background(), Policy{MaxReuse: tc.policy}), c, literal(s), 5)
			if got := fmt.Sprint(perConnection(s)); got != tc.want {
				t.Errorf("messages per connection %s, want %s", got, tc.want)
			}
			// A connection that has carried its last message is closed,
			// not left in the cache; one below the limit is cached.
			limit := tc.policy
			if tc.client > 0 {
				limit = min(limit, tc.client+1)
			}
			counts := perConnection(s)
			want := 1
			if counts[len(counts)-1] == limit {
				want = 0
			}
			if n := idleCount(c); n != want {
				t.Errorf("%d cached, want %d", n, want)
			}
		})
	}

	// A session cached by a delivery without the limit, already at it,
	// is not taken by one with it.
	s := startSink(t, nil)
	c := testClient(s.Port)
	c.MaxIdle = 10 * time.Second
	defer c.Close()
	deliverN(t, context.Background(), c, literal(s), 2)
	deliverN(t, WithPolicy(context.Background(), Policy{MaxReuse: 2}), c, literal(s), 1)
	if got := fmt.Sprint(perConnection(s)); got != "[2 1]" {
		t.Errorf("messages per connection %s, want [2 1]", got)
	}
}

// recorder is a Shape that records what goes through it and passes it on
// in small pieces, as a bandwidth limiter does.
type recorder struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	wraps  int
	sawCtx bool
}

func (r *recorder) shape(ctx context.Context, w io.Writer) io.Writer {
	r.mu.Lock()
	r.wraps++
	r.sawCtx = ctx.Value(ctxMark{}) != nil
	r.mu.Unlock()
	return writerFunc(func(p []byte) (int, error) {
		r.mu.Lock()
		r.buf.Write(p)
		r.mu.Unlock()
		n := 0
		for len(p) > 0 {
			k := min(len(p), 1000)
			m, err := w.Write(p[:k])
			n += m
			if err != nil {
				return n, err
			}
			p = p[k:]
		}
		return n, nil
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

type ctxMark struct{}

// Shape sees every byte of the content, with and without PIPELINING, and
// what it passes on is what the server gets.
func TestPolicyShape(t *testing.T) {
	// Long enough for many copy buffers, with lines that need dot-stuffing.
	var b strings.Builder
	b.WriteString("Subject: big\n\n")
	for i := 0; b.Len() < 300<<10; i++ {
		fmt.Fprintf(&b, ".line %d of the body, with some text to fill it up\n", i)
	}
	content := strings.ReplaceAll(b.String(), "\n", "\r\n")
	ctx := context.WithValue(context.Background(), ctxMark{}, true)

	t.Run("pipelining", func(t *testing.T) {
		s := startSink(t, nil)
		c := testClient(s.Port)
		rec := &recorder{}
		delivered(t, c.Deliver(WithPolicy(ctx, Policy{Shape: rec.shape}), literal(s), testMessage(b.String()), []string{"a@example.com"})[0])
		if rec.buf.String() != content {
			t.Errorf("Shape saw %d bytes, want the %d of the content", rec.buf.Len(), len(content))
		}
		if m := s.messages(); len(m) != 1 || m[0].Data != content {
			t.Error("the server did not get the content")
		}
		if rec.wraps != 1 || !rec.sawCtx {
			t.Errorf("Shape called %d times, with the delivery's context: %v", rec.wraps, rec.sawCtx)
		}
	})
	t.Run("one command at a time", func(t *testing.T) {
		got := make(chan string, 1)
		port := scriptServer(t, []string{"8BITMIME"}, func(r *bufio.Reader, c net.Conn) {
			var data strings.Builder
			inData := false
			for {
				line, err := r.ReadString('\n')
				if err != nil {
					return
				}
				switch {
				case inData && line == ".\r\n":
					inData = false
					got <- data.String()
					io.WriteString(c, "250 2.0.0 Ok: queued as S1\r\n")
				case inData:
					data.WriteString(strings.TrimPrefix(line, "."))
				case strings.HasPrefix(line, "DATA"):
					inData = true
					io.WriteString(c, "354 go ahead\r\n")
				case strings.HasPrefix(line, "QUIT"):
					io.WriteString(c, "221 bye\r\n")
					return
				default:
					io.WriteString(c, "250 2.0.0 ok\r\n")
				}
			}
		})
		c := testClient(port)
		rec := &recorder{}
		delivered(t, c.Deliver(WithPolicy(ctx, Policy{Shape: rec.shape}), "[127.0.0.1]", testMessage(b.String()), []string{"a@example.com"})[0])
		if rec.buf.String() != content {
			t.Errorf("Shape saw %d bytes, want the %d of the content", rec.buf.Len(), len(content))
		}
		if d := <-got; d != content {
			t.Errorf("the server got %d bytes, want %d", len(d), len(content))
		}
	})
	t.Run("error", func(t *testing.T) {
		// A Shape that fails (its context ended) ends the delivery
		// without the final dot: the server takes nothing.
		s := startSink(t, nil)
		c := testClient(s.Port)
		c.MaxIdle = 10 * time.Second
		defer c.Close()
		fail := func(ctx context.Context, w io.Writer) io.Writer {
			return writerFunc(func(p []byte) (int, error) { return 0, errors.New("shaper gone") })
		}
		r := c.Deliver(WithPolicy(ctx, Policy{Shape: fail}), literal(s), testMessage(body), []string{"a@example.com"})[0]
		wantErr(t, r, false, "4.3.0", "error sending message TESTID through the delivery policy's bandwidth limit: shaper gone")
		if n := len(s.messages()); n != 0 {
			t.Errorf("%d messages taken", n)
		}
		if n := idleCount(c); n != 0 {
			t.Errorf("%d cached after a broken DATA", n)
		}
	})
}

// throttling is a hand-written server that answers the command line, or
// else the command verb, named in replies with its reply (the rest as a plain server would),
// and with close set hangs up after any 421, as Google's and
// Microsoft's servers do. It counts connections and records commands.
func throttling(t *testing.T, caps string, replies map[string]string, close bool) (port string, conns func() int, cmds func() []string) {
	l := listen(t, "127.0.0.1:0")
	var mu sync.Mutex
	var n int
	var seen []string
	rawServer(t, l, func(c net.Conn) {
		defer c.Close()
		mu.Lock()
		n++
		mu.Unlock()
		io.WriteString(c, "220 throttling.test ESMTP\r\n")
		br := bufio.NewReader(c)
		inData, said421 := false, false
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			verb := strings.ToUpper(strings.Fields(line + " x")[0])
			if inData {
				if line != ".\r\n" {
					continue
				}
				inData = false
				verb = "."
			}
			mu.Lock()
			seen = append(seen, strings.TrimSpace(line))
			mu.Unlock()
			reply, ok := replies[strings.TrimSpace(line)] // a whole command
			if !ok {
				reply, ok = replies[verb]
			}
			switch {
			case said421 && verb != "QUIT":
				// A server that stays after a 421 keeps refusing.
				reply = "421 4.3.2 Service shutting down"
			case ok:
			case verb == "EHLO":
				reply = "250-throttling.test\r\n250-ENHANCEDSTATUSCODES\r\n" + caps
			case verb == "DATA":
				inData = true
				reply = "354 go ahead"
			case verb == ".":
				reply = "250 2.0.0 Ok: queued as T1"
			case verb == "QUIT":
				io.WriteString(c, "221 2.0.0 bye\r\n")
				return
			default:
				reply = "250 2.0.0 ok"
			}
			io.WriteString(c, reply+"\r\n")
			if strings.HasPrefix(reply, "421") {
				if close {
					return
				}
				said421 = true
			}
		}
	})
	_, port, _ = net.SplitHostPort(l.Addr().String())
	return port, func() int {
			mu.Lock()
			defer mu.Unlock()
			return n
		}, func() []string {
			mu.Lock()
			defer mu.Unlock()
			return append([]string(nil), seen...)
		}
}

func wantCode(t *testing.T, r Result, code int) {
	t.Helper()
	var e *Error
	if errors.As(r.Err, &e) && e.Code != code {
		t.Errorf("%s: code %d, want %d", r.Rcpt, e.Code, code)
	}
}

// The providers' throttling replies reach the caller with their code,
// enhanced code and text, whatever command they answer and whether or
// not the commands were pipelined; after a 421 the session is closed,
// never cached (RFC 5321 3.8: the server is closing it).
func TestThrottlingReplies(t *testing.T) {
	const google = "421-4.7.28 Our system has detected an unusual rate of unsolicited mail originating\r\n421 4.7.28 from your IP address. To protect our users from spam, mail has been temporarily rate limited."
	const googleText = "host 127.0.0.1[127.0.0.1] said: 421 4.7.28 Our system has detected an unusual rate of unsolicited mail originating from your IP address. To protect our users from spam, mail has been temporarily rate limited."
	rcpts := []string{"a@example.com", "b@example.com"}
	for _, pipelining := range []bool{false, true} {
		caps := "250 8BITMIME"
		if pipelining {
			caps = "250 PIPELINING"
		}
		for _, tc := range []struct {
			verb, command string
		}{
			{"MAIL", "MAIL FROM command"},
			{"RCPT", "RCPT TO command"},
			{"DATA", "DATA command"},
			{".", "end of DATA command"},
		} {
			for _, hangUp := range []bool{true, false} {
				t.Run(fmt.Sprintf("pipelining=%v/%s/close=%v", pipelining, tc.verb, hangUp), func(t *testing.T) {
					port, conns, cmds := throttling(t, caps, map[string]string{tc.verb: google}, hangUp)
					c := testClient(port)
					c.MaxIdle = 10 * time.Second
					defer c.Close()
					res := c.Deliver(context.Background(), "[127.0.0.1]", testMessage(body), rcpts)
					for _, r := range res {
						wantErr(t, r, false, "4.7.28", googleText+" (in reply to "+tc.command+")")
						wantCode(t, r, 421)
					}
					if n := idleCount(c); n != 0 {
						t.Errorf("%d cached after a 421", n)
					}
					// The next message takes a new connection.
					c.Deliver(context.Background(), "[127.0.0.1]", testMessage(body), rcpts)
					if n := conns(); n != 2 {
						t.Errorf("%d connections, want 2", n)
					}
					if !hangUp {
						// A server that says 421 and stays is told QUIT.
						// The second connection is cached, not quit, until
						// Close: a QUIT seen now is the first session's,
						// whose server goroutine may record it after the
						// second session's commands (a loaded machine).
						all := strings.Join(cmds(), "|")
						for end := time.Now().Add(5 * time.Second); !strings.Contains(all, "QUIT") && time.Now().Before(end); {
							time.Sleep(10 * time.Millisecond)
							all = strings.Join(cmds(), "|")
						}
						if !strings.Contains(all, "QUIT") {
							t.Errorf("no QUIT after the 421: %s", all)
						}
					}
				})
			}
		}
	}
}

// Google's per-mailbox limit at RCPT (450 4.2.1) refuses that recipient
// only; the others are delivered and the session stays usable.
// Microsoft's 550 5.2.122 (sender-recipient pair over its hourly limit)
// is a 5xx: it comes back permanent with its code, for the caller's
// classification to turn into a deferral.
func TestMailboxThrottling(t *testing.T) {
	s := startSink(t, nil)
	s.rcptErr["busy@example.com"] = &smtp.SMTPError{Code: 450, EnhancedCode: smtp.EnhancedCode{4, 2, 1}, Message: "The user you are trying to contact is receiving mail at a rate that prevents additional messages from being delivered."}
	s.rcptErr["ms@example.com"] = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 2, 122}, Message: "The recipient has exceeded their limit for the number of messages they can receive per hour."}
	c := testClient(s.Port)
	c.MaxIdle = 10 * time.Second
	defer c.Close()
	res := c.Deliver(context.Background(), literal(s), testMessage(body), []string{"busy@example.com", "ok@example.com", "ms@example.com"})
	wantErr(t, res[0], false, "4.2.1", "host 127.0.0.1[127.0.0.1] said: 450 4.2.1 The user you are trying to contact is receiving mail at a rate that prevents additional messages from being delivered. (in reply to RCPT TO command)")
	wantCode(t, res[0], 450)
	delivered(t, res[1])
	wantErr(t, res[2], true, "5.2.122", "host 127.0.0.1[127.0.0.1] said: 550 5.2.122 The recipient has exceeded their limit for the number of messages they can receive per hour. (in reply to RCPT TO command)")
	wantCode(t, res[2], 550)
	if n := idleCount(c); n != 1 {
		t.Errorf("%d cached, want 1: a mailbox's refusal leaves the session usable", n)
	}

	// 550 5.2.122 after DATA: every recipient of the transaction.
	s.dataErr = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 2, 122}, Message: "The recipient has exceeded their limit for the number of messages they can receive per hour."}
	res = c.Deliver(context.Background(), literal(s), testMessage(body), []string{"a@example.com", "b@example.com"})
	for _, r := range res {
		wantErr(t, r, true, "5.2.122", "host 127.0.0.1[127.0.0.1] said: 550 5.2.122 The recipient has exceeded their limit for the number of messages they can receive per hour. (in reply to end of DATA command)")
		wantCode(t, r, 550)
	}

	// A recipient's own 450 is not replaced by a 421 that ends the
	// transaction later.
	for _, caps := range []string{"250 PIPELINING", "250 8BITMIME"} {
		port, _, _ := throttling(t, caps, map[string]string{
			"RCPT TO:<busy@example.com>": "450 4.2.1 Mailbox busy",
			"DATA":                       "421 4.7.0 Try again later, closing connection.",
		}, true)
		c2 := testClient(port)
		res = c2.Deliver(context.Background(), "[127.0.0.1]", testMessage(body), []string{"a@example.com", "busy@example.com", "c@example.com"})
		for _, i := range []int{0, 2} {
			wantErr(t, res[i], false, "4.7.0", "host 127.0.0.1[127.0.0.1] said: 421 4.7.0 Try again later, closing connection. (in reply to DATA command)")
		}
		wantErr(t, res[1], false, "4.2.1", "host 127.0.0.1[127.0.0.1] said: 450 4.2.1 Mailbox busy (in reply to RCPT TO command)")
	}
}
