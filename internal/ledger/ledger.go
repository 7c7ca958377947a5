// Package ledger keeps the proof of every copy: each message mailtee
// accepted and the outcome of each of its required deliveries, beyond
// the message's life in the queue, in SQL: an embedded SQLite file by
// default, or a PostgreSQL database that the nodes of a fleet share
// (ledger_database = postgres://..., pg.go), with one schema.
//
// The queue stays the source of truth: the Recorder is fed off the
// acceptance path, writes in batches, and tells the queue when a
// finished message's outcomes are stored so that only then its files go
// (queue.Ledger). A ledger that cannot write (a full disk, a damaged
// file) never holds mail up: what it could not record becomes a Gap,
// with its time range, which every report shows. A shared database that
// does not answer leaves none: its records wait in a file of the
// queue directory until it does (spill.go).
package ledger

import (
	"context"
	"strings"
	"time"
)

// Status of one required delivery.
type Status string

const (
	Pending Status = "pending" // in the queue, not final yet
	Sent    Status = "sent"
	Bounced Status = "bounced" // refused for good; the reply says why
	Expired Status = "expired" // bounced after maximal_queue_lifetime
	Deleted Status = "deleted" // removed by the administrator (postsuper -d)
)

// Final reports whether s is an end state.
func (s Status) Final() bool { return s != Pending && s != "" }

// Failed reports whether s is a delivery that will never happen.
func (s Status) Failed() bool { return s == Bounced || s == Expired || s == Deleted }

// Message is one accepted message and its deliveries.
type Message struct {
	Node      string    `json:"node"`       // the host that accepted it (myhostname)
	ID        string    `json:"queue_id"`   // queue ID on Node
	MessageID string    `json:"message_id"` // the Message-ID header, with its <>
	From      string    `json:"from"`       // envelope sender, "" for <>
	Rcpts     []string  `json:"rcpts"`      // the original recipients, as the client gave them
	Size      int64     `json:"size"`
	Arrival   time.Time `json:"arrival"`
	Client    string    `json:"client"` // "name[addr]", or "local"
	// Parent is the queue ID of the message mailtee made this one from
	// (an alias's forward, a notice), on the same node.
	Parent string `json:"parent,omitempty"`
	// Phase is the migration setting the message was accepted with
	// (which copy tables were in force).
	Phase string `json:"phase,omitempty"`
	// Notice marks a delivery status notification mailtee made (a
	// bounce, a delay warning): its deliveries are not required
	// deliveries of its Parent.
	Notice bool `json:"notice,omitempty"`
	// Finished is when the message left the queue; zero while it is in it.
	Finished   time.Time  `json:"finished,omitzero"`
	Deliveries []Delivery `json:"deliveries"`
}

// Delivery is one required delivery of a message: one recipient of the
// queue (a local mailbox, an alias, a copy, a remote address).
type Delivery struct {
	Index  int    `json:"index"` // the recipient's index in the queue file
	Rcpt   string `json:"rcpt"`  // the address delivered to
	Orig   string `json:"orig,omitempty"`
	Copy   bool   `json:"copy,omitempty"` // an automatic copy (a BCC map, a relay's copies)
	Status Status `json:"status"`
	// At is when Status was reached (the last attempt while pending).
	At        time.Time `json:"at,omitzero"`
	Transport string    `json:"transport,omitempty"` // smtp, relay, local, ...
	Nexthop   string    `json:"nexthop,omitempty"`   // as routing gave it
	Relay     string    `json:"relay,omitempty"`     // "host[ip]:port", "local", "none"
	DSN       string    `json:"dsn,omitempty"`
	// Reply is the remote's reply (sent or refused) or the reason of
	// the last failure.
	Reply string `json:"reply,omitempty"`
	// RemoteID is the queue ID the next hop gave the message in its
	// reply ("250 2.0.0 Ok: queued as 4Zx..."), or Google's "- gsmtp"
	// token: how a report follows the copy to a peer's ledger.
	RemoteID string `json:"remote_id,omitempty"`
	Attempts int    `json:"attempts"`
}

// Gap is a time range whose records the ledger could not keep.
type Gap struct {
	Node     string    `json:"node"`
	Since    time.Time `json:"since"`
	Until    time.Time `json:"until"`
	Messages int       `json:"messages"` // messages whose final state was lost (0: unknown)
	Reason   string    `json:"reason"`
}

