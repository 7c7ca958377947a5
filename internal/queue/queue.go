// Package queue implements mailtee's spool and scheduler: messages stored
// durably before they are acknowledged, delivery state kept per
// recipient, retries with backoff, expiry with a bounce, and recovery of
// everything in the spool at start-up.
//
// Delivery is done by the caller's Deliver function, routing by its Route
// function: the queue knows neither SMTP nor Maildir, only which
// recipients of which message go to which next hop, and what came back.
//
// The scheduler (queue.go) reaches the storage only through the spool
// interface (spool.go); the files, the intake journal, the pool of
// reused files and the state sidecars behind it are store.go,
// journal.go and state.go.
package queue

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/mailtee/mailtee/internal/envelope"
)

// Outcome is the result of delivering to one recipient. Err nil means
// delivered; an Err with IsPermanent() true means bounce; any other Err
// means try again later.
type Outcome struct {
	Err   error
	Relay string // "host[ip]:port", "local", "none"
	Reply string // the success reply, for the log
	DSN   string // enhanced status code, "2.0.0" when empty and Err is nil
	// Add, with Err nil, are recipients to add to the message
	// (mailbox_bcc_maps copies): recorded in the same durable write as
	// this delivery, and delivered by a later pass like any other
	// recipient. An address that is a recipient of the message already
	// (case-folded) is not added again, so copies of copies end. With an
	// Err, Add is ignored: the retry makes the copies.
	Add []envelope.Rcpt
	// ConnUse is how many deliveries the connection that settled this
	// recipient has carried, this one included (the log's conn_use=
	// when above 1); 0 when there was none.
	ConnUse int
	// RetryAt, with a temporary Err, is when to try again instead of
	// after the backoff (a Pacer sets it for a throttling reply).
	RetryAt time.Time
	// Setup is the part of the attempt the agent spent before it could
	// transmit: DNS, connect, greeting, EHLO, TLS (Postfix's delays=c).
	// Zero on a cached connection and for local deliveries.
	Setup time.Duration
	// Delays is set by the queue for Events: Postfix's delays=a/b/c/d,
	// the time before this attempt became active (since arrival), in
	// the queue manager (waiting for a delivery slot), connection
	// setup, and transmission. They add up to the delay of the line.
	Delays [4]time.Duration
}

// permanent is implemented by delivery errors that know whether they are
// final (deliver.Error).
type permanent interface{ IsPermanent() bool }

// IsPermanent reports whether err says the failure is final.
func IsPermanent(err error) bool {
	var p permanent
	return errors.As(err, &p) && p.IsPermanent()
}

// Events receives what happens to messages, for the mail log.
type Events interface {
	Queued(m *Message)
	Delivery(m *Message, rcpt int, hop envelope.Hop, o Outcome, status string, delay time.Duration)
	Removed(m *Message)
}

// Options configure a Queue. Zero durations take Postfix's defaults.
type Options struct {
	Dir string // queue_directory

	MinBackoff     time.Duration // minimal_backoff_time (300s)
	MaxBackoff     time.Duration // maximal_backoff_time (4000s)
	MaxLifetime    time.Duration // maximal_queue_lifetime (5d)
	BounceLifetime time.Duration // bounce_queue_lifetime (5d), for mail from <>

	DestConcurrency int // default_destination_concurrency_limit (20)
	// Concurrency, when set, is the limit for a transport's next hops
	// (TRANSPORT_destination_concurrency_limit); DestConcurrency
	// otherwise.
	Concurrency func(transport string) int
	MaxActive   int // messages being delivered at once (Postfix qmgr_message_active_limit)
	// MaxActiveRcpts bounds the recipients of the messages being
	// delivered at once (qmgr_message_recipient_limit, 20000): a delivery
	// pass takes a few hundred bytes per recipient while it runs, and a
	// backlog of 660 messages of 1,000 recipients, all due at once, must
	// not take them all together. A message with more recipients than
	// this is delivered alone.
	MaxActiveRcpts int

	// Route says where a recipient goes.
	Route func(ctx context.Context, rcpt string) (envelope.Hop, error)
	// CopyRoute, when set, is asked first for a recipient the migration
	// layer made (Rcpt.Migration set): copy_transport. ok false: Route
	// decides.
	CopyRoute func(ctx context.Context, rcpt envelope.Rcpt) (hop envelope.Hop, ok bool, err error)
	// CopyApart, when set, says whether a recipient the migration layer
	// made to addr takes another route than an ordinary recipient with
	// that address (addr is delivered here, which a copy never is): only
	// then are the two kept apart when recipients are added (rcptKey).
	CopyApart func(addr string) bool
	// Deliver delivers m to the recipients with the given indexes, all
	// bound for hop, and returns one Outcome per index, in order.
	Deliver func(ctx context.Context, m *Message, hop envelope.Hop, rcpts []int) []Outcome
	// Bounce is called once all recipients are final and some bounced
	// without notice yet: it must enqueue the notifications (to the
	// sender, or postmaster for automatic copies) and call notified with
	// the recipients of each notification as soon as it is queued; the
	// message is removed once Bounce returns nil.
	Bounce func(ctx context.Context, m *Message, failed []int, notified func([]int) error) error
	// Pacer, when set, paces deliveries (pacer.go).
	Pacer Pacer
	// Ledger, when set, records messages and outcomes (ledger.go).
	Ledger Ledger

	Events Events
	Log    *slog.Logger

	noJournal bool // every message in a file of its own (tests)
}

