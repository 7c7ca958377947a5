package drain

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/mailtee/mailtee/internal/queue"
)

// Request is what `mailtee drain` asks.
type Request struct {
	To   string        // the node to hand the mail to; "" any serving node
	Wait time.Duration // how long deliveries may try before the hand-off
}

// DefaultWait is how long a drain lets deliveries try when the request
// gives no --wait.
const DefaultWait = 5 * time.Minute

// Status is a drain's progress, as `mailtee drain` prints it.
type Status struct {
	Node  string
	State string // "serving", "stopping", "delivering", "handing off", "done", "failed"
	To    string `json:",omitempty"`
	Since time.Time
	// Queued is the messages in the queue when the drain began; Left
	// those in it now; Unattempted those still waiting for an attempt
	// (delivering); HandedOff those given to the fleet.
	Queued, Left, Unattempted, HandedOff int
	Error                                string `json:",omitempty"`
	// Final: the drain is over, done (the queue is empty, the server
	// exits) or failed (Error says why; the node stays drained).
	Final bool `json:",omitempty"`
}

// Status is the drain's progress now.
func (n *Node) Status() Status {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.st
}

// Wait returns the status once it differs from last (or ctx ends).
func (n *Node) Wait(ctx context.Context, last Status) Status {
	for {
		n.mu.Lock()
		st, ch := n.st, n.changed
		n.mu.Unlock()
		if st != last {
			return st
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return st
		}
	}
}

// Watch counts a reader of the progress (the control connection of
// `mailtee drain`): the server's exit waits a moment for it to have
// written the final status. Call the function it returns when done.
func (n *Node) Watch() func() {
	n.mu.Lock()
	n.watchers++
	n.mu.Unlock()
	return func() {
		n.mu.Lock()
		n.watchers--
		n.mu.Unlock()
		n.update(func(*Status) {})
	}
}

// Done is closed once a drain has emptied the queue: the server exits.
func (n *Node) Done() <-chan struct{} { return n.done }

func (n *Node) update(f func(*Status)) {
	n.mu.Lock()
	f(&n.st)
	close(n.changed)
	n.changed = make(chan struct{})
	n.mu.Unlock()
}

func (n *Node) addHanded() { n.update(func(s *Status) { s.HandedOff++ }) }

