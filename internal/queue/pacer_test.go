package queue

import (
	"context"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/envelope"
)

// fakePacer holds back every recipient named in hold until its time,
// counts Admit calls and remembers the outcomes Done saw.
type fakePacer struct {
	mu     sync.Mutex
	plan   Plan
	hold   map[string]time.Time
	admits int
	done   [][]Outcome
	fix    func(outs []Outcome) // changes the outcomes, as a throttling reply
}

func (f *fakePacer) Plan(ctx context.Context, hop envelope.Hop) Plan { return f.plan }

func (f *fakePacer) Admit(ctx context.Context, plan Plan, m *Message, rcpts []int) Admission {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.admits++
	var a Admission
	for _, i := range rcpts {
		if t, ok := f.hold[m.Rcpts[i].Addr]; ok && time.Now().Before(t) {
			a.Later = append(a.Later, Postponed{Rcpt: i, At: t, Why: "test hold"})
			continue
		}
		a.Now = append(a.Now, i)
	}
	a.Done = func(outs []Outcome) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.fix != nil && outs != nil {
			f.fix(outs)
		}
		f.done = append(f.done, append([]Outcome(nil), outs...))
	}
	return a
}

// A recipient the pacer holds back is not an attempt: it is delivered
// once its time comes, with no deferral logged or recorded before, and
// the message's other recipients go at once.
func TestPacerHoldsBack(t *testing.T) {
	dir := t.TempDir()
	f := newFakeNet()
	o := f.options(dir)
	hold := time.Now().Add(400 * time.Millisecond)
	p := &fakePacer{hold: map[string]time.Time{"busy@a.example": hold}}
	o.Pacer = p
	ev := &statusEvents{}
	o.Events = ev
	q := startQueue(t, o)
	q.Enqueue(context.Background(), q.NewID(), env("busy@a.example", "free@a.example"), strings.NewReader("x\r\n"))
	waitFor(t, "free delivered", func() bool { return f.count("free@a.example") == 1 })
	if f.count("busy@a.example") != 0 {
		t.Fatal("held recipient delivered before its time")
	}
	// mailq says why it waits, and until when.
	if l := q.List(); len(l) != 1 || len(l[0].Rcpts) != 2 || l[0].Rcpts[0].Reason != "delivery postponed: test hold" || !l[0].Rcpts[0].NextTry.Equal(hold) {
		t.Errorf("queue list %+v: want busy's wait and its reason", l)
	}
	waitFor(t, "all delivered", func() bool { return drained(t, q, dir) })
	if time.Now().Before(hold) {
		t.Error("drained before the hold ended")
	}
	if f.count("busy@a.example") != 1 {
		t.Errorf("busy delivered %d times", f.count("busy@a.example"))
	}
	// One admission at first, one when the hold ends: the message
	// sleeps meanwhile instead of asking again and again.
	p.mu.Lock()
	if p.admits > 3 {
		t.Errorf("%d admissions: the held message was not put to sleep until its time", p.admits)
	}
	p.mu.Unlock()
	for _, s := range ev.statuses() {
		if s != "sent" {
			t.Errorf("logged %q: a held-back recipient must leave no trace", s)
		}
	}
}

// A recipient held back when the message's lifetime is over expires
// (postmaster or the sender is told, as for any expiry).
func TestPacerHoldExpires(t *testing.T) {
	dir := t.TempDir()
	f := newFakeNet()
	o := f.options(dir)
	o.MaxLifetime = 300 * time.Millisecond
	o.Pacer = &fakePacer{hold: map[string]time.Time{"busy@a.example": time.Now().Add(time.Hour)}}
	ev := &statusEvents{}
	o.Events = ev
	q := startQueue(t, o)
	q.Enqueue(context.Background(), q.NewID(), env("busy@a.example"), strings.NewReader("x\r\n"))
	waitFor(t, "expired", func() bool { return drained(t, q, dir) })
	if b := f.getBounces(); len(b) != 1 || !reflect.DeepEqual(b[0], []string{"busy@a.example"}) {
		t.Errorf("bounces %v, want the held recipient's expiry", b)
	}
	if got := ev.statuses(); !reflect.DeepEqual(got, []string{"expired"}) {
		t.Errorf("logged %v, want [expired]", got)
	}
}

// Plan.RecipientLimit splits a delivery; Plan.Key makes next hops share
// one concurrency limit.
func TestPacerPlan(t *testing.T) {
	dir := t.TempDir()
	f := newFakeNet()
	o := f.options(dir)
	o.Pacer = &fakePacer{plan: Plan{Key: "site", Concurrency: 1, RecipientLimit: 2}}
	var mu sync.Mutex
	var sizes []int
	in, most := 0, 0
	base := o.Deliver
	o.Deliver = func(ctx context.Context, m *Message, hop envelope.Hop, rcpts []int) []Outcome {
		mu.Lock()
		sizes = append(sizes, len(rcpts))
		in++
		most = max(most, in)
		mu.Unlock()
		time.Sleep(10 * time.Millisecond)
		mu.Lock()
		in--
		mu.Unlock()
		return base(ctx, m, hop, rcpts)
	}
	q := startQueue(t, o)
	q.Enqueue(context.Background(), q.NewID(), env("1@a.example", "2@a.example", "3@a.example", "4@b.example", "5@c.example"), strings.NewReader("x\r\n"))
	q.Enqueue(context.Background(), q.NewID(), env("6@d.example"), strings.NewReader("x\r\n"))
	waitFor(t, "all delivered", func() bool { return drained(t, q, dir) })
	mu.Lock()
	defer mu.Unlock()
	n := 0
	for _, s := range sizes {
		if s > 2 {
			t.Errorf("a delivery of %d recipients, limit 2", s)
		}
		n += s
	}
	if n != 6 || most != 1 {
		t.Errorf("%d recipients delivered, at most %d at once across next hops of one key; want 6 and 1", n, most)
	}
	q.mu.Lock()
	if len(q.hops) != 0 {
		t.Errorf("%d destinations' semaphores kept with nothing to deliver", len(q.hops))
	}
	q.mu.Unlock()
}