// Queue is the spool and its scheduler.
type Queue struct {
	o   Options
	sp  spool
	log *slog.Logger

	mu      sync.Mutex
	msgs    map[string]*entry
	writing map[string]bool // IDs being stored by Enqueue: not for Pickup
	ready   []*entry        // due, waiting for an active slot
	timers  timerHeap
	active  int
	actRcpt int                        // recipients of the active messages' passes
	hops    map[string]*destSlot       // per-destination concurrency
	dead    map[envelope.Hop]suspended // next hops no server of which answered
	deadGC  int                        // sweep dead when it grows to this
	wake    chan struct{}
	quit    chan struct{} // closed by Close
	compact time.Duration // compactEvery, when the queue opened
	closing bool
	wg      sync.WaitGroup
	ctx     context.Context
	cancel  context.CancelFunc
}

type entry struct {
	m       *Message
	busy    bool      // being delivered
	flush   bool      // a flush came while busy: retry now when done
	parked  bool      // no pass starts: being handed to another node (export.go)
	when    time.Time // scheduled time while waiting in the heap
	rcpts   int       // pending recipients when its pass began (counted in actRcpt)
	index   int       // in the heap, -1 when not there
	removed bool
	// later holds the recipients the pacer held back, until when and
	// why: in memory only (after a restart they are simply due).
	later map[int]Postponed
	// announced: qmgr's "from=<...>, size=N, nrcpt=N (queue active)" is
	// logged for this stay in the active set. Postfix logs it each time
	// a message becomes active: when it arrives, at each retry of a
	// deferred message, and after a restart (a message queued while the
	// server was stopped, or left from before).
	announced bool
}

