// Package safeio writes files so that a crash at any moment leaves either
// the old state or the new one, never a torn file: data is written to a
// temporary file, synced, renamed into place, and the directory synced so
// the rename itself survives a power loss.
package safeio

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// WriteFile atomically replaces path with data.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	name := tmp.Name()
	defer os.Remove(name) // no-op after a successful rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(name, path); err != nil {
		return err
	}
	return SyncDir(dir)
}

// SyncDir makes the directory's entries (creations, renames, removals)
// durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

// DirSyncer batches directory syncs across goroutines (group commit): a
// caller that needs its new entry in dir to be durable calls Sync; one
// fsync of the directory then serves every caller that asked before it
// started. A caller that arrives while an fsync runs waits for the next
// one, since its entry may have been made after that fsync began. Each
// caller gets the result of the fsync that covered it, never a later one.
type DirSyncer struct {
	Dir string
	// Solo gives every caller an fsync of its own, without group commit:
	// what benchmarks compare against.
	Solo bool

	mu      sync.Mutex
	next    *syncRound // the round new callers join; nil when none waits
	running bool
	syncs   atomic.Uint64
}

type syncRound struct {
	done chan struct{}
	err  error
}

// Syncs counts directory fsyncs, for tests and benchmarks.
func (s *DirSyncer) Syncs() uint64 { return s.syncs.Load() }

// Sync returns once an fsync of the directory that began after this call
// has finished, with that fsync's error.
func (s *DirSyncer) Sync() error {
	if s.Solo {
		s.syncs.Add(1)
		return SyncDir(s.Dir)
	}
	s.mu.Lock()
	if s.next == nil {
		s.next = &syncRound{done: make(chan struct{})}
	}
	mine := s.next
	if s.running {
		s.mu.Unlock()
		<-mine.done
		return mine.err
	}
	// Lead: run rounds until nobody waits for another one.
	s.running = true
	for s.next != nil {
		cur := s.next
		s.next = nil
		s.mu.Unlock()
		cur.err = SyncDir(s.Dir)
		s.syncs.Add(1)
		close(cur.done)
		s.mu.Lock()
	}
	s.running = false
	s.mu.Unlock()
	return mine.err
}

// NewFile is a file being written that has no name in its directory yet
// (O_TMPFILE), or only a hidden one: Link gives it its real name once it
// is complete, so a crash never leaves a torn file under that name.
type NewFile struct {
	*os.File
	hidden string // the hidden name, when O_TMPFILE is not used
	reused string // the name of a file being overwritten (Reuse)
	linked bool
}

// Reuse opens the existing file path to be written over, as a NewFile:
// Link then renames it, never replacing a file. Reusing files that are
// done with, rather than creating new ones, spares the file system an
// inode allocation and release per file, which on ext4 without a journal
// costs more than the write itself. The caller truncates the file to what
// it wrote.
func Reuse(path string) (*NewFile, error) {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return nil, err
	}
	return &NewFile{File: f, reused: path}, nil
}

// Reused is the path Reuse opened while the file has not been linked
// elsewhere, or "".
func (f *NewFile) Reused() string {
	if f.linked {
		return ""
	}
	return f.reused
}

// CreateNew makes a new file in dir: unnamed when tmpfile (see
// TmpfileWorks), otherwise under a unique hidden name.
func CreateNew(dir string, tmpfile bool) (*NewFile, error) {
	if tmpfile {
		fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_WRONLY|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return nil, &os.PathError{Op: "open O_TMPFILE", Path: dir, Err: err}
		}
		return &NewFile{File: os.NewFile(uintptr(fd), dir)}, nil
	}
	f, err := os.CreateTemp(dir, ".new*")
	if err != nil {
		return nil, err
	}
	return &NewFile{File: f, hidden: f.Name()}, nil
}

