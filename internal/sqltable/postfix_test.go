package sqltable_test

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/maps"
	"github.com/mailtee/mailtee/internal/testdb"

	_ "modernc.org/sqlite"
)

// The tables are shaped as PostfixAdmin's (domain, mailbox, alias, each
// with an "active" column) and iRedMail's (local_part and domain
// columns, a forwardings table with several rows per address), with
// keys that need escaping stored as they are.
var schema = []string{
	"CREATE TABLE domain (domain VARCHAR(255) PRIMARY KEY, description VARCHAR(255), active BOOL NOT NULL)",
	"CREATE TABLE mailbox (username VARCHAR(255) PRIMARY KEY, password VARCHAR(255), maildir VARCHAR(255), local_part VARCHAR(255), domain VARCHAR(255), active BOOL NOT NULL)",
	"CREATE TABLE alias (address VARCHAR(255) PRIMARY KEY, goto TEXT, domain VARCHAR(255), active BOOL NOT NULL)",
	"CREATE TABLE forwardings (address VARCHAR(255), forwarding VARCHAR(255), domain VARCHAR(255), active BOOL NOT NULL)",
}

// rows are INSERTs in a syntax every one of the three accepts; %B is a
// true, %F a false and \\ a backslash as the dialect writes them.
var rows = []string{
	"INSERT INTO domain VALUES ('example.com', 'main', %B), ('inactive.org', 'gone', %F), ('catchall.net', 'catch', %B)",
	"INSERT INTO mailbox VALUES " +
		"('alice@example.com', 'x', 'example.com/alice/', 'alice', 'example.com', %B)," +
		"('bob@example.com', 'x', 'example.com/bob/', 'bob', 'example.com', %B)," +
		"('a''b@example.com', 'x', 'example.com/ab/', 'a''b', 'example.com', %B)," +
		"('back\\slash@example.com', 'x', 'example.com/backslash/', 'back\\slash', 'example.com', %B)," +
		"('pct%x@example.com', 'x', 'example.com/pct/', 'pct%x', 'example.com', %B)," +
		"('josé@example.com', 'x', 'example.com/jose/', 'josé', 'example.com', %B)," +
		"('Mixed@example.com', 'x', 'example.com/mixed/', 'Mixed', 'example.com', %B)," +
		"('carol@inactive.org', 'x', 'inactive.org/carol/', 'carol', 'inactive.org', %F)",
	"INSERT INTO alias VALUES " +
		"('alice@example.com', 'alice@example.com', 'example.com', %B)," +
		"('info@example.com', 'alice@example.com,bob@example.com', 'example.com', %B)," +
		"('@catchall.net', 'postmaster@example.com', 'catchall.net', %B)," +
		"('outside@other.org', 'someone@example.com', 'other.org', %B)," +
		"('postmaster', 'alice@example.com', '', %B)," +
		"('old@example.com', 'bob@example.com', 'example.com', %F)," +
		"('a''b@example.com', 'alice@example.com', 'example.com', %B)",
	"INSERT INTO forwardings VALUES " +
		"('list@example.com', 'a@x.org', 'example.com', %B)," +
		"('list@example.com', 'b@x.org', 'example.com', %B)," +
		"('list@example.com', 'c@x.org', 'example.com', %B)," +
		"('one@example.com', 'only@x.org', 'example.com', %B)," +
		"('nul@example.com', NULL, 'example.com', %B)," +
		"('empty@example.com', '', 'example.com', %B)," +
		"('mixnull@example.com', NULL, 'example.com', %B)," +
		"('mixnull@example.com', 'kept@x.org', 'example.com', %B)," +
		"('noat@example.com', 'plainvalue', 'example.com', %B)",
}

