package queue

import (
	"time"

	"github.com/mailtee/mailtee/internal/envelope"
)

// Ledger records what happens to messages beyond their life in the queue
// (internal/ledger). The queue stays the source of truth: a finished
// message's files are removed only once the ledger has its final state
// (Final's done), so that a crash in between loses nothing — the message
// is loaded again at the next start and handed to the ledger again.
type Ledger interface {
	// Accepted: m is in the queue, queued now or found at Open (perhaps
	// recorded already: the ledger takes it again without harm). It is
	// called on the acceptance path: it must not block.
	Accepted(m *Message)
	// Delivery: recipient i of m has had an attempt, already recorded
	// in the queue, with this outcome and status (as Events.Delivery).
	Delivery(m *Message, i int, hop envelope.Hop, o Outcome, status string, at time.Time)
	// Final: m leaves the queue, every recipient final, or deleted by
	// the administrator (its pending recipients then never delivered).
	// m is not changed any more (a copy when deleted). done, which may be
	// nil, is called once the ledger holds m's final state, or has given
	// up on it and recorded a gap: only then are m's files removed.
	Final(m *Message, deleted bool, done func())
}

// stateCopy is a copy of m's envelope and recipients' states, taken with
// q.mu held, for a ledger to read while a delivery may still change m.
func (m *Message) stateCopy() *Message {
	c := &Message{ID: m.ID, Env: m.Env, Size: m.Size, Hold: m.Hold, nEnv: m.nEnv}
	c.Rcpts = append([]RcptState(nil), m.Rcpts...)
	return c
}

// final hands e, whose recipients are all final, to the ledger and
// removes it once the ledger has it (at once without a ledger). Close
// waits for the ledger's answer.
func (q *Queue) final(e *entry) {
	if q.o.Ledger == nil {
		q.removeFile(e, true)
		return
	}
	q.wg.Add(1)
	q.o.Ledger.Final(e.m, false, func() {
		defer q.wg.Done()
		q.removeFile(e, true) // every delivery of e is over
	})
}

// Added reports whether recipient i was added after the message was
// queued (a mailbox_bcc_maps copy), not one it came with.
func (m *Message) Added(i int) bool { return i >= m.nEnv }
