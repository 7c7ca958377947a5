package migration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A record that is gone (or damaged) cannot come back: its messages
// follow the settings in force, with a warning. One that exists but
// cannot be read now (EMFILE under load, EIO) is an error for the
// caller to defer on: following the settings in force then would make
// or drop a copy for good (dual accepted, off in force: the copy lost).
func TestGetTransientReadErrorIsAnError(t *testing.T) {
	dir, q := t.TempDir(), t.TempDir()
	cur := load(t, dir, "mailbox_bcc_maps = hash:DIR/bcc\n", map[string]string{"bcc": "u1 u1@relay.example\n"})
	st := NewStore(Dir(q), nil)
	if err := st.SetCurrent(cur); err != nil {
		t.Fatal(err)
	}
	// Unreadable as a file: a directory in its place (the tests run as
	// root, whom a mode of 000 does not stop).
	if err := os.Mkdir(filepath.Join(Dir(q), "0123456789abcdef.json"), 0o700); err != nil {
		t.Fatal(err)
	}
	if tb, err := st.Get("0123456789abcdef"); err == nil {
		t.Errorf("unreadable record: got settings %v, want an error", tb.ID)
	}
	if tb := st.For("0123456789abcdef"); tb != cur {
		t.Errorf("For: the settings in force are the ledger's answer")
	}
	if tb, err := st.Get("fedcba9876543210"); err != nil || tb != cur {
		t.Errorf("missing record: %v, %v; want the settings in force", tb, err)
	}
	if tb, err := st.Get(cur.ID); err != nil || tb != cur {
		t.Errorf("current record: %v, %v", tb, err)
	}
}

// An envelope's settings ID that is not one (damage: a NUL, a path, a
// name too long) is a record gone, never an error to defer on for good.
func TestGetDamagedIDFollowsCurrent(t *testing.T) {
	dir, q := t.TempDir(), t.TempDir()
	cur := load(t, dir, "mailbox_bcc_maps = hash:DIR/bcc\n", map[string]string{"bcc": "u1 u1@relay.example\n"})
	st := NewStore(Dir(q), nil)
	if err := st.SetCurrent(cur); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"0123456789abcde\x00", "../../etc/passwd", strings.Repeat("a", 300), "0123456789ABCDEF"} {
		if tb, err := st.Get(id); err != nil || tb != cur {
			t.Errorf("Get(%q): %v; want the settings in force", id, err)
		}
	}
}
