package ledger

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mailtee/mailtee/internal/envelope"
	"github.com/mailtee/mailtee/internal/maillog"
	"github.com/mailtee/mailtee/internal/queue"
)

// RecorderOptions configure a Recorder.
type RecorderOptions struct {
	Path string // the SQLite file (DBPath)
	Node string // this host's name in the ledger (myhostname)
	// Phase says what migration and copy settings a message was
	// accepted with, given the ID its envelope records
	// (envelope.Envelope.Settings; "" for none).
	Phase func(settings string) string
	// Marker is a file in the queue directory that remembers which
	// ledger the queue's outcomes went to, so that a ledger file lost
	// or replaced shows as a gap ("" : none).
	Marker    string
	Retention time.Duration // 0: keep everything
	// Log writes a line to the mail log ("ledger" program, Postfix's
	// shape: "warning: ...").
	Log func(format string, args ...any)
	// Every is how long live events (accepted, attempts) may gather
	// before a batch is written (default 200 ms): one fsync for all of
	// them. A batch with a finished message is written as soon as the
	// events waiting are in it, since the queue keeps the message until
	// then, and a crash meanwhile would deliver it again.
	Every time.Duration
	// Gather is how long a finished message waits for others to share
	// its commit (default 100 ms; negative: none). A commit writes every
	// page it touched to the WAL (the same index pages again at each
	// one) and fsyncs, about 1 ms of CPU whatever its size: a relay at
	// 1000 messages a second committed each one or two alone, as soon
	// as the last commit ended; with 20 ms, the seed's primary still
	// spent 4% of its CPU in commits. The wait costs no mail: the queue
	// has noted the message delivered (an S record) meanwhile.
	Gather time.Duration
}

// maxBatch bounds the events of one transaction.
const maxBatch = 8192

// maxHeld bounds the messages the accumulator holds between batches:
// beyond it the oldest go in the next batch, due or not, so that the
// memory stays bounded when events come faster than they are written.
const maxHeld = 4096

// Recorder writes what the queue tells it (queue.Ledger) to the store in
// batches, off the acceptance path.
type Recorder struct {
	o  RecorderOptions
	ch chan event

	mu  sync.Mutex // st, gap
	st  *Store
	gap *Gap // what could not be written, until it can be
	// cmu guards closing and the channel's close: senders hold it
	// shared.
	cmu     sync.RWMutex
	closing bool
	done    chan struct{}
	dones   sync.WaitGroup // runDones's goroutines
	commits atomic.Uint64  // transactions tried (tests)

	waiting  atomic.Int64
	oldest   atomic.Int64 // Unix µs of the oldest event not written
	last     atomic.Int64 // Unix µs of the last commit
	failures atomic.Uint64
	lost     atomic.Uint64
	dropped  atomic.Uint64 // live events dropped when the channel was full
	// headless are the IDs of queued messages whose head (Accepted) was
	// dropped: their next Delivery carries it, or a message deferred for
	// days would be missing from every report (its delivery rows alone
	// name no message) until it left the queue.
	headless  sync.Map
	lastWarn  time.Time
	markSaved time.Time
}

type event struct {
	at   time.Time
	head *Message  // with the message's state (Accepted, Final)
	row  *Delivery // one delivery (queue Delivery)
	key  msgKey    // for row
	done func()    // Final's
	fin  bool      // the message left the queue
}

// NewRecorder returns a running Recorder. The database is opened now and,
// when that fails, again at each batch: a ledger that cannot be opened
// costs no mail, only records (a gap).
func NewRecorder(o RecorderOptions) *Recorder {
	if o.Every <= 0 {
		o.Every = 200 * time.Millisecond
	}
	if o.Gather == 0 {
		o.Gather = 100 * time.Millisecond
	}
	if o.Log == nil {
		o.Log = func(string, ...any) {}
	}
	r := &Recorder{o: o, ch: make(chan event, 1<<14), done: make(chan struct{})}
	r.mu.Lock()
	// A gap the last run could not write: its messages left the queue.
	if mk, ok := r.readMarker(); ok && mk.Gap != nil {
		r.gap = mk.Gap
	}
	if err := r.openLocked(); err != nil {
		r.warnLocked(err)
	}
	r.mu.Unlock()
	go r.run()
	return r
}

