// Package userstest adds accounts that only the name service knows, for
// tests that must show mail reaching a user who is not in /etc/passwd (an
// LDAP or SSSD user on a real host). It uses libnss-extrausers: the
// "extrausers" NSS module reads /var/lib/extrausers/passwd and group.
//
// AddNSSUser changes system files (/etc/nsswitch.conf and
// /var/lib/extrausers/{passwd,group}) and restores their exact former
// contents when the test ends, failed or not. Test processes of different
// packages run at the same time under `go test ./...`: an exclusive lock
// on LockFile serialises them, held from the first AddNSSUser of a process
// until its last user is removed.
package userstest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Paths the helper changes, and the lock that guards them.
const (
	NSSwitch  = "/etc/nsswitch.conf"
	Dir       = "/var/lib/extrausers"
	LockFile  = "/run/mailtee-userstest.lock"
	pkgName   = "libnss-extrausers"
	nssModule = "extrausers"
)

// state is what this process has set up; guarded by mu.
var (
	mu    sync.Mutex
	refs  int
	lock  *os.File
	saved []savedFile
)

type savedFile struct {
	path   string
	data   []byte
	mode   os.FileMode
	absent bool
}

// AddNSSUser makes name a user known only to NSS, with its uid, gid (a
// group of the same name is added too), home directory (not created) and
// /bin/sh as shell, until t ends. It skips t when not run as root or when
// libnss-extrausers is missing and cannot be installed with apt-get.
func AddNSSUser(t testing.TB, name string, uid, gid int, home string) {
	t.Helper()
	usable(t)
	mu.Lock()
	defer mu.Unlock()
	if refs == 0 {
		if err := setUp(); err != nil {
			tearDown()
			t.Fatalf("userstest: %v", err)
		}
	}
	refs++
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		if err := removeLine(Dir+"/passwd", name); err != nil {
			t.Errorf("userstest: %v", err)
		}
		if err := removeLine(Dir+"/group", name); err != nil {
			t.Errorf("userstest: %v", err)
		}
		if refs--; refs == 0 {
			if err := tearDown(); err != nil {
				t.Errorf("userstest: %v", err)
			}
		}
	})
	if err := appendLine(Dir+"/passwd", fmt.Sprintf("%s:x:%d:%d:%s:%s:/bin/sh", name, uid, gid, name, home)); err != nil {
		t.Fatalf("userstest: %v", err)
	}
	if err := appendLine(Dir+"/group", fmt.Sprintf("%s:x:%d:", name, gid)); err != nil {
		t.Fatalf("userstest: %v", err)
	}
	invalidateNSCD()
}

// usable skips t unless it runs as root with libnss-extrausers, installed
// now if need be.
func usable(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("userstest: needs root to change /etc/nsswitch.conf")
	}
	if err := ensurePackage(); err != nil {
		t.Skipf("userstest: %s is not installed and could not be: %v", pkgName, err)
	}
}

// invalidateNSCD empties nscd's passwd and group caches, where nscd runs:
// its negative entries would hide a new user for a while.
func invalidateNSCD() {
	if _, err := exec.LookPath("nscd"); err != nil {
		return
	}
	for _, db := range []string{"passwd", "group"} {
		exec.Command("nscd", "-i", db).Run()
	}
}

// FailingNSS makes the name service fail, until t ends, for every name
// /etc/passwd does not have: the extrausers module, last on the passwd
// line, finds a directory where its file should be, and glibc's
// getpwnam_r returns EISDIR as it would ENOENT or ECONNREFUSED from an
// SSSD or LDAP backend that is down. Names in /etc/passwd are still found.
// It must not be used while AddNSSUser users exist in the same process.
func FailingNSS(t testing.TB) {
	t.Helper()
	usable(t)
	mu.Lock()
	defer mu.Unlock()
	if refs != 0 {
		t.Fatal("userstest: FailingNSS while AddNSSUser users exist")
	}
	if err := setUp(); err != nil {
		tearDown()
		t.Fatalf("userstest: %v", err)
	}
	refs++
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		if err := os.RemoveAll(Dir + "/passwd"); err != nil {
			t.Errorf("userstest: %v", err)
		}
		if refs--; refs == 0 {
			if err := tearDown(); err != nil {
				t.Errorf("userstest: %v", err)
			}
		}
	})
	if err := os.RemoveAll(Dir + "/passwd"); err != nil {
		t.Fatalf("userstest: %v", err)
	}
	if err := os.Mkdir(Dir+"/passwd", 0o755); err != nil {
		t.Fatalf("userstest: %v", err)
	}
}

