// Package testdb starts real database servers for tests: a private
// PostgreSQL or MariaDB in a temporary data directory, listening on a
// loopback high port and on a UNIX socket of its own, never the system
// instance. Debian's postgresql and mariadb-server packages provide the
// programs (./test.sh installs them); a test that finds them missing is
// skipped, as the Postfix tests are.
package testdb

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql" // database/sql driver "mysql"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
)

// Server is a database server a test started. Stop and Start stop and
// start it again on the same port and data (to test a database that
// goes away mid-run); it is stopped for good when the test ends.
type Server struct {
	Kind string // "postgres" or "mariadb"
	// Host is 127.0.0.1; Port the TCP port; Socket the UNIX socket's
	// path (for PostgreSQL, SocketDir holds it, as libpq names it).
	Host      string
	Port      int
	Socket    string
	SocketDir string
	// User and Password are a superuser's, for the test's own set-up
	// (PostgreSQL: "postgres" over TCP with a password; MariaDB: root).
	User, Password string

	t       testing.TB
	dir     string
	uid     uint32
	gid     uint32
	args    []string
	bin     string
	cmd     *exec.Cmd
	exited  chan struct{}
	logPath string
}

// pgBin finds Debian's PostgreSQL server programs.
func pgBin() (string, bool) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	for i := len(dirs) - 1; i >= 0; i-- {
		if _, err := os.Stat(filepath.Join(dirs[i], "postgres")); err == nil {
			return dirs[i], true
		}
	}
	return "", false
}

// freePort asks the kernel for a loopback port that is free now.
func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// account returns the system account a server runs as: PostgreSQL
// refuses to run as root, and both packages make their own user.
func account(t testing.TB, name string) (uid, gid uint32) {
	if os.Geteuid() != 0 {
		u, _ := user.Current()
		id, _ := strconv.Atoi(u.Uid)
		g, _ := strconv.Atoi(u.Gid)
		return uint32(id), uint32(g)
	}
	u, err := user.Lookup(name)
	if err != nil {
		t.Skipf("no %s user: the Debian package is not installed (./test.sh installs it)", name)
	}
	id, _ := strconv.Atoi(u.Uid)
	g, _ := strconv.Atoi(u.Gid)
	return uint32(id), uint32(g)
}

func (s *Server) run(name string, args ...string) {
	s.t.Helper()
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: s.uid, Gid: s.gid}}
	cmd.Dir = s.dir
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	if out, err := cmd.CombinedOutput(); err != nil {
		s.t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// tempDir makes a directory the server's account owns: t.TempDir's own
// is root's with mode 0700 and the server could not enter it.
func tempDir(t testing.TB, uid, gid uint32) string {
	dir, err := os.MkdirTemp("", "mailtee-testdb-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, int(uid), int(gid)); err != nil {
		t.Fatal(err)
	}
	return dir
}

// Postgres starts a private PostgreSQL server. Its superuser is
// "postgres" with a password (TCP) and trusted on its UNIX socket.
func Postgres(t testing.TB) *Server {
	t.Helper()
	bin, ok := pgBin()
	if !ok {
		t.Skip("PostgreSQL's programs are not installed (Debian's postgresql package; ./test.sh installs it)")
	}
	uid, gid := account(t, "postgres")
	s := &Server{Kind: "postgres", t: t, uid: uid, gid: gid, Host: "127.0.0.1", User: "postgres", Password: "test-secret"}
	s.dir = tempDir(t, uid, gid)
	s.SocketDir = s.dir
	s.Port = freePort(t)
	s.Socket = filepath.Join(s.dir, ".s.PGSQL."+strconv.Itoa(s.Port))
	pw := filepath.Join(s.dir, "pw")
	if err := os.WriteFile(pw, []byte(s.Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	os.Chown(pw, int(uid), int(gid))
	data := filepath.Join(s.dir, "data")
	s.run(filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres", "--pwfile", pw,
		"--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync")
	s.bin = filepath.Join(bin, "postgres")
	s.args = []string{"-D", data, "-p", strconv.Itoa(s.Port), "-k", s.dir,
		"-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=200",
		"-c", "shared_buffers=32MB", "-c", "logging_collector=off"}
	s.logPath = filepath.Join(s.dir, "server.log")
	s.Start()
	t.Cleanup(s.stop)
	return s
}

// MariaDB starts a private MariaDB server. Its root user has a password
// over TCP; on its UNIX socket root is let in by the socket's owner
// (as Debian's unix_socket authentication).
func MariaDB(t testing.TB) *Server {
	t.Helper()
	if _, err := exec.LookPath("mariadbd"); err != nil {
		if _, err := os.Stat("/usr/sbin/mariadbd"); err != nil {
			t.Skip("mariadbd is not installed (Debian's mariadb-server package; ./test.sh installs it)")
		}
	}
	uid, gid := account(t, "mysql")
	s := &Server{Kind: "mariadb", t: t, uid: uid, gid: gid, Host: "127.0.0.1", User: "root", Password: "test-secret"}
	s.dir = tempDir(t, uid, gid)
	s.Port = freePort(t)
	s.Socket = filepath.Join(s.dir, "mysqld.sock")
	s.SocketDir = s.dir
	data := filepath.Join(s.dir, "data")
	s.run("mariadb-install-db", "--no-defaults", "--datadir="+data, "--auth-root-authentication-method=normal",
		"--skip-test-db", "--skip-name-resolve")
	s.bin = "mariadbd"
	if _, err := exec.LookPath(s.bin); err != nil {
		s.bin = "/usr/sbin/mariadbd"
	}
	s.args = []string{"--no-defaults", "--datadir=" + data, "--port=" + strconv.Itoa(s.Port),
		"--bind-address=127.0.0.1", "--socket=" + s.Socket, "--skip-name-resolve",
		"--pid-file=" + filepath.Join(s.dir, "mysqld.pid"), "--innodb-flush-log-at-trx-commit=0",
		"--innodb-buffer-pool-size=32M", "--skip-log-bin", "--max-connections=200"}
	s.logPath = filepath.Join(s.dir, "server.log")
	s.Start()
	t.Cleanup(s.stop)
	// A password for root over TCP, as a real site's tables would use
	// a user with one.
	db, err := sql.Open("mysql", "root@unix("+s.Socket+")/")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range []string{
		"ALTER USER 'root'@'localhost' IDENTIFIED BY '" + s.Password + "'",
		"CREATE USER IF NOT EXISTS 'root'@'127.0.0.1'",
		"ALTER USER 'root'@'127.0.0.1' IDENTIFIED BY '" + s.Password + "'",
		"GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION",
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("mariadb %s: %v", q, err)
		}
	}
	return s
}

// Start starts the server (again) and waits until it answers.
func (s *Server) Start() {
	s.t.Helper()
	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		s.t.Fatal(err)
	}
	cmd := exec.Command(s.bin, s.args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: s.uid, Gid: s.gid}, Setpgid: true}
	cmd.Dir = s.dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	if err := cmd.Start(); err != nil {
		logf.Close()
		s.t.Fatalf("%s: %v", s.bin, err)
	}
	logf.Close()
	s.cmd = cmd
	s.exited = make(chan struct{})
	go func() { cmd.Wait(); close(s.exited) }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if err := s.ping(); err == nil {
			return
		}
		select {
		case <-s.exited:
			s.t.Fatalf("%s exited at start:\n%s", s.Kind, s.Log())
		default:
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("%s did not answer within 60s:\n%s", s.Kind, s.Log())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (s *Server) ping() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var db *sql.DB
	var err error
	if s.Kind == "postgres" {
		db, err = sql.Open("pgx", s.URL("postgres"))
	} else {
		db, err = sql.Open("mysql", "root@unix("+s.Socket+")/")
	}
	if err != nil {
		return err
	}
	defer db.Close()
	err = db.PingContext(ctx)
	if err != nil && s.Kind == "mariadb" {
		// after the password is set, root on the socket needs it
		db2, _ := sql.Open("mysql", "root:"+s.Password+"@unix("+s.Socket+")/")
		defer db2.Close()
		err = db2.PingContext(ctx)
	}
	return err
}

// Stop stops the server (a fast shutdown) and waits for it to exit.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGINT) // PostgreSQL's fast shutdown
	if s.Kind == "mariadb" {
		s.cmd.Process.Signal(syscall.SIGTERM)
	}
	select {
	case <-s.exited:
	case <-time.After(30 * time.Second):
		syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.exited
	}
	s.cmd = nil
}