// Accepted implements queue.Ledger.
func (r *Recorder) Accepted(m *queue.Message) {
	r.send(event{at: time.Now(), head: r.snapshot(m, false, false)}, false)
}

// Delivery implements queue.Ledger.
func (r *Recorder) Delivery(m *queue.Message, i int, hop envelope.Hop, o queue.Outcome, status string, at time.Time) {
	rs := &m.Rcpts[i]
	d := &Delivery{Index: i, Rcpt: rs.Addr, Orig: origOf(rs.Rcpt), Copy: rs.Copy, At: at, Transport: hop.Transport, Nexthop: hop.Nexthop,
		Relay: o.Relay, DSN: cmp.Or(o.DSN, queue.DSN(o.Err)), Attempts: int(rs.Attempts)}
	switch status {
	case "sent":
		d.Status, d.Reply = Sent, o.Reply
		d.RemoteID = RemoteID(o.Reply)
	case "bounced":
		d.Status = Bounced
	case "expired":
		d.Status = Expired
	default:
		d.Status = Pending
	}
	if d.Status != Pending {
		d.Attempts++ // the queue counts deferrals; this attempt ended it
	}
	if o.Err != nil {
		d.Reply = o.Err.Error()
	}
	ev := event{at: at, row: d, key: msgKey{r.o.Node, m.ID}}
	if _, ok := r.headless.LoadAndDelete(m.ID); ok {
		ev.head = r.head(m)
	}
	r.send(ev, false)
}

// head is m's head without its deliveries' states, which other
// deliveries of m may be changing: what Delivery may read of m (the
// envelope and the recipients' addresses do not change).
func (r *Recorder) head(m *queue.Message) *Message {
	env := &m.Env
	h := &Message{Node: r.o.Node, ID: m.ID, MessageID: env.MessageID, From: env.From, Size: m.Size, Arrival: env.Arrival,
		Client: "local", Parent: env.Parent, Notice: env.Notification}
	if env.ClientAddr != "" {
		h.Client = maillog.NameAddr(env.ClientName, env.ClientAddr)
	}
	if r.o.Phase != nil {
		h.Phase = r.o.Phase(env.Settings)
	}
	for i := range m.Rcpts {
		if rs := &m.Rcpts[i]; !rs.Copy && !m.Added(i) {
			h.Rcpts = append(h.Rcpts, origOf(rs.Rcpt))
		}
	}
	return h
}

// Final implements queue.Ledger: it waits for room in the queue of
// events (it is called after a delivery, never on the acceptance path).
func (r *Recorder) Final(m *queue.Message, deleted bool, done func()) {
	now := time.Now()
	h := r.snapshot(m, true, deleted)
	h.Finished = now
	r.headless.Delete(m.ID)
	r.send(event{at: now, head: h, fin: true, done: done}, true)
}

// send queues ev; a live event (not must) is dropped when the queue is
// full, since the message's Final carries its whole state anyway.
func (r *Recorder) send(ev event, must bool) {
	r.cmu.RLock()
	defer r.cmu.RUnlock()
	if r.closing {
		if ev.done != nil {
			ev.done()
		}
		return
	}
	r.waiting.Add(1)
	r.oldest.CompareAndSwap(0, ev.at.UnixMicro())
	if must {
		r.ch <- ev
		return
	}
	select {
	case r.ch <- ev:
	default:
		r.waiting.Add(-1)
		r.dropped.Add(1)
		if ev.head != nil {
			r.headless.Store(ev.head.ID, struct{}{})
		}
	}
}

