package fleet

// Provider limits counted across the fleet. Every node's pacer
// (internal/pace) takes its per-mailbox and per-site windows here
// instead of from its own ratelimit.Limiter, so that two nodes each
// allowed 60 a minute to a mailbox send it 60, not 120.
//
// The count is ratelimit.Limiter's, with the database's clock: an
// attempt is a row of fleet_limit_attempts from its start (the
// database's time when Take admitted it, before the node began) until
// Per after its end (its start plus the time the node measured from
// before it asked, so no earlier than the real end). Take admits when,
// for every window, fewer than N of the key's rows are in flight or
// ended after now-Per, and inserts its row in the same transaction,
// under an advisory lock on the key: concurrent Takes for one key, from
// any node, are serialised, so Limiter's proof holds across the nodes
// (the remote counts each attempt within [start, end]).
//
// A row in flight is bounded: it stops counting as in flight when its
// node has not been heard of for fleet_node_timeout (killed, or cut
// off), as if it had ended then, and in any case maxFlight after its
// start; a node that restarts ends its previous run's rows at once.
// So a crashed node blocks a key no longer than fleet_node_timeout plus
// Per after its last heartbeat.
//
// Costs: one round trip per Take (a PL/pgSQL function: the lock, the
// count and the insert), none when this node already knows the key is
// full (it was told when to come back); Done and Cancel are written
// behind, in batches. Rows that no window counts any more are deleted
// by the Takes that find their key full and, for the others, once a
// minute.
//
// When the database is slow or down (a Take gets no answer within
// TakeTimeout, or the heartbeat fails), the node falls back to a local
// ratelimit.Limiter whose windows are each N divided by the nodes last
// seen alive (at least 1), and says so once; its attempts are written
// to the database when it is back, so that the shared count includes
// them.

import (
	"context"
	"errors"
	"math/rand/v2"
	"sort"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/mailtee/mailtee/internal/ratelimit"
)

func init() {
	AddSchema(limitsSchema)
}

// lockClass is the first key of the advisory locks on limit keys (the
// second is the key's hash): two 32-bit keys never meet the one-key
// locks others may take.
const lockClass = 1718379891

