package fleet

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/testdb"
)

func member(t *testing.T, url, name string) *Fleet {
	t.Helper()
	f, err := Open(Options{URL: url, Node: name, Heartbeat: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	return f
}

// A row addressed to one node is claimed by it alone; an offer made
// again is ignored, and once taken the row stays as a tombstone without
// its payload; rows for any node are claimed by one node each, however
// many poll at once.
func TestHandoff(t *testing.T) {
	pg := testdb.Postgres(t)
	pg.CreateDB("fleet")
	_, url := pg.PassFile(t.TempDir(), "fleet")
	ctx := context.Background()
	a, b, c := member(t, url, "a"), member(t, url, "b"), member(t, url, "c")

	if fresh, err := a.Offer(ctx, "AAAA01", "b", []byte("one")); err != nil || !fresh {
		t.Fatalf("offer: %v %v", fresh, err)
	}
	if fresh, err := a.Offer(ctx, "AAAA01", "b", []byte("again")); err != nil || fresh {
		t.Fatalf("offer again: %v %v, want not fresh", fresh, err)
	}
	if hs, err := c.Claim(ctx, 10); err != nil || len(hs) != 0 {
		t.Fatalf("c claimed %v (%v), a row for b", hs, err)
	}
	hs, err := b.Claim(ctx, 10)
	if err != nil || len(hs) != 1 || hs[0].From != "a" || hs[0].QueueID != "AAAA01" {
		t.Fatalf("b claimed %+v (%v)", hs, err)
	}
	// Claimed and not done: b gets it again (after a crash), c never.
	if hs, _ := b.Claim(ctx, 10); len(hs) != 1 {
		t.Fatalf("b's claim forgotten: %+v", hs)
	}
	if p, err := b.Payload(ctx, "a", "AAAA01"); err != nil || string(p) != "one" {
		t.Fatalf("payload %q %v", p, err)
	}
	if _, err := c.Payload(ctx, "a", "AAAA01"); err == nil {
		t.Fatal("c read the payload of b's claim")
	}
	if err := b.Taken(ctx, "a", "AAAA01", "BBBB01"); err != nil {
		t.Fatal(err)
	}
	h, err := a.Offered(ctx, "AAAA01")
	if err != nil || h == nil || h.Done.IsZero() || h.NewID != "BBBB01" || h.ClaimedBy != "b" {
		t.Fatalf("tombstone %+v %v", h, err)
	}
	if fresh, _ := a.Offer(ctx, "AAAA01", "", []byte("after")); fresh {
		t.Fatal("an offer after the take was stored")
	}
	if h, _ := a.Offered(ctx, "NOPE01"); h != nil {
		t.Fatalf("a row for a message never offered: %+v", h)
	}

	// Rows for any node: b and c claim at once, each row once.
	for i := range 40 {
		a.Offer(ctx, fmt.Sprintf("CCCC%02d", i), "", []byte{byte(i)})
	}
	var mu sync.Mutex
	seen := map[string]string{}
	var wg sync.WaitGroup
	for _, f := range []*Fleet{b, c} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 10 {
				hs, err := f.Claim(ctx, 3)
				if err != nil {
					t.Error(err)
					return
				}
				for _, h := range hs {
					mu.Lock()
					if other, ok := seen[h.QueueID]; ok && other != f.Node() {
						t.Errorf("%s claimed by %s and %s", h.QueueID, other, f.Node())
					}
					seen[h.QueueID] = f.Node()
					mu.Unlock()
					f.Taken(ctx, h.From, h.QueueID, "X"+h.QueueID)
				}
			}
		}()
	}
	wg.Wait()
	if len(seen) != 40 {
		t.Fatalf("%d rows claimed, want 40", len(seen))
	}
	if n, err := a.Waiting(ctx); err != nil || n != 0 {
		t.Fatalf("waiting %d %v", n, err)
	}

	// A draining node passes on what was addressed to it.
	a.Offer(ctx, "DDDD01", "b", nil)
	if n, err := b.Readdress(ctx, "c"); err != nil || n != 1 {
		t.Fatalf("readdress %d %v", n, err)
	}
	if hs, _ := c.Claim(ctx, 10); len(hs) != 1 || hs[0].QueueID != "DDDD01" {
		t.Fatalf("c after readdress: %+v", hs)
	}
	if n, err := a.PruneHandoffs(ctx, time.Now().Add(time.Minute)); err != nil || n != 41 {
		t.Fatalf("pruned %d %v, want the 41 done", n, err)
	}
}
