package bounce

import (
	"bytes"
	"context"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/envelope"
	"github.com/mailtee/mailtee/internal/maillog"
	"github.com/mailtee/mailtee/internal/queue"
)

var policy = Policy{Hostname: "mx.example.org", Myorigin: "example.org", NoticeRecipient: "postmaster",
	DoubleBounceRecipient: "postmaster", MaxOriginal: 50000}

// message is a queued message from sender to rcpts, every recipient
// failed with a 5.1.1.
func message(sender string, notification bool, rcpts ...envelope.Rcpt) (*queue.Message, []int) {
	env := &envelope.Envelope{From: sender, Rcpts: rcpts, Notification: notification, Arrival: time.Unix(1700000000, 0)}
	m := queue.NewMemMessage("4AAA", env, []byte("Subject: hi\r\n\r\nbody\r\n"))
	var failed []int
	for i := range m.Rcpts {
		m.Rcpts[i].Attempt = &queue.Attempt{LastErr: "550 5.1.1 no such user", DSN: "5.1.1", Relay: "mx.new.example[192.0.2.7]:25"}
		failed = append(failed, i)
	}
	return m, failed
}

// Every branch of who is told.
func TestPlan(t *testing.T) {
	with2bounce := policy
	with2bounce.DoubleBounce = true
	with2bounce.DoubleBounceRecipient = "hostmaster@example.net"
	for _, tc := range []struct {
		name         string
		p            Policy
		sender       string
		notification bool
		rcpts        []envelope.Rcpt
		want         []Notice
		dropped      []int
	}{
		{name: "a failure goes to the sender", p: policy, sender: "alice@outside.example",
			rcpts: []envelope.Rcpt{{Addr: "u@example.org"}, {Addr: "v@example.org"}},
			want:  []Notice{{To: "alice@outside.example", Rcpts: []int{0, 1}}}},
		{name: "a copy's failure never reaches the sender", p: policy, sender: "alice@outside.example",
			rcpts: []envelope.Rcpt{{Addr: "u@example.org"}, {Addr: "u@new.example", Copy: true}},
			want: []Notice{{To: "alice@outside.example", Rcpts: []int{0}},
				{To: "postmaster@example.org", Postmaster: true, Rcpts: []int{1}}}},
		{name: "owner- alias takes the list's failures", p: policy, sender: "alice@outside.example",
			rcpts: []envelope.Rcpt{{Addr: "m1@example.org", NotifyOwner: "owner-list@example.org"}, {Addr: "m2@example.org", NotifyOwner: "owner-list@example.org"}},
			want:  []Notice{{To: "owner-list@example.org", Rcpts: []int{0, 1}}}},
		{name: "a copy of owner mail still goes to postmaster", p: policy, sender: "alice@outside.example",
			rcpts: []envelope.Rcpt{{Addr: "m1@example.org", NotifyOwner: "owner-list@example.org", Copy: true}},
			want:  []Notice{{To: "postmaster@example.org", Postmaster: true, Rcpts: []int{0}}}},
		{name: "mail from <> without 2bounce: logged only", p: policy, sender: "",
			rcpts: []envelope.Rcpt{{Addr: "u@example.org"}}, dropped: []int{0}},
		{name: "mail from <> with 2bounce: 2bounce_notice_recipient", p: with2bounce, sender: "",
			rcpts: []envelope.Rcpt{{Addr: "u@example.org"}},
			want:  []Notice{{To: "hostmaster@example.net", Postmaster: true, Rcpts: []int{0}}}},
		{name: "a copy of mail from <> is a copy first", p: policy, sender: "",
			rcpts: []envelope.Rcpt{{Addr: "u@new.example", Copy: true}},
			want:  []Notice{{To: "postmaster@example.org", Postmaster: true, Rcpts: []int{0}}}},
		{name: "DSN NOTIFY without FAILURE: logged only", p: policy, sender: "alice@outside.example",
			rcpts: []envelope.Rcpt{{Addr: "u@example.org", Notify: "NEVER"}, {Addr: "v@example.org", Notify: "SUCCESS,DELAY"}, {Addr: "w@example.org", Notify: "FAILURE"}},
			want:  []Notice{{To: "alice@outside.example", Rcpts: []int{2}}}, dropped: []int{0, 1}},
		{name: "never a bounce for a bounce", p: with2bounce, sender: "", notification: true,
			rcpts: []envelope.Rcpt{{Addr: "alice@outside.example"}, {Addr: "x@new.example", Copy: true}}, dropped: []int{0, 1}},
	} {
		m, failed := message(tc.sender, tc.notification, tc.rcpts...)
		got, dropped := Plan(tc.p, m, failed)
		if !reflect.DeepEqual(got, tc.want) || !reflect.DeepEqual(dropped, tc.dropped) {
			t.Errorf("%s: got %+v dropped %v, want %+v dropped %v", tc.name, got, dropped, tc.want, tc.dropped)
		}
	}
}

