package mbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// openError is a failure to open, lock or check a mailbox: the reason in
// Postfix's words and the errno that chooses its status (mbox_dsn()).
type openError struct {
	reason string
	errno  unix.Errno
}

func (e *openError) Error() string { return e.reason }
func (e *openError) Unwrap() error { return e.errno }

func errnoOf(err error) unix.Errno {
	var errno unix.Errno
	if errors.As(err, &errno) {
		return errno
	}
	return 0
}

// safeOpen opens path for appending, or creates it with mode 0600 and,
// when chown is set, gives it to chown; as Postfix's safe_open() with
// O_CREAT (src/util/safe_open.c). It returns the open file's status, and
// whether it created the file.
func safeOpen(path string, chown *Owner) (fd int, st *unix.Stat_t, created bool, err error) {
	fd, st, oe := openExisting(path)
	if oe == nil || oe.errno != unix.ENOENT {
		return fd, st, false, nilIfNone(oe)
	}
	fd, st, oe = create(path, chown)
	if oe == nil {
		return fd, st, true, nil
	}
	if oe.errno == unix.EEXIST {
		fd, st, oe = openExisting(path)
	}
	return fd, st, false, nilIfNone(oe)
}

// nilIfNone avoids a nil *openError in a non-nil error.
func nilIfNone(err *openError) error {
	if err == nil {
		return nil
	}
	return err
}

const openFlags = unix.O_WRONLY | unix.O_APPEND | unix.O_NONBLOCK | unix.O_CLOEXEC

// openExisting is safe_open_exist(): the file opened must have one link,
// not be a directory, and be the file that the path names without a
// symbolic link, except a root-owned link in a directory only root may
// write (Postfix makes that exception for /dev links). O_NONBLOCK keeps
// a FIFO put in the mailbox's place from blocking the open.
func openExisting(path string) (int, *unix.Stat_t, *openError) {
	fd, err := unix.Open(path, openFlags, 0)
	if err != nil {
		return -1, nil, &openError{"cannot open file: " + strerror(err), errnoOf(err)}
	}
	var st, lst unix.Stat_t
	oe := func() *openError {
		if err := unix.Fstat(fd, &st); err != nil {
			return &openError{"bad open file status: " + strerror(err), errnoOf(err)}
		}
		if st.Nlink != 1 {
			return &openError{fmt.Sprintf("file has %d hard links", st.Nlink), unix.EPERM}
		}
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			return &openError{"file is a directory", unix.EISDIR}
		}
		if err := unix.Lstat(path, &lst); err != nil {
			return &openError{"file status changed unexpectedly: " + strerror(err), unix.EPERM}
		}
		if lst.Mode&unix.S_IFMT == unix.S_IFLNK {
			if lst.Uid == 0 && rootOnlyDir(filepath.Dir(path)) {
				return nil
			}
			return &openError{"file is a symbolic link", unix.EPERM}
		}
		if st.Dev != lst.Dev || st.Ino != lst.Ino || st.Nlink != lst.Nlink || st.Mode != lst.Mode {
			return &openError{"file status changed unexpectedly", unix.EPERM}
		}
		return nil
	}()
	if oe != nil {
		unix.Close(fd)
		return -1, nil, oe
	}
	return fd, &st, nil
}

// rootOnlyDir: dir (followed, as stat() does) is root's and writable by
// root only.
func rootOnlyDir(dir string) bool {
	var st unix.Stat_t
	return unix.Stat(dir, &st) == nil && st.Uid == 0 && st.Mode&(unix.S_IWGRP|unix.S_IWOTH) == 0
}

// create is safe_open_create(): O_EXCL, which follows no symbolic link.
// A file that cannot be given to chown is removed, where Postfix leaves
// it: root's, it would refuse every later delivery. A delivery that
// opened it meanwhile finds it unlinked once it holds its lock (the link
// count is checked again then) and defers, so nothing is written into a
// file without a name.
func create(path string, chown *Owner) (int, *unix.Stat_t, *openError) {
	fd, err := unix.Open(path, openFlags|unix.O_CREAT|unix.O_EXCL, 0o600)
	if err != nil {
		return -1, nil, &openError{"cannot create file exclusively: " + strerror(err), errnoOf(err)}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, nil, &openError{"bad open file status: " + strerror(err), errnoOf(err)}
	}
	if chown != nil {
		if err := unix.Fchown(fd, int(chown.UID), int(chown.GID)); err != nil {
			// The empty file just made goes too: left root's, it would
			// refuse every later delivery (strict_mailbox_ownership).
			unix.Unlink(path)
			unix.Close(fd)
			return -1, nil, &openError{"cannot change file ownership: " + strerror(err), errnoOf(err)}
		}
		st.Uid, st.Gid = chown.UID, chown.GID
	}
	return fd, &st, nil
}

// isRegular says whether st is a regular file's status.
func isRegular(st *unix.Stat_t) bool { return st.Mode&unix.S_IFMT == unix.S_IFREG }

// statRegularOrMissing is mbox_open()'s test before a dotlock: stat()
// (following links) fails, or finds a regular file, so that no
// /dev/null.lock is ever attempted.
func statRegularOrMissing(path string) bool {
	fi, err := os.Stat(path)
	return err != nil || fi.Mode().IsRegular()
}