var installOnce sync.Once
var installErr error

func ensurePackage() error {
	installOnce.Do(func() {
		if installed() {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "apt-get", "install", "-y", "-q", pkgName)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			installErr = fmt.Errorf("apt-get install %s: %v: %s", pkgName, err, lastLine(out))
			return
		}
		if !installed() {
			installErr = fmt.Errorf("apt-get installed %s but dpkg does not list it", pkgName)
		}
	})
	return installErr
}

func installed() bool {
	out, err := exec.Command("dpkg-query", "-W", "-f=${Status}", pkgName).Output()
	return err == nil && strings.HasSuffix(string(out), " installed")
}

func lastLine(b []byte) string {
	s := strings.TrimSpace(string(b))
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
}

// setUp takes the lock, saves the files and adds the module to the passwd
// and group lines of nsswitch.conf.
func setUp() error {
	f, err := os.OpenFile(LockFile, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return fmt.Errorf("lock %s: %w", LockFile, err)
	}
	lock = f
	if err := os.MkdirAll(Dir, 0o755); err != nil {
		return err
	}
	for _, p := range []string{NSSwitch, Dir + "/passwd", Dir + "/group"} {
		s := savedFile{path: p}
		fi, err := os.Stat(p)
		switch {
		case os.IsNotExist(err):
			s.absent = true
		case err != nil:
			return err
		default:
			s.mode = fi.Mode().Perm()
			if s.data, err = os.ReadFile(p); err != nil {
				return err
			}
		}
		saved = append(saved, s)
	}
	// The module's files exist before it is named: a module without its
	// file fails every lookup of a name it lacks, and tests of other
	// packages, run at the same time, would see their unknown users
	// deferred.
	for _, s := range saved[1:] {
		if s.absent {
			if err := writeFile(s.path, nil, 0o644); err != nil {
				return err
			}
		}
	}
	conf, changed := WithModule(saved[0].data, nssModule)
	if changed {
		if err := writeFile(NSSwitch, conf, saved[0].mode); err != nil {
			return err
		}
	}
	return nil
}

// tearDown puts every saved file back as it was and releases the lock.
func tearDown() error {
	var first error
	for _, s := range saved {
		var err error
		if s.absent {
			err = os.Remove(s.path)
			if os.IsNotExist(err) {
				err = nil
			}
		} else {
			err = writeFile(s.path, s.data, s.mode)
		}
		if err != nil && first == nil {
			first = fmt.Errorf("restore %s: %w", s.path, err)
		}
	}
	saved = nil
	if lock != nil {
		lock.Close() // releases the flock
		lock = nil
	}
	return first
}

// WithModule adds module at the end of the passwd and group lines of an
// nsswitch.conf, where it is not there yet; it reports whether it changed
// anything. A missing line is added as "passwd: files module".
func WithModule(conf []byte, module string) ([]byte, bool) {
	lines := strings.SplitAfter(string(conf), "\n")
	seen := map[string]bool{}
	changed := false
	for i, l := range lines {
		body := strings.TrimRight(l, "\n")
		db, rest, ok := strings.Cut(body, ":")
		db = strings.TrimSpace(db)
		if !ok || (db != "passwd" && db != "group") || strings.HasPrefix(strings.TrimSpace(body), "#") {
			continue
		}
		seen[db] = true
		if words := strings.Fields(rest); !contains(words, module) {
			lines[i] = body + " " + module + l[len(body):]
			changed = true
		}
	}
	out := strings.Join(lines, "")
	for _, db := range []string{"passwd", "group"} {
		if !seen[db] {
			if out != "" && !strings.HasSuffix(out, "\n") {
				out += "\n"
			}
			out += db + ": files " + module + "\n"
			changed = true
		}
	}
	return []byte(out), changed
}

func contains(words []string, w string) bool {
	for _, x := range words {
		if x == w {
			return true
		}
	}
	return false
}

func appendLine(path, line string) error {
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	if len(b) > 0 && b[len(b)-1] != '\n' {
		b = append(b, '\n')
	}
	return writeFile(path, append(b, line+"\n"...), 0o644)
}

func removeLine(path, name string) error {
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	} else if err != nil {
		return err
	}
	var out []byte
	for _, l := range bytes.SplitAfter(b, []byte("\n")) {
		if !bytes.HasPrefix(l, []byte(name+":")) {
			out = append(out, l...)
		}
	}
	return writeFile(path, out, 0o644)
}

// writeFile replaces path in one rename, so that a lookup running in
// another process never reads half a file.
func writeFile(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".userstest-tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	if err := os.Chmod(tmp, mode); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}