// Open opens (creating if needed) the spool in o.Dir and loads every
// message in it; damaged files are moved to the corrupt/ directory with a
// log line. Call Run to start delivering.
func Open(o Options) (*Queue, error) {
	if o.MinBackoff <= 0 {
		o.MinBackoff = 300 * time.Second
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = max(4000*time.Second, o.MinBackoff)
	}
	if o.MaxLifetime <= 0 {
		o.MaxLifetime = 5 * 24 * time.Hour
	}
	if o.BounceLifetime <= 0 {
		o.BounceLifetime = o.MaxLifetime
	}
	if o.DestConcurrency <= 0 {
		o.DestConcurrency = 20
	}
	if o.MaxActive <= 0 {
		o.MaxActive = 1000
	}
	if o.MaxActiveRcpts <= 0 {
		o.MaxActiveRcpts = 20000
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	var finished func([]*Message)
	if o.Ledger != nil {
		finished = func(ms []*Message) {
			var wg sync.WaitGroup
			wg.Add(len(ms))
			for _, m := range ms {
				o.Ledger.Final(m, false, wg.Done)
			}
			wg.Wait()
		}
	}
	st, loaded, err := openSpool(o.Dir, !o.noJournal, o.Log, finished)
	if err != nil {
		return nil, err
	}
	q := &Queue{o: o, sp: st, log: o.Log, msgs: map[string]*entry{}, writing: map[string]bool{}, hops: map[string]*destSlot{}, dead: map[envelope.Hop]suspended{}, deadGC: minDeadSweep, wake: make(chan struct{}, 1), quit: make(chan struct{}), compact: compactEvery}
	q.ctx, q.cancel = context.WithCancel(context.Background())
	for _, m := range loaded {
		q.add(m)
		if o.Ledger != nil {
			o.Ledger.Accepted(m)
		}
	}
	return q, nil
}

// add registers a message and makes it due now (recipients with a later
// NextTry are left alone by the delivery pass).
func (q *Queue) add(m *Message) *entry {
	e := &entry{m: m, index: -1}
	q.msgs[m.ID] = e
	q.scheduleLocked(e, q.due(e))
	return e
}

// due is when e's next pass should run: the earliest time one of its
// pending recipients may be tried, by its backoff and the pacer's wait
// (q.mu held). A zero time is now.
func (q *Queue) due(e *entry) time.Time {
	var t time.Time
	first := true
	for i := range e.m.Rcpts {
		r := &e.m.Rcpts[i]
		if r.Status != Pending {
			continue
		}
		at := r.NextTry()
		if l, ok := e.later[i]; ok && l.At.After(at) {
			at = l.At
		}
		if first || at.Before(t) {
			t, first = at, false
		}
	}
	return t
}

// pendingRcpts counts the recipients a delivery pass of m may handle.
func pendingRcpts(m *Message) int {
	n := 0
	for i := range m.Rcpts {
		if m.Rcpts[i].Status == Pending {
			n++
		}
	}
	return n
}

// NewID returns a fresh queue ID.
func (q *Queue) NewID() string { return q.sp.newID() }

// Enqueue stores a message durably (file and directory entry synced)
// and schedules it. It returns only once the message is on stable
// storage. If body returns an error, nothing is stored and that error is
// returned.
func (q *Queue) Enqueue(ctx context.Context, id string, env *envelope.Envelope, body io.Reader) error {
	if len(env.Rcpts) == 0 {
		return errors.New("no recipients")
	}
	if env.Arrival.IsZero() {
		env.Arrival = time.Now()
	}
	// The file is complete on disk before it is registered here; a
	// rescan in between must not take it for a submission of its own.
	q.mu.Lock()
	q.writing[id] = true
	q.mu.Unlock()
	m, err := q.sp.put(id, env, body)
	if err != nil {
		q.mu.Lock()
		delete(q.writing, id)
		q.mu.Unlock()
		return err
	}
	if q.o.Events != nil {
		q.o.Events.Queued(m)
	}
	if q.o.Ledger != nil {
		q.o.Ledger.Accepted(m)
	}
	q.mu.Lock()
	delete(q.writing, id)
	q.add(m).announced = q.o.Events != nil
	q.mu.Unlock()
	q.poke()
	return nil
}

// Rescan picks up messages that appeared in the spool without Pickup
// (for example while the control socket was unreachable).
func (q *Queue) Rescan() {
	ids, err := q.sp.ids()
	if err != nil {
		q.log.Error("queue rescan", "err", err)
		return
	}
	for _, id := range ids {
		if err := q.Pickup(id); err != nil {
			q.log.Warn("queue rescan: cannot load message", "id", id, "err", err)
		}
	}
}

// Pickup loads a message that another process (mailtee sendmail) put
// into the spool, if it is not known yet.
func (q *Queue) Pickup(id string) error {
	if !ValidID(id) {
		return fmt.Errorf("%q: %w", id, ErrBadID)
	}
	q.mu.Lock()
	_, known := q.msgs[id]
	known = known || q.writing[id]
	q.mu.Unlock()
	if known {
		return nil
	}
	m, err := q.sp.load(id)
	if err != nil {
		return err
	}
	if q.o.Events != nil {
		q.o.Events.Queued(m)
	}
	q.mu.Lock()
	if _, known := q.msgs[id]; !known && !q.writing[id] {
		q.add(m).announced = q.o.Events != nil
	}
	q.mu.Unlock()
	q.poke()
	return nil
}

func (q *Queue) poke() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// Run delivers until Close. It returns once Close has been called and
// deliveries in progress have finished.
func (q *Queue) Run() {
	if q.sp.compacts() {
		q.wg.Add(1)
		go q.compactLoop()
	}
	for {
		q.mu.Lock()
		if q.closing {
			q.mu.Unlock()
			q.wg.Wait()
			return
		}
		now := time.Now()
		for len(q.timers) > 0 && !q.timers[0].when.After(now) {
			e := heap.Pop(&q.timers).(*entry)
			q.ready = append(q.ready, e)
		}
		for len(q.ready) > 0 && q.active < q.o.MaxActive {
			e := q.ready[0]
			if e.removed || e.busy || e.m.Hold || e.parked {
				q.ready = q.ready[1:]
				continue
			}
			n := pendingRcpts(e.m)
			if q.actRcpt > 0 && q.actRcpt+n > q.o.MaxActiveRcpts {
				break // until a pass finishes (finish pokes)
			}
			q.ready = q.ready[1:]
			e.busy, e.rcpts = true, n
			q.active++
			q.actRcpt += n
			q.wg.Add(1)
			go q.process(e)
		}
		var wait <-chan time.Time
		if len(q.timers) > 0 {
			wait = time.After(time.Until(q.timers[0].when))
		}
		q.mu.Unlock()
		select {
		case <-q.wake:
		case <-wait:
		}
	}
}

// compactEvery is how often the spool is asked to compact (the journal
// checked for segments to empty); a variable for tests, taken by each
// queue when it opens.
var compactEvery = 5 * time.Second

// compactLoop has the spool free the storage that older messages hold
// up until Close.
func (q *Queue) compactLoop() {
	defer q.wg.Done()
	t := time.NewTicker(q.compact)
	defer t.Stop()
	for {
		select {
		case <-q.quit:
			return
		case <-t.C:
		}
		q.compactSpool()
	}
}

func (q *Queue) compactSpool() {
	q.sp.compact(func(moveIt func(*Message) bool) []*Message {
		var move []*Message
		q.mu.Lock()
		for _, e := range q.msgs {
			if moveIt(e.m) {
				move = append(move, e.m)
			}
		}
		q.mu.Unlock()
		return move
	})
}

// Close stops scheduling new deliveries and waits for those in flight,
// at most until ctx ends, when it cancels them (they are then retried
// after a restart).
func (q *Queue) Close(ctx context.Context) error {
	q.mu.Lock()
	if !q.closing {
		close(q.quit)
	}
	q.closing = true
	q.mu.Unlock()
	q.poke()
	done := make(chan struct{})
	go func() { q.wg.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		q.cancel()
		<-done
		err = ctx.Err()
	}
	q.sp.close()
	return err
}

// scheduleLocked puts e in the timer heap for time t (zero: now).
func (q *Queue) scheduleLocked(e *entry, t time.Time) {
	if e.index >= 0 {
		heap.Remove(&q.timers, e.index)
	}
	e.when = t
	heap.Push(&q.timers, e)
}

// process delivers every due recipient of one message, grouped by next
// hop (and by the pacer's recipient limit), then records the results and
// decides what comes next.
func (q *Queue) process(e *entry) {
	defer q.wg.Done()
	m := e.m
	ctx := q.ctx
	now := time.Now()
	q.mu.Lock()
	announce := !e.announced
	e.announced = true
	q.mu.Unlock()
	if announce && q.o.Events != nil {
		q.o.Events.Queued(m)
	}
	groups := map[envelope.Hop][]int{}
	var order []envelope.Hop
	for i := range m.Rcpts {
		r := &m.Rcpts[i]
		if r.Status != Pending || r.next > now.Unix() {
			continue
		}
		q.mu.Lock()
		held := e.heldBack(i, now)
		q.mu.Unlock()
		if held {
			continue
		}
		hop, err := q.route(ctx, r.Rcpt)
		if err != nil {
			t := time.Now()
			q.record(m, i, envelope.Hop{Transport: "none"}, Outcome{Err: err, Relay: "none", Delays: delays(m.Env.Arrival, now, t, t, 0)})
			continue
		}
		if _, ok := groups[hop]; !ok {
			order = append(order, hop)
		}
		groups[hop] = append(groups[hop], i)
	}
	type job struct {
		plan  Plan
		rcpts []int
	}
	var jobs []job
	for _, hop := range order {
		plan := Plan{Hop: hop}
		if q.o.Pacer != nil {
			plan = q.o.Pacer.Plan(ctx, hop)
			plan.Hop = hop
		}
		for _, c := range chunks(groups[hop], plan.RecipientLimit) {
			jobs = append(jobs, job{plan, c})
		}
	}
	var wg sync.WaitGroup
	p := &pass{e: e, left: len(jobs), done: make(chan struct{})}
	for _, j := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			q.deliverGroup(ctx, p, j.plan, j.rcpts, now)
		}()
	}
	wg.Wait()
	q.finish(e, p.adds, p.attempted)
}

