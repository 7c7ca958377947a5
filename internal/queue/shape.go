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

// Shapes appends a Shape for every message in the queue to buf, in no
// order. A scrape reads the whole queue every few seconds: Shapes takes
// the lock once for a copy of 40 bytes a message, where Each takes it
// per message, sorts, and builds each message's description (1.3 s for
// 100,000 messages, against some milliseconds).
func (q *Queue) Shapes(buf []Shape) []Shape {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, e := range q.msgs {
		s := Shape{Arrival: e.m.Env.Arrival, Size: e.m.Size, Hold: e.m.Hold, Active: e.busy}
		for i := range e.m.Rcpts {
			if r := &e.m.Rcpts[i]; !r.lost && r.Status == Pending && r.Attempts > 0 {
				s.Deferred = true
				break
			}
		}
		buf = append(buf, s)
	}
	return buf
}
