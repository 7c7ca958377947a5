// Package sqltable implements Postfix's SQL lookup tables, pgsql_table(5),
// mysql_table(5) and sqlite_table(5), from the same .cf files Postfix
// reads, with the answers Postfix gives (src/global/dict_pgsql.c,
// dict_mysql.c, dict_sqlite.c, db_common.c, cfg_parser.c):
//
//   - The .cf file is "name = value" lines (cf.go). A table is named by
//     the file's path: pgsql:/etc/postfix/pgsql-aliases.cf. Postfix's
//     other form, a bare name whose parameters are NAME_user etc. in
//     main.cf, is refused with a clear error.
//   - The key is folded to lower case (as every Postfix caller and
//     postmap without -f ask), checked against "domain", and substituted
//     into "query" with db_common's %s %u %d %[1-9] %S %U %D %% expansion
//     (expand.go), escaped as each database's client library escapes it
//     (quote.go). A key without the parts the query needs (%d and no
//     domain) is not looked up: not found.
//   - Every column of every row goes through result_format; the results
//     are joined with "," (no space), NULL and empty values skipped (the
//     latter with a warning). More than expansion_limit results is an
//     error, as Postfix's DICT_ERR_RETRY: the mail is deferred.
//   - hosts are tried in random order (UNIX sockets first, as Postfix),
//     one that fails is skipped for retry_interval seconds while another
//     answers. A lookup that no host can answer is an error, never "not
//     found": callers defer the mail or answer 4xx.
//
// Opening a table never connects, so a database that is down does not
// stop mailtee from starting; the first lookup connects. Connections are
// pooled (database/sql) and closed after idle_interval.
package sqltable

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite" // database/sql driver "sqlite"

	"github.com/mailtee/mailtee/internal/diag"
)

// Timeouts bound a lookup so that a database that hangs defers the mail
// instead of holding an SMTP session: one host is given attemptTimeout
// (connecting included), the whole lookup lookupTimeout.
var (
	attemptTimeout = 5 * time.Second
	lookupTimeout  = 10 * time.Second
)

// mysqlSocket is where Debian's MariaDB and MySQL clients look for the
// server when the host is "localhost".
const mysqlSocket = "/run/mysqld/mysqld.sock"

var logger struct {
	sync.Mutex
	l *slog.Logger
}

// SetLogger sets where the tables' warnings go (a host that fails, an
// empty result, an exceeded expansion_limit). Until it is called they
// go to standard error as "warning: ..." lines.
func SetLogger(l *slog.Logger) {
	logger.Lock()
	logger.l = l
	logger.Unlock()
}

func warnf(format string, args ...any) {
	logger.Lock()
	l := logger.l
	logger.Unlock()
	msg := strings.ReplaceAll(fmt.Sprintf(format, args...), "\n", " ")
	if l == nil {
		// Unwired (postmap, tests): Postfix's shape on standard error.
		fmt.Fprintf(os.Stderr, "warning: %s\n", msg)
		return
	}
	l.Warn(msg)
}

// Host kinds, in the order Postfix prefers them.
const (
	kindUnix = iota
	kindInet
	kindURI
)

// Host states (dict_pgsql.c's STATUNTRIED, STATACTIVE, STATFAIL).
const (
	untried = iota
	active
	failed
)

type host struct {
	spec string // as written in hosts
	kind int
	// net and addr: "unix" and a socket (mysql) or socket directory
	// (pgsql), or "tcp" and host:port (port may be empty for pgsql).
	net, addr string

	state    int
	retryAt  time.Time // when a failed host may be tried again
	lastUsed time.Time

	pool *pool // shared by entries with the same spec
}

// maxOpenConns bounds a host's connections, as Postfix's proxymap(8)
// processes do (one each, up to its process limit).
const maxOpenConns = 20

// pool is one database/sql pool.
type pool struct {
	once sync.Once
	db   *sql.DB
	err  error
}

// Table is one SQL table. Its methods are safe for concurrent use.
type Table struct {
	typ, file string
	tmpl      templates
	domain    domainList
	limit     int // expansion_limit, 0 for none
	retry     time.Duration
	idle      time.Duration
	requireRS bool // mysql require_result_set

	user, password, dbname string
	encoding               string // pgsql encoding, mysql charset
	dbpath                 string // sqlite

	mu    sync.Mutex
	hosts []*host
}

