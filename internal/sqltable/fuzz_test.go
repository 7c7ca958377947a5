package sqltable

import (
	"errors"
	"strings"
	"testing"
)

// FuzzParseCF feeds any text to the .cf reader of each type: it must
// not panic, and a table it accepts has a query.
func FuzzParseCF(f *testing.F) {
	f.Add("hosts = inet:db:5432, unix:/run/postgresql\nuser = u\npassword = p\ndbname = mail\nquery = SELECT goto FROM alias\n  WHERE address='%s'\n")
	f.Add("dbpath = /x.sqlite\ntable = alias\nselect_field = goto\nwhere_field = address\nadditional_conditions = AND active='1'\n")
	f.Add("query = SELECT '%u' '%d' '%1' %%\nresult_format = %U@%D\ndomain = a.org, !b.org /etc/domains\nexpansion_limit = 3\n")
	f.Add("hosts = postgresql://u:p@h/db?sslmode=disable\nquery = %\n# c\n =\nx")
	f.Fuzz(func(t *testing.T, text string) {
		read := func(name string) ([]byte, error) {
			if name == "/t.cf" {
				return []byte(text), nil
			}
			if name == "/etc/domains" {
				return []byte("c.org\n!d.org"), nil
			}
			return nil, errors.New("no such file")
		}
		for _, typ := range []string{"pgsql", "mysql", "sqlite"} {
			tab, _, err := Open(typ, "/t.cf", read)
			if err == nil && tab.tmpl.query == "" {
				t.Fatalf("%s: accepted without a query", typ)
			}
		}
	})
}

// unquoteLiteral reads the SQL string literal at the start of s the way
// the database would, given how its quoter escapes.
func unquoteLiteral(s string, backslash bool) (string, bool) {
	if !strings.HasPrefix(s, "'") {
		return "", false
	}
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch c := s[i]; {
		case backslash && c == '\\' && i+1 < len(s):
			i++
			switch s[i] {
			case '0':
				b.WriteByte(0)
			case 'n':
				b.WriteByte('\n')
			case 'r':
				b.WriteByte('\r')
			case 'Z':
				b.WriteByte(0x1a)
			default:
				b.WriteByte(s[i])
			}
		case c == '\'' && i+1 < len(s) && s[i+1] == '\'':
			b.WriteByte('\'')
			i++
		case c == '\'':
			return b.String(), i == len(s)-1
		default:
			b.WriteByte(c)
		}
	}
	return "", false
}

// FuzzExpandQuery expands any template with any key. It must not
// panic; and in '%s' the key, however odd, stays one literal that reads
// back as the key for each database's quoting.
func FuzzExpandQuery(f *testing.F) {
	f.Add("SELECT goto FROM alias WHERE address='%s'", "a'b\\c%d@example.com")
	f.Add("%u %d %1.%2 %S %U %D %%", "user@mail.example.com")
	f.Add("%9", "u@a.b.c.d.e.f.g.h.i")
	f.Add("x%", "@")
	f.Fuzz(func(t *testing.T, format, key string) {
		var tm templates
		if tm.parse(format, true) == nil {
			for _, q := range []func(string) string{quoteSqlite, func(s string) string { return quoteMysql(s, false) }, func(s string) string { return quotePgsql(s, true) }} {
				var b strings.Builder
				tm.expand(&b, format, key, "", false, q, nil)
			}
			var b strings.Builder
			tm.expand(&b, format, key, key, true, nil, nil)
		}
		for _, c := range []struct {
			quote     func(string) string
			backslash bool
		}{
			{quoteSqlite, false},
			{func(s string) string { return quotePgsql(s, true) }, false},
			{func(s string) string { return quotePgsql(s, false) }, true},
			{func(s string) string { return quoteMysql(s, false) }, true},
			{func(s string) string { return quoteMysql(s, true) }, false},
		} {
			var tm templates
			tm.parse("'%s'", true)
			var b strings.Builder
			if !tm.expand(&b, "'%s'", key, "", false, c.quote, nil) {
				continue
			}
			got, ok := unquoteLiteral(b.String(), c.backslash)
			if !ok || got != key {
				t.Fatalf("key %q quoted as %s reads back as %q (whole literal: %v)", key, b.String(), got, ok)
			}
		}
		// A MySQL key that the session's mode is not asked for (none of
		// mysqlEscaped) must be one whole literal, the key, under
		// either mode: the server's mode may change unseen.
		if !strings.ContainsAny(key, mysqlEscaped) {
			lit := "'" + quoteMysql(key, false) + "'"
			for _, backslash := range []bool{true, false} {
				if got, ok := unquoteLiteral(lit, backslash); !ok || got != key {
					t.Fatalf("key %q quoted as %s for MySQL reads back as %q (whole literal: %v) with backslash escapes %v", key, lit, got, ok, backslash)
				}
			}
		}
	})
}
