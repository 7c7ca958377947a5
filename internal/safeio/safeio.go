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
// one, since its entry may have been made after that fsync began.
type DirSyncer struct {
	Dir string

	mu        sync.Mutex
	cond      *sync.Cond
	requested uint64 // tickets handed out
	done      uint64 // tickets covered by a finished fsync
	running   bool
	lastErr   error
	// Syncs counts directory fsyncs, for tests and benchmarks.
	Syncs uint64
}

// Sync returns once an fsync of the directory that began after this call
// has finished.
func (s *DirSyncer) Sync() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cond == nil {
		s.cond = sync.NewCond(&s.mu)
	}
	s.requested++
	ticket := s.requested
	for s.done < ticket {
		if s.running {
			s.cond.Wait()
			continue
		}
		s.running = true
		target := s.requested
		s.mu.Unlock()
		err := SyncDir(s.Dir)
		s.mu.Lock()
		s.running = false
		s.Syncs++
		s.done, s.lastErr = target, err
		s.cond.Broadcast()
	}
	return s.lastErr
}