func dialect(kind, stmt string) string {
	t, f, bs := "TRUE", "FALSE", `\\`
	switch kind {
	case "sqlite":
		t, f, bs = "1", "0", `\`
	case "pgsql":
		bs = `\` // standard_conforming_strings
	}
	return strings.NewReplacer("%B", t, "%F", f, `\\`, bs).Replace(stmt)
}

// queries are the .cf files' bodies (after the connection lines).
var queries = map[string]string{
	// PostfixAdmin's three, for virtual_mailbox_domains,
	// virtual_mailbox_maps and virtual_alias_maps.
	"domains":   "query = SELECT domain FROM domain WHERE domain='%s' AND active = '1'",
	"mailboxes": "query = SELECT maildir FROM mailbox WHERE username='%s' AND active = '1'",
	"aliases":   "query = SELECT goto FROM alias WHERE address='%s' AND active = '1'",
	// iRedMail's split form, and several rows per key.
	"split":    "query = SELECT maildir FROM mailbox\n  WHERE local_part='%u' AND domain='%d'\n# a comment between\n  AND active = '1'",
	"forwards": "query = SELECT forwarding FROM forwardings WHERE address='%s' ORDER BY forwarding",
	"limited":  "query = SELECT forwarding FROM forwardings WHERE address='%s' ORDER BY forwarding\nexpansion_limit = 2",
	"restricted": "query = SELECT goto FROM alias WHERE address='%s' AND active = '1'\n" +
		"domain = example.com, CatchAll.net",
	"format": "query = SELECT forwarding FROM forwardings WHERE address='%s' ORDER BY forwarding\n" +
		"result_format = <%s> %u %d %U %D %S %%",
	"parts":   "query = SELECT domain FROM domain WHERE domain='%2.%1'",
	"domainq": "query = SELECT domain FROM domain WHERE domain='%d'",
	"userq":   "query = SELECT local_part FROM mailbox WHERE local_part='%u' AND domain='example.com'",
	"legacy": "table = alias\nselect_field = goto\nwhere_field = address\n" +
		"additional_conditions = AND active = '1'",
	"columns": "query = SELECT local_part, domain FROM mailbox WHERE username='%s'",
	"percent": "query = SELECT goto FROM alias WHERE address='%s' AND goto NOT LIKE '%%nomatch%%'",
	"badsql":  "query = SELECT goto FROM no_such_table WHERE address='%s'",
	"static":  "query = SELECT 'constant'\nresult_format = %s for %S",
	// A boolean as each database writes it: PostgreSQL's "t", 1 elsewhere.
	"bools": "query = SELECT active FROM domain WHERE domain='%d'",
}

var keys = []string{
	"alice@example.com", "ALICE@Example.COM", "bob@example.com", "nobody@example.com",
	"a'b@example.com", `back\slash@example.com`, "pct%x@example.com", "pct_x@example.com",
	"JOSÉ@example.com", "josé@example.com", "mixed@example.com", "Mixed@example.com",
	"carol@inactive.org", "info@example.com", "old@example.com", "@catchall.net", "x@catchall.net",
	"outside@other.org", "postmaster", "list@example.com", "one@example.com",
	"nul@example.com", "empty@example.com", "mixnull@example.com", "noat@example.com",
	"example.com", "inactive.org", "x@sub.example.com", "x@com", "@example.com", "x@",
	"'; DROP TABLE alias; --@example.com", `"quoted"@example.com`, `x\'@example.com`,
	"alice@example.com'", "x@example..com",
}

// fewKeys are the keys for the files whose lookups fail: Postfix's
// postmap sleeps a second before it exits on a fatal error.
var fewKeys = map[string][]string{
	"badsql":  {"alice@example.com", "postmaster"},
	"limited": {"list@example.com", "one@example.com", "mixnull@example.com", "nobody@example.com"},
}

// outcome is what a lookup answered: a value, not found, or an error.
type outcome struct {
	found bool
	value string
	err   bool
}

func (o outcome) String() string {
	switch {
	case o.err:
		return "error"
	case o.found:
		return fmt.Sprintf("%q", o.value)
	}
	return "not found"
}

// postfixPostmap runs Debian's postmap -q, Postfix's own reading of the
// same .cf file and database.
func postfixPostmap(t *testing.T, env []string, key, spec string) outcome {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "postmap", "-q", key, spec)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	switch {
	case err == nil:
		return outcome{found: true, value: strings.TrimSuffix(out.String(), "\n")}
	case strings.Contains(errb.String(), "fatal:"):
		return outcome{err: true}
	case cmd.ProcessState != nil && cmd.ProcessState.ExitCode() == 1:
		return outcome{}
	}
	t.Fatalf("postmap -q %q %s: %v\n%s", key, spec, err, errb.String())
	return outcome{}
}