// limitsSchema runs under a lock: concurrent CREATE OR REPLACE
// FUNCTION from nodes starting together fail with "tuple concurrently
// updated".
const limitsSchema = `DO $do$ BEGIN
PERFORM pg_advisory_xact_lock(1718379891, 0);
CREATE TABLE IF NOT EXISTS fleet_limit_attempts (
	id BIGSERIAL PRIMARY KEY,
	key TEXT NOT NULL,
	node TEXT NOT NULL,
	run BIGINT NOT NULL,
	started BIGINT NOT NULL,
	ended BIGINT,
	keep BIGINT NOT NULL);
CREATE INDEX IF NOT EXISTS fleet_limit_attempts_ended ON fleet_limit_attempts (key, ended);
CREATE INDEX IF NOT EXISTS fleet_limit_attempts_flight ON fleet_limit_attempts (key) WHERE ended IS NULL;
-- How many rows each key has: a bound on what any window can count,
-- that spares a Take the count while it is below N. Every insert adds
-- to it in its statement; a delete that forgot to subtract would only
-- make Takes count.
CREATE TABLE IF NOT EXISTS fleet_limit_keys (key TEXT PRIMARY KEY, n BIGINT NOT NULL);
-- Times are microseconds of the database's clock. An attempt's
-- effective end: its end; in flight on a live node, none yet (inf);
-- in flight on a node gone, the time it was last heard of plus the
-- timeout; never later than maxflight after its start.
CREATE OR REPLACE FUNCTION fleet_limit_take(p_key TEXT, p_node TEXT, p_run BIGINT, p_ns INT[], p_pers BIGINT[],
	p_keep BIGINT, p_maxflight BIGINT, p_timeout BIGINT)
RETURNS TABLE (r_id BIGINT, r_now BIGINT, r_retry BIGINT) LANGUAGE plpgsql AS $f$
DECLARE
	t BIGINT;
	total BIGINT;
	fl BIGINT[];
	nfl INT;
	ends BIGINT[];
	len INT;
	nf INT;
	c INT;
	need INT;
	blocked BOOLEAN := false;
	r BIGINT := 0;
	e BIGINT;
	inf CONSTANT BIGINT := 9223372036854775807;
BEGIN
	-- A count, not a record: a commit need not wait for the disk (a
	-- crash of the database forgets at most its last moment's rows).
	PERFORM set_config('synchronous_commit', 'off', true);
	PERFORM pg_advisory_xact_lock(1718379891, hashtext(p_key));
	-- After the lock: each statement of a volatile function sees what
	-- the Takes before it committed.
	t := (extract(epoch FROM clock_timestamp()) * 1000000)::BIGINT;
	SELECT k.n INTO total FROM fleet_limit_keys k WHERE k.key = p_key;
	total := COALESCE(total, 0);
	IF total < (SELECT min(x) FROM unnest(p_ns) x) THEN
		INSERT INTO fleet_limit_keys AS k (key, n) VALUES (p_key, 1) ON CONFLICT (key) DO UPDATE SET n = k.n + 1;
		RETURN QUERY INSERT INTO fleet_limit_attempts AS a (key, node, run, started, keep)
			VALUES (p_key, p_node, p_run, t, p_keep) RETURNING a.id, t, 0::BIGINT;
		RETURN;
	END IF;
	-- The attempts in flight, few, with their effective ends.
	SELECT array_agg(CASE
			WHEN a.started + p_maxflight <= t THEN a.started + p_maxflight
			WHEN a.node = p_node AND a.run = p_run THEN inf
			WHEN n.name IS NOT NULL AND n.state <> 'stopped' AND n.seen > t - p_timeout THEN inf
			WHEN n.name IS NOT NULL THEN LEAST(n.seen + p_timeout, a.started + p_maxflight)
			ELSE a.started + p_maxflight END)
		INTO fl
		FROM fleet_limit_attempts a LEFT JOIN fleet_nodes n ON n.name = a.node
		WHERE a.key = p_key AND a.ended IS NULL;
	nfl := COALESCE(array_length(fl, 1), 0);
	-- Admit when every window counts fewer than N: the ended attempts
	-- are counted up to the N the window allows at most (an index
	-- range), never all of them.
	FOR i IN 1 .. array_length(p_ns, 1) LOOP
		CONTINUE WHEN total < p_ns[i];
		nf := 0;
		IF nfl > 0 THEN
			SELECT count(*) INTO nf FROM unnest(fl) x WHERE x > t - p_pers[i];
		END IF;
		need := p_ns[i] - nf;
		c := 0;
		IF need > 0 THEN
			SELECT count(*) INTO c FROM (SELECT 1 FROM fleet_limit_attempts a
				WHERE a.key = p_key AND a.ended > t - p_pers[i] LIMIT need) s;
		END IF;
		IF need <= 0 OR c >= need THEN
			blocked := true;
			EXIT;
		END IF;
	END LOOP;
	IF NOT blocked THEN
		INSERT INTO fleet_limit_keys AS k (key, n) VALUES (p_key, 1) ON CONFLICT (key) DO UPDATE SET n = k.n + 1;
		RETURN QUERY INSERT INTO fleet_limit_attempts AS a (key, node, run, started, keep)
			VALUES (p_key, p_node, p_run, t, p_keep) RETURNING a.id, t, 0::BIGINT;
		RETURN;
	END IF;
	-- Blocked: a window admits again once its N-th latest effective
	-- end stops counting (in flight: Per from now at least). Ends no
	-- window counts any more go first (those of the windows in force: a
	-- reload that shortens them drops what none of them counts); a key
	-- never blocked is pruned once a minute (Limits.prune).
	WITH d AS (DELETE FROM fleet_limit_attempts a WHERE a.key = p_key AND a.ended < t - p_keep RETURNING 1)
		SELECT count(*) INTO c FROM d;
	IF c > 0 THEN
		UPDATE fleet_limit_keys k SET n = k.n - c WHERE k.key = p_key;
	END IF;
	SELECT array_agg(x.e ORDER BY x.e) INTO ends FROM (
		SELECT a.ended AS e FROM fleet_limit_attempts a WHERE a.key = p_key AND a.ended IS NOT NULL
		UNION ALL SELECT unnest(fl)) x;
	len := COALESCE(array_length(ends, 1), 0);
	FOR i IN 1 .. array_length(p_ns, 1) LOOP
		IF len >= p_ns[i] THEN
			e := ends[len - p_ns[i] + 1];
			IF e > t - p_pers[i] THEN
				IF e = inf THEN
					r := GREATEST(r, t + p_pers[i]);
				ELSE
					r := GREATEST(r, e + p_pers[i]);
				END IF;
			END IF;
		END IF;
	END LOOP;
	RETURN QUERY SELECT 0::BIGINT, t, GREATEST(r, t + 1);
END $f$;
END $do$`

