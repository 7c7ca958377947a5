package web

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mailtee/mailtee/internal/config"
	"github.com/mailtee/mailtee/internal/diag"
)

// checkOf parses main.cf lines (line 1 is a comment, so the first
// setting is on line 2) and returns Check's findings.
func checkOf(t *testing.T, lines ...string) (diag.List, *config.Config) {
	t.Helper()
	text := "# test\n" + strings.Join(lines, "\n") + "\n"
	c := config.Parse("/etc/mailtee", "/etc/mailtee/main.cf", []byte(text))
	return Check(c), c
}

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, mode)
		return p
	}
	real, _ := os.ReadFile("testdata/passwords.real")
	pw := write("pw", string(real), 0o640)
	pwOpen := write("pw-open", string(real), 0o644)
	pwBad := write("pw-bad", "# c\nadmin:$apr1$x$y\n", 0o600)
	tok := write("token", testToken+"\n", 0o600)
	tokOpen := write("token-open", testToken, 0o644)
	tokShort := write("token-short", "abc\n", 0o600)
	tokEmpty := write("token-empty", "\n\n", 0o600)
	cert, key, _ := selfSigned(t)
	// A service file (pg_service.conf) names the database, as a site's
	// PostgreSQL clients share it.
	t.Setenv("PGSERVICEFILE", write("pg_service.conf", "[mailtee]\nhost=db.example\nuser=mailtee\npassfile=/etc/mailtee/pgpass\n", 0o644))

	type want struct {
		sev  diag.Severity
		file string
		line int
		text string
	}
	main := "/etc/mailtee/main.cf"
	for _, tc := range []struct {
		name  string
		lines []string
		want  []want // each must be among the findings; none: no findings at all
	}{
		{"defaults", nil, nil},
		{"loopback listener", []string{"metrics_listen = 127.0.0.1:9100"}, nil},
		{"good everything", []string{"metrics_listen = 127.0.0.1:9100", "dashboard_password_file = " + pw,
			"ledger_peer_token_file = " + tok, "ledger_peers = https://relay.example:9100, http://127.0.0.1:9101",
			"metrics_tls_cert_file = " + cert, "metrics_tls_key_file = " + key, "ledger_database = /var/lib/mailtee/l.db"},
			[]want{{diag.Warning, pw, 2, "bcrypt cost 5"}}},
		{"listen no port", []string{"metrics_listen = 127.0.0.1"}, []want{{diag.Error, main, 2, "metrics_listen = 127.0.0.1: expected host:port"}}},
		{"listen named port", []string{"metrics_listen = 127.0.0.1:prometheus"}, []want{{diag.Error, main, 2, "expected a number"}}},
		{"listen off loopback", []string{"metrics_listen = 0.0.0.0:9100"}, []want{{diag.Error, main, 2, "metrics_allow_plaintext = yes"}}},
		{"listen off loopback, override", []string{"metrics_listen = 0.0.0.0:9100", "metrics_allow_plaintext = yes"}, []want{{diag.Warning, main, 3, "clear text"}}},
		{"listen off loopback, TLS", []string{"metrics_listen = [::]:9100", "metrics_tls_cert_file = " + cert, "metrics_tls_key_file = " + key}, nil},
		{"networks", []string{"metrics_networks = 127.0.0.0/8, 10.1.2.3/8"}, []want{{diag.Error, main, 2, "metrics_networks: non-null host address bits"}}},
		{"networks table", []string{"metrics_networks = cidr:/etc/mailtee/nets"}, []want{{diag.Error, main, 2, "not files or tables"}}},
		{"networks empty", []string{"metrics_listen = 127.0.0.1:9100", "metrics_networks ="}, []want{{diag.Warning, main, 3, "refuses every request"}}},
		{"password file missing", []string{"dashboard_password_file = /nonexistent/pw"}, []want{{diag.Error, main, 2, "dashboard_password_file: open /nonexistent/pw"}}},
		{"password file relative", []string{"dashboard_password_file = pw"}, []want{{diag.Error, main, 2, "absolute path"}}},
		{"password file bad line", []string{"dashboard_password_file = " + pwBad}, []want{{diag.Error, pwBad, 2, "MD5, SHA and crypt"}}},
		{"password file world-readable", []string{"dashboard_password_file = " + pwOpen}, []want{{diag.Warning, main, 2, "readable by every user"}}},
		{"token missing", []string{"ledger_peer_token_file = /nonexistent/token"}, []want{{diag.Error, main, 2, "ledger_peer_token_file: open /nonexistent/token"}}},
		{"token short", []string{"ledger_peer_token_file = " + tokShort}, []want{{diag.Error, main, 2, "fewer than 16"}}},
		{"token empty", []string{"ledger_peer_token_file = " + tokEmpty}, []want{{diag.Error, main, 2, "empty"}}},
		{"token world-readable", []string{"ledger_peer_token_file = " + tokOpen}, []want{{diag.Warning, main, 2, "readable by every user"}}},
		{"peers without token", []string{"ledger_peers = https://relay.example"}, []want{{diag.Error, main, 2, "ledger_peer_token_file is empty"}}},
		{"peers ftp", []string{"ledger_peer_token_file = " + tok, "ledger_peers = ftp://relay.example"}, []want{{diag.Error, main, 3, "expected an http:// or https://"}}},
		{"peers no host", []string{"ledger_peer_token_file = " + tok, "ledger_peers = https:///ledger"}, []want{{diag.Error, main, 3, "no host"}}},
		{"peers plain http", []string{"ledger_peer_token_file = " + tok, "ledger_peers = http://relay.example:9100"}, []want{{diag.Error, main, 3, "clear text"}}},
		{"peers plain http, override", []string{"ledger_peer_token_file = " + tok, "ledger_peers = http://relay.example:9100", "metrics_allow_plaintext = yes"}, nil},
		{"peers credentials", []string{"ledger_peer_token_file = " + tok, "ledger_peers = https://u:pw@relay.example"}, []want{{diag.Error, main, 3, "no credentials in the URL"}}},
		{"peers host:port only", []string{"ledger_peer_token_file = " + tok, "ledger_peers = relay.example:9100"}, []want{{diag.Error, main, 3, "expected an http:// or https://"}}},
		{"database postgres", []string{"ledger_database = postgres://ledger@db.example/ledger?passfile=/etc/mailtee/pgpass"}, nil},
		{"database postgres service", []string{"ledger_database = postgresql:///ledger?service=mailtee"}, nil},
		{"database postgres no service", []string{"ledger_database = postgresql:///ledger?service=nosuch"}, []want{{diag.Error, main, 2, "nosuch"}}},
		{"database postgresql password", []string{"ledger_database = postgresql://u:secret@db/l"}, []want{{diag.Error, main, 2, "postgresql://u:xxxxx@db/l holds a password"}}},
		{"database postgres password query", []string{"ledger_database = postgres://u@db/l?password=secret"}, []want{{diag.Error, main, 2, "passfile="}}},
		{"database postgres bad option", []string{"ledger_database = postgres://u@db/l?sslmode=sometimes"}, []want{{diag.Error, main, 2, "postgres://u@db/l"}}},
		{"database other URL", []string{"ledger_database = mysql://db/l"}, []want{{diag.Error, main, 2, "SQLite file"}}},
		{"database empty", []string{"ledger_database ="}, nil},
		{"cert without key", []string{"metrics_tls_cert_file = " + cert}, []want{{diag.Error, main, 2, "metrics_tls_key_file is empty"}}},
		{"key without cert", []string{"metrics_tls_key_file = " + key}, []want{{diag.Error, main, 2, "metrics_tls_cert_file is empty"}}},
		{"cert not a cert", []string{"metrics_tls_cert_file = /etc/passwd", "metrics_tls_key_file = " + key}, []want{{diag.Error, main, 2, "serve refuses to start the listener"}}},
		{"cert and key mismatch", []string{"metrics_tls_cert_file = " + key, "metrics_tls_key_file = " + cert}, []want{{diag.Error, main, 2, "metrics_tls_cert_file / metrics_tls_key_file"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, _ := checkOf(t, tc.lines...)
			if tc.want == nil && len(d) > 0 {
				t.Fatalf("findings: %v", d)
			}
			wantErr := false
			for _, w := range tc.want {
				wantErr = wantErr || w.sev == diag.Error
			}
			if !wantErr && d.HasErrors() {
				t.Errorf("errors: %v", d)
			}
			for _, w := range tc.want {
				found := false
				for _, x := range d {
					if x.Severity == w.sev && x.File == w.file && x.Line == w.line && strings.Contains(x.Msg, w.text) {
						found = true
					}
				}
				if !found {
					t.Errorf("want %s at %s:%d with %q; findings:\n%v", w.sev, w.file, w.line, w.text, d)
				}
			}
		})
	}
}