// Filter selects messages by arrival time and user.
type Filter struct {
	Since, Until time.Time // arrival in [Since, Until); zero: unbounded
	// User matches a message when it is the sender, an original
	// recipient or a delivery's address (case-insensitive); without
	// '@' it matches the local part of any of them.
	User  string
	Limit int // at most this many, newest first; 0: all
}

// Matches reports whether addr is user, as Filter.User means it.
func (f Filter) Matches(addr string) bool {
	if f.User == "" {
		return true
	}
	if strings.Contains(f.User, "@") {
		return strings.EqualFold(addr, f.User)
	}
	local, _, _ := strings.Cut(addr, "@")
	return strings.EqualFold(local, f.User)
}

// MatchesMessage reports whether f.User is m's sender, one of its
// original recipients or one of its deliveries (true without a user).
func (f Filter) MatchesMessage(m Message) bool {
	if f.User == "" || f.Matches(m.From) {
		return true
	}
	for _, r := range m.Rcpts {
		if f.Matches(r) {
			return true
		}
	}
	for _, d := range m.Deliveries {
		if f.Matches(d.Rcpt) || d.Orig != "" && f.Matches(d.Orig) {
			return true
		}
	}
	return false
}

// Reader is read access to a ledger: the local store, a peer's over
// HTTP, or a Postfix log read into memory.
type Reader interface {
	// Messages returns the messages f selects, with their deliveries,
	// ordered by arrival (newest first when f.Limit is set).
	Messages(ctx context.Context, f Filter) ([]Message, error)
	// Message returns one message by queue ID (any node when node is
	// ""); ok is false when there is none.
	Message(ctx context.Context, node, id string) (m Message, ok bool, err error)
	// Children returns the messages made from message id on node (its
	// forwards and notices), with their deliveries.
	Children(ctx context.Context, node, id string) ([]Message, error)
	// Gaps returns the gaps that overlap [since, until) (zero: unbounded).
	Gaps(ctx context.Context, since, until time.Time) ([]Gap, error)
}

// Stats are the Recorder's own figures, for /metrics and status.
type Stats struct {
	Waiting    int       // events not yet written
	Oldest     time.Time // arrival of the oldest event not yet written (zero: none): the lag
	LastCommit time.Time
	Failures   uint64 // batches that could not be written
	Lost       uint64 // messages whose final state could not be written (in gaps)
	// Held is the messages whose records wait for a shared ledger
	// database that does not answer (in the spill file: not lost).
	Held int
}

// RemoteID extracts the queue ID a next hop named in its reply:
// Postfix's "queued as 4Zx...", Exchange's and others'
// "<...> [InternalId=...]", Google's "OK 1700000000 a1b2c3 - gsmtp".
// "" when the reply names none.
func RemoteID(reply string) string {
	if i := indexASCIIFold(reply, "queued as "); i >= 0 {
		return firstToken(reply[i+len("queued as "):])
	}
	if strings.HasSuffix(strings.TrimSpace(reply), "- gsmtp") {
		f := strings.Fields(reply)
		// "250 2.0.0 OK  1700000000 d2e1a72fcca58-4c3bd0c0b5bsi1234567a.55 - gsmtp"
		if len(f) >= 3 {
			return f[len(f)-3]
		}
	}
	if i := strings.Index(reply, "InternalId="); i >= 0 {
		return firstToken(reply[i+len("InternalId="):])
	}
	return ""
}

// indexASCIIFold is strings.Index ignoring ASCII case, with offsets in
// s itself (lower-casing s first can change its length: a remote's
// reply is any bytes).
func indexASCIIFold(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if strings.EqualFold(s[i:i+len(sub)], sub) {
			return i
		}
	}
	return -1
}

func firstToken(s string) string {
	s = strings.TrimSpace(s)
	end := strings.IndexFunc(s, func(r rune) bool {
		return r == ' ' || r == ',' || r == ';' || r == ')' || r == ']' || r == '>' || r == '\t'
	})
	if end >= 0 {
		s = s[:end]
	}
	return strings.Trim(s, "<(")
}
