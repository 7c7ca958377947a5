package queue

import "time"

// Shape is what showq's figures (/metrics) need of a queued message.
type Shape struct {
	Arrival time.Time
	Size    int64
	Hold    bool
	Active  bool // a delivery pass has it
	// Deferred: a recipient was tried and is still pending.
	Deferred bool
}

// shapeBatch is how many messages Shapes reads per taking of the lock:
// Enqueue and the deliveries wait for it meanwhile.
const shapeBatch = 512

// Shapes appends a Shape for every message in the queue to buf, in no
// order. A scrape reads the whole queue every few seconds: Shapes builds
// no description and sorts nothing (Each does both: 2 to 3 times
// slower on 100,000 messages), and holds the lock for a batch of
// messages at a time, never for the whole queue. A message removed
// meanwhile is left out.
func (q *Queue) Shapes(buf []Shape) []Shape {
	q.mu.Lock()
	es := make([]*entry, 0, len(q.msgs))
	for _, e := range q.msgs {
		es = append(es, e)
	}
	q.mu.Unlock()
	for len(es) > 0 {
		n := min(len(es), shapeBatch)
		q.mu.Lock()
		for _, e := range es[:n] {
			if e.removed {
				continue
			}
			s := Shape{Arrival: e.m.Env.Arrival, Size: e.m.Size, Hold: e.m.Hold, Active: e.busy}
			for i := range e.m.Rcpts {
				if r := &e.m.Rcpts[i]; !r.lost && r.Status == Pending && r.Attempts > 0 {
					s.Deferred = true
					break
				}
			}
			buf = append(buf, s)
		}
		q.mu.Unlock()
		es = es[n:]
	}
	return buf
}