// Open reads the .cf file name of a table of type typ ("pgsql", "mysql"
// or "sqlite") through read, and returns the table and the findings
// about the file (file and line). It does not connect. Errors in the
// file (no query, no dbpath, a bad number) make Open fail, as they make
// Postfix's lookups fail.
func Open(typ, name string, read func(string) ([]byte, error)) (*Table, diag.List, error) {
	if _, ok := known[typ]; !ok {
		return nil, nil, fmt.Errorf("sqltable: unknown type %q", typ)
	}
	if !strings.HasPrefix(name, "/") && !strings.HasPrefix(name, ".") {
		return nil, nil, fmt.Errorf("%q: name the .cf file by its path (%s:/etc/postfix/%s.cf); parameters in main.cf (%s_user, %s_query, ...) are not supported by mailtee",
			name, typ, name, name, name)
	}
	data, err := read(name)
	if err != nil {
		return nil, nil, err
	}
	var diags diag.List
	cf := parseCF(name, data, &diags)
	cf.checkNames(typ, &diags)
	t := &Table{typ: typ, file: name}

	t.tmpl.result = cf.str("result_format", "%s", 1, &diags)
	t.limit = cf.num("expansion_limit", 0, 0, &diags)
	if t.limit < 0 {
		t.limit = 0 // Postfix: only a limit > 0 limits
	}
	queryLine := cf.params["query"].line
	switch {
	case cf.has("query"):
		t.tmpl.query = cf.params["query"].value
	case typ == "pgsql" && cf.has("select_function"):
		t.tmpl.query = fmt.Sprintf("SELECT %s('%%s')", cf.params["select_function"].value)
		queryLine = cf.params["select_function"].line
	case cf.has("table") || cf.has("select_field") || cf.has("where_field"):
		// db_common_sql_build_query(): the form before "query" existed.
		var missing []string
		for _, p := range []string{"table", "select_field", "where_field"} {
			if !cf.has(p) {
				missing = append(missing, p)
			}
		}
		if missing != nil {
			diags.Errorf(name, 0, "no query, and the legacy form lacks %s: write query = SELECT ... WHERE ...='%%s'", strings.Join(missing, ", "))
			break
		}
		t.tmpl.query = fmt.Sprintf("SELECT %s FROM %s WHERE %s='%%s' %s", cf.params["select_field"].value,
			cf.params["table"].value, cf.params["where_field"].value, cf.params["additional_conditions"].value)
		queryLine = cf.params["table"].line
	default:
		diags.Errorf(name, 0, "no query: add a line such as query = SELECT destination FROM alias WHERE address='%%s'")
	}
	if t.tmpl.query != "" {
		if err := t.tmpl.parse(t.tmpl.query, true); err != nil {
			diags.Errorf(name, queryLine, "query: %v", err)
		}
	}
	if err := t.tmpl.parse(t.tmpl.result, false); err != nil {
		diags.Errorf(name, cf.params["result_format"].line, "result_format: %v", err)
	}
	if d := cf.params["domain"]; d.value != "" {
		if t.domain, err = parseDomains(d.value, read, 0); err != nil {
			diags.Errorf(name, d.line, "domain: %v", err)
		}
	}

	if typ == "sqlite" {
		t.dbpath = cf.str("dbpath", "", 1, &diags)
		if !cf.has("dbpath") {
			diags.Errorf(name, 0, "no dbpath: add dbpath = /path/to/file.sqlite")
		}
		t.hosts = []*host{{spec: t.dbpath, pool: &pool{}}}
	} else {
		t.openNet(cf, &diags)
	}
	if typ == "sqlite" {
		warnUnquoted(t.tmpl.query, name, queryLine, &diags)
	}
	checkMode(name, t.password != "" || hostsHavePassword(t.hosts), &diags)
	if err := diags.Err(); err != nil {
		return nil, diags, err
	}
	return t, diags, nil
}

// backslashInMultibyte are MySQL's character sets whose multibyte
// characters may have 0x5C (a backslash) as a byte after the first
// (MySQL's escape_with_backslash_is_dangerous).
var backslashInMultibyte = map[string]bool{"big5": true, "cp932": true, "gbk": true, "gb18030": true, "sjis": true}