// postfixBatch runs postmap -q - once for all keys (one connection,
// as a Postfix daemon would reuse it). When a lookup fails, postmap
// stops there, so each key is then asked alone.
func postfixBatch(t *testing.T, env, keys []string, spec string) map[string]outcome {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "postmap", "-q", "-", spec)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = strings.NewReader(strings.Join(keys, "\n") + "\n")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	res := map[string]outcome{}
	if strings.Contains(errb.String(), "fatal:") {
		for _, k := range keys {
			res[k] = postfixPostmap(t, env, k, spec)
		}
		return res
	}
	if err != nil && (cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != 1) {
		t.Fatalf("postmap -q - %s: %v\n%s", spec, err, errb.String())
	}
	for _, line := range strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n") {
		if k, v, ok := strings.Cut(line, "\t"); ok {
			res[k] = outcome{found: true, value: v}
		}
	}
	return res
}

func mailteeLookup(t *testing.T, tab maps.Table, key string) outcome {
	t.Helper()
	v, ok, err := tab.Lookup(context.Background(), key)
	return outcome{found: ok, value: v, err: err != nil}
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// latin1Pgsql reports whether the installed Postfix is older than 3.8,
// whose pgsql client encoding is fixed to LATIN1.
func latin1Pgsql() bool {
	out, err := exec.Command("postconf", "-dh", "mail_version").Output()
	if err != nil {
		return false
	}
	var major, minor int
	fmt.Sscanf(string(out), "%d.%d", &major, &minor)
	return major < 3 || major == 3 && minor < 8
}

// needPostfix skips when Debian's postmap or its type is missing.
func needPostfix(t *testing.T, typ string) {
	t.Helper()
	if _, err := exec.LookPath("postmap"); err != nil {
		t.Skip("postmap is not installed (Debian's postfix package; ./test.sh installs it)")
	}
	out, _ := exec.Command("postconf", "-m").Output()
	if !strings.Contains("\n"+string(out), "\n"+typ+"\n") {
		t.Skipf("Postfix has no %s tables here (Debian's postfix-%s package; ./test.sh installs it)", typ, typ)
	}
	if _, err := os.Stat("/etc/postfix/main.cf"); err != nil {
		t.Skip("postmap needs /etc/postfix/main.cf (./test.sh copies main.cf.debian there)")
	}
}

// writeCFs writes one .cf file per query, each starting with conn.
func writeCFs(t *testing.T, dir, conn string) {
	t.Helper()
	for name, q := range queries {
		if err := os.WriteFile(filepath.Join(dir, name+".cf"), []byte("# "+name+"\n"+conn+q+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cool(t, dir)
}

// cool dates the .cf files a minute back: Postfix's
// dict_load_file_xt() waits 300 ms and reads a file again while it is
// less than a second old, which would make each postmap run slow.
func cool(t *testing.T, dir string) {
	files, _ := filepath.Glob(filepath.Join(dir, "*.cf"))
	old := time.Now().Add(-time.Minute)
	for _, f := range files {
		if err := os.Chtimes(f, old, old); err != nil {
			t.Fatal(err)
		}
	}
}

func fill(t *testing.T, db *sql.DB, kind string) {
	t.Helper()
	for _, s := range append(append([]string{}, schema...), rows...) {
		if _, err := db.Exec(dialect(kind, s)); err != nil {
			t.Fatalf("%s: %s: %v", kind, dialect(kind, s), err)
		}
	}
}

// compare looks every key up in every .cf file of dir (and the extra
// ones) with Postfix's postmap and with mailtee, and fails on any
// difference.
func compare(t *testing.T, typ, dir string, env []string, extra ...string) {
	var names []string
	for name := range queries {
		names = append(names, name)
	}
	names = append(names, extra...)
	cool(t, dir)
	agree, hits, errs := 0, 0, 0
	for _, name := range names {
		spec := typ + ":" + filepath.Join(dir, name+".cf")
		var ks []string
		for _, key := range keys {
			if typ == "pgsql" && !isASCII(key) && latin1Pgsql() {
				// Postfix before 3.8 talks to PostgreSQL in LATIN1
				// (its "encoding" parameter came with 3.8), so a
				// UTF-8 key is mangled there; mailtee is 3.8's UTF8.
				continue
			}
			ks = append(ks, key)
		}
		if few, ok := fewKeys[name]; ok {
			ks = few
		}
		tab, _, err := maps.Open(spec)
		if err != nil {
			t.Fatalf("maps.Open(%s): %v", spec, err)
		}
		defer tab.(interface{ Close() error }).Close()
		wants := postfixBatch(t, env, ks, spec)
		for _, key := range ks {
			want := wants[key]
			got := mailteeLookup(t, tab, key)
			if got != want {
				t.Errorf("%s -q %q: Postfix says %v, mailtee %v", spec, key, want, got)
				continue
			}
			agree++
			if want.found {
				hits++
			}
			if want.err {
				errs++
			}
		}
	}
	t.Logf("%s: %d lookups (%d files, up to %d keys each) agree with Postfix's postmap: %d found, %d errors, %d not found",
		typ, agree, len(names), len(keys), hits, errs, agree-hits-errs)
	if agree == 0 {
		t.Fatal("nothing compared")
	}
}

func TestSameAsPostfixPgsql(t *testing.T) {
	needPostfix(t, "pgsql")
	s := testdb.Postgres(t)
	s.CreateDB("mail")
	fill(t, s.DB("mail"), "pgsql")
	dir := t.TempDir()
	conn := fmt.Sprintf("hosts = inet:%s:%d\nuser = %s\npassword = %s\ndbname = mail\n", s.Host, s.Port, s.User, s.Password)
	writeCFs(t, dir, conn)
	// The other host forms: a URI, and the UNIX socket (its directory;
	// the port comes from PGPORT, for libpq as for mailtee).
	// Postfix 3.7 wants dbname even when every host is a URI (3.12
	// does not; mailtee follows 3.12).
	uri := fmt.Sprintf("hosts = postgresql://%s:%s@%s:%d/mail?sslmode=disable\ndbname = mail\n", s.User, s.Password, s.Host, s.Port)
	os.WriteFile(filepath.Join(dir, "uri.cf"), []byte(uri+queries["aliases"]+"\n"), 0o600)
	sock := fmt.Sprintf("hosts = unix:%s\nuser = postgres\ndbname = mail\n", s.SocketDir)
	os.WriteFile(filepath.Join(dir, "socket.cf"), []byte(sock+queries["forwards"]+"\n"), 0o600)
	// Several statements, as PQexec() takes them: the last one's rows.
	multi := conn + "query = SET search_path TO public; SELECT goto FROM alias WHERE address='%s'\n"
	os.WriteFile(filepath.Join(dir, "multi.cf"), []byte(multi), 0o600)
	env := []string{fmt.Sprintf("PGPORT=%d", s.Port)}
	t.Setenv("PGPORT", fmt.Sprint(s.Port))
	compare(t, "pgsql", dir, env, "uri", "socket", "multi")
}

func TestSameAsPostfixMysql(t *testing.T) {
	needPostfix(t, "mysql")
	s := testdb.MariaDB(t)
	s.Exec("", "CREATE DATABASE mail CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci")
	fill(t, s.DB("mail"), "mysql")
	dir := t.TempDir()
	writeCFs(t, dir, fmt.Sprintf("hosts = inet:%s:%d\nuser = %s\npassword = %s\ndbname = mail\n", s.Host, s.Port, s.User, s.Password))
	sock := fmt.Sprintf("hosts = unix:%s\nuser = root\npassword = %s\ndbname = mail\n", s.Socket, s.Password)
	os.WriteFile(filepath.Join(dir, "socket.cf"), []byte(sock+queries["forwards"]+"\n"), 0o600)
	compare(t, "mysql", dir, nil, "socket")
}

func TestSameAsPostfixSqlite(t *testing.T) {
	needPostfix(t, "sqlite")
	dir := t.TempDir()
	path := filepath.Join(dir, "mail.sqlite")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	fill(t, db, "sqlite")
	db.Close()
	writeCFs(t, dir, "dbpath = "+path+"\n")
	compare(t, "sqlite", dir, nil)
}
