package mbox

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// lockMask is a set of mailbox_delivery_lock methods.
type lockMask int

const (
	lockFlock lockMask = 1 << iota
	lockFcntl
	lockDot
)

// DefaultLocks is mailbox_delivery_lock's default on Linux (Postfix's
// sys_defs.h).
var DefaultLocks = []string{"fcntl", "dotlock"}

// CheckLocks checks a mailbox_delivery_lock value, split into words, as
// Postfix's mbox_lock_mask() and local(8) do at start-up.
func CheckLocks(words []string) error {
	_, err := locksOf(words)
	return err
}

func locksOf(words []string) (lockMask, error) {
	if words == nil {
		words = DefaultLocks
	}
	var m lockMask
	for _, w := range words {
		switch strings.ToLower(w) {
		case "flock":
			m |= lockFlock
		case "fcntl":
			m |= lockFcntl
		case "dotlock":
			m |= lockDot
		default:
			return 0, fmt.Errorf("unknown mailbox_delivery_lock value %q in %q: use fcntl, flock and/or dotlock",
				w, strings.Join(words, ", "))
		}
	}
	if m == 0 {
		return 0, fmt.Errorf("parameter mailbox_delivery_lock specifies no applicable mailbox locking method: use fcntl, flock and/or dotlock")
	}
	return m, nil
}

// retry is deliver_lock_attempts and deliver_lock_delay.
type retry struct {
	attempts int
	delay    time.Duration
}

// sleep waits delay ± a quarter of it, as Postfix's
// rand_sleep(delay, delay/2), so that waiting deliveries spread out.
func (r retry) sleep() {
	d := r.delay - r.delay/4
	if r.delay >= 2 {
		d += rand.N(r.delay / 2)
	}
	time.Sleep(d)
}

// dotLock creates path.lock as Postfix's dot_lockfile() does: O_EXCL,
// mode 0, tried r.attempts times; a lock file whose status changed
// longer than stale ago is removed first (its holder died). The error
// is the last attempt's: EEXIST when the lock stayed taken.
func dotLock(path string, r retry, stale time.Duration) error {
	lock := path + ".lock"
	for count := 1; ; count++ {
		fd, err := unix.Open(lock, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0)
		if err == nil {
			unix.Close(fd)
			return nil
		}
		if count >= r.attempts || err != unix.EEXIST {
			return &openError{fmt.Sprintf("unable to create lock file %s: %s", lock, strerror(err)), errnoOf(err)}
		}
		var st unix.Stat_t
		if unix.Stat(lock, &st) == nil && time.Since(time.Unix(st.Ctim.Unix())) > stale {
			if err := unix.Unlink(lock); err != nil && err != unix.ENOENT {
				return &openError{fmt.Sprintf("unable to create lock file %s: %s", lock, strerror(err)), errnoOf(err)}
			}
			continue // at once: the lock was stale, not busy
		}
		r.sleep()
	}
}

// dotUnlock removes path.lock, as dot_unlockfile().
func dotUnlock(path string) { unix.Unlink(path + ".lock") }

// kernelLock takes an exclusive lock of kind (lockFcntl or lockFlock)
// on fd, tried r.attempts times without blocking, as Postfix's
// deliver_flock(). Closing fd releases it.
//
// fcntl is taken as an open file description lock (F_OFD_SETLK): it
// conflicts with the classic fcntl() locks of mail readers and other
// delivery agents exactly as theirs do with each other, but belongs to
// this open file, not to the process. A classic lock would not keep two
// deliveries of this process apart, and closing any descriptor of the
// mailbox in this process would drop it.
func kernelLock(fd int, kind lockMask, r retry) error {
	for i := 1; ; i++ {
		err := tryLock(fd, kind)
		if err == nil {
			return nil
		}
		// As myflock(): some systems say EACCES for a lock held elsewhere.
		if err == unix.EACCES || err == unix.EWOULDBLOCK {
			err = unix.EAGAIN
		}
		if i >= r.attempts {
			return &openError{"unable to lock for exclusive access: " + strerror(err), errnoOf(err)}
		}
		r.sleep()
	}
}

func tryLock(fd int, kind lockMask) error {
	for {
		var err error
		if kind == lockFlock {
			err = unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB)
		} else {
			// The whole file, however long it grows (Len 0).
			lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: 0, Len: 0}
			err = unix.FcntlFlock(uintptr(fd), unix.F_OFD_SETLK, &lk)
		}
		if err != unix.EINTR {
			return err
		}
	}
}
