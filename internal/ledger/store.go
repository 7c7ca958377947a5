package ledger

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/mailtee/mailtee/internal/diag"
	"github.com/mailtee/mailtee/internal/fleet"
	_ "modernc.org/sqlite" // database/sql driver "sqlite", pure Go
)

// The schema is plain SQL that SQLite and PostgreSQL both take: TEXT
// and BIGINT columns, times as Unix microseconds, upserts with
// ON CONFLICT. One row per message and one per required delivery; a
// message is keyed by the node that accepted it and its queue ID there.
var schema = []string{
	`CREATE TABLE IF NOT EXISTS ledger_meta (k TEXT PRIMARY KEY, v TEXT NOT NULL)`,
	`CREATE TABLE IF NOT EXISTS messages (
		node TEXT NOT NULL, queue_id TEXT NOT NULL,
		arrival BIGINT NOT NULL, message_id TEXT NOT NULL, sender TEXT NOT NULL,
		rcpts TEXT NOT NULL, size BIGINT NOT NULL, client TEXT NOT NULL,
		parent TEXT NOT NULL, phase TEXT NOT NULL, notice BIGINT NOT NULL,
		finished BIGINT NOT NULL,
		PRIMARY KEY (node, queue_id))`,
	`CREATE INDEX IF NOT EXISTS messages_arrival ON messages (arrival)`,
	`CREATE INDEX IF NOT EXISTS messages_parent ON messages (parent)`,
	// A peer is asked for a message by its queue ID alone (the ID a
	// relay's reply named): without this index every question scanned
	// the whole table.
	`CREATE INDEX IF NOT EXISTS messages_queue_id ON messages (queue_id)`,
	`CREATE TABLE IF NOT EXISTS deliveries (
		node TEXT NOT NULL, queue_id TEXT NOT NULL, idx BIGINT NOT NULL,
		rcpt TEXT NOT NULL, orig TEXT NOT NULL, copy BIGINT NOT NULL,
		status TEXT NOT NULL, at BIGINT NOT NULL,
		transport TEXT NOT NULL, nexthop TEXT NOT NULL, relay TEXT NOT NULL,
		dsn TEXT NOT NULL, reply TEXT NOT NULL, remote_id TEXT NOT NULL,
		attempts BIGINT NOT NULL,
		PRIMARY KEY (node, queue_id, idx))`,
	`CREATE INDEX IF NOT EXISTS deliveries_rcpt ON deliveries (rcpt)`,
	`CREATE TABLE IF NOT EXISTS gaps (
		node TEXT NOT NULL, since BIGINT NOT NULL, until BIGINT NOT NULL,
		messages BIGINT NOT NULL, reason TEXT NOT NULL)`,
}

// Store is a ledger in an SQL database.
type Store struct {
	db   *sql.DB
	path string // the SQLite file, or the PostgreSQL URL (no password in it: CheckURL)
	// pg is set for a PostgreSQL ledger: the queries' ? become $1, $2...
	pg bool
	id string // this database's identity (ledger_meta "id")
	// created is when the database was made (ledger_meta "created").
	created time.Time
	// msgStmts and dlvStmts are write's upserts by their number of
	// rows, prepared once: parsing them took a tenth of the ledger's
	// CPU when each batch did. msgArgs and dlvArgs are their arguments'
	// room, kept from batch to batch.
	msgStmts, dlvStmts map[int]*sql.Stmt
	msgArgs, dlvArgs   []any
}

// Location is where ledger_database puts the ledger, the one place that
// tells a file from a database server: a PostgreSQL URL (fleet.IsURL)
// as it is, a path as itself when absolute, else under data_directory;
// "" when value is empty (no ledger). Open, OpenReader, Lazy and the
// Recorder take either.
func Location(dataDir, value string) string {
	value = strings.TrimSpace(value)
	switch {
	case value == "":
		return ""
	case fleet.IsURL(value):
		return value
	case filepath.IsAbs(value):
		return value
	}
	return filepath.Join(dataDir, value)
}

// Shared says whether loc (Location's) is a database server shared by
// a fleet rather than this host's own file.
func Shared(loc string) bool { return fleet.IsURL(loc) }

// Describe is loc for messages (a URL without any password).
func Describe(loc string) string {
	if Shared(loc) {
		return diag.RedactURL(loc)
	}
	return loc
}