// LimitOptions tune the shared limits; the zero value is the default.
type LimitOptions struct {
	// TakeTimeout bounds a Take's round trip (1s): a slower database
	// is taken as down.
	TakeTimeout time.Duration
	// MaxFlight bounds how long an attempt in flight on a live node
	// counts as in flight (1h): longer than any delivery's timeouts.
	MaxFlight time.Duration
	// Log says when the node falls back to its share of each limit and
	// when it counts across the fleet again (the fleet's log if nil).
	Log func(format string, args ...any)
}

// Limits are this node's shared limiters. Close it before the Fleet.
type Limits struct {
	f   *Fleet
	o   LimitOptions
	run int64 // this process's run: its rows in flight are its own

	mu       sync.Mutex
	lims     map[string]*sharedLimiter
	fallback bool // the last Take fell back (the log says when it changes)
	dones    []settled
	cancels  []int64
	backlog  []settled // fallback attempts, for the database when it is back
	ended    bool      // the previous run's rows in flight are ended
	// sent are the suspensions written, by "kind key", with their end
	// (SyncSuspensions).
	sent       map[string]time.Time
	suspPruned time.Time // SyncSuspensions' own, called from one goroutine

	kick chan struct{}
	stop chan struct{}
	done chan struct{}
}

// settled is an attempt's end, to be written: of a row (id), its
// length from its start; of a fallback attempt, its end on this node.
type settled struct {
	id      int64
	elapsed time.Duration
	key     string
	end     time.Time
	keep    time.Duration
}

// ErrDown is returned while the database is taken as unreachable.
var ErrDown = errors.New("fleet database unreachable")

// maxPending bounds the writes kept while the database is away: beyond
// it the oldest are dropped (a row left in flight stops counting when
// its bound is reached; a fallback attempt forgotten is only not seen
// by the other nodes).
const maxPending = 1 << 16