// snapshot is m's head and every recipient's state as the queue has it.
func (r *Recorder) snapshot(m *queue.Message, final, deleted bool) *Message {
	h := r.head(m)
	h.Deliveries = make([]Delivery, len(m.Rcpts))
	for i := range m.Rcpts {
		rs := &m.Rcpts[i]
		d := Delivery{Index: i, Rcpt: rs.Addr, Orig: origOf(rs.Rcpt), Copy: rs.Copy, Relay: rs.Relay, DSN: rs.DSN,
			Reply: rs.LastErr, Attempts: int(rs.Attempts), Status: Pending}
		switch {
		case rs.Status == queue.Sent:
			d.Status, d.RemoteID = Sent, RemoteID(rs.LastErr)
		case rs.Status == queue.Bounced && rs.Expired:
			d.Status = Expired
		case rs.Status == queue.Bounced:
			d.Status = Bounced
		case deleted:
			d.Status = Deleted
		}
		if d.Status != Pending && d.Status != Deleted {
			d.Attempts++ // the queue counts deferrals, not the last attempt
		}
		if d.Status != Pending || final {
			d.At = time.Now()
		}
		h.Deliveries[i] = d
	}
	return h
}

func origOf(r envelope.Rcpt) string { return cmp.Or(r.Orig, r.Addr) }

// batch is one transaction: one entry per message, whatever the events
// about it that made it.
type batch struct {
	msgs   map[msgKey]*batchMsg
	order  []msgKey
	gaps   []Gap
	dones  []func()
	finals int
	first  time.Time
	lastAt time.Time
	n      int // events in it
	// finSince, in the accumulator, is when the oldest finished message
	// not yet taken came (zero: none).
	finSince time.Time
}

type batchMsg struct {
	head     *Message
	finished time.Time
	rows     map[int]*Delivery
	rowOrder []int
	// In the accumulator (held): when its first event came, its events,
	// and the queue's callbacks waiting for it.
	since time.Time
	n     int
	dones []func()
	first time.Time
	last  time.Time
}

func newBatch() *batch { return &batch{msgs: map[msgKey]*batchMsg{}} }

func (b *batch) entry(k msgKey, now time.Time) *batchMsg {
	e := b.msgs[k]
	if e == nil {
		e = &batchMsg{rows: map[int]*Delivery{}, since: now}
		b.msgs[k] = e
		b.order = append(b.order, k)
	}
	return e
}

func (e *batchMsg) row(d *Delivery) {
	old, ok := e.rows[d.Index]
	if !ok {
		e.rowOrder = append(e.rowOrder, d.Index)
	} else {
		// As the store's upsert does: a pending row never hides a final
		// one, a sent one never an amended bounce (Amend), and what the
		// later row does not know is kept.
		if old.Status.Final() && !d.Status.Final() || old.Status == Bounced && d.Status == Sent {
			return
		}
		d.Transport, d.Nexthop = cmp.Or(d.Transport, old.Transport), cmp.Or(d.Nexthop, old.Nexthop)
		d.Relay, d.DSN = cmp.Or(d.Relay, old.Relay), cmp.Or(d.DSN, old.DSN)
		d.Reply, d.RemoteID = cmp.Or(d.Reply, old.Reply), cmp.Or(d.RemoteID, old.RemoteID)
		d.Attempts = max(d.Attempts, old.Attempts)
		if d.At.IsZero() || old.Status == d.Status && d.Status != Pending && !old.At.IsZero() {
			d.At = old.At
		}
	}
	e.rows[d.Index] = d
}

// add merges ev into the accumulator b.
func (b *batch) add(ev event) {
	key := ev.key
	if ev.head != nil {
		key = msgKey{ev.head.Node, ev.head.ID}
	}
	e := b.entry(key, time.Now())
	e.n++
	if e.first.IsZero() || ev.at.Before(e.first) {
		e.first = ev.at
	}
	e.last = maxTime(e.last, ev.at)
	if ev.done != nil {
		e.dones = append(e.dones, ev.done)
	}
	if ev.row != nil {
		e.row(ev.row)
		if ev.head == nil {
			return
		}
	}
	h := ev.head
	if e.head == nil || ev.fin {
		// What the message was accepted with is its first record's,
		// as the store keeps it when they come in two batches.
		if e.head != nil && e.head.Phase != "" {
			h.Phase = e.head.Phase
		}
		e.head = h
	}
	if ev.fin {
		e.finished = h.Finished
		if b.finSince.IsZero() {
			b.finSince = time.Now()
		}
	}
	for i := range h.Deliveries {
		d := h.Deliveries[i]
		e.row(&d)
	}
}