// Open opens (creating if needed) the ledger at path for writing. WAL
// lets `mailtee report` and the dashboard read while serve writes;
// synchronous=FULL makes a commit durable, since the queue deletes a
// message once its commit returns.
//
// For a PostgreSQL URL it connects and creates the schema if another
// node has not (see openPG).
func Open(path string) (*Store, error) {
	if Shared(path) {
		return openPG(path, true)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("ledger %s: %w", path, err)
	}
	if err := private(path); err != nil {
		return nil, fmt.Errorf("ledger %s: %w", path, err)
	}
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=busy_timeout(10000)&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("ledger %s: %w", path, err)
	}
	db.SetMaxOpenConns(1) // one writer: SQLite serialises writes anyway
	s := &Store{db: db, path: path}
	if err := s.init(); err != nil {
		db.Close()
		return nil, fmt.Errorf("ledger %s: %w", path, err)
	}
	return s, nil
}

// private makes the database file, or finds it, as a regular file of
// mode 0600 before SQLite opens it: SQLite gives its -wal and -shm the
// database's mode, and under umask 022 in a data_directory of mode 0755
// they would otherwise be readable by every local user. A symbolic link
// is refused (O_NOFOLLOW), never followed: in a world-writable parent it
// would point the server at any file.
//
// In a directory others may write to, or in files another user owns,
// anyone could read the ledger or write records into it: refused.
func private(path string) error {
	dir := filepath.Dir(path)
	if di, err := os.Stat(dir); err == nil && di.Mode().Perm()&0o002 != 0 {
		return fmt.Errorf("its directory %s is writable by every user (mode %v): give the ledger a directory of its own (chmod o-w %s, or another data_directory)", dir, di.Mode().Perm(), dir)
	}
	for _, sfx := range []string{"", "-wal", "-shm"} {
		if fi, err := os.Lstat(path + sfx); err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
				return fmt.Errorf("%s belongs to uid %d, not to this server (uid %d): remove it, or chown it if it is the ledger", path+sfx, st.Uid, os.Geteuid())
			}
		}
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return fmt.Errorf("is a symbolic link; ledger_database must name a regular file")
		}
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("is not a regular file; ledger_database must name one")
	}
	if err := f.Chmod(0o600); err != nil {
		return err
	}
	// Left by an older version with a wider mode: SQLite reuses them.
	for _, sfx := range []string{"-wal", "-shm"} {
		if g, err := os.OpenFile(path+sfx, os.O_RDONLY|syscall.O_NOFOLLOW, 0); err == nil {
			g.Chmod(0o600)
			g.Close()
		}
	}
	return nil
}

// OpenReader opens the ledger at path for reading only (report, status).
func OpenReader(path string) (*Store, error) {
	if Shared(path) {
		return openPG(path, false)
	}
	if _, err := os.Stat(path); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("no ledger at %s (ledger_database names it; serve creates it when it starts)", path)
		}
		return nil, fmt.Errorf("ledger: %w", err)
	}
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro&_pragma=busy_timeout(10000)")
	if err != nil {
		return nil, fmt.Errorf("ledger %s: %w", path, err)
	}
	s := &Store{db: db, path: path}
	if err := s.readMeta(); err != nil {
		db.Close()
		return nil, fmt.Errorf("ledger %s: %w", path, err)
	}
	return s, nil
}

func (s *Store) init() error {
	for _, q := range schema {
		if _, err := s.db.Exec(q); err != nil {
			return err
		}
	}
	now := time.Now()
	if _, err := s.db.Exec(`INSERT INTO ledger_meta (k, v) VALUES ('id', ?), ('created', ?) ON CONFLICT (k) DO NOTHING`,
		newID(), fmt.Sprint(now.UnixMicro())); err != nil {
		return err
	}
	return s.readMeta()
}

// newID is a new database's identity: a ledger replaced (a file lost, a
// database recreated) has another, and the marker notices.
func newID() string {
	id := make([]byte, 8)
	rand.Read(id)
	return hex.EncodeToString(id)
}

func (s *Store) readMeta() error {
	rows, err := s.db.Query(`SELECT k, v FROM ledger_meta`)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			return err
		}
		switch k {
		case "id":
			s.id = v
		case "created":
			var us int64
			fmt.Sscan(v, &us)
			s.created = time.UnixMicro(us)
		}
	}
	return rows.Err()
}

// Path is the database's file or URL.
func (s *Store) Path() string { return s.path }