// Kill stops the server with SIGKILL, as a crash.
func (s *Server) Kill() {
	if s.cmd == nil {
		return
	}
	syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	<-s.exited
	s.cmd = nil
}

func (s *Server) stop() { s.Stop() }

// Log is the server's log so far, for a test's failure message.
func (s *Server) Log() string {
	b, _ := os.ReadFile(s.logPath)
	if len(b) > 8000 {
		b = b[len(b)-8000:]
	}
	return string(bytes.TrimSpace(b))
}

// URL is a postgres:// URL for database db over TCP with the
// superuser's password (for the test's own set-up; mailtee's own
// configuration should name a password file instead: PassFile).
func (s *Server) URL(db string) string {
	if s.Kind != "postgres" {
		return fmt.Sprintf("%s:%s@tcp(%s:%d)/%s", s.User, s.Password, s.Host, s.Port, db)
	}
	return fmt.Sprintf("postgres://%s:%s@%s:%d/%s?sslmode=disable", s.User, s.Password, s.Host, s.Port, db)
}

// PassFile writes a PostgreSQL password file (pgpass(5)) for the
// superuser into dir and returns its path and a URL naming it, with no
// password in the URL.
func (s *Server) PassFile(dir, db string) (path, url string) {
	s.t.Helper()
	path = filepath.Join(dir, "pgpass")
	line := fmt.Sprintf("%s:%d:*:%s:%s\n", s.Host, s.Port, s.User, s.Password)
	if err := os.WriteFile(path, []byte(line), 0o600); err != nil {
		s.t.Fatal(err)
	}
	return path, fmt.Sprintf("postgres://%s@%s:%d/%s?sslmode=disable&passfile=%s", s.User, s.Host, s.Port, db, path)
}

// DB opens database db as the superuser (closed when the test ends).
func (s *Server) DB(db string) *sql.DB {
	s.t.Helper()
	driver := "pgx"
	if s.Kind != "postgres" {
		driver = "mysql"
	}
	d, err := sql.Open(driver, s.URL(db))
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { d.Close() })
	return d
}

// CreateDB creates database name (owned by the superuser).
func (s *Server) CreateDB(name string) {
	s.t.Helper()
	admin := "postgres"
	if s.Kind != "postgres" {
		admin = ""
	}
	d := s.DB(admin)
	if _, err := d.Exec("CREATE DATABASE " + name); err != nil {
		s.t.Fatalf("create database %s: %v", name, err)
	}
}

// Exec runs statements in database db, failing the test on error.
func (s *Server) Exec(db string, stmts ...string) {
	s.t.Helper()
	d := s.DB(db)
	for _, q := range stmts {
		if _, err := d.Exec(q); err != nil {
			s.t.Fatalf("%s: %s: %v", s.Kind, q, err)
		}
	}
}