// take moves out of the accumulator what the next transaction writes:
// every finished message (the queue waits for them) once the oldest has
// waited gather, and the live entries that have waited Every (all of
// them when all is set), at most maxLive of those, so that a flood of
// them (the queue's messages loaded at a start) never holds up a
// finished message for long.
func (acc *batch) take(now time.Time, every, gather time.Duration, all bool) *batch {
	const maxLive = 256
	out := newBatch()
	live := 0
	finals := !acc.finSince.IsZero() && (all || now.Sub(acc.finSince) >= gather)
	if finals {
		acc.finSince = time.Time{}
	}
	excess := len(acc.msgs) - maxHeld
	keep := acc.order[:0]
	for _, k := range acc.order {
		e := acc.msgs[k]
		if e == nil {
			continue
		}
		move := finals && !e.finished.IsZero()
		if !move && e.finished.IsZero() && (all || now.Sub(e.since) >= every) && live < maxLive {
			move = true
			live++
		} else if !move && e.finished.IsZero() && excess > 0 {
			move = true
		}
		if move && e.finished.IsZero() {
			excess--
		}
		if !move {
			keep = append(keep, k)
			continue
		}
		delete(acc.msgs, k)
		out.msgs[k] = e
		out.order = append(out.order, k)
		out.n += e.n
		out.dones = append(out.dones, e.dones...)
		if !e.finished.IsZero() {
			out.finals++
		}
		out.first = minTime(out.first, e.first)
		out.lastAt = maxTime(out.lastAt, e.last)
	}
	acc.order = keep
	return out
}

// next is when the oldest live entry of acc, or its finished messages,
// are due (zero: none held).
func (acc *batch) next(every, gather time.Duration) time.Time {
	var due time.Time
	if !acc.finSince.IsZero() {
		due = acc.finSince.Add(gather)
	}
	for _, k := range acc.order {
		if e := acc.msgs[k]; e != nil && e.finished.IsZero() {
			return minTime(due, e.since.Add(every))
		}
	}
	return due
}

func (r *Recorder) run() {
	defer close(r.done)
	// The first pruning waits a minute: a start must not wait for it.
	prune := time.NewTicker(time.Minute)
	defer prune.Stop()
	acc := newBatch()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	open := true
	for open {
		// Wait for an event, or for the oldest live entry to be due.
		if due := acc.next(r.o.Every, r.o.Gather); !due.IsZero() {
			timer.Reset(max(time.Until(due), 0))
		} else {
			timer.Reset(time.Hour)
		}
		select {
		case ev, ok := <-r.ch:
			if !ok {
				open = false
				break
			}
			acc.add(ev)
		case <-timer.C:
		case <-prune.C:
			r.prune()
			continue
		}
		// What else is waiting joins: under load, what came during one
		// commit makes the next (group commit).
	drain:
		for n := 0; open && n < maxBatch; n++ {
			select {
			case ev, ok := <-r.ch:
				if !ok {
					open = false
					break drain
				}
				acc.add(ev)
			default:
				break drain
			}
		}
		for {
			b := acc.take(time.Now(), r.o.Every, r.o.Gather, !open)
			if len(b.order) == 0 {
				break
			}
			r.commit(b)
			if open {
				break
			}
		}
	}
}