// openNet reads the parameters of the pgsql and mysql types.
func (t *Table) openNet(cf *cfFile, diags *diag.List) {
	t.user = cf.str("user", "", 0, diags)
	t.password = cf.str("password", "", 0, diags)
	t.retry = time.Duration(cf.num("retry_interval", 60, 1, diags)) * time.Second
	t.idle = time.Duration(cf.num("idle_interval", 60, 1, diags)) * time.Second
	if t.typ == "pgsql" {
		t.dbname = cf.str("dbname", "", 0, diags)
		t.encoding = cf.str("encoding", "UTF8", 1, diags)
		if e := strings.ToUpper(strings.ReplaceAll(t.encoding, "-", "")); e != "UTF8" && e != "UNICODE" {
			diags.Errorf(t.file, cf.params["encoding"].line, "encoding %s: mailtee talks to PostgreSQL in UTF8 only; remove the line", t.encoding)
		}
	} else {
		t.dbname = cf.str("dbname", "", 1, diags)
		t.encoding = cf.str("charset", "utf8mb4", 1, diags)
		if backslashInMultibyte[strings.ToLower(t.encoding)] {
			// mysql_real_escape_string() knows the connection's
			// character set; quoteMysql does not: in these sets a
			// multibyte character may end in 0x5C, and a key such as
			// "中'" (UTF-8 E4 B8 AD 27) escaped byte by byte reads as
			// "中" and a quote that ends the string (SQL injection).
			diags.Errorf(t.file, cf.params["charset"].line, "charset %s: mailtee escapes keys for character sets where a backslash is never part of a character; use utf8mb4 (the default)", t.encoding)
		}
		t.requireRS = cf.boolean("require_result_set", true, diags)
		cf.boolean("tls_verify_cert", false, diags)
		for _, p := range []string{"tls_cert_file", "tls_key_file", "tls_CAfile", "tls_CApath", "tls_ciphers", "tls_verify_cert"} {
			if cf.has(p) {
				// Going on in plain text where TLS was asked for would
				// send the password in the clear.
				diags.Errorf(t.file, cf.params[p].line, "%s: TLS to MySQL is not supported by mailtee yet; use a UNIX socket or a loopback address", p)
			}
		}
		if cf.has("option_file") || cf.params["option_group"].value != "" && cf.params["option_group"].value != "client" {
			p := "option_file"
			if !cf.has(p) {
				p = "option_group"
			}
			diags.Warnf(t.file, cf.params[p].line, "%s is not read by mailtee: put hosts, user and password in this file", p)
		}
	}
	specs := strings.FieldsFunc(cf.params["hosts"].value, func(r rune) bool { return strings.ContainsRune(", \t\r\n", r) })
	if len(specs) == 0 {
		specs = []string{"localhost"}
	}
	// Postfix lists a lone host twice ("Don't blacklist the load
	// balancer!"): after one failure the lookup tries it once more.
	if len(specs) == 1 {
		specs = append(specs, specs[0])
	}
	pools := map[string]*pool{}
	line := cf.params["hosts"].line
	nonURI := ""
	for _, s := range specs {
		h, err := parseHost(t.typ, s)
		if err != nil {
			diags.Errorf(t.file, line, "hosts: %v", err)
			continue
		}
		if pools[s] == nil {
			pools[s] = &pool{}
		}
		h.pool = pools[s]
		if h.kind != kindURI {
			nonURI = s
		}
		t.hosts = append(t.hosts, h)
	}
	if t.typ == "pgsql" && nonURI != "" && t.dbname == "" {
		diags.Errorf(t.file, line, "host %s requires dbname: add dbname = NAME (or give hosts as postgresql:// URIs)", nonURI)
	}
}

// parseHost reads one element of hosts, as host_init() in dict_pgsql.c
// and dict_mysql.c.
func parseHost(typ, s string) (*host, error) {
	h := &host{spec: s}
	if typ == "pgsql" {
		if isURI(s) {
			h.kind = kindURI
			if _, err := pgx.ParseConfig(s); err != nil {
				return nil, fmt.Errorf("%s: %v", diag.RedactURL(s), err)
			}
			return h, nil
		}
		d := strings.TrimPrefix(strings.TrimPrefix(s, "unix:"), "inet:")
		if d != "" && d[0] != '/' {
			h.kind, h.net, h.addr = kindInet, "tcp", d
			return h, nil
		}
		h.kind, h.net, h.addr = kindUnix, "unix", d
		return h, nil
	}
	d := s
	h.kind, h.net = kindInet, "tcp"
	if rest, ok := strings.CutPrefix(d, "unix:"); ok {
		d = rest
		h.kind, h.net = kindUnix, "unix"
	} else {
		d = strings.TrimPrefix(d, "inet:")
	}
	name, port := d, ""
	if i := strings.LastIndexByte(d, ':'); i >= 0 {
		name, port = d[:i], d[i+1:]
		if _, err := net.LookupPort("tcp", port); err != nil {
			return nil, fmt.Errorf("%s: unknown service %s/tcp", s, port)
		}
	}
	if strings.EqualFold(name, "localhost") {
		h.kind, h.net, h.addr = kindUnix, "unix", mysqlSocket
		return h, nil
	}
	if h.net == "unix" {
		h.addr = name
		return h, nil
	}
	if port == "" {
		port = "3306"
	}
	h.addr = net.JoinHostPort(name, port)
	return h, nil
}

