package queue

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/mailtee/mailtee/internal/envelope"
)

// Moving a message from one node's queue to another's (mailtee drain,
// internal/drain). The sender parks the message (no delivery pass starts
// for it), exports its state and body, stores them elsewhere (the
// fleet's database), and only then removes it with HandedOff: not as
// delivered, so the ledger records no end for it here. The receiver
// Imports it under an ID it derives from where the message came from,
// so that a second import of the same message finds it there already.

// Exported is a queued message's state, without its body: what another
// node's queue needs to go on where this one stopped.
type Exported struct {
	ID   string            // the queue ID here
	Env  envelope.Envelope // without recipients (Env.Rcpts is nil)
	Size int64             // body size
	// NEnv is how many of Rcpts the message came with; those after it
	// were added since (mailbox_bcc_maps copies, Outcome.Add).
	NEnv  int
	Rcpts []ExportedRcpt
	Hold  bool `json:",omitempty"`
}

// ExportedRcpt is one recipient and its state. Its index in
// Exported.Rcpts is kept by the import: the ledger names a recipient by
// its index.
type ExportedRcpt struct {
	envelope.Rcpt
	Status   string `json:",omitempty"` // "", "sent" or "bounced"
	Attempts int32  `json:",omitempty"` // deferrals so far
	LastErr  string `json:",omitempty"`
	DSN      string `json:",omitempty"`
	Relay    string `json:",omitempty"`
	Expired  bool   `json:",omitempty"`
	Notified bool   `json:",omitempty"`
	// Lost is the place of an added recipient whose record never
	// reached the disk: never delivered, kept so that the indexes after
	// it stay.
	Lost bool `json:",omitempty"`
}

// maxExportRcpts bounds the recipients an import accepts (a damaged or
// hostile payload must not take the memory of millions).
const maxExportRcpts = 1 << 20

// Check says whether x is a message an import can take.
func (x *Exported) Check() error {
	if !ValidID(x.ID) {
		return fmt.Errorf("%q: %w", x.ID, ErrBadID)
	}
	if x.NEnv < 1 || x.NEnv > len(x.Rcpts) || len(x.Rcpts) > maxExportRcpts {
		return fmt.Errorf("%s: %d recipients, %d of them from the envelope: not a message", x.ID, len(x.Rcpts), x.NEnv)
	}
	if x.Size < 0 {
		return fmt.Errorf("%s: negative size", x.ID)
	}
	for i, r := range x.Rcpts {
		switch r.Status {
		case "", "sent", "bounced":
		default:
			return fmt.Errorf("%s: recipient %d: unknown status %q", x.ID, i, r.Status)
		}
		if r.Lost && i < x.NEnv {
			return fmt.Errorf("%s: recipient %d of the envelope marked lost", x.ID, i)
		}
		if r.Attempts < 0 {
			return fmt.Errorf("%s: recipient %d: negative attempts", x.ID, i)
		}
	}
	return nil
}

// Park stops new delivery passes of message id until Unpark (in memory
// only: a restart forgets it). A pass in progress goes on; Export waits
// for it.
func (q *Queue) Park(id string) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	e, ok := q.msgs[id]
	if !ok || e.removed {
		return ErrNotFound
	}
	e.parked = true
	return nil
}

// Unpark lets message id be delivered again.
func (q *Queue) Unpark(id string) {
	q.mu.Lock()
	e, ok := q.msgs[id]
	if ok && e.parked {
		e.parked = false
		if !e.busy && !e.removed {
			q.scheduleLocked(e, q.due(e))
		}
	}
	q.mu.Unlock()
	q.poke()
}

