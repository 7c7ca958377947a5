// Package anvil counts what each SMTP client does, as Postfix's anvil(8)
// server does for smtpd(8): simultaneous connections, and connections,
// messages (MAIL FROM) and recipients (RCPT TO) per time unit
// (anvil_rate_time_unit), so that the server can refuse a client over
// smtpd_client_connection_count_limit, smtpd_client_connection_rate_limit,
// smtpd_client_message_rate_limit or smtpd_client_recipient_rate_limit.
//
// The counting follows src/anvil/anvil.c:
//
//   - A client's state is created by its first connection with count 1,
//     connection rate 1 and the time unit starting then
//     (ANVIL_REMOTE_FIRST_CONN).
//   - Each event increments its rate; an event that comes more than one
//     time unit after the start of the current unit resets every rate of
//     the client to zero first and starts a new unit then
//     (ANVIL_REMOTE_INCR_RATE: "Simply reset the counter every
//     var_anvil_time_unit seconds. This is easier than maintaining a moving
//     average and it gives a quicker response to tresspassers"). So the
//     window is fixed, not sliding, and starts at the client's first event.
//   - The state of a client with no connection left is dropped one time
//     unit after its last disconnect, unless it connects again
//     (anvil_remote_expire); a message or recipient event for a client
//     with no state creates it as a connection would ("Be prepared for
//     'postfix reload' after 'connect'").
//
// Unlike anvil, which is a separate process serving every smtpd(8)
// process over a socket, a Table lives in the server process; it is keyed
// by client address only, because mailtee runs one smtp service.
package anvil

import (
	"net/netip"
	"sync"
	"time"
)

// Event is what a client did, other than connect.
type Event int

const (
	Message   Event = iota // MAIL FROM (smtpd_client_message_rate_limit)
	Recipient              // RCPT TO (smtpd_client_recipient_rate_limit)
	numEvents
)

// Table holds the counts of every recent client. Safe for concurrent use.
type Table struct {
	unit time.Duration
	now  func() time.Time

	mu        sync.Mutex
	clients   map[netip.Addr]*client
	lastSweep time.Time
}

// client is anvil's ANVIL_REMOTE.
type client struct {
	count int       // connections open now
	start time.Time // start of the current time unit
	conns int       // connections in the current unit
	rate  [numEvents]int
	// idle is when count went to 0; the state expires one unit later.
	idle time.Time
}

// New returns a table whose rates are per unit (anvil_rate_time_unit). A
// unit of zero or less is Postfix's default, 60s.
func New(unit time.Duration) *Table {
	if unit <= 0 {
		unit = 60 * time.Second
	}
	return &Table{unit: unit, now: time.Now, clients: make(map[netip.Addr]*client)}
}

// Unit is the time unit of the rates.
func (t *Table) Unit() time.Duration { return t.unit }

// Connect registers a new connection from addr and returns the client's
// simultaneous connections (this one included) and its connections in
// the current time unit (this one included). Every Connect must be
// followed by one Disconnect, also for a connection that is refused.
func (t *Table) Connect(addr netip.Addr) (count, rate int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	t.sweep(now)
	c := t.lookup(addr, now)
	if c == nil {
		c = &client{start: now}
		t.clients[addr] = c
	} else {
		c.incr(now, t.unit)
	}
	c.count++
	c.conns++
	return c.count, c.conns
}

// Disconnect registers the end of a connection from addr.
func (t *Table) Disconnect(addr netip.Addr) {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := t.clients[addr]
	if c == nil || c.count == 0 {
		return
	}
	if c.count--; c.count == 0 {
		c.idle = t.now()
	}
}

// Add registers an event from addr and returns the client's events of
// that kind in the current time unit, this one included.
func (t *Table) Add(addr netip.Addr, e Event) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	c := t.lookup(addr, now)
	if c == nil {
		// anvil_remote_mail: a client without state (a reload came
		// between connect and now, in Postfix) gets it now, as if it
		// had connected; its count stays as its connections say.
		c = &client{start: now, idle: now}
		t.clients[addr] = c
	}
	c.incr(now, t.unit)
	c.rate[e]++
	return c.rate[e]
}

// Len is the number of clients with state, for tests and statistics.
func (t *Table) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.sweep(t.now())
	return len(t.clients)
}

// lookup returns the live state of addr, or nil; an expired state is
// dropped here, so that expiry does not depend on the sweep's timing.
func (t *Table) lookup(addr netip.Addr, now time.Time) *client {
	c := t.clients[addr]
	if c != nil && c.expired(now, t.unit) {
		delete(t.clients, addr)
		return nil
	}
	return c
}

// sweep drops expired states, at most once per unit, so that memory
// follows the clients of the last unit or two.
func (t *Table) sweep(now time.Time) {
	if now.Sub(t.lastSweep) < t.unit {
		return
	}
	t.lastSweep = now
	for a, c := range t.clients {
		if c.expired(now, t.unit) {
			delete(t.clients, a)
		}
	}
}

func (c *client) expired(now time.Time, unit time.Duration) bool {
	return c.count == 0 && now.Sub(c.idle) > unit
}

// incr starts a new time unit when the current one is over
// (ANVIL_REMOTE_INCR_RATE: "start + var_anvil_time_unit < now").
func (c *client) incr(now time.Time, unit time.Duration) {
	if now.Sub(c.start) > unit {
		c.start = now
		c.conns = 0
		c.rate = [numEvents]int{}
	}
}