// isURI is valid_uri_scheme(): ALPHA *( ALPHA / DIGIT / "+" / "-" ) "://".
func isURI(s string) bool {
	i := strings.Index(s, "://")
	if i <= 0 {
		return false
	}
	for j, c := range s[:i] {
		alpha := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		if j == 0 && !alpha || !alpha && !(c >= '0' && c <= '9') && c != '+' && c != '-' {
			return false
		}
	}
	return true
}

func hostsHavePassword(hosts []*host) bool {
	for _, h := range hosts {
		if h.kind != kindURI {
			continue
		}
		if u, err := url.Parse(h.spec); err == nil && u.User != nil {
			if _, ok := u.User.Password(); ok {
				return true
			}
		}
		if strings.Contains(h.spec, "password=") {
			return true
		}
	}
	return false
}

// checkMode warns when a .cf file that holds a password can be read by
// any user: Postfix reads it all the same (its daemons open the file as
// root before dropping privileges), but its manuals say to protect it,
// and mailtee's main.cf is world-readable so the password must be here.
func checkMode(file string, password bool, diags *diag.List) {
	if !password {
		return
	}
	st, err := os.Stat(file)
	if err != nil || st.Mode().Perm()&0o004 == 0 {
		return
	}
	diags.Warnf(file, 0, "the file holds a database password and is readable by every user (mode %04o): chmod o-rwx %s (and chgrp it to the group mailtee runs as)", st.Mode().Perm(), file)
}

