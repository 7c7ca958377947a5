package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/testdb"
)

// mailtee with its domains, mailboxes and aliases in SQL, as
// PostfixAdmin keeps them (issue 19): relay_domains,
// relay_recipient_maps and virtual_alias_maps are pgsql: (or mysql:)
// tables. A known user is accepted at RCPT, an unknown one refused with
// 550, and while the database is stopped every RCPT is 451 4.3.0
// ("Temporary lookup failure"), never a 5xx; when the database is back
// the same RCPT is accepted. An alias with two targets in one SQL value
// reaches both. mailtee postmap -q answers as Postfix's postmap does on
// the same .cf file, and check passes with the database down (a table
// that is down must not stop mailtee from starting).
//
// The domains are relay_domains (mailboxes as relay_recipient_maps,
// relayed to a store), and, as PostfixAdmin's own main.cf has them,
// virtual_mailbox_domains whose mail goes to Dovecot over LMTP
// (virtual_transport; mailtee has no virtual(8) of its own).
func TestSQLTables(t *testing.T) {
	for _, kind := range []string{"pgsql", "mysql"} {
		t.Run(kind, func(t *testing.T) { sqlTables(t, kind, false) })
	}
	// PostfixAdmin's own main.cf: virtual mailbox domains, their
	// mailboxes Dovecot's over LMTP.
	t.Run("pgsql/dovecot", func(t *testing.T) { sqlTables(t, "pgsql", true) })
}