// Export returns the state of parked message id, once no delivery pass
// of it is running (or ctx ends).
func (q *Queue) Export(ctx context.Context, id string) (*Exported, error) {
	for {
		q.mu.Lock()
		e, ok := q.msgs[id]
		if !ok || e.removed {
			q.mu.Unlock()
			return nil, ErrNotFound
		}
		if !e.parked {
			q.mu.Unlock()
			return nil, fmt.Errorf("%s: not parked", id)
		}
		if !e.busy {
			x := export(e.m)
			q.mu.Unlock()
			return x, nil
		}
		q.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func export(m *Message) *Exported {
	x := &Exported{ID: m.ID, Env: m.Env, Size: m.Size, NEnv: m.nEnv, Hold: m.Hold, Rcpts: make([]ExportedRcpt, len(m.Rcpts))}
	x.Env.Rcpts = nil
	for i := range m.Rcpts {
		r := &m.Rcpts[i]
		x.Rcpts[i] = ExportedRcpt{Rcpt: r.Rcpt, Status: r.Status.String(), Attempts: r.Attempts, LastErr: r.LastErr, DSN: r.DSN,
			Relay: r.Relay, Expired: r.Expired, Notified: r.Notified, Lost: r.lost}
	}
	return x
}

// Body opens message id's body.
func (q *Queue) Body(id string) (io.ReadCloser, error) {
	q.mu.Lock()
	e, ok := q.msgs[id]
	q.mu.Unlock()
	if !ok {
		return nil, ErrNotFound
	}
	return e.m.Open()
}

// HandedOff removes parked message id, durably, once another node holds
// it: not as delivered (the ledger gets no Final from here).
func (q *Queue) HandedOff(id string) error {
	q.mu.Lock()
	e, ok := q.msgs[id]
	if !ok || e.removed {
		q.mu.Unlock()
		return ErrNotFound
	}
	if !e.parked || e.busy {
		q.mu.Unlock()
		return fmt.Errorf("%s: not parked", id)
	}
	e.removed = true
	q.mu.Unlock()
	err := q.sp.remove(e.m, false)
	q.mu.Lock()
	if e.index >= 0 {
		heap.Remove(&q.timers, e.index)
	}
	delete(q.msgs, id)
	q.mu.Unlock()
	if q.o.Events != nil {
		q.o.Events.Removed(e.m)
	}
	q.poke()
	return err
}

// ErrExists says an import found the message in the queue already.
var ErrExists = errors.New("message in the queue already")

// Import stores a message another node's queue exported, durably, under
// id (which the caller derives from where it came from: a second import
// of it then returns ErrExists and stores nothing). Every recipient
// keeps its state, its index and its attempts; those pending are due
// now (a new node, a new route). With park set it is not delivered
// before Unpark.
func (q *Queue) Import(id string, x *Exported, body io.Reader, park bool) error {
	if !ValidID(id) {
		return fmt.Errorf("%q: %w", id, ErrBadID)
	}
	if err := x.Check(); err != nil {
		return err
	}
	st, ok := q.sp.(*store)
	if !ok {
		return errors.New("import: this spool cannot import")
	}
	q.mu.Lock()
	_, known := q.msgs[id]
	busy := q.writing[id]
	if !known && !busy {
		q.writing[id] = true
	}
	q.mu.Unlock()
	if known {
		return ErrExists
	}
	if busy {
		return fmt.Errorf("%s: being written", id)
	}
	defer func() {
		q.mu.Lock()
		delete(q.writing, id)
		q.mu.Unlock()
	}()
	final := filepath.Join(st.qdir, id)
	if _, err := os.Lstat(final); err == nil {
		return ErrExists
	}
	env, scratch := imported(x)
	// The state first: the message file without it would deliver again
	// to the recipients that have it. A crash in between leaves a
	// sidecar without a message, which the next start removes.
	if recs := snapshot(scratch); len(recs) > 0 {
		b, err := encodeState(nil, recs)
		if err != nil {
			return err
		}
		if err := st.writeSidecar(final+".st", b); err != nil {
			return fmt.Errorf("import %s: %w", id, err)
		}
	} else {
		os.Remove(final + ".st") // an earlier attempt's
	}
	nf, wm, err := st.write(env, body)
	if err != nil {
		return fmt.Errorf("import %s: %w", id, err)
	}
	st.dropCache(wm)
	if wm.Size != x.Size {
		st.closeNew(nf)
		return fmt.Errorf("import %s: body of %d bytes, the message says %d", id, wm.Size, x.Size)
	}
	err = st.publish(nf, wm, id)
	st.closeNew(nf)
	if err != nil {
		return fmt.Errorf("import %s: %w", id, err)
	}
	m, err := st.load(id)
	if err != nil {
		return fmt.Errorf("import %s: stored but unreadable: %w", id, err)
	}
	if q.o.Events != nil {
		q.o.Events.Queued(m)
	}
	if q.o.Ledger != nil {
		q.o.Ledger.Accepted(m)
	}
	q.mu.Lock()
	e := q.add(m)
	e.parked = park
	e.announced = q.o.Events != nil
	q.mu.Unlock()
	q.poke()
	return nil
}

// imported is x as a message: its envelope as stored, and a scratch
// message with x's state, whose snapshot is the sidecar.
func imported(x *Exported) (*envelope.Envelope, *Message) {
	env := x.Env
	env.Rcpts = make([]envelope.Rcpt, x.NEnv)
	for i := range env.Rcpts {
		env.Rcpts[i] = x.Rcpts[i].Rcpt
	}
	m := newMessage("", &env, x.Size)
	m.Hold = x.Hold
	for i, r := range x.Rcpts {
		if i >= x.NEnv {
			m.Rcpts = append(m.Rcpts, RcptState{Rcpt: r.Rcpt})
		}
		s := &m.Rcpts[i]
		s.Attempt = &Attempt{r.LastErr, r.DSN, r.Relay}
		s.Attempts, s.Expired, s.Notified, s.lost = r.Attempts, r.Expired, r.Notified, r.Lost
		switch r.Status {
		case "sent":
			s.Status = Sent
		case "bounced":
			s.Status = Bounced
		}
	}
	return &env, m
}

// IDs lists the queued messages' IDs, oldest first.
func (q *Queue) IDs() []string {
	type key struct {
		at time.Time
		id string
	}
	q.mu.Lock()
	keys := make([]key, 0, len(q.msgs))
	for id, e := range q.msgs {
		if !e.removed {
			keys = append(keys, key{e.m.Env.Arrival, id})
		}
	}
	q.mu.Unlock()
	sort.Slice(keys, func(i, j int) bool { return older(keys[i].at, keys[i].id, keys[j].at, keys[j].id) })
	ids := make([]string, len(keys))
	for i, k := range keys {
		ids[i] = k.id
	}
	return ids
}

// Unattempted counts the messages that have not had a delivery attempt
// since: a pass is running, or some pending recipient has been due since
// then and not tried. Held and parked messages, and recipients the pacer
// holds back, are not counted (no attempt is coming for them now).
func (q *Queue) Unattempted(since time.Time) int {
	now := time.Now()
	q.mu.Lock()
	defer q.mu.Unlock()
	n := 0
	for _, e := range q.msgs {
		if e.removed || e.parked || e.m.Hold {
			continue
		}
		if e.busy {
			n++
			continue
		}
		for i := range e.m.Rcpts {
			r := &e.m.Rcpts[i]
			if r.Status != Pending || r.lost || r.next > since.Unix() {
				continue
			}
			if l, ok := e.later[i]; ok && l.At.After(now) {
				continue
			}
			n++
			break
		}
	}
	return n
}