// deliverGroup delivers rcpts of p's message, all bound for plan.Hop,
// within the destination's concurrency and the pacer's limits, and
// records what came back. active is when the pass began.
func (q *Queue) deliverGroup(ctx context.Context, p *pass, plan Plan, rcpts []int, active time.Time) {
	m, hop := p.e.m, plan.Hop
	var adm Admission
	var res []Outcome // the outcomes of idx, filled below
	var idx []int
	if q.o.Pacer != nil {
		adm = q.o.Pacer.Admit(ctx, plan, m, rcpts)
		rcpts = adm.Now
		idx, res = q.holdBack(p, adm.Later, active)
	}
	dctx := ctx
	if adm.Ctx != nil {
		dctx = adm.Ctx
	}
	if len(rcpts) > 0 {
		if adm.Key != "" {
			plan.Key = adm.Key
		}
		slot := q.slot(plan)
		if !q.acquire(ctx, slot) {
			q.leave(slot)
			if adm.Done != nil {
				adm.Done(nil)
			}
			q.recordGroup(p, nil, nil)
			return
		}
		var later []Postponed
		if adm.Go != nil {
			later = adm.Go()
		}
		if len(later) > 0 {
			// The pacer learned, while this delivery waited for its
			// slot, that the destination or some mailboxes are
			// throttled.
			i, r := q.holdBack(p, later, active)
			idx, res = append(idx, i...), append(res, r...)
			held := make(map[int]bool, len(later))
			for _, l := range later {
				held[l.Rcpt] = true
			}
			rcpts = slices.DeleteFunc(slices.Clone(rcpts), func(i int) bool { return held[i] })
		}
		if len(rcpts) == 0 {
			// All held back: the delivery does not take place.
			q.release(slot)
			q.leave(slot)
			if adm.Done != nil {
				adm.Done(nil)
			}
		} else {
			start := time.Now()
			outs, skipped := q.suspendedOutcomes(hop, len(rcpts))
			if !skipped {
				outs = q.o.Deliver(dctx, m, hop, rcpts)
				q.noteSite(hop, outs)
			}
			end := time.Now()
			got := make([]Outcome, len(rcpts))
			for k := range rcpts {
				got[k] = Outcome{Err: errors.New("no result from delivery agent")}
				if k < len(outs) {
					got[k] = outs[k]
				}
				got[k].Delays = delays(m.Env.Arrival, active, start, end, got[k].Setup)
			}
			if adm.Done != nil {
				if skipped {
					// No delivery took place: the pacer gives back
					// what it reserved for it.
					adm.Done(nil)
				} else {
					adm.Done(got)
				}
			}
			// Only now: a throttling reply must suspend the
			// destination before the next delivery there starts.
			q.release(slot)
			q.leave(slot)
			q.mu.Lock()
			p.attempted = true
			q.mu.Unlock()
			idx, res = append(idx, rcpts...), append(res, got...)
		}
	} else if adm.Done != nil {
		adm.Done(nil)
	}
	recs := make([]record, len(idx))
	var adds []envelope.Rcpt
	for k, i := range idx {
		recs[k] = q.outcome(m, i, res[k])
		// A bounced recipient may have reached some mailboxes (an
		// alias whose one member failed for good): their copies are
		// owed as the delivered ones' are. A deferred one makes them
		// at its retry.
		if res[k].Err == nil || IsPermanent(res[k].Err) {
			adds = append(adds, res[k].Add...)
		}
	}
	q.recordGroup(p, recs, adds, func() {
		for k, i := range idx {
			q.logged(m, i, hop, res[k], recs[k])
		}
	})
}

// holdBack holds back recipients of p's message as the pacer says,
// without a trace, at most until the message's lifetime ends; those it
// holds back once the lifetime is over expire, with the pacer's reason:
// their outcomes are returned, for recipients idx.
func (q *Queue) holdBack(p *pass, later []Postponed, active time.Time) (idx []int, res []Outcome) {
	m := p.e.m
	var wait []Postponed
	end := m.Env.Arrival.Add(q.lifetime(m))
	for _, l := range later {
		if t := time.Now(); !t.Before(end) {
			idx = append(idx, l.Rcpt)
			res = append(res, Outcome{Err: postponedError{l.Why}, Relay: "none", Delays: delays(m.Env.Arrival, active, t, t, 0)})
			continue
		}
		if l.At.After(end) {
			l.At = end
		}
		wait = append(wait, l)
	}
	q.mu.Lock()
	p.e.postpone(wait)
	q.mu.Unlock()
	return idx, res
}

// recordGrace is how long the results of one next hop wait for those of
// the message's other next hops, to be written with them: a message
// whose recipients all succeed within it needs no state record at all.
// It is also how much longer than the delivery itself a crash may lead
// to the same recipients being delivered again.
const recordGrace = 500 * time.Millisecond

// pass is one delivery pass over a message's due recipients, one group
// per next hop.
type pass struct {
	e       *entry
	left    int // groups still delivering
	done    chan struct{}
	waiting []*groupRecs // results not written yet
	// adds are the records of the recipients the pass adds, applied to
	// the message when the pass is over: until then its groups read
	// m.Rcpts without the lock.
	adds []record
	// attempted: some group delivered (rather than every recipient
	// being held back by the pacer).
	attempted bool
}

type groupRecs struct {
	recs    []record
	claimed bool // being written by some group
}