// Drain checks the request and starts the drain; the status returned
// is its first. A drain that runs already is returned as it is (a
// second `mailtee drain` follows it), unless it is for another node.
func (n *Node) Drain(req Request) (Status, error) {
	f := n.o.Fleet
	if f == nil {
		return Status{}, errNoFleet
	}
	if req.Wait <= 0 {
		req.Wait = DefaultWait
	}
	n.mu.Lock()
	running := n.draining && !n.st.Final
	cur := n.st
	n.mu.Unlock()
	if running {
		if req.To != cur.To {
			return cur, fmt.Errorf("a drain to %s is running; wait for it (mailtee drain without --to follows it)", orAny(cur.To))
		}
		return cur, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.checkTarget(ctx, req.To); err != nil {
		return Status{}, err
	}
	queued := len(n.o.Queue.IDs())
	n.mu.Lock()
	if n.draining && !n.st.Final {
		// Another request started one while this one asked the
		// database: follow it, as above (two drains at once would
		// both close Done).
		cur := n.st
		n.mu.Unlock()
		if req.To != cur.To {
			return cur, fmt.Errorf("a drain to %s is running; wait for it (mailtee drain without --to follows it)", orAny(cur.To))
		}
		return cur, nil
	}
	n.draining = true
	n.st = Status{Node: f.Node(), State: "stopping", To: req.To, Since: time.Now(), Queued: queued}
	n.mu.Unlock()
	n.update(func(*Status) {})
	n.o.Log("drain: stopping: no new mail accepted; the queue's %d messages go %s", queued, "to "+orAny(req.To)+" unless delivered first")
	n.wg.Add(1)
	go func() { defer n.wg.Done(); n.drain(req) }()
	return n.Status(), nil
}

// checkTarget says whether the mail can go where the request says: a
// node alive and serving, other than this one (any such node without
// --to).
func (n *Node) checkTarget(ctx context.Context, to string) error {
	f := n.o.Fleet
	self := f.Node()
	if to == self {
		return fmt.Errorf("--to %s is this node", to)
	}
	nodes, err := f.Nodes(ctx)
	if err != nil {
		return fmt.Errorf("cannot reach the fleet's database (ledger_database): %v; nothing was changed", err)
	}
	now := time.Now()
	var list []string
	found := false
	for _, nd := range nodes {
		alive := f.IsAlive(nd, now)
		desc := nd.State
		if !alive {
			desc = fmt.Sprintf("%s, last seen %s ago", nd.State, now.Sub(nd.Seen).Round(time.Second))
			if nd.State != "stopped" {
				desc = fmt.Sprintf("not heard from for %s", now.Sub(nd.Seen).Round(time.Second))
			}
		}
		if nd.Name == self {
			desc = "this node, " + desc
		}
		list = append(list, fmt.Sprintf("%s (%s)", nd.Name, desc))
		ok := alive && nd.State == "serving" && nd.Name != self
		if ok && (to == "" || nd.Name == to) {
			found = true
		}
	}
	sort.Strings(list)
	if found {
		return nil
	}
	nodesList := strings.Join(list, ", ")
	if nodesList == "" {
		nodesList = "none"
	}
	if to != "" {
		return fmt.Errorf("--to %s: not a node alive and serving; the fleet's nodes: %s", to, nodesList)
	}
	return fmt.Errorf("no other node is alive and serving to take the mail; the fleet's nodes: %s", nodesList)
}

// handoffPatience is how long the hand-off goes on failing (the
// database down) before the drain gives up, at least (a variable for
// tests).
var handoffPatience = time.Minute

func (n *Node) drain(req Request) {
	q, f := n.o.Queue, n.o.Fleet
	// Draining first, so that no other node picks this one to drain
	// to while its sessions finish.
	f.SetState("draining")
	if n.o.StopAccepting != nil {
		n.o.StopAccepting()
	}

	// Deliver what can be delivered now: every message due, and each
	// tried once since the drain began, or the wait is over.
	since := time.Now()
	n.update(func(s *Status) { s.State = "delivering" })
	q.Flush()
	deadline := time.Now().Add(req.Wait)
	for {
		un, left := q.Unattempted(since), len(q.IDs())
		n.update(func(s *Status) { s.Unattempted, s.Left = un, left })
		if un == 0 || left == 0 || time.Now().After(deadline) {
			break
		}
		if n.sleep(200 * time.Millisecond) {
			return
		}
	}

	// Hand the rest over.
	n.update(func(s *Status) { s.State = "handing off" })
	ctx := n.ctx
	// n.ctx has no deadline: a database that takes the connection but
	// never answers must not hold the drain here.
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	if k, err := f.Readdress(rctx, req.To); err == nil && k > 0 {
		n.o.Log("drain: %d messages on their way here passed on to %s", k, orAny(req.To))
	}
	cancel()
	lastGood := time.Now()
	patience := max(req.Wait, handoffPatience)
	var lastErr error
	for {
		ids := q.IDs()
		if len(ids) == 0 {
			q.Rescan() // a submission whose notice was lost
			if ids = q.IDs(); len(ids) == 0 {
				break
			}
		}
		progress, busy := false, false
		for _, id := range ids {
			if n.stopping() {
				return // the server stops: a drain run again goes on
			}
			err := n.handOff(ctx, id, req.To)
			switch {
			case err == nil:
				progress = true
			case errors.Is(err, queue.ErrNotFound):
				progress = true // delivered meanwhile
			case errors.Is(err, errBusy):
				busy = true
			default:
				lastErr = err
			}
			n.update(func(s *Status) { s.Left = len(q.IDs()) })
		}
		if progress {
			lastGood = time.Now()
		}
		if lastErr != nil && time.Since(lastGood) > patience {
			left := len(q.IDs())
			msg := fmt.Sprintf("%d messages left in the queue: the hand-off failed for %s: %v; the node stays drained (no mail accepted) and keeps delivering; run mailtee drain again", left, patience, lastErr)
			n.o.Log("warning: drain: %s", msg)
			// A new drain may start; the listeners stay closed and
			// nothing is taken from other nodes (draining stays).
			n.update(func(s *Status) { s.State, s.Error, s.Final, s.Left = "failed", msg, true, left })
			return
		}
		var pause time.Duration
		if lastErr != nil {
			pause, lastErr = time.Second, nil
		} else if busy && !progress {
			pause = 200 * time.Millisecond
		}
		if n.sleep(pause) {
			return
		}
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	if w, err := f.Waiting(wctx); err == nil && w > 0 {
		n.o.Log("drain: %d messages handed over wait for %s to take them", w, orAny(req.To))
	}
	cancel()
	st := n.Status()
	n.o.Log("drain: done: the queue is empty; %d of the %d messages queued at the start handed to %s, the rest delivered or returned here; exiting",
		st.HandedOff, st.Queued, orAny(req.To))
	n.update(func(s *Status) { s.State, s.Final, s.Left = "done", true, 0 })
	// The server exits: let the readers of the progress write the end.
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); {
		n.mu.Lock()
		w := n.watchers
		n.mu.Unlock()
		if w == 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	n.doneOnce.Do(func() { close(n.done) }) // a drain run again once empty ends the same way
}

// stopping says whether the server is stopping.
func (n *Node) stopping() bool {
	select {
	case <-n.stop:
		return true
	default:
		return false
	}
}

// sleep waits d, or less when the server stops (true then).
func (n *Node) sleep(d time.Duration) bool {
	if d <= 0 {
		return n.stopping()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-n.stop:
		return true
	case <-t.C:
		return false
	}
}

// notSent says whether err means the offer never reached the database:
// no connection could be made, or pgx knows nothing was sent.
func notSent(err error) bool {
	var ce *pgconn.ConnectError
	return errors.As(err, &ce) || pgconn.SafeToRetry(err)
}

// errBusy: the message is being settled otherwise; try again later.
var errBusy = errors.New("busy")

// claim makes id this goroutine's to hand off or settle; false when
// another has it.
func (n *Node) claim(id string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.inflight[id] {
		return false
	}
	n.inflight[id] = true
	return true
}

func (n *Node) release(id string) {
	n.mu.Lock()
	delete(n.inflight, id)
	n.mu.Unlock()
}

// handOff offers one message to the fleet and, once the offer is
// committed, removes it from the queue.
func (n *Node) handOff(ctx context.Context, id, to string) error {
	q, f := n.o.Queue, n.o.Fleet
	if !n.claim(id) {
		return errBusy
	}
	defer n.release(id)
	if n.mk.has("in", id) {
		return errBusy // taken from the fleet, not settled yet (resolveIn)
	}
	if err := q.Park(id); err != nil {
		return err
	}
	xctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	x, err := q.Export(xctx, id)
	cancel()
	if err != nil {
		q.Unpark(id)
		return err
	}
	rc, err := q.Body(id)
	if err != nil {
		q.Unpark(id)
		return err
	}
	body, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		q.Unpark(id)
		return fmt.Errorf("%s: reading the body: %w", id, err)
	}
	var settings []byte
	if n.o.Settings != nil {
		if settings, err = n.o.Settings.Record(x.Env.Settings); err != nil {
			q.Unpark(id)
			return fmt.Errorf("%s: migration settings %s: %w", id, x.Env.Settings, err)
		}
	}
	p, err := Encode(x, settings, body)
	if err != nil {
		q.Unpark(id)
		return err
	}
	// From the marker on, a crash leaves the message parked until the
	// database says whose it is.
	if err := n.mk.put("out", id, []byte(to)); err != nil {
		q.Unpark(id)
		return fmt.Errorf("%s: hand-off marker: %w", id, err)
	}
	octx, cancel := context.WithTimeout(ctx, 30*time.Second)
	_, err = f.Offer(octx, id, to, p)
	cancel()
	if err != nil {
		f.MarkDown(err)
		if notSent(err) {
			// Nothing reached the database: the message is this
			// node's still.
			n.mk.drop("out", id)
			q.Unpark(id)
			return fmt.Errorf("%s: offer to the fleet: %w", id, err)
		}
		// Perhaps committed: the marker keeps it parked until the
		// database answers (resolveOut).
		return fmt.Errorf("%s: offer to the fleet (kept here, undelivered, until the database says whether it took it): %w", id, err)
	}
	if err := q.HandedOff(id); err != nil && !errors.Is(err, queue.ErrNotFound) {
		// The marker stays, as in resolveOne: without it a restart
		// would deliver here a message the fleet has too.
		n.o.Log("warning: %s: handed to the fleet, but cannot be removed here: %v (kept undelivered until it can be)", id, err)
		return fmt.Errorf("%s: handed to the fleet, but cannot be removed here: %w", id, err)
	}
	n.mk.drop("out", id)
	pending := 0
	for _, r := range x.Rcpts {
		if r.Status == "" && !r.Lost {
			pending++
		}
	}
	n.o.Log("%s: handed to %s through the fleet's database: %d of %d recipients pending, size=%d", id, orAny(to), pending, len(x.Rcpts), x.Size)
	n.addHanded()
	return nil
}
