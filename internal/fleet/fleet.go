// Package fleet is the state mailtee nodes share in one PostgreSQL
// database, the one ledger_database names: which nodes are alive (a
// heartbeat each), the provider limits counted across all of them
// (limits.go), and the messages a draining node hands to another
// (handoff.go). Each node keeps its own fsync'd queue: the database is
// never on the acceptance path, and when it cannot be reached a node
// goes on alone, within its share of each limit.
package fleet

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mailtee/mailtee/internal/diag"
)

// IsURL says whether a ledger_database value names a PostgreSQL
// database (and so a fleet) rather than an SQLite file.
func IsURL(v string) bool {
	scheme, _, ok := strings.Cut(strings.TrimSpace(v), "://")
	if !ok {
		return false
	}
	switch strings.ToLower(scheme) {
	case "postgres", "postgresql":
		return true
	}
	return false
}

// CheckURL refuses a URL that holds a password: main.cf is readable by
// every local user. PostgreSQL's own ways keep it elsewhere: passfile=
// in the URL, PGPASSFILE, or a service file (service=).
func CheckURL(v string) error {
	u, err := url.Parse(strings.TrimSpace(v))
	if err != nil {
		return fmt.Errorf("not a PostgreSQL URL: %v", err)
	}
	if _, set := u.User.Password(); set || u.Query().Has("password") {
		return fmt.Errorf("%s holds a password, and main.cf is readable by every local user: put the password in a file of mode 0600 (a pgpass line host:port:db:user:password) and name it with passfile=/etc/mailtee/pgpass in the URL, or with PGPASSFILE, or use a service file (service=NAME)", diag.RedactURL(v))
	}
	return nil
}

// Options configure a node's membership.
type Options struct {
	URL  string // ledger_database
	Node string // this node's name (myhostname)
	// Heartbeat is how often the node says it is alive; a node not
	// heard from for Timeout is counted as gone.
	Heartbeat, Timeout time.Duration
	// StateFile keeps the number of nodes last seen alive across a
	// restart ("" for none): a node that starts while the database is
	// down divides the limits by what it saw before, not by 1.
	StateFile string
	Log       func(format string, args ...any)
}

// Node is one node's row.
type Node struct {
	Name  string
	Seen  time.Time // its last heartbeat
	State string    // "serving", "draining", "stopped"
}

// Fleet is this node's handle on the shared database.
type Fleet struct {
	o    Options
	pool *pgxpool.Pool
	stop chan struct{}
	done chan struct{}

	// instance tells this process from another that beats under the
	// same name (two hosts given one myhostname by a shared main.cf).
	instance string
	beaten   bool // a heartbeat of this process reached the database

	mu      sync.Mutex
	state   string
	alive   int       // nodes alive at the last good heartbeat (this one included)
	lastOK  time.Time // that heartbeat's time
	down    bool      // the last heartbeat failed
	schemed bool
}

// Schema is the fleet's tables, plain PostgreSQL; IF NOT EXISTS so that
// every node may create them at start.
var schema = []string{
	`CREATE TABLE IF NOT EXISTS fleet_nodes (
		name TEXT PRIMARY KEY, seen BIGINT NOT NULL, started BIGINT NOT NULL,
		state TEXT NOT NULL)`,
	`ALTER TABLE fleet_nodes ADD COLUMN IF NOT EXISTS instance TEXT NOT NULL DEFAULT ''`,
}

// AddSchema lets the other parts of the fleet (limits, handoff) add
// their tables, created with the nodes' table at the first connection.
func AddSchema(stmts ...string) { schema = append(schema, stmts...) }

// Open starts this node's membership: a connection pool (lazy: a
// database that is down now does not stop the node) and the heartbeat.
func Open(o Options) (*Fleet, error) {
	if o.Heartbeat <= 0 {
		o.Heartbeat = 5 * time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = 6 * o.Heartbeat
	}
	if o.Log == nil {
		o.Log = func(string, ...any) {}
	}
	if err := CheckURL(o.URL); err != nil {
		return nil, err
	}
	cfg, err := pgxpool.ParseConfig(o.URL)
	if err != nil {
		return nil, fmt.Errorf("ledger_database %s: %v", diag.RedactURL(o.URL), err)
	}
	cfg.MaxConns = 8
	cfg.ConnConfig.ConnectTimeout = 3 * time.Second
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		return nil, fmt.Errorf("ledger_database %s: %v", diag.RedactURL(o.URL), err)
	}
	id := make([]byte, 8)
	rand.Read(id)
	f := &Fleet{o: o, pool: pool, stop: make(chan struct{}), done: make(chan struct{}), state: "serving", alive: 1,
		instance: hex.EncodeToString(id)}
	if b, err := os.ReadFile(o.StateFile); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && n > 0 {
			f.alive = n
		}
	}
	f.beat()
	go f.run()
	return f, nil
}

// Pool is the connection pool, for the fleet's other parts.
func (f *Fleet) Pool() *pgxpool.Pool { return f.pool }

// Node is this node's name.
func (f *Fleet) Node() string { return f.o.Node }

// Ensure creates the schema once per process (again after a failure).
func (f *Fleet) Ensure(ctx context.Context) error {
	f.mu.Lock()
	done := f.schemed
	f.mu.Unlock()
	if done {
		return nil
	}
	for _, q := range schema {
		if _, err := f.pool.Exec(ctx, q); err != nil {
			return err
		}
	}
	f.mu.Lock()
	f.schemed = true
	f.mu.Unlock()
	return nil
}