// recordGroup applies one group's records, then stores them: the last
// group of the pass stores every record not stored yet with one write
// and at most one fsync, or none when every recipient of the message is
// then delivered (the message's durable removal, which comes next, is
// their record: a crash before it delivers them again, as a crash before
// an fsync would). A group that is not the last waits up to recordGrace
// for the last, and stores its own records if the wait ends first.
// The recipients a group adds are records of that group: they are
// stored with its deliveries, in one write. log runs once the records
// are applied.
func (q *Queue) recordGroup(p *pass, recs []record, adds []envelope.Rcpt, log ...func()) {
	m := p.e.m
	q.mu.Lock()
	for _, r := range recs {
		m.apply(r)
	}
	recs = q.addRecords(p, recs, adds)
	g := &groupRecs{recs: recs}
	p.waiting = append(p.waiting, g)
	p.left--
	last := p.left == 0
	if last {
		close(p.done)
	}
	q.mu.Unlock()
	for _, f := range log {
		f()
	}
	if !last {
		t := time.NewTimer(recordGrace)
		select {
		case <-p.done:
		case <-t.C:
		}
		t.Stop()
	}
	var mine []record
	q.mu.Lock()
	if last {
		for _, w := range p.waiting {
			if !w.claimed {
				w.claimed = true
				mine = append(mine, w.recs...)
			}
		}
		delivered := !p.e.removed && len(p.adds) == 0
		for _, r := range m.Rcpts {
			delivered = delivered && r.Status == Sent
		}
		if delivered {
			// Removed at once, the message needs no record; held for
			// the ledger, it does (without fsync): a crash before the
			// ledger has it must not deliver it again.
			if q.o.Ledger != nil {
				if err := q.sp.delivered(m, mine); err != nil {
					q.log.Warn("cannot note a delivered message awaiting the ledger", "id", m.ID, "err", err)
				}
			}
			mine = nil
		}
	} else if !g.claimed && !isClosed(p.done) {
		// (Once done is closed, the last group stores ours.)
		g.claimed = true
		mine = g.recs
	}
	q.mu.Unlock()
	if len(mine) == 0 {
		return
	}
	q.persist(m, mine)
}

// route is where r goes: CopyRoute for what the migration layer made,
// else Route.
func (q *Queue) route(ctx context.Context, r envelope.Rcpt) (envelope.Hop, error) {
	if r.Migration != "" && q.o.CopyRoute != nil {
		if hop, ok, err := q.o.CopyRoute(ctx, r); ok || err != nil {
			return hop, err
		}
	}
	return q.o.Route(ctx, r.Addr)
}

// rcptKey tells recipients apart for addRecords: by address, and, for
// a recipient the migration layer made that CopyApart keeps apart (one
// box: a mailbox's copy to the very address delivered here, which leaves
// by copy_transport or waits for one), by that too, so that it is not
// taken for a duplicate of the recipient delivered here. Otherwise both
// would reach the same mailbox: the same address twice is a duplicate.
func (q *Queue) rcptKey(r envelope.Rcpt) string {
	if r.Migration == "" || q.o.CopyApart == nil || !q.o.CopyApart(r.Addr) {
		return strings.ToLower(r.Addr)
	}
	// A copy and a forward both leave by CopyRoute: one kind.
	return "migration:" + strings.ToLower(r.Addr)
}

// addRecords appends to recs the records that add adds to m, each
// address once: not one that is a recipient already, or added earlier
// in the pass (q.mu held). Indexes follow the message's recipients and
// those the pass added before.
func (q *Queue) addRecords(p *pass, recs []record, adds []envelope.Rcpt) []record {
	if len(adds) == 0 {
		return recs
	}
	m := p.e.m
	have := make(map[string]bool, len(m.Rcpts)+len(p.adds))
	for i := range m.Rcpts {
		have[q.rcptKey(m.Rcpts[i].Rcpt)] = true
	}
	for _, r := range p.adds {
		have[q.rcptKey(*r.Add)] = true
	}
	for _, a := range adds {
		k := q.rcptKey(a)
		if a.Addr == "" || have[k] {
			continue
		}
		have[k] = true
		a := a
		rec := record{Rcpt: len(m.Rcpts) + len(p.adds), Op: "add", Add: &a}
		p.adds = append(p.adds, rec)
		recs = append(recs, rec)
	}
	return recs
}

// persist appends recs to m's state, fsynced unless all are deferrals
// (a lost deferral only costs an earlier retry).
func (q *Queue) persist(m *Message, recs []record) {
	durable := false
	for _, r := range recs {
		durable = durable || r.Op != "deferred"
	}
	if err := q.sp.record(m, durable, recs...); err != nil && durable {
		// Without the records a restart would deliver again; say so
		// loudly, keep going (the deliveries themselves happened, and
		// the recipients they add are delivered in this run).
		rcpt := ""
		if i := recs[0].Rcpt; i >= 0 && i < len(m.Rcpts) {
			rcpt = m.Rcpts[i].Addr
		}
		q.log.Error("cannot record delivery state", "id", m.ID, "rcpt", rcpt, "err", err)
	}
}

// A next hop none of whose servers could be reached is suspended for
// minimal_backoff_time, as Postfix's queue manager does with a "dead"
// destination: its messages are deferred at once with "delivery
// temporarily suspended" and the last reason, instead of each waiting on
// connections that fail (or, to a host that drops packets, time out). A
// delivery that reaches a server, or a flush, ends the suspension.

// siteError is implemented by delivery errors that can say the whole
// next hop failed (deliver.Error).
type siteError interface{ SiteUnavailable() bool }

type suspended struct {
	until  time.Time
	reason error
}

// suspendedError is the deferral of a message to a suspended next hop.
type suspendedError struct{ reason error }

func (e suspendedError) Error() string {
	return "delivery temporarily suspended: " + e.reason.Error()
}

func (e suspendedError) EnhancedCode() string { return DSN(e.reason) }

