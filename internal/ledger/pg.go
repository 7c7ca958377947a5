package ledger

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/mailtee/mailtee/internal/fleet"
)

// A ledger in PostgreSQL (ledger_database = postgres://...) is one
// database that every node of a fleet writes to and any node's report
// reads: the schema is the same as SQLite's (store.go), the queries the
// same with PostgreSQL's $n placeholders.

// Advisory lock keys ("mledger" in ASCII, and the next): the schema is
// created by one node at a time (two concurrent CREATE TABLE IF NOT
// EXISTS can both fail on PostgreSQL's catalog), and one node prunes at
// a time.
const (
	schemaLock int64 = 0x6d6c6564676572
	pruneLock  int64 = schemaLock + 1
)

// pgConnectTimeout bounds a connection attempt when the URL does not
// (connect_timeout=): a database host that drops packets must not hold
// the recorder for minutes.
const pgConnectTimeout = 5 * time.Second

// openPG opens the PostgreSQL ledger at url: for writing (the schema
// created if no node has yet), or for reading only.
func openPG(url string, write bool) (*Store, error) {
	if err := checkURL(url); err != nil {
		return nil, err
	}
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("ledger %s: %v", Describe(url), err)
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = pgConnectTimeout
	}
	db := stdlib.OpenDB(*cfg)
	// The writer is one goroutine; a reader (report, the dashboard, a
	// peer's question) may run a few queries at once.
	if write {
		db.SetMaxOpenConns(1)
	} else {
		db.SetMaxOpenConns(4)
	}
	db.SetConnMaxIdleTime(5 * time.Minute)
	s := &Store{db: db, path: url, pg: true}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if write {
		err = s.initPG(ctx)
	} else {
		err = s.readMeta()
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "42P01" { // undefined_table
			err = fmt.Errorf("no ledger in this database yet (serve creates it when it starts)")
		}
	}
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("ledger %s: %w", Describe(url), err)
	}
	return s, nil
}

// checkURL refuses a URL with a password in it (main.cf is readable by
// every local user).
func checkURL(url string) error {
	if err := fleet.CheckURL(url); err != nil {
		return fmt.Errorf("ledger_database %w", err)
	}
	return nil
}

// initPG creates the schema and the database's identity in one
// transaction, under an advisory lock: nodes starting at once wait for
// each other, and the first one's identity is everyone's.
func (s *Store) initPG(ctx context.Context) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, schemaLock); err != nil {
		return err
	}
	for _, q := range schema {
		// What exists is left alone: even IF NOT EXISTS takes a lock
		// on the table first (CREATE INDEX), and with another node
		// pruning meanwhile the two deadlocked.
		var exists bool
		if err := tx.QueryRowContext(ctx, `SELECT to_regclass($1) IS NOT NULL`, schemaObject(q)).Scan(&exists); err != nil {
			return err
		}
		if exists {
			continue
		}
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	id, now := newID(), time.Now()
	if _, err := tx.ExecContext(ctx, `INSERT INTO ledger_meta (k, v) VALUES ('id', $1), ('created', $2) ON CONFLICT (k) DO NOTHING`,
		id, fmt.Sprint(now.UnixMicro())); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	return s.readMeta()
}

// schemaObject is the table or index a statement of schema creates.
func schemaObject(q string) string {
	f := strings.Fields(q)
	for i := 0; i+3 < len(f); i++ {
		if f[i] == "IF" && f[i+1] == "NOT" && f[i+2] == "EXISTS" {
			return strings.TrimSuffix(f[i+3], "(")
		}
	}
	return ""
}

// rb is q for this store's database: SQLite takes ?, PostgreSQL $n.
func (s *Store) rb(q string) string {
	if !s.pg {
		return q
	}
	return rebind(q)
}

// rebind turns each ? outside quotes into $1, $2, ...: the queries are
// written once, in SQLite's and database/sql's usual form.
func rebind(q string) string {
	if !strings.Contains(q, "?") {
		return q
	}
	var b strings.Builder
	b.Grow(len(q) + len(q)/4)
	n, quoted := 0, false
	for i := 0; i < len(q); i++ {
		c := q[i]
		switch {
		case c == '\'':
			quoted = !quoted // '' inside a literal toggles twice
		case c == '?' && !quoted:
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// Probe connects to the PostgreSQL ledger at url and says why it
// cannot (check's warning): nothing is created or read.
func Probe(ctx context.Context, url string) error {
	if err := checkURL(url); err != nil {
		return err
	}
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return fmt.Errorf("%s: %v", Describe(url), err)
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = pgConnectTimeout
	}
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("%s does not answer: %v", Describe(url), err)
	}
	defer c.Close(context.Background())
	if err := c.Ping(ctx); err != nil {
		return fmt.Errorf("%s does not answer: %v", Describe(url), err)
	}
	return nil
}
