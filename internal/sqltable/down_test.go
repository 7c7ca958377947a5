package sqltable_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/sqltable"
	"github.com/mailtee/mailtee/internal/testdb"
)

// closedPort is a loopback port nothing listens on.
func closedPort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// A database that goes away is an error (the mail waits), never "not
// found"; a host that failed is skipped for retry_interval while
// another answers; when the database is back, lookups work again after
// retry_interval.
func TestDatabaseDown(t *testing.T) {
	for _, kind := range []string{"pgsql", "mysql"} {
		t.Run(kind, func(t *testing.T) {
			var s *testdb.Server
			if kind == "pgsql" {
				s = testdb.Postgres(t)
				s.CreateDB("mail")
			} else {
				s = testdb.MariaDB(t)
				s.Exec("", "CREATE DATABASE mail")
			}
			s.Exec("mail", "CREATE TABLE alias (address VARCHAR(255), goto VARCHAR(255))",
				"INSERT INTO alias VALUES ('a@example.com', 'b@example.com')")
			dir := t.TempDir()
			conn := fmt.Sprintf("user = %s\npassword = %s\ndbname = mail\nquery = SELECT goto FROM alias WHERE address='%%s'\nretry_interval = 1\n", s.User, s.Password)
			live := fmt.Sprintf("inet:%s:%d", s.Host, s.Port)
			one := filepath.Join(dir, "one.cf")
			two := filepath.Join(dir, "two.cf")
			os.WriteFile(one, []byte("hosts = "+live+"\n"+conn), 0o600)
			os.WriteFile(two, []byte("hosts = inet:"+closedPort(t)+", "+live+"\n"+conn), 0o600)
			ctx := context.Background()
			open := func(file string) *sqltable.Table {
				tab, diags, err := sqltable.Open(kind, file, os.ReadFile)
				if err != nil {
					t.Fatal(err, diags)
				}
				t.Cleanup(func() { tab.Close() })
				return tab
			}
			t1, t2 := open(one), open(two)
			for i := 0; i < 6; i++ {
				if v, ok, err := t2.Lookup(ctx, "a@example.com"); v != "b@example.com" || !ok || err != nil {
					t.Fatalf("with one host dead, lookup %d: %q %v %v", i, v, ok, err)
				}
			}
			if v, ok, err := t1.Lookup(ctx, "A@example.com"); v != "b@example.com" || !ok || err != nil {
				t.Fatalf("up: %q %v %v", v, ok, err)
			}
			s.Stop()
			_, ok, err := t1.Lookup(ctx, "a@example.com")
			if ok || err == nil || !errors.Is(err, sqltable.ErrTemporary) {
				t.Fatalf("down: ok %v err %v", ok, err)
			}
			if err := t1.Probe(ctx); err == nil {
				t.Errorf("Probe of a stopped server succeeded")
			}
			// A miss is an error too while the database is down.
			if _, ok, err := t1.Lookup(ctx, "nobody@example.com"); ok || err == nil {
				t.Fatalf("down, a key that is absent: ok %v err %v", ok, err)
			}
			s.Start()
			deadline := time.Now().Add(20 * time.Second)
			for {
				v, ok, err := t1.Lookup(ctx, "a@example.com")
				if err == nil {
					if v != "b@example.com" || !ok {
						t.Fatalf("back up: %q %v", v, ok)
					}
					break
				}
				if !strings.Contains(err.Error(), "retry_interval") && time.Now().After(deadline) {
					t.Fatalf("still failing after the database came back: %v", err)
				}
				if time.Now().After(deadline) {
					t.Fatalf("still failing: %v", err)
				}
				time.Sleep(200 * time.Millisecond)
			}
			if err := t1.Probe(ctx); err != nil {
				t.Errorf("Probe: %v", err)
			}
		})
	}
}

// Lookups from many sessions at once share the pool; none fails while
// the first connection is being made.
func TestConcurrentLookups(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mail.sqlite")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	fill(t, db, "sqlite")
	db.Close()
	cf := filepath.Join(dir, "aliases.cf")
	os.WriteFile(cf, []byte("dbpath = "+path+"\n"+queries["aliases"]+"\n"), 0o600)
	tab, diags, err := sqltable.Open("sqlite", cf, os.ReadFile)
	if err != nil {
		t.Fatal(err, diags)
	}
	defer tab.Close()
	var wg sync.WaitGroup
	errs := make(chan error, 1000)
	for g := 0; g < 40; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				v, ok, err := tab.Lookup(context.Background(), "info@example.com")
				if err != nil || !ok || v != "alice@example.com,bob@example.com" {
					errs <- fmt.Errorf("%q %v %v", v, ok, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// MySQL's NO_BACKSLASH_ESCAPES may be switched on under a running node
// (SET GLOBAL sql_mode; a proxy in front of servers set up apart): a key
// escaped for the mode an earlier connection had would end the string
// and inject SQL. The mode of the very session that runs the query
// decides, for the keys whose escaping depends on it.
func TestMysqlModeChanges(t *testing.T) {
	s := testdb.MariaDB(t)
	s.Exec("", "CREATE DATABASE mail")
	s.Exec("mail", "CREATE TABLE alias (address VARCHAR(255), goto VARCHAR(255))",
		`INSERT INTO alias VALUES ('a@example.com', 'b@example.com'), ('back\\slash@example.com', 'found-backslash')`)
	t.Cleanup(func() { s.Exec("", "SET GLOBAL sql_mode = DEFAULT") })
	cf := filepath.Join(t.TempDir(), "alias.cf")
	os.WriteFile(cf, []byte(fmt.Sprintf("hosts = inet:%s:%d\nuser = %s\npassword = %s\ndbname = mail\nidle_interval = 1\nquery = SELECT goto FROM alias WHERE address='%%s'\n",
		s.Host, s.Port, s.User, s.Password)), 0o600)
	tab, diags, err := sqltable.Open("mysql", cf, os.ReadFile)
	if err != nil {
		t.Fatal(err, diags)
	}
	defer tab.Close()
	ctx := context.Background()
	const inject = `x\' or 1=1 -- @example.com`
	check := func(mode string) {
		t.Helper()
		if v, ok, err := tab.Lookup(ctx, `back\slash@example.com`); v != "found-backslash" || !ok || err != nil {
			t.Errorf("%s: the key with a backslash: %q %v %v", mode, v, ok, err)
		}
		if v, ok, err := tab.Lookup(ctx, inject); ok || err != nil {
			t.Errorf("%s: %s found %q (%v): the key ended the string", mode, inject, v, err)
		}
		if v, ok, err := tab.Lookup(ctx, "a@example.com"); v != "b@example.com" || !ok || err != nil {
			t.Errorf("%s: a@example.com: %q %v %v", mode, v, ok, err)
		}
	}
	check("backslash escapes")
	s.Exec("", "SET GLOBAL sql_mode = 'NO_BACKSLASH_ESCAPES'")
	// idle_interval: database/sql closes the idle session within two
	// of its cleaner's 1 s rounds; the next lookup opens a new one.
	time.Sleep(3 * time.Second)
	check("NO_BACKSLASH_ESCAPES set since")
}
