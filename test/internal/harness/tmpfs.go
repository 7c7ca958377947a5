package harness

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// MountTmpfs mounts a tmpfs of the given size and mode (0700, 0755) on a
// fresh directory, unmounted at cleanup whatever happens (after anything
// registered later, such as the mailtee process, has been stopped).
// Without root, or a root without CAP_SYS_ADMIN, the test is skipped
// with the reason; why says what the file system is for.
func MountTmpfs(t *testing.T, size string, mode os.FileMode, why string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: mounts a small tmpfs to fill " + why)
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode="+"0"+octal(mode)); err != nil {
		t.Skipf("cannot mount a tmpfs on %s (%v): this root lacks CAP_SYS_ADMIN", dir, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Logf("unmount %s: %v; detaching it", dir, err)
			if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
				t.Errorf("unmount %s: %v", dir, err)
			}
		}
	})
	return dir
}

func octal(m os.FileMode) string {
	const digits = "01234567"
	p := uint32(m.Perm())
	return string([]byte{digits[p>>6&7], digits[p>>3&7], digits[p&7]})
}

// FillDisk appends to path until the file system says ENOSPC, to the
// last byte, and returns the bytes written and the bytes still free.
func FillDisk(t *testing.T, path string) (written int64, free uint64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 64<<10)
	for i := range chunk {
		chunk[i] = 'x'
	}
	for _, size := range []int{64 << 10, 1} { // then byte by byte, to the last page
		for {
			n, err := f.Write(chunk[:size])
			written += int64(n)
			if err == nil {
				continue
			}
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling %s: %v", path, err)
			}
			break
		}
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(filepath.Dir(path), &st); err != nil {
		t.Fatal(err)
	}
	return written, st.Bavail * uint64(st.Bsize)
}