// commit writes b; on failure the batch's time range becomes a gap,
// kept until a later batch can write it. Either way the queue is told
// it may remove the messages: a ledger failure never holds mail.
func (r *Recorder) commit(b *batch) {
	r.commits.Add(1)
	r.mu.Lock()
	err := r.openLocked()
	if err == nil {
		if r.gap != nil {
			b.gaps = append(b.gaps, *r.gap)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		err = r.st.write(ctx, b)
		cancel()
	}
	if err == nil {
		wrote := r.gap != nil
		if r.gap != nil {
			r.o.Log("ledger %s: writing again; %d message(s) between %s and %s were not recorded (a gap in the report)",
				r.o.Path, r.gap.Messages, r.gap.Since.Format(time.RFC3339), r.gap.Until.Format(time.RFC3339))
			r.gap = nil
		}
		r.last.Store(time.Now().UnixMicro())
		r.saveMarkerLocked(wrote) // at once when the gap went: never twice
	} else {
		r.failures.Add(1)
		r.lost.Add(uint64(b.finals))
		if r.gap == nil {
			r.gap = &Gap{Node: r.o.Node, Since: b.first, Reason: err.Error()}
		}
		r.gap.Since = minTime(r.gap.Since, b.first)
		r.gap.Until = b.lastAt
		r.gap.Messages += b.finals
		r.warnLocked(err)
		if corrupt(err) {
			r.setAsideLocked()
		}
		r.saveMarkerLocked(true) // the gap outlives this process
	}
	r.mu.Unlock()
	r.waiting.Add(-int64(b.n))
	if r.waiting.Load() <= 0 {
		r.oldest.Store(0)
	} else {
		r.oldest.Store(time.Now().UnixMicro())
	}
	r.runDones(b.dones)
}

// doneWorkers bounds the goroutines that call a batch's dones.
const doneWorkers = 256

// runDones calls dones, many at once, and returns without waiting for
// them. Each removes a message from the queue, which waits for the
// journal's fdatasync: called one after another by the writer, they
// cost one fsync each and the writer waited for all of them (a relay
// with the ledger ran at half its rate, its finished messages kept in
// memory meanwhile); at once, the journal's group commit makes one
// fsync serve them all.
func (r *Recorder) runDones(dones []func()) {
	if len(dones) == 0 {
		return
	}
	var next atomic.Int64
	n := min(len(dones), doneWorkers)
	r.dones.Add(n)
	for range n {
		go func() {
			defer r.dones.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(len(dones)) {
					return
				}
				dones[i]()
			}
		}()
	}
}

// warnLocked logs a failure at most once a minute.
func (r *Recorder) warnLocked(err error) {
	if time.Since(r.lastWarn) < time.Minute {
		return
	}
	r.lastWarn = time.Now()
	r.o.Log("warning: ledger %s: %v; mail keeps flowing, %d message(s) not recorded so far (reported as a gap)", r.o.Path, err, r.lost.Load())
}

// corrupt says whether err means the file is not a usable database.
func corrupt(err error) bool {
	s := err.Error()
	return strings.Contains(s, "malformed") || strings.Contains(s, "not a database") || strings.Contains(s, "SQLITE_CORRUPT") || strings.Contains(s, "SQLITE_NOTADB")
}

// setAsideLocked moves a damaged database out of the way, so that the
// next batch starts a new one (the marker then shows the lost range).
func (r *Recorder) setAsideLocked() {
	if r.st != nil {
		r.st.Close()
		r.st = nil
	}
	aside := fmt.Sprintf("%s.corrupt.%d", r.o.Path, time.Now().Unix())
	if err := os.Rename(r.o.Path, aside); err == nil {
		for _, sfx := range []string{"-wal", "-shm"} {
			os.Rename(r.o.Path+sfx, aside+sfx)
		}
		r.o.Log("warning: ledger %s is damaged; moved to %s, a new ledger starts", r.o.Path, aside)
	}
}

// openLocked opens the store if it is not open, and notes a replaced
// ledger as a gap.
func (r *Recorder) openLocked() error {
	if r.st != nil {
		return nil
	}
	st, err := Open(r.o.Path)
	if err != nil {
		return err
	}
	r.st = st
	if mk, ok := r.readMarker(); ok && mk.ID != "" && mk.ID != st.id && mk.Path == r.o.Path {
		g := Gap{Node: r.o.Node, Since: fromUS(mk.Created), Until: fromUS(mk.Seen),
			Reason: fmt.Sprintf("the ledger %s was lost or replaced: the one made %s held the records until %s",
				r.o.Path, fromUS(mk.Created).Format(time.RFC3339), fromUS(mk.Seen).Format(time.RFC3339))}
		if r.gap != nil {
			g.Messages = r.gap.Messages
			g.Since = minTime(g.Since, r.gap.Since)
			g.Until = maxTime(g.Until, r.gap.Until)
		}
		r.gap = &g
		r.o.Log("warning: %s", g.Reason)
	}
	r.saveMarkerLocked(true)
	return nil
}