// suspendedOutcomes returns deferrals for n recipients if hop is
// suspended.
func (q *Queue) suspendedOutcomes(hop envelope.Hop, n int) ([]Outcome, bool) {
	q.mu.Lock()
	d, ok := q.dead[hop]
	if ok && time.Now().After(d.until) {
		delete(q.dead, hop)
		ok = false
	}
	q.mu.Unlock()
	if !ok {
		return nil, false
	}
	outs := make([]Outcome, n)
	for k := range outs {
		outs[k] = Outcome{Err: suspendedError{d.reason}, Relay: "none"}
	}
	return outs, true
}

// noteSite suspends hop when the delivery found it unreachable, and
// ends a suspension when it got through.
func (q *Queue) noteSite(hop envelope.Hop, outs []Outcome) {
	var down error
	for _, o := range outs {
		var se siteError
		if o.Err == nil || !errors.As(o.Err, &se) || !se.SiteUnavailable() {
			q.mu.Lock()
			delete(q.dead, hop)
			q.mu.Unlock()
			return
		}
		down = o.Err
	}
	if down == nil {
		return
	}
	now := time.Now()
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.dead) >= q.deadGC {
		// A suspension that is over is as good as none: forget
		// those, or every next hop ever found dead keeps one.
		for h, d := range q.dead {
			if now.After(d.until) {
				delete(q.dead, h)
			}
		}
		q.deadGC = max(minDeadSweep, 2*len(q.dead))
	}
	q.dead[hop] = suspended{until: now.Add(q.o.MinBackoff), reason: down}
}

// minDeadSweep keeps the sweeps of a small dead map from running at
// every suspension.
const minDeadSweep = 1024

// destSlot is a destination's concurrency: how many deliveries may run
// at once, those running, those waiting in line, and the deliveries
// holding or waiting for it, so that it is forgotten when there are
// none (a per-recipient destination is one of millions). Its limit
// follows the configuration each time a delivery joins: a reload that
// lowers a destination's concurrency (an answer to a provider's
// throttling) takes effect while a backlog keeps it busy (q.mu guards
// every field).
type destSlot struct {
	key     string
	limit   int
	running int
	waiting []chan struct{} // in line, first come first served
	users   int
}

// slot joins the line of plan's destination: its key (the next hop
// unless the pacer grouped it with others) and its concurrency. Leave
// it with leave.
func (q *Queue) slot(plan Plan) *destSlot {
	q.mu.Lock()
	defer q.mu.Unlock()
	k := plan.Key
	if k == "" {
		k = plan.Hop.String()
	}
	n := plan.Concurrency
	if n <= 0 {
		n = q.o.DestConcurrency
		if q.o.Concurrency != nil {
			if c := q.o.Concurrency(plan.Hop.Transport); c > 0 {
				n = c
			}
		}
	}
	s, ok := q.hops[k]
	if !ok {
		s = &destSlot{key: k}
		q.hops[k] = s
	}
	s.limit = max(n, 1)
	s.grant() // a raised limit lets those in line go
	s.users++
	return s
}

// acquire waits for a place in s, until ctx ends: false then, and no
// place is held.
func (q *Queue) acquire(ctx context.Context, s *destSlot) bool {
	q.mu.Lock()
	if s.running < s.limit && len(s.waiting) == 0 {
		s.running++
		q.mu.Unlock()
		return true
	}
	ch := make(chan struct{})
	s.waiting = append(s.waiting, ch)
	q.mu.Unlock()
	select {
	case <-ch:
		return true
	case <-ctx.Done():
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if i := slices.Index(s.waiting, ch); i >= 0 {
		s.waiting = slices.Delete(s.waiting, i, i+1)
		return false
	}
	// Granted meanwhile: hand the place on.
	s.running--
	s.grant()
	return false
}

// release gives back a place acquire gave.
func (q *Queue) release(s *destSlot) {
	q.mu.Lock()
	defer q.mu.Unlock()
	s.running--
	s.grant()
}

// grant lets those first in line go while the limit allows (q.mu held).
func (s *destSlot) grant() {
	for s.running < s.limit && len(s.waiting) > 0 {
		ch := s.waiting[0]
		s.waiting = s.waiting[1:]
		s.running++
		close(ch)
	}
}

func (q *Queue) leave(s *destSlot) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if s.users--; s.users == 0 {
		delete(q.hops, s.key)
	}
}

// record stores and logs the outcome for one recipient.
func (q *Queue) record(m *Message, i int, hop envelope.Hop, o Outcome) {
	rec := q.outcome(m, i, o)
	q.persist(m, []record{rec})
	q.mu.Lock()
	m.apply(rec)
	q.mu.Unlock()
	q.logged(m, i, hop, o, rec)
}

