package asuser

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A file is opened with the helper's privileges: a link that a user
// plants to a root-only file gets her nothing, and the checks local(8)
// makes on .forward and :include: files hold.
func TestOpenAsUser(t *testing.T) {
	c := nobody(t)
	p := testPool(t, Options{})
	dir := spoolFor(t, c)
	ctx := context.Background()

	secret := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(secret, []byte("root only\n"), 0o600)
	link := filepath.Join(dir, "include")
	if err := os.Symlink(secret, link); err != nil {
		t.Fatal(err)
	}
	if f, _, err := p.Open(ctx, c, link, OpenOptions{}); err == nil || !strings.Contains(err.Error(), "permission denied") {
		if f != nil {
			f.Close()
		}
		t.Fatalf("opened a root-only file through a link as %v: %v", c, err)
	}
	if _, _, err := p.Open(ctx, c, link, OpenOptions{NoFollow: true}); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Fatalf("NoFollow: %v", err)
	}
	if _, _, err := p.Open(ctx, c, filepath.Join(dir, "missing"), OpenOptions{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing file: %v, want ErrNotFound", err)
	}

	fwd := filepath.Join(dir, ".forward")
	os.WriteFile(fwd, []byte("someone@example.org\n"), 0o644)
	os.Chown(fwd, int(c.UID), int(c.GID))
	f, owner, err := p.Open(ctx, c, fwd, OpenOptions{NoFollow: true, Owners: []uint32{0, c.UID}})
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(f)
	f.Close()
	if string(data) != "someone@example.org\n" || owner != c.UID {
		t.Fatalf("read %q owner %d", data, owner)
	}
	os.Chmod(fwd, 0o646)
	if _, _, err := p.Open(ctx, c, fwd, OpenOptions{}); err == nil || !strings.Contains(err.Error(), "world writable") {
		t.Fatalf("world-writable file: %v", err)
	}
	os.Chmod(fwd, 0o644)
	if _, _, err := p.Open(ctx, c, fwd, OpenOptions{Owners: []uint32{0}}); err == nil || !strings.Contains(err.Error(), "bad owner") {
		t.Fatalf("owner check: %v", err)
	}
}