// warnUnquoted is flag_non_recommended_query() of dict_sqlite.c:
// %s and the like outside '...' let the key be read as SQL.
func warnUnquoted(query, file string, line int, diags *diag.List) {
	var inQuote byte
	for i := 0; i < len(query); i++ {
		c := query[i]
		if inQuote == 0 {
			if c == '\'' || c == '"' {
				inQuote = c
			}
		} else if c == inQuote {
			inQuote = 0
		}
		if inQuote == '\'' {
			continue
		}
		if c == '%' && i+1 < len(query) {
			if query[i+1] == '%' {
				i++
			} else if isAlnum(query[i+1]) {
				diags.Warnf(file, line, "query >%s< contains >%s< without the recommended '' quotes", query, query[i:i+2])
				i++
			}
		}
	}
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// FixedKeys marks the table as one of literal keys: Postfix's address
// lookups ask it for user@domain, user and @domain (db_common.c's
// db_common_dict_partial() says so for every query).
func (t *Table) FixedKeys() {}

// String is the table as main.cf names it.
func (t *Table) String() string { return t.typ + ":" + t.file }

// ErrTemporary is wrapped by every error Lookup returns: the table could
// not answer now, and the mail must wait.
var ErrTemporary = errors.New("temporary lookup failure")

// lookupError is a failed lookup; Temporary lets callers that test for
// it (the SRS check in smtpd) defer.
type lookupError struct{ err error }

func (e *lookupError) Error() string   { return e.err.Error() }
func (e *lookupError) Unwrap() []error { return []error{e.err, ErrTemporary} }
func (e *lookupError) Temporary() bool { return true }

func (t *Table) fail(format string, args ...any) error {
	return &lookupError{fmt.Errorf("%s:%s: "+format, append([]any{t.typ, t.file}, args...)...)}
}

// Lookup looks key up as Postfix's dict_*_lookup() does. A key that
// cannot be in the table (outside domain, lacking the parts the query
// needs, not UTF-8) is not found without asking the database.
func (t *Table) Lookup(ctx context.Context, key string) (string, bool, error) {
	// The dict_utf8 layer: keys that are not UTF-8 are not found.
	if !utf8.ValidString(key) || strings.IndexByte(key, 0) >= 0 {
		return "", false, nil
	}
	key = strings.ToLower(key) // DICT_FLAG_FOLD_FIX
	if t.domain != nil {
		at := strings.LastIndexByte(key, '@')
		if at <= 0 || !t.domain.match(key[at+1:]) {
			return "", false, nil
		}
	}
	var probe strings.Builder
	if !t.tmpl.expand(&probe, t.tmpl.query, key, "", false, nil, nil) {
		return "", false, nil
	}
	ctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	values, err := t.query(ctx, key)
	if err != nil {
		return "", false, err
	}
	var out strings.Builder
	n := 0
	for _, v := range values {
		if v == nil {
			continue // NULL: skipped silently
		}
		if t.tmpl.expand(&out, t.tmpl.result, *v, key, true, nil, func(msg string) {
			warnf("table \"%s:%s\": %s", t.typ, t.file, msg)
		}) {
			n++
			if t.limit > 0 && n > t.limit {
				warnf("%s:%s: expansion limit exceeded for key: '%s'", t.typ, t.file, key)
				return "", false, t.fail("expansion limit (%d) exceeded for key '%s': more rows than the table's expansion_limit allows", t.limit, key)
			}
		}
	}
	if out.Len() == 0 {
		return "", false, nil
	}
	return out.String(), true, nil
}

// query runs the query for key on a host that answers and returns the
// values of every column of every row, in order (nil for NULL).
func (t *Table) query(ctx context.Context, key string) ([]*string, error) {
	var errs []error
	tried := map[*host]bool{}
	for {
		h := t.pick(tried)
		if h == nil {
			break
		}
		tried[h] = true
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		values, err := t.queryHost(actx, h, key)
		cancel()
		t.mu.Lock()
		if err == nil {
			h.state, h.lastUsed = active, time.Now()
			t.mu.Unlock()
			return values, nil
		}
		if ctx.Err() != nil {
			// The caller gave up (or the whole lookup took too long):
			// not the host's fault.
			h.state = untried
			t.mu.Unlock()
			return nil, t.fail("%s: %w", t.hostName(h), err)
		}
		h.state, h.retryAt = failed, time.Now().Add(t.retry)
		t.mu.Unlock()
		warnf("%s:%s: %s: %s", t.typ, t.file, t.hostName(h), diag.OneLine(err.Error()))
		errs = append(errs, fmt.Errorf("%s: %w", t.hostName(h), err))
	}
	if len(errs) == 0 {
		return nil, t.fail("no database server to ask: every host failed within the last retry_interval (%v)", t.retry)
	}
	// One line (it may end up in an SMTP reply's log), each distinct
	// failure once: a lone host is listed twice.
	var msgs []string
	for _, e := range errs {
		if m := diag.OneLine(e.Error()); !slices.Contains(msgs, m) {
			msgs = append(msgs, m)
		}
	}
	return nil, t.fail("%s", strings.Join(msgs, "; "))
}

func (t *Table) hostName(h *host) string {
	if t.typ == "sqlite" {
		return h.spec
	}
	return "host " + diag.RedactURL(h.spec)
}

// pick is dict_*_get_active(): a host that has a connection now, UNIX
// sockets first, at random among equals; else one not tried yet or
// whose retry_interval has passed.
func (t *Table) pick(tried map[*host]bool) *host {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := time.Now()
	for _, h := range t.hosts {
		if h.state == active && t.idle > 0 && now.Sub(h.lastUsed) > t.idle {
			h.state = untried // dict_*_event(): closed when idle
		}
	}
	choose := func(ok func(*host) bool) *host {
		for kind := kindUnix; kind <= kindURI; kind++ {
			var c []*host
			for _, h := range t.hosts {
				if h.kind == kind && !tried[h] && ok(h) {
					c = append(c, h)
				}
			}
			if len(c) > 0 {
				return c[rand.IntN(len(c))]
			}
		}
		return nil
	}
	if h := choose(func(h *host) bool { return h.state == active }); h != nil {
		return h
	}
	// Concurrent lookups may try the same host at once (Postfix's
	// processes each do too): keeping the others out until the first
	// attempt ends would fail them while the host may well answer.
	return choose(func(h *host) bool { return h.state == untried || h.state == failed && !now.Before(h.retryAt) })
}

// queryHost runs the query on one host.
func (t *Table) queryHost(ctx context.Context, h *host, key string) ([]*string, error) {
	db, err := t.open(h)
	if err != nil {
		return nil, err
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if t.typ == "pgsql" {
		return t.queryPgsql(ctx, conn, key)
	}
	var quote func(string) string
	switch t.typ {
	case "mysql":
		// A key without a backslash (or the other characters only a
		// backslash escapes) is escaped the same under both modes;
		// for one with, this very session's mode decides, as
		// mysql_real_escape_string asks the connection: a mode learnt
		// earlier, or on another connection, may have changed since
		// (SET GLOBAL sql_mode, a proxy in front of several servers),
		// and the wrong one lets a key end the string.
		noBackslash := false
		if strings.ContainsAny(key, mysqlEscaped) {
			if noBackslash, err = noBackslashEscapes(ctx, conn); err != nil {
				return nil, err
			}
		}
		quote = func(s string) string { return quoteMysql(s, noBackslash) }
	default:
		quote = quoteSqlite
	}
	var q strings.Builder
	t.tmpl.expand(&q, t.tmpl.query, key, "", false, quote, nil)
	rows, err := conn.QueryContext(ctx, q.String())
	if err != nil {
		return nil, fmt.Errorf("query failed: %w", err)
	}
	defer rows.Close()
	var values []*string
	sets := 0
	for {
		cols, err := rows.Columns()
		if err != nil {
			return nil, fmt.Errorf("query failed: %w", err)
		}
		if len(cols) > 0 {
			sets++
			if sets > 1 {
				return nil, errors.New("query failed: multiple result sets returning data are not supported")
			}
		}
		ncol := len(cols)
		if t.typ == "sqlite" && ncol > 1 {
			ncol = 1 // dict_sqlite.c reads the first column only
		}
		for rows.Next() {
			row := make([]sql.NullString, len(cols))
			ptrs := make([]any, len(cols))
			for i := range row {
				ptrs[i] = &row[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				return nil, fmt.Errorf("query failed: %w", err)
			}
			for _, v := range row[:ncol] {
				if v.Valid {
					s := v.String
					values = append(values, &s)
				} else {
					values = append(values, nil)
				}
			}
		}
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("query failed: %w", err)
		}
		if !rows.NextResultSet() {
			break
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("query failed: %w", err)
	}
	if sets == 0 && t.typ == "mysql" && t.requireRS {
		return nil, errors.New("query failed: query returned no result set (require_result_set = yes)")
	}
	return values, nil
}

// queryPgsql runs the query as PQexec() does: the simple query
// protocol (several statements allowed; the last one's rows count), and
// every value as the server's text ("t" for a boolean true, timestamps
// as PostgreSQL writes them), NULL as nil.
func (t *Table) queryPgsql(ctx context.Context, conn *sql.Conn, key string) ([]*string, error) {
	var values []*string
	err := conn.Raw(func(dc any) error {
		c, ok := dc.(*stdlib.Conn)
		if !ok {
			return fmt.Errorf("unexpected driver connection %T", dc)
		}
		pc := c.Conn().PgConn()
		// As PQescapeStringConn(): the connection says whether a
		// backslash escapes inside '...'.
		standard := pc.ParameterStatus("standard_conforming_strings") != "off"
		var q strings.Builder
		t.tmpl.expand(&q, t.tmpl.query, key, "", false, func(s string) string { return quotePgsql(s, standard) }, nil)
		results, err := pc.Exec(ctx, q.String()).ReadAll()
		if err != nil {
			return fmt.Errorf("query failed: %w", err)
		}
		if len(results) == 0 {
			return nil
		}
		for _, row := range results[len(results)-1].Rows {
			for _, v := range row {
				if v == nil {
					values = append(values, nil)
					continue
				}
				s := string(v)
				values = append(values, &s)
			}
		}
		return nil
	})
	return values, err
}

// noBackslashEscapes says whether the session's sql_mode has
// NO_BACKSLASH_ESCAPES: a backslash inside '...' is then a character.
func noBackslashEscapes(ctx context.Context, conn *sql.Conn) (bool, error) {
	var mode string
	if err := conn.QueryRowContext(ctx, "SELECT @@SESSION.sql_mode").Scan(&mode); err != nil {
		return false, fmt.Errorf("reading sql_mode: %w", err)
	}
	return strings.Contains(strings.ToUpper(mode), "NO_BACKSLASH_ESCAPES"), nil
}

// open returns the host's pool, made at the first use.
func (t *Table) open(h *host) (*sql.DB, error) {
	p := h.pool
	p.once.Do(func() {
		switch t.typ {
		case "pgsql":
			p.db, p.err = t.openPgsql(h)
		case "mysql":
			p.db, p.err = t.openMysql(h)
		default:
			u := url.URL{Scheme: "file", Path: t.dbpath, RawQuery: "mode=ro"}
			if !strings.HasPrefix(t.dbpath, "/") {
				u = url.URL{Scheme: "file", Opaque: t.dbpath, RawQuery: "mode=ro"}
			}
			p.db, p.err = sql.Open("sqlite", u.String())
		}
		if p.db != nil {
			p.db.SetConnMaxIdleTime(t.idle)
			p.db.SetMaxIdleConns(4)
			// A slow database must not get a connection per SMTP
			// session (its max_connections, then every lookup, would
			// fail): lookups beyond these wait, within their deadline.
			p.db.SetMaxOpenConns(maxOpenConns)
		}
	})
	return p.db, p.err
}

func (t *Table) openPgsql(h *host) (*sql.DB, error) {
	var dsn string
	if h.kind == kindURI {
		// PQconnectdb(uri): user, password and dbname of the file do
		// not apply.
		dsn = h.spec
	} else {
		kv := func(k, v string) string {
			return k + "='" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "' "
		}
		host, port := h.addr, ""
		if h.kind == kindInet {
			if i := strings.LastIndexByte(h.addr, ':'); i >= 0 {
				host, port = h.addr[:i], h.addr[i+1:]
			}
		}
		if host != "" {
			dsn += kv("host", host)
		}
		if port != "" {
			dsn += kv("port", port)
		}
		for _, f := range [][2]string{{"user", t.user}, {"password", t.password}, {"dbname", t.dbname}} {
			if f[1] != "" {
				dsn += kv(f[0], f[1])
			}
		}
	}
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	// PQexec() semantics: the query text as written, one round trip.
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	if cfg.ConnectTimeout == 0 || cfg.ConnectTimeout > attemptTimeout {
		cfg.ConnectTimeout = attemptTimeout
	}
	return stdlib.OpenDB(*cfg), nil
}

func (t *Table) openMysql(h *host) (*sql.DB, error) {
	cfg := mysql.NewConfig()
	cfg.Net, cfg.Addr = h.net, h.addr
	cfg.User, cfg.Passwd, cfg.DBName = t.user, t.password, t.dbname
	cfg.Timeout = attemptTimeout
	cfg.ReadTimeout, cfg.WriteTimeout = attemptTimeout, attemptTimeout
	// The driver's own log lines ("closing bad idle connection") are
	// not in the mail log's shape; the errors reach warnf anyway.
	cfg.Logger = log.New(io.Discard, "", 0)
	if err := cfg.Apply(mysql.Charset(t.encoding, "")); err != nil {
		return nil, err
	}
	c, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, err
	}
	return sql.OpenDB(c), nil
}

// Probe connects to every host (the database file, for sqlite) and runs
// nothing that reads or changes the tables, for check: an error says
// which hosts cannot be reached, and why. It does not change which
// hosts lookups try.
func (t *Table) Probe(ctx context.Context) error {
	var errs []error
	seen := map[*pool]bool{}
	for _, h := range t.hosts {
		if seen[h.pool] {
			continue
		}
		seen[h.pool] = true
		err := func() error {
			ctx, cancel := context.WithTimeout(ctx, attemptTimeout)
			defer cancel()
			db, err := t.open(h)
			if err != nil {
				return err
			}
			if t.typ == "sqlite" {
				var n int
				return db.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_master").Scan(&n)
			}
			return db.PingContext(ctx)
		}()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", t.hostName(h), err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s:%s: %s", t.typ, t.file, diag.OneLine(errors.Join(errs...).Error()))
	}
	return nil
}

// Close closes the table's connections.
func (t *Table) Close() error {
	seen := map[*pool]bool{}
	for _, h := range t.hosts {
		if p := h.pool; !seen[p] && p.db != nil {
			seen[p] = true
			p.db.Close()
		}
	}
	return nil
}

// Retry is retry_interval, for tests and messages.
func (t *Table) Retry() time.Duration { return t.retry }
