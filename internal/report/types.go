package report

import (
	"time"

	"github.com/mailtee/mailtee/internal/ledger"
)

// Report is what `mailtee report` prints, what the dashboard's JSON
// carries and what /metrics exports: the same figures everywhere, so
// the JSON tags are a stable interface.
type Report struct {
	Generated time.Time `json:"generated"`
	Since     time.Time `json:"since,omitzero"`
	Until     time.Time `json:"until,omitzero"`
	User      string    `json:"user,omitempty"`

	Summary        Summary        `json:"summary"`
	Reconciliation Reconciliation `json:"reconciliation"`
	// Misses are the required deliveries not (yet) sent: pending and
	// failed, oldest arrival first.
	Misses []Miss        `json:"misses"`
	Gaps   []ledger.Gap  `json:"gaps"`
	Peers  []PeerStatus  `json:"peers"`
	Dests  []Destination `json:"destinations"`
	// Deferrals are the commonest replies of pending deliveries, most
	// frequent first (at most MaxDeferrals).
	Deferrals []Deferral `json:"deferrals"`
	Series    Series     `json:"series"`
	Messages  []Message  `json:"messages"`
}

// Counts of required deliveries (or of messages) by state.
type Counts struct {
	Delivered int `json:"delivered"`
	Pending   int `json:"pending"`
	Failed    int `json:"failed"`
}

// Total is Delivered+Pending+Failed.
func (c Counts) Total() int { return c.Delivered + c.Pending + c.Failed }

func (c *Counts) add(s State) {
	switch s {
	case Delivered:
		c.Delivered++
	case Pending:
		c.Pending++
	case Failed:
		c.Failed++
	}
}

// Summary counts messages (a message is delivered when all its required
// deliveries are, failed when one failed, pending otherwise) and
// required deliveries.
type Summary struct {
	Accepted   int    `json:"accepted"`
	Messages   Counts `json:"messages"`
	Deliveries Counts `json:"deliveries"`
	Copies     Counts `json:"copies"`
	Notices    int    `json:"notices"`
	// OldestPending is the arrival of the oldest message with a pending
	// required delivery (zero: none), and its age at Generated.
	OldestPending    time.Time `json:"oldest_pending,omitzero"`
	OldestPendingAge float64   `json:"oldest_pending_age_seconds"`
}

// Reconciliation is the report's one figure: delivered required
// deliveries over all required deliveries.
type Reconciliation struct {
	Required  int `json:"required"`
	Delivered int `json:"delivered"`
	// Ratio is Delivered/Required, 1 when nothing was required.
	Ratio float64 `json:"ratio"`
	// Complete is false when a gap or an unreachable peer means the
	// figure may miss deliveries; Incomplete says why.
	Complete   bool     `json:"complete"`
	Incomplete []string `json:"incomplete,omitempty"`
}

// State of a required delivery once followed to its end.
type State string

const (
	Delivered State = "delivered"
	Pending   State = "pending"
	Failed    State = "failed"
)

// stateOf maps a ledger status to a State.
func stateOf(s ledger.Status) State {
	switch {
	case s == ledger.Sent:
		return Delivered
	case s.Failed():
		return Failed
	}
	return Pending
}

// Message is one accepted message with its required deliveries and the
// notices it caused.
type Message struct {
	Node      string     `json:"node"`
	ID        string     `json:"queue_id"`
	MessageID string     `json:"message_id"`
	From      string     `json:"from"`
	Rcpts     []string   `json:"rcpts"`
	Size      int64      `json:"size"`
	Arrival   time.Time  `json:"arrival"`
	Client    string     `json:"client"`
	Phase     string     `json:"phase,omitempty"`
	State     State      `json:"state"`
	Required  []Required `json:"required"`
	Notices   []Notice   `json:"notices"`
}

