package drain

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/mailtee/mailtee/internal/fleet"
	"github.com/mailtee/mailtee/internal/migration"
	"github.com/mailtee/mailtee/internal/queue"
)

// Options wire a node's hand-off.
type Options struct {
	Queue    *queue.Queue
	Fleet    *fleet.Fleet // nil: no fleet (markers of an earlier one are resolved by holding)
	Settings *migration.Store
	QueueDir string // queue_directory: the markers are in its handoff/
	// Every is how often the node looks for messages handed to it and
	// settles what a crash left (fleet_heartbeat_interval).
	Every time.Duration
	// Log writes a mail log line (Postfix's shape: "warning: ..." for a
	// warning).
	Log func(format string, args ...any)
	// StopAccepting closes the SMTP listeners and the pickup, at the
	// start of a drain; it returns when no session is left.
	StopAccepting func()
}

// tombstoneAge is how long done rows are kept: longer than a message
// stays in a queue (maximal_queue_lifetime, 5 days by default), so that
// a node restarted after a crash mid-offer always finds its answer.
const tombstoneAge = 30 * 24 * time.Hour

// claimBatch is how many rows one poll claims.
const claimBatch = 16

// Node is a running server's part in hand-offs: it takes what other
// nodes hand to it, settles what a crash left, and drains on request.
type Node struct {
	o    Options
	mk   markers
	stop chan struct{}
	// ctx ends with stop: a hand-off waiting for a delivery pass gives
	// up when the server stops.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	inflight map[string]bool // IDs being offered now (not for the resolver)
	draining bool            // a drain began: take nothing more
	st       Status
	changed  chan struct{} // closed and replaced at each change of st
	watchers int
	done     chan struct{} // closed once a drain emptied the queue
	doneOnce sync.Once
	pruned   time.Time
	warned   map[string]bool
}

// Start parks what the markers name (before the queue starts
// delivering: call it before queue.Run), then polls the fleet every
// o.Every. Without a fleet, a marked message is held (mailtee queue
// release delivers it) with a warning saying why.
func Start(o Options) *Node {
	if o.Every <= 0 {
		o.Every = 5 * time.Second
	}
	if o.Log == nil {
		o.Log = func(string, ...any) {}
	}
	n := &Node{o: o, mk: markers{filepath.Join(o.QueueDir, "handoff")}, stop: make(chan struct{}), inflight: map[string]bool{},
		changed: make(chan struct{}), done: make(chan struct{}), warned: map[string]bool{}}
	n.st.State = "serving"
	n.ctx, n.cancel = context.WithCancel(context.Background())
	for _, kind := range []string{"out", "in"} {
		ms, err := n.mk.list(kind)
		if err != nil {
			o.Log("warning: hand-off markers in %s: %v", n.mk.dir, err)
		}
		for _, id := range sortedKeys(ms) {
			if err := o.Queue.Park(id); err != nil {
				n.mk.drop(kind, id) // the message is gone: so is the question
				continue
			}
			if o.Fleet != nil {
				continue // settled by the first poll
			}
			o.Queue.Unpark(id)
			if err := o.Queue.Hold(id); err != nil {
				o.Log("warning: %s: cannot hold: %v", id, err)
				continue
			}
			n.mk.drop(kind, id)
			o.Log("warning: %s: was being %s the fleet when mailtee stopped, and ledger_database names no fleet now: the message is on hold; see the fleet_handoff row (%s) in the fleet's PostgreSQL, and release it (mailtee queue release %s) only if no other node took it",
				id, map[string]string{"out": "handed to", "in": "taken from"}[kind], id, id)
		}
	}
	if o.Fleet != nil {
		n.wg.Add(1)
		go n.run()
	}
	return n
}

// Close stops polling.
func (n *Node) Close() {
	select {
	case <-n.stop:
		return
	default:
	}
	close(n.stop)
	n.cancel()
	n.wg.Wait()
}

func (n *Node) run() {
	defer n.wg.Done()
	t := time.NewTicker(n.o.Every)
	defer t.Stop()
	for {
		n.poll()
		select {
		case <-n.stop:
			return
		case <-t.C:
		}
	}
}

// poll settles the markers and takes what is handed to this node.
func (n *Node) poll() {
	ctx, cancel := context.WithTimeout(n.ctx, 2*time.Minute)
	defer cancel()
	f := n.o.Fleet
	if _, down := f.Alive(); down {
		return // the heartbeat says when it is back
	}
	n.resolveOut(ctx)
	n.resolveIn(ctx)
	n.mu.Lock()
	draining := n.draining
	n.mu.Unlock()
	// Batch after batch while there are rows to take: a drained
	// node's queue comes at once. Draining, this node takes nothing
	// new, but finishes what it claimed before.
	batch := claimBatch
	if draining {
		batch = 0
	}
	for {
		hs, err := f.Claim(ctx, batch)
		if err != nil {
			f.MarkDown(err)
			return
		}
		took := 0
		for _, h := range hs {
			if n.stopping() {
				return
			}
			if err := n.take(ctx, h); err != nil {
				key := h.From + "/" + h.QueueID
				n.mu.Lock()
				warn := !n.warned[key]
				n.warned[key] = true
				n.mu.Unlock()
				if warn {
					n.o.Log("warning: hand-off %s from fleet node %s: %v; trying again", h.QueueID, h.From, err)
				}
				continue
			}
			took++
		}
		if took == 0 || len(hs) < batch || ctx.Err() != nil {
			break
		}
	}
	if time.Since(n.pruned) > time.Hour {
		n.pruned = time.Now()
		if k, err := f.PruneHandoffs(ctx, time.Now().Add(-tombstoneAge)); err == nil && k > 0 {
			n.o.Log("fleet: %d hand-off records older than %s removed", k, tombstoneAge)
		}
	}
}

