package standin

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mailtee/mailtee/internal/ratelimit"
)

func start(t *testing.T, o Options) *Server {
	t.Helper()
	s, err := Start(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// send delivers one message from → to over a new connection (STARTTLS
// when useTLS) and returns the first error with its SMTP reply.
func send(t *testing.T, addr, from string, to []string, useTLS bool) error {
	t.Helper()
	var c *smtp.Client
	var err error
	if useTLS {
		c, err = smtp.DialStartTLS(addr, &tls.Config{InsecureSkipVerify: true})
	} else {
		c, err = smtp.Dial(addr)
	}
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Mail(from, nil); err != nil {
		return err
	}
	for _, r := range to {
		if err := c.Rcpt(r, nil); err != nil {
			return err
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "Message-ID: <%d@test>\r\nSubject: x\r\n\r\nbody\r\n", time.Now().UnixNano())
	return w.Close()
}

func code(err error) string {
	var e *smtp.SMTPError
	if errors.As(err, &e) {
		return fmt.Sprintf("%d %d.%d.%d", e.Code, e.EnhancedCode[0], e.EnhancedCode[1], e.EnhancedCode[2])
	}
	if err == nil {
		return "ok"
	}
	return err.Error()
}

func windows(t *testing.T, s string) []ratelimit.Window {
	ws, err := ratelimit.ParseWindows(s)
	if err != nil {
		t.Fatal(err)
	}
	return ws
}

// Google: the mailbox limit answers RCPT with 450 4.2.1 in Google's
// words, other mailboxes go on, and the window slides.
func TestMailboxRateGoogle(t *testing.T) {
	s := start(t, Options{MailboxRate: windows(t, "3/1s")})
	for i := 0; i < 3; i++ {
		if err := send(t, s.Addr(), "a@x.example", []string{"busy@dom.example"}, false); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	err := send(t, s.Addr(), "a@x.example", []string{"Busy@dom.example"}, false)
	if code(err) != "450 4.2.1" || !strings.Contains(err.Error(), "receiving mail at a rate") {
		t.Errorf("4th within the window: %v, want Google's 450 4.2.1", err)
	}
	if err := send(t, s.Addr(), "a@x.example", []string{"other@dom.example"}, false); err != nil {
		t.Errorf("another mailbox: %v", err)
	}
	time.Sleep(1100 * time.Millisecond)
	if err := send(t, s.Addr(), "a@x.example", []string{"busy@dom.example"}, false); err != nil {
		t.Errorf("after the window: %v", err)
	}
	ref := s.Refused()
	if len(ref) != 1 || ref[0].Why != "mailbox-rate" || ref[0].Rcpt != "busy@dom.example" || !strings.HasPrefix(ref[0].Reply, "450 4.2.1 ") {
		t.Errorf("refusals: %+v", ref)
	}
	if n := s.MaxInWindow("busy@dom.example", time.Second); n != 3 {
		t.Errorf("MaxInWindow = %d, want 3", n)
	}
	if n := len(s.Accepted()); n != 5 {
		t.Errorf("accepted %d, want 5", n)
	}
}

// A place is held from RCPT to the end of the transaction: concurrent
// sessions cannot together go past the limit.
func TestMailboxRateConcurrent(t *testing.T) {
	s := start(t, Options{MailboxRate: windows(t, "5/1m")})
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			send(t, s.Addr(), "a@x.example", []string{"busy@dom.example"}, false)
		}()
	}
	wg.Wait()
	if n := len(s.Accepted()); n != 5 {
		t.Errorf("accepted %d of 20 concurrent, want exactly 5", n)
	}
	if n := s.MaxInWindow("busy@dom.example", time.Minute); n != 5 {
		t.Errorf("MaxInWindow = %d", n)
	}
}

// A refused RCPT, or a transaction abandoned before DATA, gives its
// place back.
func TestAbandonedGivesBack(t *testing.T) {
	s := start(t, Options{MailboxRate: windows(t, "1/1m")})
	c, err := smtp.Dial(s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	c.Mail("a@x.example", nil)
	if err := c.Rcpt("busy@dom.example", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Reset(); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if err := send(t, s.Addr(), "a@x.example", []string{"busy@dom.example"}, false); err != nil {
		t.Errorf("after an abandoned transaction: %v", err)
	}
}

// Lockout: offered beyond its limit, the mailbox refuses everything
// with Google's permanent "disabled" reply until the lockout ends, even
// once the window would allow more.
func TestLockoutGoogle(t *testing.T) {
	s := start(t, Options{MailboxRate: []ratelimit.Window{{N: 1, Per: 200 * time.Millisecond}}, Lockout: time.Second})
	send(t, s.Addr(), "a@x.example", []string{"u@dom.example"}, false)
	if err := send(t, s.Addr(), "a@x.example", []string{"u@dom.example"}, false); code(err) != "450 4.2.1" {
		t.Fatalf("over the limit: %v", err)
	}
	if !s.Locked("U@dom.example") {
		t.Error("not locked after an offer beyond the limit")
	}
	time.Sleep(300 * time.Millisecond)
	err := send(t, s.Addr(), "b@y.example", []string{"u@dom.example"}, false)
	if code(err) != "550 5.2.1" || !strings.Contains(err.Error(), "disabled") {
		t.Errorf("while locked: %v, want 550 5.2.1 disabled", err)
	}
	time.Sleep(900 * time.Millisecond)
	if err := send(t, s.Addr(), "a@x.example", []string{"u@dom.example"}, false); err != nil {
		t.Errorf("after the lockout: %v", err)
	}
	var whys []string
	for _, r := range s.Refused() {
		whys = append(whys, r.Why)
	}
	if strings.Join(whys, ",") != "mailbox-rate,locked" {
		t.Errorf("refusals: %v", whys)
	}
}

// Google's sender limit is per sending address: 421 4.7.28, and the
// connection is closed.
func TestSenderRateGoogle(t *testing.T) {
	s := start(t, Options{SenderRate: windows(t, "2/1m")})
	send(t, s.Addr(), "bulk@x.example", []string{"a@dom.example"}, false)
	send(t, s.Addr(), "bulk@x.example", []string{"b@dom.example"}, false)
	// Raw, as go-smtp's client closes on 421 by itself.
	nc, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	tp := textproto.NewConn(nc)
	tp.ReadResponse(220)
	tp.PrintfLine("EHLO client.example")
	tp.ReadResponse(250)
	tp.PrintfLine("MAIL FROM:<bulk@x.example>")
	tp.ReadResponse(250)
	tp.PrintfLine("RCPT TO:<c@dom.example>")
	if c, msg, _ := tp.ReadResponse(250); c != 421 || !strings.HasPrefix(msg, "4.7.28 ") || !strings.Contains(msg, "unusual rate") {
		t.Errorf("third from one sender: %d %s", c, msg)
	}
	if line, err := tp.ReadLine(); err != io.EOF {
		t.Errorf("the connection stays open after 421: %q %v", line, err)
	}
	if err := send(t, s.Addr(), "other@x.example", []string{"c@dom.example"}, false); err != nil {
		t.Errorf("another sender: %v", err)
	}
}

// Microsoft 365 counts sender-recipient pairs (550 5.2.121) and
// mailboxes (550 5.2.122), and a locked mailbox keeps answering 5.2.122.
func TestMicrosoft(t *testing.T) {
	s := start(t, Options{Flavor: Microsoft365, MailboxRate: windows(t, "3/1m"), SenderRate: windows(t, "1/1m"), Lockout: time.Minute})
	if err := send(t, s.Addr(), "a@x.example", []string{"u@dom.example"}, false); err != nil {
		t.Fatal(err)
	}
	err := send(t, s.Addr(), "a@x.example", []string{"u@dom.example"}, false)
	if code(err) != "550 5.2.121" || !strings.Contains(err.Error(), "from specific sender") {
		t.Errorf("second for one pair: %v", err)
	}
	if err := send(t, s.Addr(), "a@x.example", []string{"v@dom.example"}, false); err != nil {
		t.Errorf("same sender, other recipient: %v", err)
	}
	send(t, s.Addr(), "b@x.example", []string{"u@dom.example"}, false)
	send(t, s.Addr(), "c@x.example", []string{"u@dom.example"}, false)
	err = send(t, s.Addr(), "d@x.example", []string{"u@dom.example"}, false)
	if code(err) != "550 5.2.122" || !strings.Contains(err.Error(), "receive limit exceeded") {
		t.Errorf("fourth for the mailbox: %v", err)
	}
	if !s.Locked("u@dom.example") {
		t.Error("not locked")
	}
}

// A storm answers everything with its reply, in the flavor's words,
// then ends.
func TestStorm(t *testing.T) {
	s := start(t, Options{Storm: "421 4.7.28", StormFor: 500 * time.Millisecond})
	err := send(t, s.Addr(), "a@x.example", []string{"u@dom.example"}, false)
	if code(err) != "421 4.7.28" || !strings.Contains(err.Error(), "gsmtp") {
		t.Errorf("during the storm: %v", err)
	}
	time.Sleep(600 * time.Millisecond)
	if err := send(t, s.Addr(), "a@x.example", []string{"u@dom.example"}, false); err != nil {
		t.Errorf("after the storm: %v", err)
	}
	s.SetStorm("550 5.2.122 custom words", time.Minute)
	if err := send(t, s.Addr(), "a@x.example", []string{"u@dom.example"}, false); code(err) != "550 5.2.122" || !strings.Contains(err.Error(), "custom words") {
		t.Errorf("SetStorm: %v", err)
	}
	s.SetStorm("550 5.2.122", 0)
	if err := send(t, s.Addr(), "a@x.example", []string{"u@dom.example"}, false); err != nil {
		t.Errorf("storm ended: %v", err)
	}
	if r := s.Refused(); len(r) != 2 || r[0].Why != "storm" {
		t.Errorf("refusals: %+v", r)
	}
}

// STARTTLS is offered without a configured certificate, and the record
// says which messages came over TLS; -record gets JSON lines.
func TestTLSAndRecord(t *testing.T) {
	var buf bytes.Buffer
	var mu sync.Mutex
	s := start(t, Options{Record: lockedWriter{&mu, &buf}, MailboxRate: windows(t, "2/1m")})
	c, err := smtp.Dial(s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Hello("client.example"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := c.Extension("STARTTLS"); !ok {
		t.Error("STARTTLS not offered")
	}
	c.Close()
	if err := send(t, s.Addr(), "a@x.example", []string{"u@dom.example"}, true); err != nil {
		t.Fatal(err)
	}
	if err := send(t, s.Addr(), "a@x.example", []string{"u@dom.example"}, false); err != nil {
		t.Fatal(err)
	}
	send(t, s.Addr(), "a@x.example", []string{"u@dom.example"}, false)
	acc := s.Accepted()
	if len(acc) != 2 || !acc[0].TLS || acc[1].TLS || acc[0].From != "a@x.example" || acc[0].Rcpt != "u@dom.example" || !strings.HasSuffix(acc[0].MessageID, "@test>") || acc[0].Size == 0 {
		t.Errorf("accepted: %+v", acc)
	}
	mu.Lock()
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	mu.Unlock()
	var events []string
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("record line %q: %v", l, err)
		}
		events = append(events, fmt.Sprint(m["event"], " ", m["rcpt"]))
	}
	if strings.Join(events, ",") != "accepted u@dom.example,accepted u@dom.example,refused u@dom.example" {
		t.Errorf("record: %v", lines)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestMaxInSpan(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms ...int) []time.Time {
		var ts []time.Time
		for _, m := range ms {
			ts = append(ts, t0.Add(time.Duration(m)*time.Millisecond))
		}
		return ts
	}
	for _, c := range []struct {
		ts   []time.Time
		per  time.Duration
		want int
	}{
		{nil, time.Second, 0},
		{at(0, 999, 1000), time.Second, 2},
		{at(1000, 0, 500, 1499), time.Second, 3},
		{at(0, 1, 2, 3), time.Millisecond, 1},
	} {
		if got := MaxInSpan(c.ts, c.per); got != c.want {
			t.Errorf("MaxInSpan(%v, %v) = %d, want %d", c.ts, c.per, got, c.want)
		}
	}
}

func TestParseStorm(t *testing.T) {
	r, d, err := ParseStorm(Google, "421 4.7.28:30s")
	if err != nil || r.Code != 421 || r.EnhancedCode != (smtp.EnhancedCode{4, 7, 28}) || d != 30*time.Second || !strings.Contains(r.Message, "gsmtp") {
		t.Errorf("got %+v %v %v", r, d, err)
	}
	r, _, err = ParseStorm(Microsoft365, "451 4.7.500 Access denied: wait:2m")
	if err != nil || r.Message != "Access denied: wait" {
		t.Errorf("text with a colon: %+v %v", r, err)
	}
	for _, bad := range []string{"", "421 4.7.28", "421:5s", "250 2.0.0:5s", "421 5.7.28:5s", "421 4.7:5s", "421 4.7.28:-1s", "42 4.7.28:5s", "421 4.7.x:5s"} {
		if _, _, err := ParseStorm(Google, bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func FuzzParseStorm(f *testing.F) {
	for _, s := range []string{"421 4.7.28:30s", "550 5.2.122 words:1m", "451 4.7.500:1h", ":", "421 4.7.28 a:b:c:5s"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, d, err := ParseStorm(Microsoft365, s)
		if err != nil {
			return
		}
		if d <= 0 || r.Code < 400 || r.Code > 599 || r.EnhancedCode[0] != r.Code/100 || strings.ContainsAny(r.Message, "\r\n") {
			t.Errorf("%q → %+v %v", s, r, d)
		}
		// What it writes back parses to the same reply.
		r2, err := ParseReply(Microsoft365, format(r))
		if err != nil || r2.Code != r.Code || r2.EnhancedCode != r.EnhancedCode || r2.Message != strings.Join(strings.Fields(r.Message), " ") {
			t.Errorf("%q: round trip %+v → %+v %v", s, r, r2, err)
		}
	})
}
