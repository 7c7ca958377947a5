// Package queuelock is the lock that says who may change a mailtee queue
// directory: `mailtee serve` holds it from before it opens the queue
// until it has closed it, and `postsuper -d/-h/-H` takes it to edit the
// spool of a stopped server. Neither then changes the spool under the
// other: a server that starts during an offline edit waits for it, and
// an edit that finds the lock held asks the running server instead.
//
// The lock is flock(2) on queue_directory/lock, a file of mode 0600
// holding the holder's process ID (for the message that names it).
// flock, not fcntl: it belongs to the open file, so it is released when
// the holder exits or crashes, and never by another close in the same
// process. As Postfix's master.lock (src/master/master.c,
// src/util/myflock.c), only the kernel's lock counts; the PID in the
// file is advisory text.
package queuelock

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Name is the lock file's name in queue_directory.
const Name = "lock"

// ErrLocked means another process holds the lock.
var ErrLocked = errors.New("queue directory is locked")

// ErrNoQueue means the queue directory does not exist: no server ever
// ran on it, so there is nothing to lock or edit.
var ErrNoQueue = errors.New("queue directory does not exist")

// Lock is a held lock; Release lets it go.
type Lock struct {
	f *os.File
}

// Acquire takes the lock of queue directory dir, creating dir (mode
// 0700, its parent 0755, as the queue does) and the lock file when
// needed. It waits up to wait for a holder to let go (an offline
// postsuper finishing its edit), then fails with ErrLocked and the
// holder's PID.
func Acquire(dir string, wait time.Duration) (*Lock, error) {
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return nil, fmt.Errorf("queue directory: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("queue directory: %w", err)
	}
	deadline := time.Now().Add(wait)
	for {
		l, err := TryAcquire(dir)
		if !errors.Is(err, ErrLocked) || !time.Now().Before(deadline) {
			return l, err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TryAcquire takes the lock of dir if no one holds it, without waiting
// and without creating dir: ErrNoQueue when dir does not exist,
// ErrLocked (with the holder's PID in the message) when it is held.
func TryAcquire(dir string) (*Lock, error) {
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", dir, ErrNoQueue)
	}
	path := filepath.Join(dir, Name)
	// O_NOFOLLOW: the queue directory is passable for setgid_group, and
	// root must not be led to open what a link names.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("queue lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			if pid := Holder(dir); pid > 0 {
				return nil, fmt.Errorf("%s: %w by process %d", path, ErrLocked, pid)
			}
			return nil, fmt.Errorf("%s: %w", path, ErrLocked)
		}
		return nil, fmt.Errorf("queue lock %s: %w", path, err)
	}
	// The PID, for the message another process shows; the lock is
	// the flock alone.
	f.Truncate(0)
	f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return &Lock{f: f}, nil
}

// Holder is the PID written by the last holder of dir's lock, 0 when
// unknown.
func Holder(dir string) int {
	b, err := os.ReadFile(filepath.Join(dir, Name))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// Release lets the lock go. The file stays: removing it would let a
// process that opened it before the removal lock a file no one else
// sees.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close() // closing the last descriptor releases the flock
	l.f = nil
	return err
}