// What FromConfig gives serve is what Check passed.
func TestFromConfig(t *testing.T) {
	c := config.Parse("/etc/mailtee", "/etc/mailtee/main.cf", []byte("myhostname = mx.test.example\nmetrics_listen = localhost:9100\n"))
	o, d := FromConfig(c)
	if len(d) != 0 {
		t.Fatal(d)
	}
	if o.Listen != "localhost:9100" || o.Passwords != nil || o.PeerToken != "" || o.AllowPlaintext ||
		fmt.Sprint(o.Hosts) != "[mx.test.example localhost]" || o.Networks.String() != "127.0.0.0/8, [::1]/128" {
		t.Errorf("%+v", o)
	}
	if _, err := New(o); err != nil {
		t.Errorf("New with FromConfig's options: %v", err)
	}
	// no listener
	o, d = FromConfig(config.Parse("/etc/mailtee", "/etc/mailtee/main.cf", nil))
	if o.Listen != "" || len(d) != 0 {
		t.Errorf("%+v %v", o, d)
	}
	// ledger_database: relative to data_directory
	c = config.Parse("/etc/mailtee", "/etc/mailtee/main.cf", []byte("data_directory = /srv/mailtee\n"))
	if p, err := LedgerDatabase(c); p != "/srv/mailtee/ledger.db" || err != nil {
		t.Errorf("LedgerDatabase = %q, %v", p, err)
	}
	// a PostgreSQL URL: as it is
	c = config.Parse("/etc/mailtee", "/etc/mailtee/main.cf", []byte("ledger_database = postgres://m@db/l?passfile=/etc/mailtee/pgpass\n"))
	if p, err := LedgerDatabase(c); p != "postgres://m@db/l?passfile=/etc/mailtee/pgpass" || err != nil {
		t.Errorf("LedgerDatabase = %q, %v", p, err)
	}
}

