package fleet

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
)

// The hand-off of a draining node's queue (mailtee drain). The drainer
// offers each message as a row keyed by (its node, its queue ID), and
// removes it from its queue only once the row is committed. A serving
// node claims rows addressed to it (or to any node): the claim is
// committed before the import, so that no other node ever imports the
// same message; the claimer imports it into its queue, durably, then
// marks the row done. Done rows stay, without their payload, as
// tombstones: a drainer that crashed after its offer and offers again
// is ignored (ON CONFLICT DO NOTHING), and, restarted, learns that the
// message is another's (Offered).
func init() {
	AddSchema(
		`CREATE TABLE IF NOT EXISTS fleet_handoff (
			from_node TEXT NOT NULL, queue_id TEXT NOT NULL,
			to_node TEXT NOT NULL DEFAULT '',
			offered BIGINT NOT NULL,
			payload BYTEA,
			claimed_by TEXT NOT NULL DEFAULT '', claimed BIGINT NOT NULL DEFAULT 0,
			done BIGINT NOT NULL DEFAULT 0, new_id TEXT NOT NULL DEFAULT '',
			PRIMARY KEY (from_node, queue_id))`,
		`CREATE INDEX IF NOT EXISTS fleet_handoff_open ON fleet_handoff (to_node, claimed_by) WHERE done = 0`,
	)
}

// Handoff is one message offered by a draining node.
type Handoff struct {
	From, QueueID string // the key: where it was queued
	To            string // the node it is for; "" any
	Offered       time.Time
	ClaimedBy     string
	Done          time.Time // zero: not taken yet
	NewID         string    // its queue ID on the node that took it
}

// Offer stores a message of this node's queue for another node: to
// names it ("" any serving node). fresh is false when a row for it was
// there already (offered before a crash, perhaps taken since): either
// way, once Offer returns nil the message is the fleet's, and this
// node's copy must go.
func (f *Fleet) Offer(ctx context.Context, queueID, to string, payload []byte) (fresh bool, err error) {
	if err := f.Ensure(ctx); err != nil {
		return false, err
	}
	tag, err := f.pool.Exec(ctx, `INSERT INTO fleet_handoff (from_node, queue_id, to_node, offered, payload)
		VALUES ($1, $2, $3, $4, $5) ON CONFLICT (from_node, queue_id) DO NOTHING`,
		f.o.Node, queueID, to, time.Now().UnixMicro(), payload)
	if err != nil {
		return false, err
	}
	return tag.RowsAffected() == 1, nil
}

// Offered returns the row of this node's message queueID, if any.
func (f *Fleet) Offered(ctx context.Context, queueID string) (*Handoff, error) {
	return f.HandoffOf(ctx, f.o.Node, queueID)
}

// HandoffOf returns the row (from, queueID), nil when there is none.
func (f *Fleet) HandoffOf(ctx context.Context, from, queueID string) (*Handoff, error) {
	if err := f.Ensure(ctx); err != nil {
		return nil, err
	}
	var h Handoff
	var offered, done int64
	err := f.pool.QueryRow(ctx, `SELECT from_node, queue_id, to_node, offered, claimed_by, done, new_id
		FROM fleet_handoff WHERE from_node = $1 AND queue_id = $2`, from, queueID).
		Scan(&h.From, &h.QueueID, &h.To, &offered, &h.ClaimedBy, &done, &h.NewID)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	h.Offered = time.UnixMicro(offered)
	if done != 0 {
		h.Done = time.UnixMicro(done)
	}
	return &h, nil
}

// Claim claims up to max rows for this node, addressed to it or to any
// node, oldest first (FOR UPDATE SKIP LOCKED: nodes polling at once
// take different rows), and returns every row this node has claimed
// and not finished, those of earlier claims included (a crash between a
// claim and its end leaves them to this node alone).
func (f *Fleet) Claim(ctx context.Context, max int) ([]Handoff, error) {
	if err := f.Ensure(ctx); err != nil {
		return nil, err
	}
	now := time.Now().UnixMicro()
	if _, err := f.pool.Exec(ctx, `UPDATE fleet_handoff SET claimed_by = $1, claimed = $2
		WHERE (from_node, queue_id) IN (
			SELECT from_node, queue_id FROM fleet_handoff
			WHERE done = 0 AND claimed_by = '' AND (to_node = $1 OR to_node = '') AND from_node <> $1
			ORDER BY offered LIMIT $3 FOR UPDATE SKIP LOCKED)`, f.o.Node, now, max); err != nil {
		return nil, err
	}
	rows, err := f.pool.Query(ctx, `SELECT from_node, queue_id, to_node, offered FROM fleet_handoff
		WHERE claimed_by = $1 AND done = 0 ORDER BY offered`, f.o.Node)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Handoff
	for rows.Next() {
		h := Handoff{ClaimedBy: f.o.Node}
		var offered int64
		if err := rows.Scan(&h.From, &h.QueueID, &h.To, &offered); err != nil {
			return nil, err
		}
		h.Offered = time.UnixMicro(offered)
		out = append(out, h)
	}
	return out, rows.Err()
}

// Payload is the message of a row this node claimed.
func (f *Fleet) Payload(ctx context.Context, from, queueID string) ([]byte, error) {
	var p []byte
	err := f.pool.QueryRow(ctx, `SELECT payload FROM fleet_handoff WHERE from_node = $1 AND queue_id = $2 AND claimed_by = $3 AND done = 0`,
		from, queueID, f.o.Node).Scan(&p)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, errors.New("hand-off " + from + "/" + queueID + ": not claimed by " + f.o.Node + " or done")
	}
	return p, err
}

// Taken marks a claimed row done, the message queued here as newID, and
// drops its payload (the row stays, a tombstone).
func (f *Fleet) Taken(ctx context.Context, from, queueID, newID string) error {
	_, err := f.pool.Exec(ctx, `UPDATE fleet_handoff SET done = $4, new_id = $3, payload = NULL
		WHERE from_node = $1 AND queue_id = $2 AND claimed_by = $5`,
		from, queueID, newID, time.Now().UnixMicro(), f.o.Node)
	return err
}

// Readdress gives the rows addressed to this node and not claimed yet
// to another (to; "" any): a node that drains passes on what was on its
// way to it.
func (f *Fleet) Readdress(ctx context.Context, to string) (int64, error) {
	if err := f.Ensure(ctx); err != nil {
		return 0, err
	}
	tag, err := f.pool.Exec(ctx, `UPDATE fleet_handoff SET to_node = $2 WHERE to_node = $1 AND claimed_by = '' AND done = 0`, f.o.Node, to)
	if err != nil {
		return 0, err
	}
	return tag.RowsAffected(), nil
}

// Waiting counts the rows not taken yet that this node offered.
func (f *Fleet) Waiting(ctx context.Context) (int, error) {
	var n int
	err := f.pool.QueryRow(ctx, `SELECT COUNT(*) FROM fleet_handoff WHERE from_node = $1 AND done = 0`, f.o.Node).Scan(&n)
	return n, err
}

// PruneHandoffs removes the tombstones of hand-offs done before cutoff.
func (f *Fleet) PruneHandoffs(ctx context.Context, cutoff time.Time) (int64, error) {
	tag, err := f.pool.Exec(ctx, `DELETE FROM fleet_handoff WHERE done <> 0 AND done < $1`, cutoff.UnixMicro())
	if err != nil {
		return 0, err
	}
	return tag.RowsAffected(), nil
}
