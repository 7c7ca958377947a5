package sqltable

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func openText(t *testing.T, typ, text string) (*Table, string, error) {
	t.Helper()
	dir := t.TempDir()
	file := filepath.Join(dir, "t.cf")
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	tab, diags, err := Open(typ, file, os.ReadFile)
	var all []string
	for _, d := range diags {
		all = append(all, d.String())
	}
	return tab, strings.Join(all, "\n"), err
}

// The .cf syntax: comments, continuation lines, later entries override.
func TestParseCF(t *testing.T) {
	tab, diags, err := openText(t, "pgsql", `# PostfixAdmin
hosts = inet:db1:5433,
  unix:/run/postgresql
user=postfix
password = s3cret
dbname = mail
query = SELECT goto FROM alias
    WHERE address='%s'
  # a comment inside
    AND active = '1'
qeury = typo
dbname = mail2
`)
	if err != nil {
		t.Fatal(err, diags)
	}
	if want := "SELECT goto FROM alias    WHERE address='%s'    AND active = '1'"; tab.tmpl.query != want {
		t.Errorf("query = %q, want %q", tab.tmpl.query, want)
	}
	if tab.dbname != "mail2" || tab.user != "postfix" || tab.password != "s3cret" {
		t.Errorf("dbname %q user %q password %q", tab.dbname, tab.user, tab.password)
	}
	if len(tab.hosts) != 2 || tab.hosts[0].addr != "db1:5433" || tab.hosts[1].kind != kindUnix || tab.hosts[1].addr != "/run/postgresql" {
		t.Errorf("hosts %+v %+v", tab.hosts[0], tab.hosts[1])
	}
	for _, want := range []string{`line 11: unknown pgsql_table(5) parameter "qeury" is ignored (did you mean query?)`, "line 12: overriding earlier entry on line 6: dbname=mail"} {
		if !strings.Contains(diags, want) {
			t.Errorf("findings lack %q:\n%s", want, diags)
		}
	}
}

// Errors name the file and line, and stop Open.
func TestCFErrors(t *testing.T) {
	for _, c := range []struct{ typ, text, want string }{
		{"mysql", "hosts = localhost\ndbname = mail\n", "no query: add a line"},
		{"sqlite", "query = SELECT 1\n", "no dbpath"},
		{"pgsql", "hosts = db\nquery = SELECT 1\n", "requires dbname"},
		{"mysql", "dbname = x\nquery = SELECT '%x'\n", "line 2: query: invalid specifier %x"},
		{"mysql", "dbname = x\nquery = SELECT '%s' %\n", "line 2: query: a % at the end"},
		{"sqlite", "dbpath = /x\nquery = SELECT 1\nexpansion_limit = ten\n", "line 3: bad numerical configuration"},
		{"mysql", "dbname = x\nquery = q\ntls_CAfile = /ca\n", "line 3: tls_CAfile: TLS to MySQL is not supported"},
		{"mysql", "dbname = x\nquery = q\ncharset = GBK\n", "line 3: charset GBK: mailtee escapes keys"},
		{"sqlite", "dbpath = /x\ntable = alias\nselect_field = goto\n", "legacy form lacks where_field"},
		{"sqlite", "dbpath = /x\nquery = q\ndomain = hash:/etc/d\n", "line 3: domain:"},
		{"sqlite", "dbpath = /x\nno equals sign\n", "line 2: missing '=' after attribute name"},
		{"mysql", "hosts = inet:db:nosuchservice\ndbname = x\nquery = q\n", "line 1: hosts: inet:db:nosuchservice: unknown service"},
	} {
		_, diags, err := openText(t, c.typ, c.text)
		if err == nil || !strings.Contains(diags, c.want) || !strings.Contains(diags, "t.cf") {
			t.Errorf("%s %q: err %v, findings:\n%s\nwant %q", c.typ, c.text, err, diags, c.want)
		}
	}
	if _, _, err := Open("pgsql", "pgsqlsource", os.ReadFile); err == nil || !strings.Contains(err.Error(), "by its path") {
		t.Errorf("main.cf-style name: %v", err)
	}
}