// NewLimits returns the shared limiters of f's node.
func NewLimits(f *Fleet, o LimitOptions) *Limits {
	if o.TakeTimeout <= 0 {
		o.TakeTimeout = time.Second
	}
	if o.MaxFlight <= 0 {
		o.MaxFlight = time.Hour
	}
	if o.Log == nil {
		o.Log = f.o.Log
	}
	ls := &Limits{f: f, o: o, run: rand.Int64(), lims: map[string]*sharedLimiter{},
		kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go ls.loop()
	ls.wake()
	return ls
}

// Limiter returns the shared limiter of a kind ("box", "site",
// "delay", "tdelay") for transport's destinations under profile, with
// windows ws (a reload may change them): pace.Options.Shared.
func (ls *Limits) Limiter(kind, transport, profile string, ws []ratelimit.Window) ratelimit.Taker {
	name := kind + " " + transport + " " + profile
	ls.mu.Lock()
	defer ls.mu.Unlock()
	sl := ls.lims[name]
	if sl == nil {
		sl = &sharedLimiter{ls: ls, name: name, blocked: map[string]*block{}}
		ls.lims[name] = sl
	}
	sl.setWindows(ws)
	return sl
}

// Fallback says whether the node counts alone, within its share of
// each limit, for want of the database: from a failed Take or
// heartbeat until the next good heartbeat.
func (ls *Limits) Fallback() bool {
	_, down := ls.f.Alive()
	return down
}

// setFallback records which count the last Take used, and logs the
// changes.
func (ls *Limits) setFallback(on bool, alive int) {
	ls.mu.Lock()
	was := ls.fallback
	ls.fallback = on
	ls.mu.Unlock()
	switch {
	case on && !was:
		ls.o.Log("warning: shared limits: database unreachable, going on with 1/%d of each limit", alive)
	case !on && was:
		ls.o.Log("shared limits: database reachable again, counting across the fleet")
		ls.wake() // the fallback's attempts, for the others to see
	}
}

// Close writes what is pending (for at most two seconds) and stops.
func (ls *Limits) Close() {
	select {
	case <-ls.stop:
		return
	default:
	}
	close(ls.stop)
	<-ls.done
}

func (ls *Limits) wake() {
	select {
	case ls.kick <- struct{}{}:
	default:
	}
}

// loop writes the ends and cancellations behind the deliveries, and
// prunes the rows no window counts once a minute.
func (ls *Limits) loop() {
	defer close(ls.done)
	prune := time.NewTicker(time.Minute)
	defer prune.Stop()
	retry := time.NewTicker(time.Second) // writes left by a database away
	defer retry.Stop()
	for {
		select {
		case <-ls.stop:
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			ls.flush(ctx)
			cancel()
			return
		case <-ls.kick:
		case <-retry.C:
		case <-prune.C:
			ls.prune()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		ls.flush(ctx)
		cancel()
	}
}

// flush writes the pending ends, cancellations and fallback attempts
// in one round trip; on failure they are kept for the next one.
func (ls *Limits) flush(ctx context.Context) {
	if _, down := ls.f.Alive(); down {
		return
	}
	ls.mu.Lock()
	dones, cancels, backlog, ended := ls.dones, ls.cancels, ls.backlog, ls.ended
	ls.dones, ls.cancels, ls.backlog = nil, nil, nil
	ls.mu.Unlock()
	if len(dones)+len(cancels)+len(backlog) == 0 && ended {
		return
	}
	err := ls.f.Ensure(ctx)
	if err == nil {
		err = ls.write(ctx, dones, cancels, backlog, !ended)
	}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if err != nil {
		ls.dones = keepLast(append(dones, ls.dones...))
		ls.cancels = append(cancels, ls.cancels...)
		if len(ls.cancels) > maxPending {
			ls.cancels = ls.cancels[len(ls.cancels)-maxPending:]
		}
		ls.backlog = keepLast(append(backlog, ls.backlog...))
		return
	}
	ls.ended = true
}

func keepLast(s []settled) []settled {
	if len(s) > maxPending {
		return s[len(s)-maxPending:]
	}
	return s
}

func (ls *Limits) write(ctx context.Context, dones []settled, cancels []int64, backlog []settled, endRun bool) error {
	b := &pgx.Batch{}
	// One transaction, one round trip; not waiting for the disk, as
	// the Takes.
	b.Queue(`BEGIN`)
	b.Queue(`SET LOCAL synchronous_commit = off`)
	if endRun {
		// A previous run of this node (a crash, a kill -9) left its
		// attempts in flight: they may have reached the remote, and end
		// now.
		b.Queue(`UPDATE fleet_limit_attempts SET ended = (extract(epoch FROM clock_timestamp()) * 1000000)::BIGINT
			WHERE node = $1 AND run <> $2 AND ended IS NULL`, ls.f.o.Node, ls.run)
	}
	if len(dones) > 0 {
		ids, els := make([]int64, len(dones)), make([]int64, len(dones))
		for i, d := range dones {
			ids[i], els[i] = d.id, max(d.elapsed.Microseconds(), 0)
		}
		b.Queue(`UPDATE fleet_limit_attempts a SET ended = a.started + u.e
			FROM unnest($1::BIGINT[], $2::BIGINT[]) AS u(id, e) WHERE a.id = u.id`, ids, els)
	}
	if len(cancels) > 0 {
		b.Queue(`WITH d AS (DELETE FROM fleet_limit_attempts WHERE id = ANY($1::BIGINT[]) RETURNING key)
			UPDATE fleet_limit_keys k SET n = k.n - c.c FROM (SELECT key, count(*) AS c FROM d GROUP BY key) c
			WHERE k.key = c.key`, cancels)
	}
	if len(backlog) > 0 {
		// The database's now minus each attempt's age on this node's
		// clock, measured before sending: no earlier than its end.
		now := time.Now()
		var keys []string
		var ages, keeps []int64
		for _, s := range backlog {
			age := now.Sub(s.end)
			if age >= s.keep {
				continue // no window counts it any more
			}
			keys, ages, keeps = append(keys, s.key), append(ages, max(age.Microseconds(), 0)), append(keeps, s.keep.Microseconds())
		}
		if len(keys) > 0 {
			b.Queue(`WITH i AS (INSERT INTO fleet_limit_attempts (key, node, run, started, ended, keep)
				SELECT u.k, $1, $2, c.t - u.age, c.t - u.age, u.keep
				FROM unnest($3::TEXT[], $4::BIGINT[], $5::BIGINT[]) AS u(k, age, keep),
				(SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::BIGINT AS t) c RETURNING key)
				INSERT INTO fleet_limit_keys AS k (key, n) SELECT key, count(*) FROM i GROUP BY key
				ON CONFLICT (key) DO UPDATE SET n = k.n + EXCLUDED.n`,
				ls.f.o.Node, ls.run, keys, ages, keeps)
		}
	}
	if b.Len() == 2 {
		return nil
	}
	b.Queue(`COMMIT`)
	return ls.f.pool.SendBatch(ctx, b).Close()
}

// prune deletes the rows of keys no Take has looked at since no window
// counts them.
func (ls *Limits) prune() {
	if _, down := ls.f.Alive(); down {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if ls.f.Ensure(ctx) != nil {
		return
	}
	b := &pgx.Batch{}
	b.Queue(`WITH d AS (DELETE FROM fleet_limit_attempts
		WHERE COALESCE(ended, started + $1) + keep < (extract(epoch FROM clock_timestamp()) * 1000000)::BIGINT RETURNING key)
		UPDATE fleet_limit_keys k SET n = k.n - c.c FROM (SELECT key, count(*) AS c FROM d GROUP BY key) c
		WHERE k.key = c.key`, ls.o.MaxFlight.Microseconds())
	b.Queue(`DELETE FROM fleet_limit_keys WHERE n <= 0`)
	ls.f.pool.SendBatch(ctx, b).Close()
}

// sharedLimiter is one kind's limiter for one transport and profile.
type sharedLimiter struct {
	ls   *Limits
	name string

	mu     sync.Mutex
	ws     []ratelimit.Window
	ns     []int32
	pers   []int64 // microseconds
	keep   time.Duration
	step   time.Duration // between the retry times handed to a key's waiting line
	fb     *ratelimit.Limiter
	fbFor  int // the nodes alive fb's windows are divided by
	sweepN int
	// blocked are the keys the database said were full, and when to
	// come back: until then this node refuses without asking, and
	// spreads the callers it refuses along the line.
	blocked map[string]*block
}

type block struct {
	until time.Time
	n     int
}

func (sl *sharedLimiter) setWindows(ws []ratelimit.Window) {
	sl.mu.Lock()
	defer sl.mu.Unlock()
	if sl.ws != nil && equalWindows(sl.ws, ws) {
		return
	}
	sl.ws = append([]ratelimit.Window(nil), ws...)
	sl.ns, sl.pers, sl.keep, sl.step = nil, nil, 0, 0
	for _, w := range ws {
		if w.N < 1 || w.Per <= 0 {
			continue
		}
		sl.ns = append(sl.ns, int32(w.N))
		sl.pers = append(sl.pers, w.Per.Microseconds())
		sl.keep = max(sl.keep, w.Per)
		if s := w.Per / time.Duration(w.N); sl.step == 0 || s < sl.step {
			sl.step = s
		}
	}
	if sl.fb != nil {
		sl.fb.SetWindows(divide(sl.ws, sl.fbFor))
	}
	clear(sl.blocked)
}

func equalWindows(a, b []ratelimit.Window) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// divide is each window's N divided among n nodes (floor, at least 1).
func divide(ws []ratelimit.Window, n int) []ratelimit.Window {
	out := make([]ratelimit.Window, len(ws))
	for i, w := range ws {
		out[i] = ratelimit.Window{N: max(w.N/max(n, 1), 1), Per: w.Per}
	}
	return out
}

// fallback returns the local limiter for alive nodes (sl.mu held).
func (sl *sharedLimiter) fallback(alive int) *ratelimit.Limiter {
	if sl.fb == nil {
		sl.fb, sl.fbFor = ratelimit.New(divide(sl.ws, alive)), alive
	} else if sl.fbFor != alive {
		sl.fb.SetWindows(divide(sl.ws, alive))
		sl.fbFor = alive
	}
	return sl.fb
}

// Take admits an attempt for key across the fleet, or says when to try
// again; with the database away, within this node's share.
func (sl *sharedLimiter) Take(key string, now time.Time) (*ratelimit.Token, time.Time) {
	ls := sl.ls
	sl.mu.Lock()
	if len(sl.ns) == 0 {
		sl.mu.Unlock()
		return ratelimit.NewToken(func(time.Time, bool) {}), time.Time{}
	}
	alive, down := ls.f.Alive()
	if down {
		tk, at := sl.takeAlone(key, now, alive)
		sl.mu.Unlock()
		ls.setFallback(true, alive)
		return tk, at
	}
	if b := sl.blocked[key]; b != nil {
		if now.Before(b.until) {
			at := b.until.Add(time.Duration(b.n) * sl.step)
			b.n++
			sl.mu.Unlock()
			return nil, at
		}
		delete(sl.blocked, key)
	}
	ns, pers, keep := sl.ns, sl.pers, sl.keep
	sl.mu.Unlock()

	sent := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), ls.o.TakeTimeout)
	id, dbNow, retry, err := sl.ask(ctx, key, ns, pers, keep)
	cancel()
	if err != nil {
		ls.f.MarkDown(err)
		sl.mu.Lock()
		tk, at := sl.takeAlone(key, now, alive)
		sl.mu.Unlock()
		ls.setFallback(true, alive)
		return tk, at
	}
	if _, down := ls.f.Alive(); !down {
		// (A Take that began before another failed does not end the
		// fallback: the next good heartbeat does.)
		ls.setFallback(false, alive)
	}
	if retry > 0 {
		at := now.Add(time.Duration(retry-dbNow) * time.Microsecond)
		sl.mu.Lock()
		sl.sweep(now)
		sl.blocked[key] = &block{until: at, n: 1}
		sl.mu.Unlock()
		return nil, at
	}
	return ratelimit.NewToken(func(end time.Time, reached bool) {
		ls.mu.Lock()
		if reached {
			ls.dones = append(ls.dones, settled{id: id, elapsed: end.Sub(sent)})
		} else {
			ls.cancels = append(ls.cancels, id)
		}
		ls.mu.Unlock()
		ls.wake()
		if reached {
			// This node's own attempts count in its share should the
			// database go away.
			sl.mu.Lock()
			fb := sl.fallback(max(alive, 1))
			sl.mu.Unlock()
			fb.Load(ratelimit.History{key: {end}}, time.Now())
		}
	}), time.Time{}
}

func (sl *sharedLimiter) ask(ctx context.Context, key string, ns []int32, pers []int64, keep time.Duration) (id, now, retry int64, err error) {
	ls := sl.ls
	if err = ls.f.Ensure(ctx); err != nil {
		return
	}
	err = ls.f.pool.QueryRow(ctx, `SELECT r_id, r_now, r_retry FROM fleet_limit_take($1, $2, $3, $4, $5, $6, $7, $8)`,
		sl.name+" "+key, ls.f.o.Node, ls.run, ns, pers, keep.Microseconds(),
		ls.o.MaxFlight.Microseconds(), ls.f.o.Timeout.Microseconds()).Scan(&id, &now, &retry)
	if err == nil && retry == 0 && id == 0 {
		err = errors.New("fleet_limit_take returned no attempt")
	}
	return
}

// takeAlone takes from the local fallback limiter (sl.mu held); the
// attempt is written to the database once it is back.
func (sl *sharedLimiter) takeAlone(key string, now time.Time, alive int) (*ratelimit.Token, time.Time) {
	tk, at := sl.fallback(alive).Take(key, now)
	if tk == nil {
		return nil, at
	}
	ls, name, keep := sl.ls, sl.name, sl.keep
	return ratelimit.NewToken(func(end time.Time, reached bool) {
		if !reached {
			tk.Cancel()
			return
		}
		tk.Done(end)
		ls.mu.Lock()
		ls.backlog = keepLast(append(ls.backlog, settled{key: name + " " + key, end: end, keep: keep}))
		ls.mu.Unlock()
	}), time.Time{}
}

// sweep forgets the blocked keys whose line has passed, once the map
// has grown (sl.mu held).
func (sl *sharedLimiter) sweep(now time.Time) {
	if len(sl.blocked) < max(sl.sweepN, 1024) {
		return
	}
	for k, b := range sl.blocked {
		if !now.Before(b.until.Add(time.Duration(b.n) * sl.step)) {
			delete(sl.blocked, k)
		}
	}
	sl.sweepN = 2 * len(sl.blocked)
}

// Keys is for tests and status: the keys with attempts counted in the
// database, by limiter, sorted.
func (ls *Limits) Keys(ctx context.Context) ([]string, error) {
	rows, err := ls.f.pool.Query(ctx, `SELECT DISTINCT key FROM fleet_limit_attempts`)
	if err != nil {
		return nil, err
	}
	keys, err := pgx.CollectRows(rows, pgx.RowTo[string])
	sort.Strings(keys)
	return keys, err
}
