package harness

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
)

// User is a real login made for one test, removed after it.
type User struct {
	Name     string
	UID, GID int
	Home     string
}

var userSeq atomic.Int32

// NewUser runs useradd (as root; the test is skipped otherwise). The
// home directory is made in base (which must be passable) and belongs to
// the user, as useradd -m would make it. Names are unique per process
// and call, so tests may run side by side.
func NewUser(t testing.TB, base string) User {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates a local user and runs mailtee as root")
	}
	if _, err := exec.LookPath("useradd"); err != nil {
		t.Skip("no useradd")
	}
	name := fmt.Sprintf("mt%d%c", os.Getpid()%100000, 'a'+userSeq.Add(1)%26)
	home := filepath.Join(base, "home", name)
	exec.Command("userdel", name).Run() // a leftover of a killed run
	if out, err := exec.Command("useradd", "-M", "-d", home, "-s", "/bin/sh", "-U", name).CombinedOutput(); err != nil {
		t.Fatalf("useradd: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("userdel", name).Run() })
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	lu := User{Name: name, Home: home}
	lu.UID, _ = strconv.Atoi(u.Uid)
	lu.GID, _ = strconv.Atoi(u.Gid)
	if err := os.MkdirAll(home, 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Dir(home), 0o755)
	os.Chown(home, lu.UID, lu.GID)
	return lu
}

// As makes path the user's, as if she had made it (links included).
func (u User) As(t testing.TB, path string) {
	t.Helper()
	if err := os.Lchown(path, u.UID, u.GID); err != nil {
		t.Fatal(err)
	}
}

// OwnerOf is the owner and group of path (not following a link).
func OwnerOf(t testing.TB, path string) (uid, gid int) {
	t.Helper()
	st, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	s := st.Sys().(*syscall.Stat_t)
	return int(s.Uid), int(s.Gid)
}