// A password in a file every user can read is a warning (Postfix reads
// it too), not an error.
func TestWorldReadable(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "t.cf")
	os.WriteFile(file, []byte("hosts = db\ndbname = x\npassword = pw\nquery = q\n"), 0o644)
	os.Chmod(file, 0o644)
	_, diags, err := Open("mysql", file, os.ReadFile)
	if err != nil || len(diags) != 1 || !strings.Contains(diags[0].Msg, "readable by every user") {
		t.Fatalf("err %v diags %v", err, diags)
	}
	os.Chmod(file, 0o640)
	if _, diags, _ = Open("mysql", file, os.ReadFile); len(diags) != 0 {
		t.Fatalf("mode 640: %v", diags)
	}
}

// db_common_expand(), from its manual: %s the key, %u and %d its parts
// (a key without a domain is not looked up when %d is needed), %[1-9]
// the domain's labels from the right, %% a percent sign.
func TestExpandQuery(t *testing.T) {
	for _, c := range []struct {
		query, key, want string
	}{
		{"'%s'", "a'b@example.com", "'a''b@example.com'"},
		{"%u|%d", "user@example.com", "user|example.com"},
		{"%u", "user", "user"},
		{"%d", "user", ""},
		{"%u", "@example.com", ""},
		{"%d", "@example.com", "example.com"},
		{"%d", "user@", ""},
		{"%1.%2.%3", "u@mail.example.com", "com.example.mail"},
		{"%3", "u@example.com", ""},
		{"%2", "u@a..b", "a"},
		{"%S %U %D", "u@d.org", "u@d.org u d.org"},
		{"100%% '%s'", "x", "100% 'x'"},
	} {
		var tm templates
		if err := tm.parse(c.query, true); err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		ok := tm.expand(&b, c.query, c.key, "", false, quoteSqlite, nil)
		if b.String() != c.want || ok != (c.want != "") {
			t.Errorf("%q with %q = %q, %v; want %q", c.query, c.key, b.String(), ok, c.want)
		}
	}
}

func TestExpandResult(t *testing.T) {
	var tm templates
	tm.parse("%s", true)
	tm.parse("%u at %d for %U", false)
	var b strings.Builder
	for _, v := range []string{"a@x.org", "novalue", "b@y.org", ""} {
		tm.expand(&b, "%u at %d for %U", v, "k@d.org", true, nil, func(string) {})
	}
	if want := "a at x.org for k,b at y.org for k"; b.String() != want {
		t.Errorf("got %q, want %q", b.String(), want)
	}
}

func TestQuote(t *testing.T) {
	in := "a'b\\c\"d\x00\n\r\x1a%_"
	if got, want := quotePgsql(in, true), "a''b\\c\"d\x00\n\r\x1a%_"; got != want {
		t.Errorf("pgsql %q", got)
	}
	if got, want := quotePgsql(in, false), "a''b\\\\c\"d\x00\n\r\x1a%_"; got != want {
		t.Errorf("pgsql, not standard %q", got)
	}
	if got, want := quoteMysql(in, false), `a''b\\c\"d\0\n\r\Z%_`; got != want {
		t.Errorf("mysql %q", got)
	}
	if got, want := quoteMysql(in, true), "a''b\\c\"d\x00\n\r\x1a%_"; got != want {
		t.Errorf("mysql, NO_BACKSLASH_ESCAPES %q", got)
	}
}

