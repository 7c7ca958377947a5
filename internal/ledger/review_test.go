package ledger

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// The ledger holds every sender, recipient and reply: none of its files
// (the database, its -wal and -shm) may be readable by local users, even
// in a data_directory of mode 0755 and under umask 022.
func TestLedgerFilesPrivate(t *testing.T) {
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	if err := os.Mkdir(data, 0o755); err != nil {
		t.Fatal(err)
	}
	r := newRec(t, dir, &logs{})
	finalSync(t, r, msg("P1", "a@example.com"), false)
	// While it runs: the -wal and -shm exist.
	for _, sfx := range []string{"", "-wal", "-shm"} {
		fi, err := os.Stat(filepath.Join(data, "ledger.db"+sfx))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("ledger.db%s has mode %v: local users can read the ledger", sfx, fi.Mode().Perm())
		}
	}
	r.Close()
}

// A symbolic link where the ledger should be (a world-writable parent,
// an attacker's link) is refused, never followed: the target's mode is
// left alone.
func TestLedgerRefusesSymlink(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "victim")
	if err := os.WriteFile(target, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "ledger.db")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	st, err := Open(link)
	if err == nil {
		st.Close()
		t.Errorf("Open followed a symbolic link")
	}
	if fi, _ := os.Stat(target); fi.Mode().Perm() != 0o644 {
		t.Errorf("the link's target changed mode to %v", fi.Mode().Perm())
	}
}
