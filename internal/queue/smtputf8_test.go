package queue

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/mailtee/mailtee/internal/envelope"
)

// The SMTPUTF8 flag (the sender asked for it) is part of the stored
// envelope: a message deferred before a restart is still delivered as
// one that asked for SMTPUTF8 (delivery decides with it whether a next
// hop must offer SMTPUTF8), from the journal and from a file of its own.
func TestSMTPUTF8KeptAcrossRestart(t *testing.T) {
	for _, size := range []int{10, journalMax + 10} {
		dir := t.TempDir()
		f := newFakeNet()
		f.set("j\u00f6ran@two.example", testErr{false, "down"})
		q, err := Open(f.options(dir))
		if err != nil {
			t.Fatal(err)
		}
		go q.Run()
		e := env("j\u00f6ran@two.example")
		e.SMTPUTF8 = true
		q.Enqueue(context.Background(), q.NewID(), e, strings.NewReader(strings.Repeat("x", size)+"\r\n"))
		waitFor(t, "an attempt", func() bool { return f.calls1() >= 1 })
		q.Close(context.Background())

		var asked atomic.Int32
		o := f.options(dir)
		deliver := o.Deliver
		o.Deliver = func(ctx context.Context, m *Message, hop envelope.Hop, rcpts []int) []Outcome {
			if m.Env.SMTPUTF8 {
				asked.Add(1)
			}
			return deliver(ctx, m, hop, rcpts)
		}
		f.set("j\u00f6ran@two.example", nil)
		q2 := startQueue(t, o)
		waitFor(t, "delivery after the restart", func() bool { return f.count("j\u00f6ran@two.example") == 1 })
		if asked.Load() == 0 {
			t.Errorf("body of %d bytes: the SMTPUTF8 flag was lost across the restart", size)
		}
		_ = q2
	}
}