// Close closes the database.
func (s *Store) Close() error {
	for _, m := range []map[int]*sql.Stmt{s.msgStmts, s.dlvStmts} {
		for _, st := range m {
			st.Close()
		}
	}
	return s.db.Close()
}

func us(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

func fromUS(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMicro(v)
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// The upserts write up to upsertRows rows per statement: one statement
// execution per row (database/sql's and the driver's work for each) was
// a third of the ledger's CPU. A batch holds each message and each
// delivery once, so no statement touches a row twice (which PostgreSQL
// refuses in one INSERT ... ON CONFLICT).
const upsertRows = 32

// msgUpsert: a message's first record wins for what it was accepted
// with (phase: a restart must not relabel it); its end is set once.
func msgUpsert(rows int) string {
	return `INSERT INTO messages
		(node, queue_id, arrival, message_id, sender, rcpts, size, client, parent, phase, notice, finished)
		VALUES ` + placeholders(rows, 12) + `
		ON CONFLICT (node, queue_id) DO UPDATE SET
			message_id = CASE WHEN messages.message_id = '' THEN excluded.message_id ELSE messages.message_id END,
			phase = CASE WHEN messages.phase = '' THEN excluded.phase ELSE messages.phase END,
			finished = CASE WHEN excluded.finished <> 0 THEN excluded.finished ELSE messages.finished END`
}

// dlvUpsert: a final state is never replaced by "pending" (an event that
// was late), nor a bounce by "sent" (a copy the provider bounced to its
// SRS sender after its 250, Amend, which the queue never learns), nor
// an end by "deleted" (replacedByDeleted); the time of a final state stays that of its first record, a
// pending one's is the last attempt's (as its reply is), and what a later
// record does not know (the next hop after a restart, the time in a
// snapshot) is kept.
func dlvUpsert(rows int) string {
	return `INSERT INTO deliveries
		(node, queue_id, idx, rcpt, orig, copy, status, at, transport, nexthop, relay, dsn, reply, remote_id, attempts)
		VALUES ` + placeholders(rows, 15) + `
		ON CONFLICT (node, queue_id, idx) DO UPDATE SET
			status = excluded.status,
			at = CASE WHEN excluded.at = 0 OR deliveries.status = excluded.status AND excluded.status <> 'pending' AND deliveries.at <> 0
				THEN deliveries.at ELSE excluded.at END,
			transport = CASE WHEN excluded.transport = '' THEN deliveries.transport ELSE excluded.transport END,
			nexthop = CASE WHEN excluded.nexthop = '' THEN deliveries.nexthop ELSE excluded.nexthop END,
			relay = CASE WHEN excluded.relay = '' THEN deliveries.relay ELSE excluded.relay END,
			dsn = CASE WHEN excluded.dsn = '' THEN deliveries.dsn ELSE excluded.dsn END,
			reply = CASE WHEN excluded.reply = '' THEN deliveries.reply ELSE excluded.reply END,
			remote_id = CASE WHEN excluded.remote_id = '' THEN deliveries.remote_id ELSE excluded.remote_id END,
			attempts = CASE WHEN excluded.attempts > deliveries.attempts THEN excluded.attempts ELSE deliveries.attempts END
		WHERE (excluded.status <> 'pending' OR deliveries.status = 'pending')
			AND NOT (deliveries.status = 'bounced' AND excluded.status = 'sent')
			AND NOT (excluded.status = 'deleted' AND deliveries.status IN ('sent', 'bounced', 'expired'))`
}

// placeholders is "(?, ?), (?, ?)" for rows rows of cols columns.
func placeholders(rows, cols int) string {
	one := "(" + strings.Repeat("?, ", cols-1) + "?)"
	return strings.Repeat(one+", ", rows-1) + one
}

// upserter runs one of the upserts over rows of cols values each, in
// statements of up to upsertRows rows, prepared once per row count and
// kept in stmts (the Store's): the connection is the only one
// (SetMaxOpenConns(1)), so Tx.StmtContext uses them as they are.
type upserter struct {
	ctx   context.Context
	tx    *sql.Tx
	stmts map[int]*sql.Stmt
	cols  int
	args  []any
}

// prepare makes sure stmts has the statements that n rows need. It runs
// before the transaction: with one connection, a statement prepared on
// the database meanwhile would wait for the transaction's end.
func prepare(ctx context.Context, db *sql.DB, rb func(string) string, stmts map[int]*sql.Stmt, query func(rows int) string, n int) error {
	for _, rows := range []int{min(n, upsertRows), n % upsertRows} {
		if rows == 0 || stmts[rows] != nil {
			continue
		}
		st, err := db.PrepareContext(ctx, rb(query(rows)))
		if err != nil {
			return err
		}
		stmts[rows] = st
	}
	return nil
}

func (u *upserter) add(vals ...any) error {
	u.args = append(u.args, vals...)
	if len(u.args) == upsertRows*u.cols {
		return u.flush()
	}
	return nil
}

func (u *upserter) flush() error {
	rows := len(u.args) / u.cols
	if rows == 0 {
		return nil
	}
	_, err := u.tx.StmtContext(u.ctx, u.stmts[rows]).ExecContext(u.ctx, u.args...)
	clear(u.args)
	u.args = u.args[:0]
	return err
}

// write stores a batch in one transaction.
func (s *Store) write(ctx context.Context, b *batch) error {
	if s.msgStmts == nil {
		s.msgStmts, s.dlvStmts = map[int]*sql.Stmt{}, map[int]*sql.Stmt{}
	}
	nm, nd := 0, 0
	for _, e := range b.msgs {
		if e.head != nil {
			nm++
		}
		nd += len(e.rowOrder)
	}
	if err := prepare(ctx, s.db, s.rb, s.msgStmts, msgUpsert, nm); err != nil {
		return err
	}
	if err := prepare(ctx, s.db, s.rb, s.dlvStmts, dlvUpsert, nd); err != nil {
		return err
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	msgs := &upserter{ctx: ctx, tx: tx, stmts: s.msgStmts, cols: 12, args: s.msgArgs[:0]}
	dlvs := &upserter{ctx: ctx, tx: tx, stmts: s.dlvStmts, cols: 15, args: s.dlvArgs[:0]}
	defer func() { s.msgArgs, s.dlvArgs = msgs.args[:0], dlvs.args[:0] }()
	for _, k := range b.order {
		e := b.msgs[k]
		if e.head != nil {
			m := e.head
			rcpts, _ := json.Marshal(m.Rcpts)
			if err := msgs.add(m.Node, m.ID, us(m.Arrival), m.MessageID, m.From, string(rcpts), m.Size,
				m.Client, m.Parent, m.Phase, boolInt(m.Notice), us(m.Finished)); err != nil {
				return err
			}
		} else if !e.finished.IsZero() {
			if _, err := tx.ExecContext(ctx, s.rb(`UPDATE messages SET finished = ? WHERE node = ? AND queue_id = ?`), us(e.finished), k.node, k.id); err != nil {
				return err
			}
		}
		for _, i := range e.rowOrder {
			d := e.rows[i]
			if err := dlvs.add(k.node, k.id, int64(d.Index), d.Rcpt, d.Orig, boolInt(d.Copy), string(d.Status), us(d.At),
				d.Transport, d.Nexthop, d.Relay, d.DSN, d.Reply, d.RemoteID, int64(d.Attempts)); err != nil {
				return err
			}
		}
	}
	if err := msgs.flush(); err != nil {
		return err
	}
	if err := dlvs.flush(); err != nil {
		return err
	}
	for _, g := range b.gaps {
		if _, err := tx.ExecContext(ctx, s.rb(`INSERT INTO gaps (node, since, until, messages, reason) VALUES (?, ?, ?, ?, ?)`),
			g.Node, us(g.Since), us(g.Until), g.Messages, g.Reason); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// Prune deletes the finished messages that arrived before cutoff, their
// deliveries, and the gaps that ended before it; with limit > 0 only
// about the limit oldest of those messages (those that arrived at the
// same microsecond go together), so that one transaction stays short:
// the recorder writes nothing while it runs, and a backlog of millions
// (a shorter ledger_retention) in one transaction outlasted its timeout
// and was rolled back, every hour.
func (s *Store) Prune(ctx context.Context, cutoff time.Time, limit int) (int64, error) {
	c := us(cutoff)
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	if s.pg {
		// Every node prunes the shared ledger: one at a time, the others
		// skip their turn (two deleting the same rows could deadlock).
		var got bool
		if err := tx.QueryRowContext(ctx, `SELECT pg_try_advisory_xact_lock($1)`, pruneLock).Scan(&got); err != nil || !got {
			return 0, err
		}
	}
	if limit > 0 {
		// The arrival of the limit-th oldest: the chunk's own cutoff.
		var a int64
		err := tx.QueryRowContext(ctx, s.rb(`SELECT arrival FROM messages WHERE arrival < ? AND finished <> 0
			ORDER BY arrival LIMIT 1 OFFSET ?`), c, limit-1).Scan(&a)
		switch {
		case err == nil:
			c = min(c, a+1)
		case !errors.Is(err, sql.ErrNoRows):
			return 0, err
		}
	}
	if _, err := tx.ExecContext(ctx, s.rb(pruneDeliveries), c); err != nil {
		return 0, err
	}
	res, err := tx.ExecContext(ctx, s.rb(`DELETE FROM messages WHERE arrival < ? AND finished <> 0`), c)
	if err != nil {
		return 0, err
	}
	if _, err := tx.ExecContext(ctx, s.rb(`DELETE FROM gaps WHERE until < ?`), c); err != nil {
		return 0, err
	}
	n, _ := res.RowsAffected()
	return n, tx.Commit()
}

// pruneDeliveries finds the deliveries to prune through the messages'
// arrival index and the deliveries' key (row values: SQLite and
// PostgreSQL both take them); a correlated EXISTS scanned every delivery
// of the ledger each hour, holding the recorder up meanwhile.
const pruneDeliveries = `DELETE FROM deliveries WHERE (node, queue_id) IN
	(SELECT node, queue_id FROM messages WHERE arrival < ? AND finished <> 0)`

// messageByID is Message's query; node is added when given.
const messageByID = `SELECT ` + msgCols + ` FROM messages WHERE queue_id = ?`

// deliveriesOf is the query of the deliveries of n messages of one node:
// the node makes it a search of the deliveries' key, where queue_id
// alone scanned the whole table for each chunk of a report.
func deliveriesOf(n int) string {
	return `SELECT node, queue_id, idx, rcpt, orig, copy, status, at, transport, nexthop, relay, dsn, reply, remote_id, attempts
		FROM deliveries WHERE node = ? AND queue_id IN (` + strings.TrimSuffix(strings.Repeat("?,", n), ",") + `) ORDER BY queue_id, idx`
}

const msgCols = `node, queue_id, arrival, message_id, sender, rcpts, size, client, parent, phase, notice, finished`

// Messages implements Reader.
func (s *Store) Messages(ctx context.Context, f Filter) ([]Message, error) {
	var where []string
	var args []any
	if !f.Since.IsZero() {
		where, args = append(where, "arrival >= ?"), append(args, us(f.Since))
	}
	if !f.Until.IsZero() {
		where, args = append(where, "arrival < ?"), append(args, us(f.Until))
	}
	if f.User != "" {
		// A cheap superset in SQL (the address's text appears), the
		// exact rule (Filter.Matches) below.
		like := "%" + strings.NewReplacer(`\`, `\\`, "%", `\%`, "_", `\_`).Replace(strings.ToLower(f.User)) + "%"
		where = append(where, `(LOWER(sender) LIKE ? ESCAPE '\' OR LOWER(rcpts) LIKE ? ESCAPE '\' OR EXISTS (SELECT 1 FROM deliveries d
			WHERE d.node = messages.node AND d.queue_id = messages.queue_id AND (LOWER(d.rcpt) LIKE ? ESCAPE '\' OR LOWER(d.orig) LIKE ? ESCAPE '\')))`)
		args = append(args, like, like, like, like)
	}
	q := `SELECT ` + msgCols + ` FROM messages`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	if f.Limit > 0 {
		q += " ORDER BY arrival DESC, queue_id DESC"
	} else {
		q += " ORDER BY arrival, queue_id"
	}
	msgs, err := s.queryMessages(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	if f.User != "" {
		msgs = matching(msgs, f)
	}
	if f.Limit > 0 && len(msgs) > f.Limit {
		msgs = msgs[:f.Limit]
	}
	return msgs, nil
}

// matching keeps the messages f.User names exactly.
func matching(msgs []Message, f Filter) []Message {
	out := msgs[:0]
	for _, m := range msgs {
		if f.MatchesMessage(m) {
			out = append(out, m)
		}
	}
	return out
}

// Message implements Reader.
func (s *Store) Message(ctx context.Context, node, id string) (Message, bool, error) {
	q, args := messageByID, []any{id}
	if node != "" {
		q, args = q+` AND node = ?`, append(args, node)
	}
	msgs, err := s.queryMessages(ctx, q+` ORDER BY arrival DESC LIMIT 1`, args...)
	if err != nil || len(msgs) == 0 {
		return Message{}, false, err
	}
	return msgs[0], true, nil
}

// Children implements Reader.
func (s *Store) Children(ctx context.Context, node, id string) ([]Message, error) {
	q, args := `SELECT `+msgCols+` FROM messages WHERE parent = ?`, []any{id}
	if node != "" {
		q, args = q+` AND node = ?`, append(args, node)
	}
	return s.queryMessages(ctx, q+` ORDER BY arrival, queue_id`, args...)
}

// Gaps implements Reader.
func (s *Store) Gaps(ctx context.Context, since, until time.Time) ([]Gap, error) {
	q, args := `SELECT node, since, until, messages, reason FROM gaps WHERE 1 = 1`, []any{}
	if !since.IsZero() {
		q, args = q+` AND until >= ?`, append(args, us(since))
	}
	if !until.IsZero() {
		q, args = q+` AND since < ?`, append(args, us(until))
	}
	rows, err := s.db.QueryContext(ctx, s.rb(q+` ORDER BY since`), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Gap
	for rows.Next() {
		var g Gap
		var a, b int64
		if err := rows.Scan(&g.Node, &a, &b, &g.Messages, &g.Reason); err != nil {
			return nil, err
		}
		g.Since, g.Until = fromUS(a), fromUS(b)
		out = append(out, g)
	}
	return out, rows.Err()
}

type msgKey struct{ node, id string }

// queryMessages runs a query of msgCols and loads the deliveries of
// what it returns.
func (s *Store) queryMessages(ctx context.Context, q string, args ...any) ([]Message, error) {
	rows, err := s.db.QueryContext(ctx, s.rb(q), args...)
	if err != nil {
		return nil, err
	}
	var out []Message
	for rows.Next() {
		var m Message
		var arrival, finished, notice int64
		var rcpts string
		if err := rows.Scan(&m.Node, &m.ID, &arrival, &m.MessageID, &m.From, &rcpts, &m.Size, &m.Client, &m.Parent, &m.Phase, &notice, &finished); err != nil {
			rows.Close()
			return nil, err
		}
		m.Arrival, m.Finished, m.Notice = fromUS(arrival), fromUS(finished), notice != 0
		json.Unmarshal([]byte(rcpts), &m.Rcpts)
		out = append(out, m)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return out, nil
	}
	idx := make(map[msgKey]int, len(out))
	for i, m := range out {
		idx[msgKey{m.Node, m.ID}] = i
	}
	// The deliveries of these messages, node by node, in chunks of IDs
	// (SQLite binds at most 32766 parameters).
	const chunk = 500
	byNode := map[string][]string{}
	var nodes []string
	for _, m := range out {
		if _, ok := byNode[m.Node]; !ok {
			nodes = append(nodes, m.Node)
		}
		byNode[m.Node] = append(byNode[m.Node], m.ID)
	}
	type part struct {
		node string
		ids  []string
	}
	var parts []part
	for _, n := range nodes {
		ids := byNode[n]
		for start := 0; start < len(ids); start += chunk {
			parts = append(parts, part{n, ids[start:min(start+chunk, len(ids))]})
		}
	}
	for _, p := range parts {
		a := make([]any, 0, len(p.ids)+1)
		a = append(a, p.node)
		for _, id := range p.ids {
			a = append(a, id)
		}
		drows, err := s.db.QueryContext(ctx, s.rb(deliveriesOf(len(p.ids))), a...)
		if err != nil {
			return nil, err
		}
		for drows.Next() {
			var k msgKey
			var d Delivery
			var cp, at int64
			var st string
			if err := drows.Scan(&k.node, &k.id, &d.Index, &d.Rcpt, &d.Orig, &cp, &st, &at, &d.Transport, &d.Nexthop, &d.Relay, &d.DSN, &d.Reply, &d.RemoteID, &d.Attempts); err != nil {
				drows.Close()
				return nil, err
			}
			d.Copy, d.Status, d.At = cp != 0, Status(st), fromUS(at)
			if i, ok := idx[k]; ok {
				out[i].Deliveries = append(out[i].Deliveries, d)
			}
		}
		drows.Close()
		if err := drows.Err(); err != nil {
			return nil, err
		}
	}
	return out, nil
}
