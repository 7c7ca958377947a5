package fleet

// Throttling suspensions shared by the nodes: when a provider tells one
// node that a mailbox or a site is over its limit ("4.2.1 The user you
// are trying to contact is receiving mail at a rate that prevents
// additional messages from being delivered"), the others must wait too,
// or they go on trying and prolong the lock. Each node writes the
// suspensions its pacer started and reads the others', every heartbeat:
// a provider's lock reaches the whole fleet within one.

import (
	"context"
	"time"

	"github.com/mailtee/mailtee/internal/ratelimit"
)

func init() {
	AddSchema(`CREATE TABLE IF NOT EXISTS fleet_suspensions (
		kind TEXT NOT NULL, key TEXT NOT NULL,
		until BIGINT NOT NULL, reason TEXT NOT NULL, next BIGINT NOT NULL, node TEXT NOT NULL,
		PRIMARY KEY (kind, key))`)
}

// Suspensions are a pacer's suspensions in force, by site and by
// mailbox (pace.State's Sites and Mailboxes).
type Suspensions struct {
	Sites, Mailboxes map[string]ratelimit.Suspension
}

// Suspension is one shared suspension, with the node that started it.
type Suspension struct {
	ratelimit.Suspension
	Node string
}

// SyncSuspensions writes this node's suspensions in force at now that
// the database does not have yet, and returns those in force of the
// other nodes, by kind ("site", "box") and key. A suspension that ends
// later replaces one that ends sooner.
func (ls *Limits) SyncSuspensions(ctx context.Context, mine Suspensions, now time.Time) (theirs map[string]map[string]Suspension, err error) {
	select {
	case <-ls.stop:
		return nil, ErrClosed
	default:
	}
	if _, down := ls.f.Alive(); down {
		return nil, ErrDown
	}
	if err := ls.f.Ensure(ctx); err != nil {
		return nil, err
	}
	var kinds, keys, reasons []string
	var untils, nexts []int64
	ls.mu.Lock()
	if ls.sent == nil {
		ls.sent = map[string]time.Time{}
	}
	for kind, m := range map[string]map[string]ratelimit.Suspension{"site": mine.Sites, "box": mine.Mailboxes} {
		for key, s := range m {
			if !s.Until.After(now) || !s.Until.After(ls.sent[kind+" "+key]) {
				continue
			}
			kinds, keys, reasons = append(kinds, kind), append(keys, key), append(reasons, s.Reason)
			untils, nexts = append(untils, s.Until.UnixMicro()), append(nexts, int64(s.Next))
		}
	}
	for k, until := range ls.sent {
		if !until.After(now) {
			delete(ls.sent, k)
		}
	}
	ls.mu.Unlock()
	if len(keys) > 0 {
		_, err := ls.f.pool.Exec(ctx, `INSERT INTO fleet_suspensions (kind, key, until, reason, next, node)
			SELECT u.kind, u.key, u.until, u.reason, u.next, $6
			FROM unnest($1::TEXT[], $2::TEXT[], $3::BIGINT[], $4::TEXT[], $5::BIGINT[]) AS u(kind, key, until, reason, next)
			ON CONFLICT (kind, key) DO UPDATE SET until = EXCLUDED.until, reason = EXCLUDED.reason,
				next = EXCLUDED.next, node = EXCLUDED.node
			WHERE fleet_suspensions.until < EXCLUDED.until`,
			kinds, keys, untils, reasons, nexts, ls.f.o.Node)
		if err != nil {
			return nil, err
		}
		ls.mu.Lock()
		for i := range keys {
			ls.sent[kinds[i]+" "+keys[i]] = time.UnixMicro(untils[i])
		}
		ls.mu.Unlock()
	}
	rows, err := ls.f.pool.Query(ctx, `SELECT kind, key, until, reason, next, node FROM fleet_suspensions
		WHERE until > $1 AND node <> $2`, now.UnixMicro(), ls.f.o.Node)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	theirs = map[string]map[string]Suspension{}
	for rows.Next() {
		var kind, key, reason, node string
		var until, next int64
		if err := rows.Scan(&kind, &key, &until, &reason, &next, &node); err != nil {
			return nil, err
		}
		if theirs[kind] == nil {
			theirs[kind] = map[string]Suspension{}
		}
		theirs[kind][key] = Suspension{ratelimit.Suspension{Until: time.UnixMicro(until), Reason: reason, Next: time.Duration(next)}, node}
		// Loaded into this node's pacer, it comes back in mine: not to
		// be written again.
		ls.mu.Lock()
		if u := time.UnixMicro(until); u.After(ls.sent[kind+" "+key]) {
			ls.sent[kind+" "+key] = u
		}
		ls.mu.Unlock()
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	// Those long over go, now and then.
	if now.Sub(ls.suspPruned) > time.Hour {
		ls.suspPruned = now
		ls.f.pool.Exec(ctx, `DELETE FROM fleet_suspensions WHERE until < $1`, now.Add(-time.Hour).UnixMicro())
	}
	return theirs, nil
}