// The pacer may turn an outcome around: a permanent reply it knows to
// be a throttle becomes a deferral until its RetryAt, not a bounce.
func TestPacerChangesOutcome(t *testing.T) {
	dir := t.TempDir()
	f := newFakeNet()
	o := f.options(dir)
	o.MinBackoff, o.MaxBackoff = time.Hour, time.Hour
	f.set("x@a.example", testErr{perm: true, msg: "550 5.2.122 too many"})
	p := &fakePacer{}
	retry := time.Now().Add(time.Second)
	p.fix = func(outs []Outcome) {
		for k := range outs {
			if outs[k].Err != nil {
				outs[k].Err = testErr{msg: outs[k].Err.Error()}
				outs[k].RetryAt = retry
				f.set("x@a.example", nil)
			}
		}
	}
	o.Pacer = p
	q := startQueue(t, o)
	q.Enqueue(context.Background(), q.NewID(), env("x@a.example"), strings.NewReader("x\r\n"))
	start := time.Now()
	waitFor(t, "delivered at the retry", func() bool { return drained(t, q, dir) })
	if len(f.getBounces()) != 0 {
		t.Fatalf("bounced: %v", f.getBounces())
	}
	if f.count("x@a.example") != 1 || time.Since(start) < 500*time.Millisecond {
		t.Errorf("delivered %d times after %v; want once, at the pacer's retry (not the hour's backoff, not at once)", f.count("x@a.example"), time.Since(start))
	}
}

// statusEvents records the statuses of the log's delivery lines.
type statusEvents struct {
	mu sync.Mutex
	st []string
}

func (r *statusEvents) Queued(*Message)  {}
func (r *statusEvents) Removed(*Message) {}
func (r *statusEvents) Delivery(m *Message, i int, hop envelope.Hop, o Outcome, status string, d time.Duration) {
	r.mu.Lock()
	r.st = append(r.st, status)
	r.mu.Unlock()
}

func (r *statusEvents) statuses() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.st...)
}

// A delivery to a suspended next hop does not take place: the pacer is
// told so (nil outcomes), so that it gives back the rate it reserved
// instead of counting a delivery the remote never saw.
func TestPacerToldOfSuspendedHop(t *testing.T) {
	dir := t.TempDir()
	f := newFakeNet()
	f.set("b@two.example", siteDown{})
	o := f.options(dir)
	o.MinBackoff, o.MaxBackoff = time.Hour, time.Hour
	p := &fakePacer{}
	o.Pacer = p
	ev := &recEvents{}
	o.Events = ev
	q := startQueue(t, o)
	q.Enqueue(context.Background(), q.NewID(), env("b@two.example"), strings.NewReader("x\r\n"))
	waitFor(t, "the first deferral", func() bool { return len(ev.deferred()) == 1 })
	q.Enqueue(context.Background(), q.NewID(), env("b@two.example"), strings.NewReader("x\r\n"))
	waitFor(t, "the second deferral", func() bool { return len(ev.deferred()) == 2 })
	if r := ev.deferred()[1]; !strings.HasPrefix(r, "delivery temporarily suspended") {
		t.Fatalf("second deferral %q: want the suspended next hop's", r)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.done) != 2 || p.done[0] == nil || p.done[1] != nil {
		t.Errorf("the pacer saw %d outcome lists %v; want the attempt's, then nil for the delivery the suspension skipped", len(p.done), p.done)
	}
}

// A message is due when its earliest pending recipient is, whatever the
// order of its recipients: one due now before one deferred for an hour
// makes it due now (the pacer's waits count as later next tries).
func TestDue(t *testing.T) {
	q := &Queue{}
	m := NewMemMessage("4AAA", env("now@a.example", "later@a.example", "held@a.example"), []byte("x\r\n"))
	hour := time.Now().Add(time.Hour)
	m.Rcpts[1].next = hour.Unix()
	e := &entry{m: m}
	if got := q.due(e); !got.IsZero() {
		t.Errorf("due %v with a recipient due now first, want now", got)
	}
	e.later = map[int]Postponed{0: {Rcpt: 0, At: hour.Add(time.Hour)}, 2: {Rcpt: 2, At: hour.Add(2 * time.Hour)}}
	if got := q.due(e); got.Unix() != hour.Unix() {
		t.Errorf("due %v, want the deferred recipient's hour", got)
	}
}
