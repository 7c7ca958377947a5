package testdb

import "testing"

// The servers start, answer as the superuser, and come back after Stop.
func TestServers(t *testing.T) {
	for _, start := range []func(testing.TB) *Server{Postgres, MariaDB} {
		s := start(t)
		s.CreateDB("probe")
		s.Exec("probe", "CREATE TABLE t (k TEXT)", "INSERT INTO t VALUES ('a')")
		s.Stop()
		s.Start()
		var n int
		if err := s.DB("probe").QueryRow("SELECT COUNT(*) FROM t").Scan(&n); err != nil || n != 1 {
			t.Fatalf("%s after restart: n=%d err=%v", s.Kind, n, err)
		}
	}
}