func (f *Fleet) run() {
	defer close(f.done)
	t := time.NewTicker(f.o.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-f.stop:
			return
		case <-t.C:
			f.beat()
		}
	}
}

// beat records this node's heartbeat and counts the nodes alive.
func (f *Fleet) beat() {
	ctx, cancel := context.WithTimeout(context.Background(), f.o.Heartbeat)
	defer cancel()
	now := time.Now()
	err := f.Ensure(ctx)
	var alive int
	if err == nil {
		f.mu.Lock()
		state := f.state
		f.mu.Unlock()
		// prev is the process that beat last under this name: after
		// this process's first beat, any other is a second node with
		// the same myhostname (before it, a crashed predecessor).
		var prev string
		err = f.pool.QueryRow(ctx, `WITH prev AS (SELECT instance FROM fleet_nodes WHERE name = $1)
			INSERT INTO fleet_nodes (name, seen, started, state, instance) VALUES ($1, $2, $2, $3, $4)
			ON CONFLICT (name) DO UPDATE SET seen = EXCLUDED.seen, state = EXCLUDED.state, instance = EXCLUDED.instance,
				started = CASE WHEN fleet_nodes.instance = EXCLUDED.instance THEN fleet_nodes.started ELSE EXCLUDED.started END
			RETURNING COALESCE((SELECT instance FROM prev), '')`, f.o.Node, now.UnixMicro(), state, f.instance).Scan(&prev)
		f.mu.Lock()
		twin := f.beaten && prev != "" && prev != f.instance
		f.beaten = f.beaten || err == nil
		f.mu.Unlock()
		if twin {
			f.o.Log("error: fleet node %s: another mailtee process beats under this name (its myhostname) in %s; the fleet counts the two as one node, and their limits and hand-offs mix: give each node its own myhostname", f.o.Node, diag.RedactURL(f.o.URL))
		}
	}
	if err == nil {
		err = f.pool.QueryRow(ctx, `SELECT COUNT(*) FROM fleet_nodes WHERE seen > $1 AND state <> 'stopped'`,
			now.Add(-f.o.Timeout).UnixMicro()).Scan(&alive)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err != nil {
		if !f.down {
			f.o.Log("warning: fleet database %s unreachable: %v; going on alone, with 1/%d of each shared limit (the nodes alive at the last heartbeat)", diag.RedactURL(f.o.URL), err, f.alive)
		}
		f.down = true
		return
	}
	if f.down {
		f.o.Log("fleet database reachable again: %d node(s) alive", alive)
	}
	f.down = false
	alive = max(alive, 1)
	if alive != f.alive && f.o.StateFile != "" {
		// Not fsynced: a count a crash loses is as old as the last one.
		if err := os.WriteFile(f.o.StateFile, []byte(strconv.Itoa(alive)+"\n"), 0o644); err != nil {
			f.o.Log("warning: %s: %v", f.o.StateFile, err)
		}
	}
	f.alive, f.lastOK = alive, now
}

// Alive is the number of nodes alive at the last heartbeat that reached
// the database (at least 1), and whether the database is unreachable
// now.
func (f *Fleet) Alive() (n int, down bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.alive, f.down
}

// MarkDown records that a query of the fleet's failed for want of the
// database, so that the fallback starts at once rather than at the next
// heartbeat; the next good heartbeat ends it.
func (f *Fleet) MarkDown(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.down {
		f.o.Log("warning: fleet database %s unreachable: %v; going on alone, with 1/%d of each shared limit (the nodes alive at the last heartbeat)", diag.RedactURL(f.o.URL), err, f.alive)
	}
	f.down = true
}

// SetState records this node's state ("serving", "draining",
// "stopped") at once.
func (f *Fleet) SetState(state string) {
	f.mu.Lock()
	f.state = state
	f.mu.Unlock()
	f.beat()
}

// Nodes lists the nodes the database knows.
func (f *Fleet) Nodes(ctx context.Context) ([]Node, error) {
	if err := f.Ensure(ctx); err != nil {
		return nil, err
	}
	rows, err := f.pool.Query(ctx, `SELECT name, seen, state FROM fleet_nodes ORDER BY name`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Node
	for rows.Next() {
		var n Node
		var seen int64
		if err := rows.Scan(&n.Name, &seen, &n.State); err != nil {
			return nil, err
		}
		n.Seen = time.UnixMicro(seen)
		out = append(out, n)
	}
	return out, rows.Err()
}

// IsAlive says whether n was heard from within the timeout and is not
// stopped.
func (f *Fleet) IsAlive(n Node, now time.Time) bool {
	return n.State != "stopped" && now.Sub(n.Seen) < f.o.Timeout
}

// ErrClosed is returned by a closed Fleet.
var ErrClosed = errors.New("fleet closed")

// Close stops the heartbeat, marks the node stopped (best effort) and
// closes the pool.
func (f *Fleet) Close() {
	select {
	case <-f.stop:
		return
	default:
	}
	close(f.stop)
	<-f.done
	f.mu.Lock()
	f.state = "stopped"
	f.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	f.pool.Exec(ctx, `UPDATE fleet_nodes SET state = 'stopped', seen = $2 WHERE name = $1 AND instance = $3`, f.o.Node, time.Now().UnixMicro(), f.instance)
	cancel()
	f.pool.Close()
}