// outcome is the state record for recipient i after o.
func (q *Queue) outcome(m *Message, i int, o Outcome) record {
	r := &m.Rcpts[i]
	now := time.Now()
	rec := record{Rcpt: i, Relay: o.Relay, DSN: o.DSN}
	switch {
	case o.Err == nil:
		rec.Op = "sent"
		if rec.DSN == "" {
			rec.DSN = "2.0.0"
		}
		rec.Err = o.Reply
	case IsPermanent(o.Err):
		rec.Op, rec.Err = "bounced", o.Err.Error()
	default:
		rec.Err = o.Err.Error()
		if now.Sub(m.Env.Arrival) >= q.lifetime(m) {
			rec.Op, rec.Expired = "bounced", true
			break
		}
		rec.Op = "deferred"
		rec.Next = now.Add(q.backoff(int(r.Attempts) + 1)).Unix()
		if o.RetryAt.After(now) {
			// The pacer's time (a throttled destination's
			// suspension), rounded up to the state's seconds.
			rec.Next = o.RetryAt.Add(time.Second - 1).Unix()
		}
	}
	if rec.DSN == "" {
		rec.DSN = DSN(o.Err)
	}
	q.sp.intern(&rec)
	return rec
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// logged reports one recipient's outcome to Events.
func (q *Queue) logged(m *Message, i int, hop envelope.Hop, o Outcome, rec record) {
	if q.o.Events == nil && q.o.Ledger == nil {
		return
	}
	status := rec.Op
	if rec.Expired {
		status = "expired"
	}
	if q.o.Ledger != nil {
		q.o.Ledger.Delivery(m, i, hop, o, status, time.Now())
	}
	if q.o.Events == nil {
		return
	}
	delay := o.Delays[0] + o.Delays[1] + o.Delays[2] + o.Delays[3]
	if delay == 0 {
		delay = time.Since(m.Env.Arrival)
	}
	q.o.Events.Delivery(m, i, hop, o, status, delay)
}

// delays splits an attempt's time, as Postfix's delays=a/b/c/d: before
// the pass began (since arrival), waiting for the next hop's slot, the
// agent's setup, and the rest of its work. The logged delay is their sum,
// so that it is measured to the end of the delivery, not to the moment
// its outcome was written.
func delays(arrival, active, start, end time.Time, setup time.Duration) [4]time.Duration {
	work := max(end.Sub(start), 0)
	setup = min(max(setup, 0), work)
	return [4]time.Duration{max(active.Sub(arrival), 0), max(start.Sub(active), 0), setup, work - setup}
}

func (q *Queue) lifetime(m *Message) time.Duration {
	if m.Env.From == "" {
		return q.o.BounceLifetime
	}
	return q.o.MaxLifetime
}

// backoff doubles from minimal_backoff_time up to maximal_backoff_time.
func (q *Queue) backoff(attempt int) time.Duration {
	d := q.o.MinBackoff
	for i := 1; i < attempt && d < q.o.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, q.o.MaxBackoff)
}

// DSN is the enhanced status code of a delivery's outcome, for the queue
// file and the log's dsn=: 2.0.0 for success, the error's own code
// (deliver.Error, dnsresolve.Error, a suspended next hop's reason), else
// 5.0.0 or 4.0.0 as the error is permanent or not.
func DSN(err error) string {
	if err == nil {
		return "2.0.0"
	}
	var d interface{ EnhancedCode() string }
	if errors.As(err, &d) {
		if c := d.EnhancedCode(); c != "" {
			return c
		}
	}
	if IsPermanent(err) {
		return "5.0.0"
	}
	return "4.0.0"
}

// finish decides what happens to a message after a delivery pass that
// added the recipients of adds. The entry stays busy until it is
// rescheduled or removed, so that a flush or release meanwhile cannot
// start a second pass (and a second bounce).
func (q *Queue) finish(e *entry, adds []record, attempted bool) {
	m := e.m
	q.mu.Lock()
	m.applyAdds(adds)
	q.active--
	q.actRcpt -= e.rcpts
	if e.flush {
		e.flush = false
		m.flush()
	}
	pending := false
	var failed []int
	for i, r := range m.Rcpts {
		switch {
		case r.Status == Pending:
			pending = true
		case r.Status == Bounced && !r.Notified:
			failed = append(failed, i)
		}
	}
	if pending || e.removed {
		// The next attempt is minutes away: the memory is better
		// spent on new mail.
		q.sp.dropCache(m)
		e.busy = false
		if !e.removed {
			// A retry is a new stay in the active set; a pass for
			// copies just added (never tried) is not, nor one whose
			// recipients the pacer all held back.
			for _, r := range m.Rcpts {
				if r.Status == Pending && r.Attempts > 0 && attempted {
					e.announced = false
				}
			}
			q.scheduleLocked(e, q.due(e))
		}
		q.mu.Unlock()
		q.poke()
		return
	}
	q.mu.Unlock()
	if len(failed) > 0 && q.o.Bounce != nil {
		notified := func(idx []int) error { return q.markNotified(m, idx) }
		if err := q.o.Bounce(q.ctx, m, failed, notified); err != nil {
			// Keep the message: the notification must not be lost.
			q.log.Error("cannot queue bounce; will retry", "id", m.ID, "err", err)
			q.mu.Lock()
			e.busy = false
			q.scheduleLocked(e, time.Now().Add(q.o.MinBackoff))
			q.mu.Unlock()
			q.poke()
			return
		}
	}
	q.final(e)
}

// markNotified records, durably, that the sender (or postmaster) has been
// told about these recipients, so that a retry after a partial failure,
// or a restart, does not tell them twice.
func (q *Queue) markNotified(m *Message, idx []int) error {
	recs := make([]record, len(idx))
	for k, i := range idx {
		recs[k] = record{Rcpt: i, Op: "notified"}
	}
	if err := q.sp.record(m, true, recs...); err != nil {
		return err
	}
	q.mu.Lock()
	for _, r := range recs {
		m.apply(r)
	}
	q.mu.Unlock()
	return nil
}

func (q *Queue) remove(e *entry) { q.removeFile(e, false) }

// removeFile removes e; with reuse its file may be written over by a new
// message, which only a message no delivery is reading may allow.
func (q *Queue) removeFile(e *entry, reuse bool) {
	q.mu.Lock()
	gone := e.removed
	e.removed = true
	q.mu.Unlock()
	if gone {
		return // deleted by the administrator meanwhile
	}
	if err := q.sp.remove(e.m, reuse); err != nil {
		q.log.Error("cannot remove queue file", "id", e.m.ID, "err", err)
	}
	q.mu.Lock()
	if e.index >= 0 {
		heap.Remove(&q.timers, e.index)
	}
	delete(q.msgs, e.m.ID)
	q.mu.Unlock()
	if q.o.Events != nil {
		q.o.Events.Removed(e.m)
	}
	q.poke()
}

