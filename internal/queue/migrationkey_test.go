package queue

import (
	"context"
	"strings"
	"testing"

	"github.com/mailtee/mailtee/internal/envelope"
)

// Unless CopyApart says a mailbox's copy takes another route than an
// ordinary recipient with its address (copy_transport, and an address
// delivered here: the one-box case), a copy to an address the message
// already has is a duplicate: it is not added (the message to a@one and
// to copy@two reaches copy@two once). A CopyRoute alone (the server
// always has one) does not keep them apart.
func TestMigrationCopyOfExistingRecipient(t *testing.T) {
	for _, apart := range []bool{false, true} {
		dir := t.TempDir()
		f := newFakeNet()
		c := copyOf("copy@two.example", "a@one.example")
		c.Migration = envelope.MigrationCopy
		o := withAdds(f.options(dir), map[string][]envelope.Rcpt{"a@one.example": {c}})
		o.CopyRoute = func(ctx context.Context, r envelope.Rcpt) (envelope.Hop, bool, error) {
			return envelope.Hop{Transport: "smtp", Nexthop: "[copies.example]"}, apart, nil
		}
		if apart {
			o.CopyApart = func(addr string) bool { return strings.HasSuffix(addr, "@two.example") }
		}
		q := startQueue(t, o)
		q.Enqueue(context.Background(), q.NewID(), env("a@one.example", "copy@two.example"), strings.NewReader("x\r\n"))
		waitFor(t, "removal", func() bool { return drained(t, q, dir) })
		want := 1
		if apart {
			want = 2
		}
		if n := f.count("copy@two.example"); n != want {
			t.Errorf("copy_transport %v: copy@two.example delivered %d times, want %d", apart, n, want)
		}
		q.Close(context.Background())
	}
}

// With CopyRoute, a mailbox's copy and another mailbox's forward to the
// same address both leave by it, to the same mailbox: the second is a
// duplicate (one mailbox in dual, one in the forward phase, copying to
// one address).
func TestMigrationCopyAndForwardAreOne(t *testing.T) {
	dir := t.TempDir()
	f := newFakeNet()
	c := copyOf("box@two.example", "a@one.example")
	c.Migration = envelope.MigrationCopy
	fw := envelope.Rcpt{Addr: "box@two.example", Orig: "b@one.example", Migration: envelope.MigrationForward}
	o := withAdds(f.options(dir), map[string][]envelope.Rcpt{"a@one.example": {c}, "b@one.example": {fw}})
	o.CopyRoute = func(ctx context.Context, r envelope.Rcpt) (envelope.Hop, bool, error) {
		return envelope.Hop{Transport: "smtp", Nexthop: "[copies.example]"}, true, nil
	}
	o.CopyApart = func(string) bool { return true }
	q := startQueue(t, o)
	q.Enqueue(context.Background(), q.NewID(), env("a@one.example", "b@one.example"), strings.NewReader("x\r\n"))
	waitFor(t, "removal", func() bool { return drained(t, q, dir) })
	if n := f.count("box@two.example"); n != 1 {
		t.Errorf("box@two.example delivered %d times, want 1", n)
	}
}