func minTime(a, b time.Time) time.Time {
	if a.IsZero() || !b.IsZero() && b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

type marker struct {
	ID      string `json:"id"`
	Path    string `json:"path"`
	Node    string `json:"node"`
	Created int64  `json:"created"`
	Seen    int64  `json:"seen"` // the last commit known, Unix µs
	// Gap is what could not be written yet: the queue has removed those
	// messages, so a restart must still record it.
	Gap *Gap `json:"gap,omitempty"`
}

func (r *Recorder) readMarker() (marker, bool) {
	var mk marker
	if r.o.Marker == "" {
		return mk, false
	}
	b, err := os.ReadFile(r.o.Marker)
	if err != nil || json.Unmarshal(b, &mk) != nil {
		return mk, false
	}
	return mk, true
}

// saveMarkerLocked records the ledger in use and its last commit, at
// most every 10 seconds unless now: a crash forgets at most that much of
// a lost file's range.
func (r *Recorder) saveMarkerLocked(now bool) {
	if r.o.Marker == "" || !now && time.Since(r.markSaved) < 10*time.Second {
		return
	}
	var mk marker
	if r.st != nil {
		mk = marker{ID: r.st.id, Path: r.o.Path, Node: r.o.Node, Created: us(r.st.created), Seen: max(r.last.Load(), us(r.st.created))}
	} else if old, ok := r.readMarker(); ok {
		mk = old // no database open: what it said of the last one stays
	} else if r.gap == nil {
		return
	} else {
		// None opened yet: the path, for postsuper -d (ForQueue).
		mk = marker{Path: r.o.Path, Node: r.o.Node}
	}
	r.markSaved = time.Now()
	mk.Gap = r.gap
	b, _ := json.Marshal(mk)
	tmp := r.o.Marker + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err == nil {
		os.Rename(tmp, r.o.Marker)
	}
}

// pruneChunk is how many messages one pruning (each minute) removes at
// most: a short pause of the recorder, some 600,000 an hour.
const pruneChunk = 10000

func (r *Recorder) prune() {
	if r.o.Retention <= 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.st == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if _, err := r.st.Prune(ctx, time.Now().Add(-r.o.Retention), pruneChunk); err != nil {
		r.o.Log("warning: ledger %s: cannot remove records older than ledger_retention: %v", r.o.Path, err)
	}
}

// Stats implements the figures /metrics and status show.
func (r *Recorder) Stats() Stats {
	return Stats{Waiting: int(max(r.waiting.Load(), 0)), Oldest: fromUS(r.oldest.Load()), LastCommit: fromUS(r.last.Load()),
		Failures: r.failures.Load(), Lost: r.lost.Load()}
}

// Close writes what is waiting and closes the database. Call it after
// the queue has closed: no event comes after.
func (r *Recorder) Close() error {
	r.cmu.Lock()
	if r.closing {
		r.cmu.Unlock()
		return errors.New("ledger: closed twice")
	}
	r.closing = true
	close(r.ch)
	r.cmu.Unlock()
	<-r.done
	r.dones.Wait()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.saveMarkerLocked(true)
	if r.st != nil {
		return r.st.Close()
	}
	return nil
}

// DefaultMarker is the marker's name in the queue directory.
func DefaultMarker(queueDir string) string { return filepath.Join(queueDir, "ledger.state") }

// ForQueue is a Recorder for the ledger the queue in queueDir last wrote
// to, as its marker says, for an edit of the queue while no server runs
// (postsuper -d records the deletion); nil when the queue has no ledger.
func ForQueue(queueDir string) *Recorder {
	file := DefaultMarker(queueDir)
	b, err := os.ReadFile(file)
	var mk marker
	if err != nil || json.Unmarshal(b, &mk) != nil || mk.Path == "" {
		return nil
	}
	return NewRecorder(RecorderOptions{Path: mk.Path, Node: mk.Node, Marker: file})
}