// sqlTables runs the scenario on kind's tables; dovecot: the domains are
// virtual_mailbox_domains delivered over LMTP (virtual_transport), else
// relay_domains relayed to a store.
func sqlTables(t *testing.T, kind string, dovecot bool) {
	var s *testdb.Server
	var conn string
	if kind == "pgsql" {
		s = testdb.Postgres(t)
		s.CreateDB("mail")
	} else {
		s = testdb.MariaDB(t)
		s.Exec("", "CREATE DATABASE mail")
	}
	conn = fmt.Sprintf("hosts = inet:%s:%d\nuser = %s\npassword = %s\ndbname = mail\n# a stopped database is retried after a second\nretry_interval = 1\n",
		s.Host, s.Port, s.User, s.Password)
	s.Exec("mail",
		"CREATE TABLE domain (domain VARCHAR(255) PRIMARY KEY, active BOOL NOT NULL)",
		"CREATE TABLE mailbox (username VARCHAR(255) PRIMARY KEY, maildir VARCHAR(255), active BOOL NOT NULL)",
		"CREATE TABLE alias (address VARCHAR(255) PRIMARY KEY, goto TEXT, active BOOL NOT NULL)",
		"INSERT INTO domain VALUES ('example.com', TRUE), ('old.example', FALSE)",
		"INSERT INTO mailbox VALUES ('alice@example.com', 'example.com/alice/', TRUE), ('bob@example.com', 'example.com/bob/', TRUE), ('gone@example.com', 'example.com/gone/', FALSE)",
		"INSERT INTO alias VALUES ('info@example.com', 'alice@example.com,bob@example.com', TRUE)")

	store := newSink(t, fmt.Sprintf("127.0.0.1:%d", freePort(t)), nil)
	cf := map[string]string{
		"domains.cf":   conn + "query = SELECT domain FROM domain WHERE domain='%s' AND active = '1'\n",
		"mailboxes.cf": conn + "query = SELECT maildir FROM mailbox WHERE username='%s' AND active = '1'\n",
		"aliases.cf":   conn + "query = SELECT goto FROM alias WHERE address='%s' AND active = '1'\n",
	}
	in := newInstance(t, "", map[string]string{
		"transport": fmt.Sprintf("example.com smtp:[127.0.0.1]:%d\n", store.Port()),
	})
	for name, text := range cf {
		if err := os.WriteFile(filepath.Join(in.Dir, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	main, _ := os.ReadFile(filepath.Join(in.Dir, "main.cf"))
	classes := `
relay_domains = %[2]s:%[1]s/domains.cf
relay_recipient_maps = %[2]s:%[1]s/mailboxes.cf
transport_maps = hash:%[1]s/transport
`
	var lmtp *lmtpServer
	if dovecot {
		sock := filepath.Join(t.TempDir(), "dovecot-lmtp")
		lmtp = startLMTP(t, sock)
		classes = `
virtual_mailbox_domains = proxy:%[2]s:%[1]s/domains.cf
virtual_mailbox_maps = proxy:%[2]s:%[1]s/mailboxes.cf
virtual_transport = lmtp:unix:` + sock + "\n"
	}
	in.WriteFile("main.cf", string(main)+fmt.Sprintf(classes+"virtual_alias_maps = proxy:%[2]s:%[1]s/aliases.cf\n", in.Dir, kind))
	delivered := store.Count
	if dovecot {
		delivered = lmtp.count
	}

	// postmap -q: mailtee's and Postfix's agree on the same file.
	aliases := kind + ":" + filepath.Join(in.Dir, "aliases.cf")
	old := time.Now().Add(-time.Minute) // Postfix rereads a .cf younger than 1 s
	os.Chtimes(filepath.Join(in.Dir, "aliases.cf"), old, old)
	for _, key := range []string{"INFO@example.com", "nobody@example.com"} {
		out, _, code := runBin(t, "postmap", "-q", key, aliases)
		if pf, err := exec.LookPath("postmap"); err == nil && postfixHasType(kind) {
			want, err := exec.Command(pf, "-q", key, aliases).Output()
			wantCode := 0
			if ee, ok := err.(*exec.ExitError); ok {
				wantCode = ee.ExitCode()
			}
			if out != string(want) || code != wantCode {
				t.Errorf("postmap -q %s %s: mailtee %q (exit %d), Postfix %q (exit %d)", key, aliases, out, code, want, wantCode)
			}
		} else if key == "INFO@example.com" && out != "alice@example.com,bob@example.com\n" {
			t.Errorf("mailtee postmap -q %s: %q (exit %d)", key, out, code)
		}
	}

	in.Start()
	rcpt := func(addr string) string {
		c := dialRaw(t, in.Addr(), "")
		c.Cmd("EHLO client.example")
		c.Cmd("MAIL FROM:<sender@client.example>")
		r := c.Cmd("RCPT TO:<" + addr + ">")
		c.Cmd("QUIT")
		return r
	}
	expect := func(addr, prefix string) {
		t.Helper()
		if r := rcpt(addr); !strings.HasPrefix(r, prefix) {
			t.Errorf("RCPT TO:<%s>: %q, want %s...\nlog:\n%s", addr, r, prefix, in.Log.String())
		}
	}
	expect("alice@example.com", "250")
	expect("ALICE@Example.COM", "250")
	expect("info@example.com", "250")
	expect("nobody@example.com", "550 5.1.1")
	expect("gone@example.com", "550 5.1.1")
	if dovecot {
		// Postfix's text.
		expect("nobody@example.com", "550 5.1.1 <nobody@example.com>: Recipient address rejected: User unknown in virtual mailbox table")
	}

	if err := send(in.Addr(), "sender@client.example", []string{"info@example.com"}, testMessage("to the alias")); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the alias's two targets delivered", 30*time.Second, func() bool {
		return delivered("alice@example.com") == 1 && delivered("bob@example.com") == 1
	})

	s.Stop()
	for _, addr := range []string{"alice@example.com", "nobody@example.com"} {
		expect(addr, "451 4.3.0")
	}
	// check opens the tables without connecting: a stopped database
	// does not make the configuration wrong.
	if out, errOut, code := runBin(t, "check", "-c", in.Dir); code != 0 {
		t.Errorf("check with the database down: exit %d\n%s%s", code, out, errOut)
	}

	s.Start()
	waitUntil(t, "RCPT accepted again after the database is back", 20*time.Second, func() bool {
		return strings.HasPrefix(rcpt("alice@example.com"), "250")
	})
	expect("nobody@example.com", "550 5.1.1")
}

// postfixHasType reports whether Debian's Postfix has the table type
// (postfix-pgsql, postfix-mysql) and a main.cf for postmap to read.
func postfixHasType(typ string) bool {
	out, err := exec.Command("postconf", "-m").Output()
	if err != nil {
		return false
	}
	if _, err := os.Stat("/etc/postfix/main.cf"); err != nil {
		return false
	}
	return strings.Contains("\n"+string(out), "\n"+typ+"\n")
}
