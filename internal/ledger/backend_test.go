package ledger

import (
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/mailtee/mailtee/internal/testdb"
)

// The ledger's core tests run on both of its databases: an SQLite file
// and a PostgreSQL database (one server for the whole test binary, a
// new database for each test). A test asks its backend where the ledger
// of a directory is (at) and does the rest as on SQLite.

type backend struct {
	name string
	pg   *testdb.Server // nil: SQLite
	t    testing.TB
	dbs  map[string]string // dir -> URL
}

// at is the ledger of the test directory dir: dir/data/ledger.db, or a
// new PostgreSQL database named by a URL with a password file in dir
// (as a deployment's main.cf names it).
func (b *backend) at(dir string) string {
	if b.pg == nil {
		return filepath.Join(dir, "data", "ledger.db")
	}
	if u, ok := b.dbs[dir]; ok {
		return u
	}
	name := newPGDatabase(b.t, b.pg)
	_, u := b.pg.PassFile(dir, name)
	b.dbs[dir] = u
	return u
}

// forBackends runs f once per database, as subtests named sqlite and
// postgres.
func forBackends(t *testing.T, f func(t *testing.T, b *backend)) {
	t.Run("sqlite", func(t *testing.T) { f(t, &backend{name: "sqlite", t: t}) })
	t.Run("postgres", func(t *testing.T) {
		f(t, &backend{name: "postgres", pg: pgServer(t), t: t, dbs: map[string]string{}})
	})
}

// The test binary's PostgreSQL, started at its first use and stopped
// after every test (TestMain).
var shared struct {
	once  sync.Once
	srv   *testdb.Server
	tb    *mainTB
	admin *sql.DB
	n     atomic.Int64
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.admin != nil {
		shared.admin.Close()
	}
	if shared.tb != nil {
		shared.tb.cleanup()
	}
	os.Exit(code)
}

func pgServer(t testing.TB) *testdb.Server {
	t.Helper()
	shared.once.Do(func() {
		tb := &mainTB{}
		shared.tb = tb
		done := make(chan struct{})
		go func() { // testdb's Skip and Fatal end this goroutine only
			defer close(done)
			shared.srv = testdb.Postgres(tb)
		}()
		<-done
		if shared.srv != nil {
			db, err := sql.Open("pgx", shared.srv.URL("postgres"))
			if err != nil {
				tb.msg, shared.srv = err.Error(), nil
				return
			}
			shared.admin = db
		}
	})
	if shared.srv == nil {
		if shared.tb.skipped {
			t.Skip(shared.tb.msg)
		}
		t.Fatal("PostgreSQL: " + shared.tb.msg)
	}
	return shared.srv
}

// newPGDatabase creates an empty database on the shared server.
func newPGDatabase(t testing.TB, s *testdb.Server) string {
	t.Helper()
	name := fmt.Sprintf("ledger_%d", shared.n.Add(1))
	if _, err := shared.admin.Exec("CREATE DATABASE " + name); err != nil {
		t.Fatalf("create database %s: %v", name, err)
	}
	return name
}

// mainTB is the testing.TB testdb is given in TestMain's stead: it
// keeps the server's clean-ups for the end of the binary.
type mainTB struct {
	testing.TB // not used: the methods testdb calls are below
	mu         sync.Mutex
	cleanups   []func()
	msg        string
	skipped    bool
}

func (m *mainTB) Helper() {}
func (m *mainTB) Cleanup(f func()) {
	m.mu.Lock()
	m.cleanups = append(m.cleanups, f)
	m.mu.Unlock()
}
func (m *mainTB) Logf(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }
func (m *mainTB) Log(args ...any)                 { fmt.Fprintln(os.Stderr, args...) }
func (m *mainTB) Errorf(format string, args ...any) {
	m.Logf(format, args...)
}
func (m *mainTB) Fatal(args ...any) { m.stop(false, fmt.Sprint(args...)) }
func (m *mainTB) Fatalf(format string, args ...any) {
	m.stop(false, fmt.Sprintf(format, args...))
}
func (m *mainTB) Skip(args ...any) { m.stop(true, fmt.Sprint(args...)) }
func (m *mainTB) Skipf(format string, args ...any) {
	m.stop(true, fmt.Sprintf(format, args...))
}

func (m *mainTB) stop(skip bool, msg string) {
	m.mu.Lock()
	m.msg, m.skipped = msg, skip
	m.mu.Unlock()
	fmt.Fprintln(os.Stderr, "testdb:", msg)
	runtime.Goexit()
}

func (m *mainTB) cleanup() {
	for i := len(m.cleanups) - 1; i >= 0; i-- {
		m.cleanups[i]()
	}
}

// sqliteOnly is the backend of the tests of what only a file has (its
// mode, its loss, its damage).
var sqliteOnly = &backend{name: "sqlite"}