// Required is one required delivery: a recipient of the accepted
// message, or (folded in) a target of one of its forwards.
type Required struct {
	Rcpt string `json:"rcpt"`
	// Via is the alias whose forward made this delivery, and Forward
	// the forward's queue ID; empty for the message's own recipients.
	Via     string `json:"via,omitempty"`
	Forward string `json:"forward,omitempty"`
	Copy    bool   `json:"copy,omitempty"`
	// Destination is the recipient's domain: for a copy, the copy
	// address's domain, which names the path to the provider.
	Destination string `json:"destination"`
	// State is the end state: the peer's when the delivery was followed.
	State State `json:"state"`
	// Status, At, Relay, Reply and DSN are those of the end of the
	// chain (the peer's last hop when followed): for a failure, the
	// reply that says why.
	Status ledger.Status `json:"status"`
	At     time.Time     `json:"at,omitzero"`
	Relay  string        `json:"relay,omitempty"`
	DSN    string        `json:"dsn,omitempty"`
	Reply  string        `json:"reply,omitempty"`
	// Attempts on this host.
	Attempts int `json:"attempts"`
	// Chain is the path: this host's delivery, then each hop followed
	// into a peer (depth-first when a peer split it), ending with the
	// last reply.
	Chain []Hop `json:"chain"`
	// Note says why the delivery was not followed further, if it
	// should have been ("not followed: no peer has queue ID X").
	Note string `json:"note,omitempty"`
}

// Hop is one delivery in a chain.
type Hop struct {
	Depth     int           `json:"depth"` // 0: this host; 1: a peer's or a forward's, ...
	Node      string        `json:"node"`
	QueueID   string        `json:"queue_id"`
	Rcpt      string        `json:"rcpt"`
	Status    ledger.Status `json:"status"`
	At        time.Time     `json:"at,omitzero"`
	Transport string        `json:"transport,omitempty"`
	Relay     string        `json:"relay,omitempty"`
	DSN       string        `json:"dsn,omitempty"`
	Reply     string        `json:"reply,omitempty"`
	RemoteID  string        `json:"remote_id,omitempty"`
	// Peer is the URL of the peer this hop was read from ("": local).
	Peer string `json:"peer,omitempty"`
}

// Notice is a delivery status notification mailtee made about a message
// (a bounce, a delay warning): listed, never a required delivery.
type Notice struct {
	QueueID string        `json:"queue_id"`
	Rcpt    string        `json:"rcpt"`
	Status  ledger.Status `json:"status"`
	Reply   string        `json:"reply,omitempty"`
}

// Miss is a required delivery that is not delivered, with its message.
type Miss struct {
	Node      string    `json:"node"`
	QueueID   string    `json:"queue_id"`
	MessageID string    `json:"message_id"`
	From      string    `json:"from"`
	Arrival   time.Time `json:"arrival"`
	// Age is Generated - Arrival.
	Age float64 `json:"age_seconds"`
	Required
}

// PeerStatus says how following into one peer went.
type PeerStatus struct {
	URL      string `json:"url"`
	Followed int    `json:"followed"` // deliveries found on this peer
	Errors   int    `json:"errors"`
	Error    string `json:"error,omitempty"` // the last error
}

// Destination is the figures of one destination (Required.Destination).
type Destination struct {
	Name   string `json:"name"`
	All    Counts `json:"all"`
	Copies Counts `json:"copies"`
	// OldestPending is the arrival of the oldest pending delivery's
	// message (zero: none) and its age at Generated.
	OldestPending    time.Time `json:"oldest_pending,omitzero"`
	OldestPendingAge float64   `json:"oldest_pending_age_seconds"`
}

// Deferral is one reason pending deliveries wait, by remote reply.
type Deferral struct {
	Destination string `json:"destination"`
	Reply       string `json:"reply"`
	Count       int    `json:"count"`
}

// Series is required deliveries per destination and bucket of arrival
// time, for a chart.
type Series struct {
	Bucket float64 `json:"bucket_seconds"`
	Points []Point `json:"points"`
}

// Point is one bucket of one destination, by the deliveries' end state
// now (not at the bucket's time).
type Point struct {
	Start       time.Time `json:"start"`
	Destination string    `json:"destination"`
	Counts
}
