package safeio

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
)

func TestWriteFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	for _, content := range []string{"one", "two"} {
		if err := WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(p)
		if err != nil || string(got) != content {
			t.Fatalf("got %q %v, want %q", got, err, content)
		}
	}
	entries, _ := os.ReadDir(filepath.Dir(p))
	if len(entries) != 1 {
		t.Errorf("temporary files left behind: %v", entries)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", fi.Mode())
	}
}

// Many concurrent callers share fsyncs: fewer syncs than callers, and
// every caller returns only after a sync that started after it asked.
func TestDirSyncerGroupsCalls(t *testing.T) {
	s := &DirSyncer{Dir: t.TempDir()}
	const n = 200
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.Sync(); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if s.Syncs() == 0 || s.Syncs() > n {
		t.Fatalf("Syncs = %d for %d callers", s.Syncs(), n)
	}
	t.Logf("%d callers, %d directory fsyncs", n, s.Syncs())
	if err := (&DirSyncer{Dir: "/nonexistent/dir"}).Sync(); err == nil {
		t.Error("a missing directory must be an error")
	}
}