type fakeQueue struct {
	envs   []*envelope.Envelope
	bodies []string
	fail   error
}

func (q *fakeQueue) NewID() string { return "4BBB" }
func (q *fakeQueue) Inject(ctx context.Context, id string, env *envelope.Envelope, body io.Reader) error {
	if q.fail != nil {
		return q.fail
	}
	b, _ := io.ReadAll(body)
	q.envs, q.bodies = append(q.envs, env), append(q.bodies, string(b))
	return nil
}

// The notices are queued as notifications from <>, naming the original,
// each recipient marked notified only once its notice is queued; a queue
// that fails marks nothing.
func TestBounceQueuesNotices(t *testing.T) {
	var log bytes.Buffer
	q := &fakeQueue{}
	n := &Notifier{Policy: func() Policy { return policy }, Queue: q, Log: maillog.New(&log, "mx.example.org"),
		Now: func() time.Time { return time.Unix(1700000100, 0) }}
	m, failed := message("alice@outside.example", false, envelope.Rcpt{Addr: "u@example.org"}, envelope.Rcpt{Addr: "u@new.example", Copy: true})
	m.Rcpts[1].Expired = true
	m.Rcpts[1].Attempt = &queue.Attempt{LastErr: "connect timed out", DSN: "4.4.1"}
	var notified [][]int
	err := n.Bounce(context.Background(), m, failed, func(idx []int) error { notified = append(notified, idx); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(notified, [][]int{{0}, {1}}) {
		t.Errorf("notified %v", notified)
	}
	if len(q.envs) != 2 {
		t.Fatalf("%d notices queued, want 2", len(q.envs))
	}
	for i, want := range []string{"alice@outside.example", "postmaster@example.org"} {
		env := q.envs[i]
		if env.From != "" || !env.Notification || env.Parent != "4AAA" || env.Rcpts[0].Addr != want {
			t.Errorf("notice %d: %+v, want one from <> to %s, parent 4AAA", i, env, want)
		}
	}
	if !strings.Contains(q.bodies[0], "Status: 5.1.1") || !strings.Contains(q.bodies[0], "Remote-MTA: dns; mx.new.example") {
		t.Errorf("sender's notice lacks the recipient's status:\n%s", q.bodies[0])
	}
	// An expired copy whose last error was temporary: 5.4.7.
	if !strings.Contains(q.bodies[1], "Status: 5.4.7") || !strings.Contains(q.bodies[1], "delivery time expired; last error: connect timed out") {
		t.Errorf("postmaster's notice:\n%s", q.bodies[1])
	}
	for _, want := range []string{"4AAA: sender non-delivery notification: 4BBB", "4AAA: postmaster non-delivery notification: 4BBB"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, log.String())
		}
	}

	q.fail = errors.New("disk full")
	notified = nil
	if err := n.Bounce(context.Background(), m, failed, func(idx []int) error { notified = append(notified, idx); return nil }); err == nil || notified != nil {
		t.Errorf("queue failing: err %v, notified %v; want an error and nothing notified", err, notified)
	}
}

// What nobody is told of is logged, in Postfix's words.
func TestBounceLogsDropped(t *testing.T) {
	var log bytes.Buffer
	n := &Notifier{Policy: func() Policy { return policy }, Queue: &fakeQueue{}, Log: maillog.New(&log, "mx.example.org")}
	m, failed := message("", false, envelope.Rcpt{Addr: "u@example.org"})
	if err := n.Bounce(context.Background(), m, failed, func([]int) error { t.Error("notified"); return nil }); err != nil {
		t.Fatal(err)
	}
	if want := "4AAA: undeliverable mail from <> to <u@example.org> discarded: 550 5.1.1 no such user"; !strings.Contains(log.String(), want) {
		t.Errorf("log %q lacks %q", log.String(), want)
	}
}