func FuzzParsePeers(f *testing.F) {
	for _, s := range []string{"https://relay.example:9100", "http://127.0.0.1:9100/base/, https://[::1]:1", "http://u:p@h", "https://h?x#y", "http://[::1", "https://h:99999"} {
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, v string, plain bool) {
		us, err := ParsePeers(v, plain)
		if err != nil {
			return
		}
		for _, u := range us {
			if u.Scheme != "http" && u.Scheme != "https" || u.Hostname() == "" || u.User != nil || u.RawQuery != "" {
				t.Fatalf("%q: accepted %v", v, u)
			}
			if u.Scheme == "http" && !plain && !loopbackName(u.Hostname()) {
				t.Fatalf("%q: plain http off loopback accepted", v)
			}
		}
	})
}

func FuzzReadListen(f *testing.F) {
	for _, s := range []string{"127.0.0.1:9100", "[::1]:9100", ":9100", "localhost:0", "127.0.0.1", "[::1:9100", "h:+1", "h:0x10"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		host, port, err := splitListen(v)
		if err != nil {
			return
		}
		if port < 0 || port > 65535 || strings.ContainsAny(host, " \t/") {
			t.Fatalf("%q: host %q port %d", v, host, port)
		}
	})
}

// check warns about the password file ledger_database names: missing
// (the connection goes without a password), or readable by every user.
func TestLedgerReachPassfile(t *testing.T) {
	dir := t.TempDir()
	open := filepath.Join(dir, "pgpass")
	os.WriteFile(open, []byte("127.0.0.1:1:x:u:secret\n"), 0o644)
	for pf, want := range map[string]string{
		open:                          "is readable by every user (mode 0644): it holds the database's password; chmod o-rwx " + open,
		filepath.Join(dir, "missing"): "no such file or directory; the connection has no password",
	} {
		// Port 1 on loopback: refused at once, so the probe's warning
		// comes too, and the check does not wait.
		c := config.Parse(dir, filepath.Join(dir, "main.cf"), []byte("ledger_database = postgres://u@127.0.0.1:1/x?passfile="+pf+"\n"))
		var got []string
		for _, d := range LedgerReach(c) {
			got = append(got, d.String())
		}
		if !slices.ContainsFunc(got, func(s string) bool { return strings.Contains(s, want) }) {
			t.Errorf("passfile %s: findings %q, want one with %q", pf, got, want)
		}
	}
}
