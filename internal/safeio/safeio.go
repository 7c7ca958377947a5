// Package safeio writes files so that a crash at any moment leaves either
// the old state or the new one, never a torn file: data is written to a
// temporary file, synced, renamed into place, and the directory synced so
// the rename itself survives a power loss.
package safeio

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
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