// Link gives the file the name path; it never replaces an existing file
// (the error is then os.ErrExist). It may be called again with another
// name after an error.
func (f *NewFile) Link(path string) error {
	if f.reused != "" {
		if err := RenameNoReplace(f.reused, path); err != nil {
			return err
		}
		f.linked = true
		return nil
	}
	if f.hidden != "" {
		return os.Link(f.hidden, path)
	}
	// linkat through /proc needs no privilege, unlike AT_EMPTY_PATH.
	err := unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(int(f.Fd())), unix.AT_FDCWD, path, unix.AT_SYMLINK_FOLLOW)
	if err != nil {
		return &os.LinkError{Op: "link", Old: f.Name(), New: path, Err: err}
	}
	return nil
}

// RenameNoReplace renames old to new unless new exists (then the error is
// os.ErrExist): renameat2(RENAME_NOREPLACE), or where the file system
// lacks it, a link and an unlink.
func RenameNoReplace(old, new string) error {
	err := unix.Renameat2(unix.AT_FDCWD, old, unix.AT_FDCWD, new, unix.RENAME_NOREPLACE)
	if err == unix.EINVAL || err == unix.ENOSYS {
		if err := os.Link(old, new); err != nil {
			return err
		}
		return os.Remove(old)
	}
	if err != nil {
		return &os.LinkError{Op: "rename", Old: old, New: new, Err: err}
	}
	return nil
}

// Close closes the file and removes its hidden name, if any; an unnamed
// file that was never linked disappears with it; a reused one that was
// not linked stays where it was.
func (f *NewFile) Close() error {
	err := f.File.Close()
	if f.hidden != "" {
		os.Remove(f.hidden)
	}
	return err
}

var probeSeq atomic.Uint64

// TmpfileWorks reports whether CreateNew can make unnamed files in dir
// and Link name them: the file system must support O_TMPFILE and /proc
// must be mounted. It tries once, leaving nothing behind.
func TmpfileWorks(dir string) bool {
	f, err := CreateNew(dir, true)
	if err != nil {
		return false
	}
	defer f.Close()
	probe := filepath.Join(dir, fmt.Sprintf(".probe%d.%d", os.Getpid(), probeSeq.Add(1)))
	os.Remove(probe)
	if f.Link(probe) != nil {
		return false
	}
	os.Remove(probe)
	return true
}

// TmpfileDurable reports whether dir is on a file system where a file
// made with O_TMPFILE, fsynced, linked into a directory, and that
// directory fsynced, is durably there with its link count, as a file
// created under a name would be.
//
// That holds where the directory fsync commits a log that also holds the
// inode's new link count: ext4 with a journal, XFS; and on tmpfs nothing
// is durable anyway. It does not hold on ext4 without a journal (or
// ext2): a directory fsync there writes the directory's own blocks and
// inode only, so the file's inode keeps, on disk, the link count 0 that
// the fsync before the link wrote, until writeback gets to it (up to 30
// s by default), and a crash in between can lose the message. Another
// fsync of the file after the link covers that only on kernels with the
// 2026 fix "ext4: Fix fsync(2) for nojournal mode", and costs as much as
// the named file in tmp/. Any other or unknown file system gets the named
// file too.
func TmpfileDurable(dir string) bool {
	var fs unix.Statfs_t
	if unix.Statfs(dir, &fs) != nil {
		return false
	}
	switch fs.Type {
	case unix.TMPFS_MAGIC, unix.XFS_SUPER_MAGIC:
		return true
	case unix.EXT4_SUPER_MAGIC:
		return ext4Journaled(dir)
	}
	return false
}

// ext4Journaled reports whether the ext2/3/4 file system holding dir has
// a journal, from /sys/fs/ext4/DEV/journal_task ("<none>" without one)
// or, on kernels without that, /proc/fs/jbd2/DEV-8. When the device
// cannot be found, the answer is no.
func ext4Journaled(dir string) bool {
	var st unix.Stat_t
	if unix.Stat(dir, &st) != nil {
		return false
	}
	link, err := os.Readlink(fmt.Sprintf("/sys/dev/block/%d:%d", unix.Major(st.Dev), unix.Minor(st.Dev)))
	if err != nil {
		return false
	}
	dev := filepath.Base(link)
	if b, err := os.ReadFile("/sys/fs/ext4/" + dev + "/journal_task"); err == nil {
		_, err := strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil
	}
	_, err = os.Stat("/proc/fs/jbd2/" + dev + "-8")
	return err == nil
}
