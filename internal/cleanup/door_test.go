package cleanup

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/envelope"
	"github.com/mailtee/mailtee/internal/rewrite"
)

// fakeQueue stores what the door hands it.
type fakeQueue struct {
	n    int
	envs map[string]*envelope.Envelope
	body map[string]string
}

func (q *fakeQueue) NewID() string { q.n++; return "ID" + string(rune('A'+q.n)) }

func (q *fakeQueue) Enqueue(ctx context.Context, id string, env *envelope.Envelope, body io.Reader) error {
	b, err := io.ReadAll(body)
	if err != nil {
		return err
	}
	if q.envs == nil {
		q.envs, q.body = map[string]*envelope.Envelope{}, map[string]string{}
	}
	q.envs[id], q.body[id] = env, string(b)
	return nil
}

func rcptAddrs(env *envelope.Envelope) string {
	var s []string
	for _, r := range env.Rcpts {
		s = append(s, r.Addr)
	}
	return strings.Join(s, " ")
}

// Mail from outside (SMTP, a local submission) gets always_bcc; what
// mailtee makes itself (forwards, notices) does not, as in Postfix.
func TestDoorCopiesOnlyMailFromOutside(t *testing.T) {
	c, err := New(Options{Rewrite: rewrite.Options{Myorigin: "example.org", AlwaysBCC: "archive@example.org"}, HeaderSizeLimit: 102400})
	if err != nil {
		t.Fatal(err)
	}
	q := &fakeQueue{}
	d := NewDoor(q, c)
	env := func() *envelope.Envelope {
		return &envelope.Envelope{From: "a@example.org", Rcpts: []envelope.Rcpt{{Addr: "b@example.org"}}}
	}
	id := d.NewID()
	if err := d.Enqueue(context.Background(), id, env(), strings.NewReader("Subject: s\r\n\r\nx\r\n")); err != nil {
		t.Fatal(err)
	}
	sid, err := d.Submit(context.Background(), 1000, env(), strings.NewReader("Subject: s\r\n\r\nx\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	iid := d.NewID()
	if err := d.Inject(context.Background(), iid, env(), strings.NewReader("Subject: s\r\n\r\nx\r\n")); err != nil {
		t.Fatal(err)
	}
	for _, x := range []struct{ id, want string }{{id, "b@example.org archive@example.org"}, {sid, "b@example.org archive@example.org"}, {iid, "b@example.org"}} {
		if got := rcptAddrs(q.envs[x.id]); got != x.want {
			t.Errorf("%s: recipients %q, want %q", x.id, got, x.want)
		}
	}
	if q.body[iid] != "Subject: s\r\n\r\nx\r\n" {
		t.Errorf("content changed: %q", q.body[iid])
	}
}

// A setting rewriting cannot honour is refused when cleanup is built, so
// that check (which builds it too) and serve agree; the issue's
// always_bcc = a b c @@ passed check and then failed every message.
func TestNewRefusesWhatCheckReports(t *testing.T) {
	for _, o := range []rewrite.Options{
		{AlwaysBCC: "a b c @@"},
		{MasqueradeClasses: []string{"envelope_sendr"}},
	} {
		if _, err := New(Options{Rewrite: o}); err == nil {
			t.Errorf("%+v: built without an error", o)
		}
		if p := Check(Options{Rewrite: o}); len(p) != 1 {
			t.Errorf("%+v: Check %v, want one problem", o, p)
		}
	}
}

// A refusal reaches the client as its reply: smtpd asks the error for
// it.
func TestRefusalReply(t *testing.T) {
	c := testCleanup(false)
	env := &envelope.Envelope{From: "a@example.org", Rcpts: []envelope.Rcpt{{Addr: "b@example.org"}}}
	q := &fakeQueue{}
	err := NewDoor(q, c).Enqueue(context.Background(), "X", env, strings.NewReader(strings.Repeat("Received: x\r\n", 5)+"\r\nbody\r\n"))
	var r interface {
		SMTPReply() (int, string, string)
	}
	if !errors.As(err, &r) {
		t.Fatalf("got %v, want a refusal", err)
	}
	if code, enh, text := r.SMTPReply(); code != 554 || enh != "5.4.6" || !strings.Contains(text, "too many hops") {
		t.Errorf("reply %d %s %s", code, enh, text)
	}
}

// A local submission gets Postfix's pickup and cleanup fields: a
// Received: naming the user, and the From:, Date: and Message-Id: it
// lacks, at the end of its header; what it has is kept.
func TestPickupHeaderCompletion(t *testing.T) {
	now := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	c, err := New(Options{Rewrite: rewrite.Options{Myorigin: "example.org"}, HeaderSizeLimit: 102400,
		Hostname: "mx.example.org", Myorigin: "example.org", Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	q := &fakeQueue{}
	d := NewDoor(q, c)
	env := &envelope.Envelope{From: "joe@example.org", Rcpts: []envelope.Rcpt{{Addr: "b@example.org"}}}
	received := "Received: by mx.example.org (mailtee, from userid 1000)\r\n\tid IDB; Sun, 06 Dec 2026 10:00:00 +0000\r\n"
	for _, tc := range []struct{ in, want string }{
		{"Subject: s\r\nFrom: Joe <joe@example.org>\r\n\r\nbody\r\n",
			received + "Subject: s\r\nFrom: Joe <joe@example.org>\r\nDate: Sun, 06 Dec 2026 10:00:00 +0000\r\nMessage-Id: <20261206100000.IDB@mx.example.org>\r\n\r\nbody\r\n"},
		{"\r\nno header\r\n",
			received + "Date: Sun, 06 Dec 2026 10:00:00 +0000\r\nFrom: joe@example.org\r\nMessage-Id: <20261206100000.IDB@mx.example.org>\r\n\r\nno header\r\n"},
		{"just a line of text\r\n",
			received + "Date: Sun, 06 Dec 2026 10:00:00 +0000\r\nFrom: joe@example.org\r\nMessage-Id: <20261206100000.IDB@mx.example.org>\r\n\r\njust a line of text\r\n"},
		{"date: x\r\nFROM: y\r\nMessage-ID: <z>\r\n\r\n",
			received + "date: x\r\nFROM: y@example.org\r\nMessage-ID: <z>\r\n\r\n"},
	} {
		q.n = 0
		id, err := d.Submit(context.Background(), 1000, env, strings.NewReader(tc.in))
		if err != nil {
			t.Fatal(err)
		}
		if got := q.body[id]; got != tc.want {
			t.Errorf("%q:\ngot  %q\nwant %q", tc.in, got, tc.want)
		}
	}
}