// Keys outside "domain", and keys without a domain when there is one,
// are not looked up: no connection is even tried (the host here does
// not exist).
func TestDomainSkipsLookup(t *testing.T) {
	tab, diags, err := openText(t, "mysql", "hosts = inet:127.0.0.1:1\ndbname = x\nquery = q\ndomain = example.com !bad.example.com\n")
	if err != nil {
		t.Fatal(err, diags)
	}
	for _, k := range []string{"u@other.org", "user", "@example.com", "u@bad.example.com", "u@sub.example.com"} {
		if _, ok, err := tab.Lookup(context.Background(), k); ok || err != nil {
			t.Errorf("%s: ok %v err %v", k, ok, err)
		}
	}
	if _, _, err := tab.Lookup(context.Background(), "U@Example.COM"); err == nil {
		t.Errorf("a key in the domain was not looked up")
	}
}

// A database that does not answer (a listener that accepts and says
// nothing) is an error within the lookup's bound, not a hang, and the
// error says it is temporary.
func TestHungDatabase(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	old := attemptTimeout
	attemptTimeout = 500 * time.Millisecond
	defer func() { attemptTimeout = old }()
	for _, typ := range []string{"pgsql", "mysql"} {
		tab, diags, err := openText(t, typ, "hosts = inet:"+l.Addr().String()+"\ndbname = x\nuser = u\nquery = SELECT '%s'\n")
		if err != nil {
			t.Fatal(err, diags)
		}
		start := time.Now()
		_, ok, err := tab.Lookup(context.Background(), "a@b")
		if ok || err == nil || !errors.Is(err, ErrTemporary) {
			t.Errorf("%s: ok %v err %v", typ, ok, err)
		}
		if d := time.Since(start); d > 8*time.Second {
			t.Errorf("%s: the lookup took %v", typ, d)
		}
		// Within retry_interval the host is not asked again.
		start = time.Now()
		_, _, err = tab.Lookup(context.Background(), "a@b")
		if err == nil || !strings.Contains(err.Error(), "retry_interval") {
			t.Errorf("%s: second lookup: %v", typ, err)
		}
		tab.Close()
	}
}

// A sqlite file that is missing is an error at lookup, not at Open
// (Postfix fails at open; mailtee must start anyway), and Probe says so.
func TestSqliteMissing(t *testing.T) {
	tab, diags, err := openText(t, "sqlite", "dbpath = /nonexistent/mail.sqlite\nquery = SELECT v FROM t WHERE k='%s'\n")
	if err != nil {
		t.Fatal(err, diags)
	}
	if _, ok, err := tab.Lookup(context.Background(), "a@b"); ok || err == nil {
		t.Errorf("lookup: ok %v err %v", ok, err)
	}
	if err := tab.Probe(context.Background()); err == nil {
		t.Errorf("probe of a missing file succeeded")
	}
}

// Unquoted %s in a sqlite query is warned about, as dict_sqlite.c does.
func TestSqliteUnquotedWarning(t *testing.T) {
	_, diags, err := openText(t, "sqlite", "dbpath = /x\nquery = SELECT v FROM t WHERE k=%s\n")
	if err != nil || !strings.Contains(diags, "line 2: query >SELECT v FROM t WHERE k=%s< contains >%s< without the recommended '' quotes") {
		t.Errorf("err %v diags %s", err, diags)
	}
}

// A password never shows in check's findings or the log: not in a line
// that does not parse, not as an earlier entry overridden, not in a
// postgresql:// host's query string.
func TestPasswordNotShown(t *testing.T) {
	_, diags, _ := openText(t, "pgsql", "hosts = db\ndbname = mail\nuser = u\npassword = s3cret-one\npassword = s3cret-two\npassword s3cret-three\nquery = SELECT 1\n")
	for _, secret := range []string{"s3cret-one", "s3cret-two", "s3cret-three"} {
		if strings.Contains(diags, secret) {
			t.Errorf("%s shown:\n%s", secret, diags)
		}
	}
	if !strings.Contains(diags, "line 5: overriding earlier entry on line 4: password=") || !strings.Contains(diags, "line 6: missing '=' after attribute name") {
		t.Errorf("findings:\n%s", diags)
	}
}
