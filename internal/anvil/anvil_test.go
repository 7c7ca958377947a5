package anvil

import (
	"net/netip"
	"testing"
	"time"
)

// fakeClock is a table's clock, moved by hand.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time      { return c.t }
func (c *fakeClock) add(d time.Duration) { c.t = c.t.Add(d) }
func newTable(unit time.Duration) (*Table, *fakeClock) {
	clk := &fakeClock{t: time.Unix(1_000_000, 0)}
	t := New(unit)
	t.now = clk.now
	return t, clk
}

var (
	a = netip.MustParseAddr("192.0.2.1")
	b = netip.MustParseAddr("2001:db8::1")
)

// anvil(8): connect answers the number of simultaneous connections and
// of connections per time unit for the client.
func TestConnectCounts(t *testing.T) {
	tb, clk := newTable(time.Minute)
	for i := 1; i <= 3; i++ {
		if n, r := tb.Connect(a); n != i || r != i {
			t.Fatalf("connect %d: count %d rate %d", i, n, r)
		}
	}
	if n, r := tb.Connect(b); n != 1 || r != 1 {
		t.Errorf("another client: count %d rate %d", n, r)
	}
	tb.Disconnect(a)
	tb.Disconnect(a)
	clk.add(10 * time.Second)
	// The count follows disconnects; the rate does not.
	if n, r := tb.Connect(a); n != 2 || r != 4 {
		t.Errorf("after two disconnects: count %d rate %d, want 2 and 4", n, r)
	}
}

// ANVIL_REMOTE_INCR_RATE: the counters are reset once an event comes more
// than a time unit after the start of the current one, which began with
// the client's first event: a fixed window, not a sliding one.
func TestRateWindow(t *testing.T) {
	tb, clk := newTable(time.Minute)
	tb.Connect(a)
	for i := 1; i <= 5; i++ {
		if r := tb.Add(a, Message); r != i {
			t.Fatalf("message %d: rate %d", i, r)
		}
	}
	if r := tb.Add(a, Recipient); r != 1 {
		t.Errorf("recipients are counted apart from messages: %d", r)
	}
	clk.add(time.Minute) // exactly one unit: still the same window
	if r := tb.Add(a, Message); r != 6 {
		t.Errorf("at the end of the unit: %d, want 6", r)
	}
	clk.add(time.Second)
	if r := tb.Add(a, Message); r != 1 {
		t.Errorf("after the unit: %d, want 1 (a new window)", r)
	}
	if r := tb.Add(a, Recipient); r != 1 {
		t.Errorf("recipients after the unit: %d, want 1: every rate starts again", r)
	}
	// The connection count is not a rate: it survives the new window,
	// and the connection rate starts again too.
	if n, r := tb.Connect(a); n != 2 || r != 1 {
		t.Errorf("connect in the new window: count %d rate %d, want 2 and 1", n, r)
	}
}

// anvil_remote_expire: the state of a client without connections is
// dropped a time unit after its last disconnect, unless it comes back.
func TestExpiry(t *testing.T) {
	tb, clk := newTable(time.Minute)
	tb.Connect(a)
	tb.Add(a, Message)
	tb.Disconnect(a)
	clk.add(30 * time.Second)
	if n, r := tb.Connect(a); n != 1 || r != 2 {
		t.Errorf("back within the unit: count %d rate %d, want 1 and 2", n, r)
	}
	tb.Disconnect(a)
	clk.add(61 * time.Second)
	if tb.Len() != 0 {
		t.Errorf("%d clients kept a unit after their last disconnect", tb.Len())
	}
	if n, r := tb.Connect(a); n != 1 || r != 1 {
		t.Errorf("after expiry: count %d rate %d, want a fresh 1 and 1", n, r)
	}
	if r := tb.Add(a, Message); r != 1 {
		t.Errorf("message rate after expiry: %d", r)
	}
	// A client with a connection open is never dropped.
	clk.add(time.Hour)
	if tb.Len() != 1 {
		t.Errorf("a connected client was dropped")
	}
}

// Memory follows the clients of the last time unit: many clients that
// came and went leave nothing behind.
func TestSweep(t *testing.T) {
	tb, clk := newTable(time.Second)
	for i := 0; i < 10000; i++ {
		addr := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		tb.Connect(addr)
		tb.Disconnect(addr)
	}
	clk.add(3 * time.Second)
	tb.Connect(a)
	if n := len(tb.clients); n != 1 {
		t.Errorf("%d clients in the table, want 1", n)
	}
}

// An event from a client the table does not know (Postfix: a reload
// between connect and MAIL) is counted, and the state expires as usual.
func TestEventWithoutConnect(t *testing.T) {
	tb, clk := newTable(time.Minute)
	if r := tb.Add(b, Recipient); r != 1 {
		t.Errorf("rate %d", r)
	}
	if r := tb.Add(b, Recipient); r != 2 {
		t.Errorf("rate %d", r)
	}
	tb.Disconnect(b) // harmless
	clk.add(2 * time.Minute)
	if tb.Len() != 0 {
		t.Errorf("state kept")
	}
}

func TestDefaultUnit(t *testing.T) {
	if u := New(0).Unit(); u != time.Minute {
		t.Errorf("default unit %v, want anvil_rate_time_unit's 60s", u)
	}
}
