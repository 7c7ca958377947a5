package migration

import (
	"os"
	"path/filepath"
	"testing"
)

// A crash while a record is written leaves safeio's temporary file
// (.ID.json.tmpNNN, as large as the record: 69 MB with a 50 MB table);
// Prune, which runs at start-up before anything writes, removes it. It
// never touches a record in use, nor the current one.
func TestPruneRemovesLeftoverTempFiles(t *testing.T) {
	dir, q := t.TempDir(), t.TempDir()
	cur := load(t, dir, "mailbox_bcc_maps = hash:DIR/bcc\n", map[string]string{"bcc": "u1 u1@relay.example\n"})
	st := NewStore(Dir(q), nil)
	if err := st.SetCurrent(cur); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(Dir(q), ".0123456789abcdef.json.tmp123456")
	used := filepath.Join(Dir(q), "fedcba9876543210.json")
	for _, p := range []string{tmp, used} {
		if err := os.WriteFile(p, []byte("{"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	st.Prune(map[string]bool{"fedcba9876543210": true})
	if _, err := os.Stat(tmp); !os.IsNotExist(err) {
		t.Errorf("temporary file left: %v", err)
	}
	for _, p := range []string{used, filepath.Join(Dir(q), cur.ID+".json")} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s removed: %v", p, err)
		}
	}
}
