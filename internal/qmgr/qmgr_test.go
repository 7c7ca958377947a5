package qmgr

import (
	"bytes"
	"context"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/deliver"
	"github.com/mailtee/mailtee/internal/envelope"
	"github.com/mailtee/mailtee/internal/maillog"
	"github.com/mailtee/mailtee/internal/queue"
)

// recorder is an Agent that remembers what it was given.
type recorder struct {
	nexthop string
	rcpts   []string
	from    string
}

func (r *recorder) Deliver(ctx context.Context, nexthop string, msg *deliver.Message, rcpts []envelope.Rcpt) []queue.Outcome {
	r.nexthop, r.from = nexthop, msg.From
	for _, x := range rcpts {
		r.rcpts = append(r.rcpts, x.Addr)
	}
	return make([]queue.Outcome, len(rcpts))
}

func testMessage() *queue.Message {
	env := &envelope.Envelope{From: "a@example.org", Rcpts: []envelope.Rcpt{{Addr: "x@example.org"}, {Addr: "y@example.net"}, {Addr: "z@example.net"}}}
	return queue.NewMemMessage("4AAA", env, []byte("Subject: s\r\n\r\nbody\r\n"))
}

func TestDispatchByTransport(t *testing.T) {
	smtp, lmtp := &recorder{}, &recorder{}
	m := New(map[string]Agent{"smtp": smtp, "lmtp": lmtp})
	qm := testMessage()
	out := m.Deliver(context.Background(), qm, envelope.Hop{Transport: "smtp", Nexthop: "[192.0.2.1]:25"}, []int{1, 2})
	if len(out) != 2 || smtp.nexthop != "[192.0.2.1]:25" || !reflect.DeepEqual(smtp.rcpts, []string{"y@example.net", "z@example.net"}) || smtp.from != "a@example.org" || lmtp.rcpts != nil {
		t.Errorf("smtp got %+v, lmtp %+v, %d outcomes", smtp, lmtp, len(out))
	}
	if got, want := m.Transports(), []string{"discard", "error", "lmtp", "smtp"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Transports %v, want %v", got, want)
	}
	if !m.Has("lmtp") || m.Has("smpt") {
		t.Error("Has")
	}
}

// A transport mailtee has no agent for defers (as Postfix does), saying
// which ones it has; error bounces with its next hop as the reason;
// discard delivers to nowhere.
func TestBuiltinTransports(t *testing.T) {
	m := New(nil)
	qm := testMessage()
	out := m.Deliver(context.Background(), qm, envelope.Hop{Transport: "smpt", Nexthop: "[10.0.0.1]"}, []int{0})
	if out[0].Err == nil || queue.IsPermanent(out[0].Err) || !strings.Contains(out[0].Err.Error(), `unknown mail transport "smpt"`) || queue.DSN(out[0].Err) != "4.3.5" {
		t.Errorf("unknown transport: %+v", out[0])
	}
	out = m.Deliver(context.Background(), qm, envelope.Hop{Transport: "error", Nexthop: "user has moved"}, []int{0, 1})
	for _, o := range out {
		if !queue.IsPermanent(o.Err) || !strings.Contains(o.Err.Error(), "user has moved") || queue.DSN(o.Err) != "5.0.0" {
			t.Errorf("error transport: %+v", o)
		}
	}
	out = m.Deliver(context.Background(), qm, envelope.Hop{Transport: "discard"}, []int{2})
	if out[0].Err != nil || out[0].Reply != "discarded: by transport" {
		t.Errorf("discard: %+v", out[0])
	}
}

type fakeInjector struct {
	env  *envelope.Envelope
	body string
}

func (f *fakeInjector) NewID() string { return "4CCC" }
func (f *fakeInjector) Inject(ctx context.Context, id string, env *envelope.Envelope, body io.Reader) error {
	b, err := io.ReadAll(body)
	f.env, f.body = env, string(b)
	return err
}

// A forward is a new message naming its parent, with Delivered-To: on
// top; a forward of mail from <> to a null sender stays a notification,
// never bounced again.
func TestForward(t *testing.T) {
	var log bytes.Buffer
	inj := &fakeInjector{}
	f := &Forwarder{Queue: inj, Log: maillog.New(&log, "mx.example.org")}
	qm := testMessage()
	msg := &deliver.Message{ID: qm.ID, From: "", Open: qm.Open}
	if err := f.Forward(context.Background(), "", []envelope.Rcpt{{Addr: "r@remote.example"}}, msg, "list@example.org"); err != nil {
		t.Fatal(err)
	}
	if inj.env.Parent != "4AAA" || !inj.env.Notification || inj.env.Rcpts[0].Addr != "r@remote.example" {
		t.Errorf("envelope %+v", inj.env)
	}
	if want := "Delivered-To: list@example.org\r\nSubject: s\r\n\r\nbody\r\n"; inj.body != want {
		t.Errorf("body %q, want %q", inj.body, want)
	}
	if !strings.Contains(log.String(), "4AAA: forwarded as 4CCC") {
		t.Errorf("log: %s", log.String())
	}
	msg.From = "a@example.org"
	f.Forward(context.Background(), "owner-list@example.org", []envelope.Rcpt{{Addr: "r@remote.example"}}, msg, "")
	if inj.env.Notification || inj.env.From != "owner-list@example.org" || strings.HasPrefix(inj.body, "Delivered-To") {
		t.Errorf("forward from an owner: %+v %q", inj.env, inj.body)
	}
}

// The delivery line is Postfix's, with relay=none shown as qmgr's.
func TestEventsLogLine(t *testing.T) {
	var log bytes.Buffer
	e := Events{Log: maillog.New(&log, "mx.example.org")}
	qm := testMessage()
	e.Delivery(qm, 1, envelope.Hop{Transport: "error"}, queue.Outcome{Relay: "none", Err: &deliver.Error{Permanent: true, Enhanced: "5.0.0", Text: "moved", Relay: "none"}}, "bounced", time.Second)
	for _, want := range []string{"4AAA: to=<y@example.net>", "relay=none", "dsn=5.0.0", "status=bounced"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("log %q lacks %q", log.String(), want)
		}
	}
}

// A delivery over a reused connection says so, as Postfix's conn_use=N.
func TestEventsConnUse(t *testing.T) {
	var log bytes.Buffer
	e := Events{Log: maillog.New(&log, "mx.example.org")}
	qm := testMessage()
	e.Delivery(qm, 0, envelope.Hop{Transport: "smtp"}, queue.Outcome{Relay: "mx[192.0.2.1]:25", Reply: "250 ok", ConnUse: 3}, "sent", time.Second)
	e.Delivery(qm, 1, envelope.Hop{Transport: "smtp"}, queue.Outcome{Relay: "mx[192.0.2.1]:25", Reply: "250 ok", ConnUse: 1}, "sent", time.Second)
	lines := strings.Split(strings.TrimSpace(log.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "relay=mx[192.0.2.1]:25, conn_use=3, delay=") || strings.Contains(lines[1], "conn_use") {
		t.Errorf("log:\n%s\nwant conn_use=3 on the first line only", log.String())
	}
}