// resolveOut settles the offers a crash interrupted: the message is
// the fleet's if its row exists, this node's otherwise.
func (n *Node) resolveOut(ctx context.Context) {
	ms, _ := n.mk.list("out")
	for _, id := range sortedKeys(ms) {
		if !n.claim(id) {
			continue // being offered now
		}
		n.resolveOne(ctx, id)
		n.release(id)
	}
}

// resolveOne settles the out/ marker of id (claimed).
func (n *Node) resolveOne(ctx context.Context, id string) {
	if err := n.o.Queue.Park(id); err != nil {
		n.mk.drop("out", id)
		return
	}
	h, err := n.o.Fleet.Offered(ctx, id)
	if err != nil {
		n.o.Fleet.MarkDown(err)
		return
	}
	if h == nil {
		n.mk.drop("out", id)
		n.o.Queue.Unpark(id)
		n.o.Log("%s: its hand-off was not committed: it stays here", id)
		return
	}
	if err := n.o.Queue.HandedOff(id); err != nil && !errors.Is(err, queue.ErrNotFound) {
		n.o.Log("warning: %s: handed to the fleet, but cannot be removed here: %v", id, err)
		return
	}
	n.mk.drop("out", id)
	n.o.Log("%s: handed to %s through the fleet's database before an interruption: removed here", id, orAny(h.To))
	n.addHanded()
}

// resolveIn lets go the messages taken whose row is done; those whose
// row is not are taken again by the claim that follows.
func (n *Node) resolveIn(ctx context.Context) {
	ms, _ := n.mk.list("in")
	for _, id := range sortedKeys(ms) {
		note, ok := decodeIn(ms[id])
		if !ok {
			continue // written torn: the claim brings the row back
		}
		h, err := n.o.Fleet.HandoffOf(ctx, note.From, note.QueueID)
		if err != nil {
			n.o.Fleet.MarkDown(err)
			return
		}
		if h == nil || !h.Done.IsZero() {
			n.mk.drop("in", id)
			n.o.Queue.Unpark(id)
		}
	}
}

// take imports one claimed row into the queue, then marks it done.
func (n *Node) take(ctx context.Context, h fleet.Handoff) error {
	id := QueueID(h.From, h.QueueID)
	note, _ := json.Marshal(inNote{h.From, h.QueueID})
	if err := n.mk.put("in", id, note); err != nil {
		return err
	}
	p, err := n.o.Fleet.Payload(ctx, h.From, h.QueueID)
	if err != nil {
		return err
	}
	x, settings, body, err := Decode(p)
	if err != nil {
		return err
	}
	if settings != nil && n.o.Settings != nil {
		sid, err := n.o.Settings.Import(settings)
		if err != nil {
			return err
		}
		if sid != x.Env.Settings {
			n.o.Log("warning: %s: its migration settings record is %s, the message names %s", id, sid, x.Env.Settings)
		}
	}
	if x.Env.LedgerNode == "" {
		x.Env.LedgerNode, x.Env.LedgerID = h.From, h.QueueID
	}
	err = n.o.Queue.Import(id, x, bytes.NewReader(body), true)
	fresh := err == nil
	if err != nil && !errors.Is(err, queue.ErrExists) {
		return err
	}
	if err := n.o.Fleet.Taken(ctx, h.From, h.QueueID, id); err != nil {
		return err // parked, marked: the next poll finishes
	}
	n.mk.drop("in", id)
	n.o.Queue.Unpark(id)
	if fresh {
		pending := 0
		for _, r := range x.Rcpts {
			if r.Status == "" && !r.Lost {
				pending++
			}
		}
		n.o.Log("%s: from fleet node %s (its queue ID %s, ledger %s/%s): %d of %d recipients pending",
			id, h.From, h.QueueID, x.Env.LedgerNode, x.Env.LedgerID, pending, len(x.Rcpts))
	}
	return nil
}

func orAny(to string) string {
	if to == "" {
		return "any node"
	}
	return to
}

// errNoFleet is what a drain without a fleet says.
var errNoFleet = errors.New("drain needs a fleet: ledger_database must be a PostgreSQL URL (postgres://...) naming the database the nodes share, so that another node can take this one's mail")

// ErrNoFleet reports that drain needs a fleet, with the value in force.
func ErrNoFleet(ledgerDatabase string) error {
	return fmt.Errorf("%w; ledger_database is %q here", errNoFleet, ledgerDatabase)
}