// Info describes a queued message, for `mailtee queue list`.
type Info struct {
	ID      string
	Arrival time.Time
	Size    int64
	From    string
	Hold    bool
	Active  bool
	Parent  string `json:",omitempty"` // the message this one was made from
	// Settings is the ID of the migration settings the message was
	// accepted with (envelope.Envelope.Settings).
	Settings string `json:",omitempty"`
	Rcpts    []RcptInfo
}

// RcptInfo is one recipient in Info.
type RcptInfo struct {
	Addr, Status, Reason string
	NextTry              time.Time `json:",omitzero"`
}

func info(m *Message, active bool) Info {
	in := Info{ID: m.ID, Arrival: m.Env.Arrival, Size: m.Size, From: m.Env.From, Hold: m.Hold, Active: active, Parent: m.Env.Parent, Settings: m.Env.Settings}
	for _, r := range m.Rcpts {
		if r.lost {
			continue
		}
		st := r.Status.String()
		if r.Status == Pending {
			st = "pending"
			if r.Attempts > 0 {
				st = "deferred"
			}
		}
		in.Rcpts = append(in.Rcpts, RcptInfo{Addr: r.Addr, Status: st, Reason: r.LastErr, NextTry: r.NextTry()})
	}
	return in
}

// List describes every message in the queue, oldest first.
func (q *Queue) List() []Info {
	var out []Info
	q.Each(func(in Info) error {
		out = append(out, in)
		return nil
	})
	return out
}

// Each calls f with the description of every message in the queue,
// oldest first, until f fails. It holds only the IDs of the whole queue
// at once: listing a backlog of 100,000 messages to a slow reader must
// not take as much memory again as the queue itself. A message removed
// meanwhile is left out.
func (q *Queue) Each(f func(Info) error) error {
	type key struct {
		at time.Time
		id string
	}
	q.mu.Lock()
	keys := make([]key, 0, len(q.msgs))
	for id, e := range q.msgs {
		keys = append(keys, key{e.m.Env.Arrival, id})
	}
	q.mu.Unlock()
	sort.Slice(keys, func(i, j int) bool { return older(keys[i].at, keys[i].id, keys[j].at, keys[j].id) })
	for _, k := range keys {
		q.mu.Lock()
		e, ok := q.msgs[k.id]
		var in Info
		if ok {
			in = info(e.m, e.busy)
			e.describeHeld(&in)
		}
		q.mu.Unlock()
		if !ok {
			continue
		}
		if err := f(in); err != nil {
			return err
		}
	}
	return nil
}

func sortInfo(out []Info) {
	sort.Slice(out, func(i, j int) bool { return older(out[i].Arrival, out[i].ID, out[j].Arrival, out[j].ID) })
}

// older is the listing order: by arrival, then by ID.
func older(at time.Time, id string, at2 time.Time, id2 string) bool {
	if !at.Equal(at2) {
		return at.Before(at2)
	}
	return id < id2
}

// ListDir describes the messages in a spool that no server is running
// on (mailtee queue list on a stopped server).
func ListDir(dir string) ([]Info, error) {
	ms, err := listSpool(dir)
	if err != nil {
		return nil, err
	}
	out := make([]Info, len(ms))
	for i, m := range ms {
		out[i] = info(m, false)
	}
	sortInfo(out)
	return out, nil
}

// ErrNotFound is returned for an unknown queue ID.
var ErrNotFound = errors.New("no such message in the queue")

// ErrBadID is returned for a string that is not a queue ID (ValidID).
var ErrBadID = errors.New("not a queue ID")

// Flush makes every deferred recipient due now (postqueue -f).
func (q *Queue) Flush() {
	q.mu.Lock()
	clear(q.dead) // as Postfix's flush: suspended next hops are tried again
	for _, e := range q.msgs {
		if e.busy {
			e.flush = true // its delivery goroutine owns the recipients now
			continue
		}
		e.m.flush()
		q.scheduleLocked(e, time.Time{})
	}
	q.mu.Unlock()
	q.poke()
}

func (m *Message) flush() {
	for i := range m.Rcpts {
		m.Rcpts[i].next = 0
	}
}

// Hold stops deliveries of a message until Release (postsuper -h).
func (q *Queue) Hold(id string) error { return q.setHold(id, true) }

// Release resumes deliveries of a held message (postsuper -H).
func (q *Queue) Release(id string) error { return q.setHold(id, false) }

func (q *Queue) setHold(id string, hold bool) error {
	q.mu.Lock()
	e, ok := q.msgs[id]
	q.mu.Unlock()
	if !ok {
		return ErrNotFound
	}
	op := "release"
	if hold {
		op = "hold"
	}
	if err := q.sp.record(e.m, true, record{Rcpt: -1, Op: op}); err != nil {
		return err
	}
	q.mu.Lock()
	e.m.Hold = hold
	if !hold && !e.busy {
		q.scheduleLocked(e, q.due(e))
	}
	q.mu.Unlock()
	q.poke()
	return nil
}

// Delete removes a message without notifying anyone (postsuper -d). A
// delivery in progress finishes, but nothing is retried.
func (q *Queue) Delete(id string) error {
	q.mu.Lock()
	e, ok := q.msgs[id]
	q.mu.Unlock()
	if !ok {
		return ErrNotFound
	}
	if q.o.Ledger != nil {
		q.mu.Lock()
		c := e.m.stateCopy()
		q.mu.Unlock()
		q.o.Ledger.Final(c, true, nil)
	}
	q.remove(e)
	return nil
}

// timerHeap orders entries by scheduled time.
type timerHeap []*entry

func (h timerHeap) Len() int           { return len(h) }
func (h timerHeap) Less(i, j int) bool { return h[i].when.Before(h[j].when) }
func (h timerHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *timerHeap) Push(x any) {
	e := x.(*entry)
	e.index = len(*h)
	*h = append(*h, e)
}
func (h *timerHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	e.index = -1
	return e
}
