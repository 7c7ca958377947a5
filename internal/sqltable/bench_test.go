package sqltable_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/mailtee/mailtee/internal/sqltable"
	"github.com/mailtee/mailtee/internal/testdb"
)

// BenchmarkLookup measures one lookup of a PostfixAdmin alias (a hit)
// on a pooled connection: what a RCPT costs per table.
func BenchmarkLookup(b *testing.B) {
	for _, kind := range []string{"sqlite", "pgsql", "mysql"} {
		b.Run(kind, func(b *testing.B) {
			dir := b.TempDir()
			var conn string
			switch kind {
			case "sqlite":
				path := filepath.Join(dir, "mail.sqlite")
				db, err := sql.Open("sqlite", path)
				if err != nil {
					b.Fatal(err)
				}
				for _, s := range append(append([]string{}, schema...), rows...) {
					if _, err := db.Exec(dialect(kind, s)); err != nil {
						b.Fatal(err)
					}
				}
				db.Close()
				conn = "dbpath = " + path + "\n"
			default:
				var s *testdb.Server
				if kind == "pgsql" {
					s = testdb.Postgres(b)
					s.CreateDB("mail")
				} else {
					s = testdb.MariaDB(b)
					s.Exec("", "CREATE DATABASE mail")
				}
				db := s.DB("mail")
				for _, q := range append(append([]string{}, schema...), rows...) {
					if _, err := db.Exec(dialect(kind, q)); err != nil {
						b.Fatal(err)
					}
				}
				conn = fmt.Sprintf("hosts = inet:%s:%d\nuser = %s\npassword = %s\ndbname = mail\n", s.Host, s.Port, s.User, s.Password)
			}
			cf := filepath.Join(dir, "aliases.cf")
			os.WriteFile(cf, []byte(conn+queries["aliases"]+"\n"), 0o600)
			tab, _, err := sqltable.Open(kind, cf, os.ReadFile)
			if err != nil {
				b.Fatal(err)
			}
			defer tab.Close()
			ctx := context.Background()
			if _, ok, err := tab.Lookup(ctx, "info@example.com"); !ok || err != nil {
				b.Fatal(ok, err)
			}
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, ok, err := tab.Lookup(ctx, "info@example.com"); !ok || err != nil {
						b.Error(ok, err)
						return
					}
				}
			})
		})
	}
}
