package queue

import (
	"context"
	"strings"
	"testing"
	"time"
)

// Shapes tells held, deferred and untried messages apart, as showq's
// queues do.
func TestShapes(t *testing.T) {
	f := newFakeNet()
	f.set("b@two.example", testErr{false, "connect refused"})
	// c too: its message stays whether the hold comes before its pass or after.
	f.set("c@three.example", testErr{false, "connect refused"})
	o := f.options(t.TempDir())
	o.MinBackoff, o.MaxBackoff = time.Hour, time.Hour // b stays deferred
	q := startQueue(t, o)
	ctx := context.Background()
	q.Enqueue(ctx, q.NewID(), env("a@one.example", "b@two.example"), strings.NewReader("x\r\n"))
	held := q.NewID()
	q.Enqueue(ctx, held, env("c@three.example"), strings.NewReader("hello\r\n"))
	q.Hold(held)
	waitFor(t, "b deferred", func() bool {
		for _, s := range q.Shapes(nil) {
			if s.Deferred && !s.Hold && !s.Active {
				return true
			}
		}
		return false
	})
	var hold, deferred int
	for _, s := range q.Shapes(nil) {
		if s.Arrival.IsZero() || s.Size == 0 {
			t.Errorf("shape without arrival or size: %+v", s)
		}
		if s.Hold {
			hold++
		} else if s.Deferred {
			deferred++
		}
	}
	if hold != 1 || deferred != 1 {
		t.Errorf("hold %d, deferred %d; want 1 and 1", hold, deferred)
	}
}
