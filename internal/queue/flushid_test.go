package queue

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// postqueue -i: FlushID retries one deferred message now and leaves
// the others to their backoff.
func TestFlushID(t *testing.T) {
	dir := t.TempDir()
	f := newFakeNet()
	f.set("a@one.example", testErr{false, "later"})
	f.set("b@one.example", testErr{false, "later"})
	o := f.options(dir)
	o.MinBackoff, o.MaxBackoff = time.Hour, time.Hour
	q := startQueue(t, o)
	ida, idb := q.NewID(), q.NewID()
	q.Enqueue(context.Background(), ida, env("a@one.example"), strings.NewReader("x\r\n"))
	q.Enqueue(context.Background(), idb, env("b@one.example"), strings.NewReader("x\r\n"))
	waitFor(t, "first attempts", func() bool {
		l := q.List()
		return len(l) == 2 && !l[0].Active && !l[1].Active && l[0].Rcpts[0].Status == "deferred" && l[1].Rcpts[0].Status == "deferred"
	})
	f.set("a@one.example", nil)
	f.set("b@one.example", nil)
	if err := q.FlushID(ida); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "delivery of the flushed message", func() bool { return f.count("a@one.example") == 1 })
	time.Sleep(100 * time.Millisecond)
	if f.count("b@one.example") != 0 {
		t.Error("FlushID flushed another message")
	}
	if err := q.FlushID("ABCDEF123"); !errors.Is(err, ErrNotFound) {
		t.Errorf("FlushID of an unknown ID: %v", err)
	}
}
