package queue

import "time"

// FlushID makes the deferred recipients of message id due now, as Flush
// does for every message (postqueue -i).
func (q *Queue) FlushID(id string) error {
	q.mu.Lock()
	e, ok := q.msgs[id]
	if !ok {
		q.mu.Unlock()
		return ErrNotFound
	}
	if e.busy {
		e.flush = true // its delivery goroutine owns the recipients now
	} else {
		e.m.flush()
		q.scheduleLocked(e, time.Time{})
	}
	q.mu.Unlock()
	q.poke()
	return nil
}
