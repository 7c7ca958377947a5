// Package mbox appends a message to an mbox file as Postfix's local(8)
// does for a mailbox (src/local/mailbox.c) and for a /file destination
// (src/local/file.c):
//
//   - the mailbox is locked first with a dotlock, PATH.lock created with
//     O_EXCL (src/global/dot_lockfile.c), then opened as safe_open()
//     opens (src/util/safe_open.c): an existing file must be the one its
//     path names, with no symbolic link (save a root-owned one in a
//     directory only root may write) and exactly one hard link; a
//     missing one is created with O_EXCL, mode 0600, and optionally
//     given to its owner; then it is locked with fcntl() and/or flock()
//     (src/global/mbox_open.c), as mailbox_delivery_lock says;
//   - the message is appended with mailcopy (the From_ line,
//     Return-Path:, X-Original-To:, Delivered-To:, ">From " quoting,
//     the blank line) and the file fsynced; on any failure the file is
//     truncated back to its size before the delivery, so that a failed
//     delivery never leaves half a message (src/global/mail_copy.c);
//   - mailbox_size_limit is Postfix's RLIMIT_FSIZE without the rlimit:
//     a write that would take the file beyond it fails with EFBIG.
//
// Errors are *deliver.Error in local(8)'s words, with the status that
// Postfix's mbox_dsn() gives the system error behind them, but for one
// deviation, the one mailtee's Maildir delivery makes too: a mailbox
// that cannot be opened, locked or used (a permission problem, a link, a
// directory in its place) defers (4.2.0) where Postfix bounces (5.2.0).
// A misconfigured or tampered mailbox is better fixed than its mail
// returned; the message waits, and expires at maximal_queue_lifetime.
package mbox

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mailtee/mailtee/internal/deliver"
	"github.com/mailtee/mailtee/internal/mailcopy"
)

// Owner is a uid and gid.
type Owner struct{ UID, GID uint32 }

// Options say how Deliver writes. Zero Flags, Locks and lock timers are
// Postfix's defaults on Linux; SizeLimit and StrictOwnership are not
// (main.cf's defaults are 51200000 and yes): the caller sets them.
type Options struct {
	// Envelope is what the From_ line and the added headers say.
	Envelope mailcopy.Envelope
	// Flags choose them; 0 means mailcopy.Mbox.
	Flags mailcopy.Flags
	// Locks are mailbox_delivery_lock's words: fcntl, flock, dotlock;
	// nil means DefaultLocks.
	Locks []string
	// SizeLimit is mailbox_size_limit in bytes: the file may not grow
	// beyond it. 0 means no limit.
	SizeLimit int64
	// User is the recipient's login name, for the error text.
	User string
	// File says path is a /file destination (file.c), not a mailbox: it
	// may be something other than a regular file (/dev/null), it may
	// not be executable, and a dotlock that cannot be made for a reason
	// other than another's lock is done without.
	File bool
	// Chown, when set, is given a file that Deliver creates: Postfix's
	// chown_uid/gid, when a spool only root may write is written as
	// root (see SpoolCred).
	Chown *Owner
	// StrictOwnership is strict_mailbox_ownership: a mailbox not owned
	// by RecipientUID is refused (and deferred).
	StrictOwnership bool
	RecipientUID    uint32
	// StaleLockTime is stale_lock_time: an older dotlock is removed
	// (500 s when 0). LockAttempts and LockDelay are
	// deliver_lock_attempts and deliver_lock_delay: how often a lock is
	// tried, and how long apart (20 and 1 s when 0).
	StaleLockTime time.Duration
	LockAttempts  int
	LockDelay     time.Duration
}

// SpoolCred says who writes a mailbox in spoolDir (mail_spool_directory;
// "" for a mailbox in the home directory, home_mailbox) for the user
// uid/gid, as Postfix's mailbox.c decides:
//
//   - no spool, a spool that cannot be examined, or a world-writable
//     one: the user;
//   - a group-writable spool (Debian's /var/mail, root:mail 2775): the
//     user, with the spool's group, so that the dotlock can be made and
//     a new mailbox is the user's, in the spool's group;
//   - otherwise root, and a mailbox that root creates is given to the
//     user (chown).
func SpoolCred(spoolDir string, uid, gid uint32) (runUID, runGID uint32, chown *Owner) {
	if spoolDir == "" {
		return uid, gid, nil
	}
	var st unix.Stat_t
	if err := unix.Stat(spoolDir, &st); err != nil || st.Mode&unix.S_IWOTH != 0 {
		return uid, gid, nil
	}
	if st.Mode&unix.S_IWGRP != 0 {
		return uid, st.Gid, nil
	}
	return 0, 0, &Owner{UID: uid, GID: gid}
}

// Deliver appends msg to the mbox file path, as the package doc says.
// It returns nil or a *deliver.Error.
func Deliver(path string, msg *deliver.Message, o Options) error {
	fail := func(status, reason string) *deliver.Error {
		var text string
		switch {
		case o.File:
			text = fmt.Sprintf("cannot append message to file %s: %s", path, reason)
		case o.User != "":
			text = fmt.Sprintf("cannot update mailbox %s for user %s. %s", path, o.User, reason)
		default:
			text = fmt.Sprintf("cannot update mailbox %s. %s", path, reason)
		}
		return &deliver.Error{Permanent: status[0] == '5', Enhanced: status, Text: text, Relay: "local"}
	}
	if path == "" || strings.HasSuffix(path, "/") {
		return fail("4.3.0", "mailtee error: a mailbox path ending in \"/\" is a Maildir, not an mbox")
	}
	locks, err := locksOf(o.Locks)
	if err != nil {
		return fail("4.3.0", err.Error())
	}
	r := retry{attempts: o.LockAttempts, delay: o.LockDelay}
	if r.attempts <= 0 {
		r.attempts = 20
	}
	if r.delay <= 0 {
		r.delay = time.Second
	}
	stale := o.StaleLockTime
	if stale <= 0 {
		stale = 500 * time.Second
	}
	flags := o.Flags
	if flags == 0 {
		flags = mailcopy.Mbox
	}

	body, err := msg.Open()
	if err != nil {
		return fail("4.3.0", "error reading message: "+strerror(err))
	}
	defer body.Close()

	// mbox_open(): dotlock, open, kernel locks, in that order.
	if locks&lockDot != 0 && statRegularOrMissing(path) {
		switch err := dotLock(path, r, stale); {
		case err == nil:
			defer dotUnlock(path) // after the file is closed, below
		case errnoOf(err) == unix.EEXIST:
			return fail("4.2.0", err.Error())
		case o.File:
			// MBOX_DOT_LOCK_MAY_FAIL: files in directories the user
			// cannot write to get no dotlock.
		default:
			return fail(mboxDSN(errnoOf(err), mailboxUnusable), err.Error())
		}
	}
	fd, st, created, err := safeOpen(path, o.Chown)
	if err != nil {
		return fail(mboxDSN(errnoOf(err), mailboxUnusable), err.Error())
	}
	f := os.NewFile(uintptr(fd), path)
	closed := false
	defer func() {
		if !closed {
			f.Close()
		}
	}()
	regular := isRegular(st)
	if regular {
		for _, kind := range []lockMask{lockFlock, lockFcntl} {
			if locks&kind == 0 {
				continue
			}
			if err := kernelLock(fd, kind, r); err != nil {
				return fail(mboxDSN(errnoOf(err), mailboxUnusable), err.Error())
			}
		}
		// Someone (GNU pop3d) replaced the mailbox while this waited for
		// its lock: safe_open() saw one link, the file now has none.
		if err := unix.Fstat(fd, st); err != nil || st.Nlink != 1 {
			return fail("4.2.0", "target file status changed unexpectedly")
		}
	}
	switch {
	case !o.File && !regular:
		return fail(mailboxUnusable, fmt.Sprintf("destination %s is not a regular file", path))
	case !o.File && o.StrictOwnership && st.Uid != o.RecipientUID:
		return fail("4.2.0", fmt.Sprintf("destination %s is not owned by recipient", path))
	case o.File && regular && st.Mode&0o111 != 0:
		return fail("5.7.1", "file is executable")
	}

	if !regular {
		// A device or FIFO: no size, nothing to sync or truncate. It is
		// written as Postfix writes it, without waiting: a FIFO that a
		// user names in her .forward and never reads gives EAGAIN, and
		// the mail is deferred (4.2.0), instead of holding a delivery,
		// and with 20 such messages all local delivery, forever (through
		// f, Go's poller would wait for the FIFO to drain).
		_, err := mailcopy.Copy(rawWriter(fd), body, o.Envelope, flags)
		if err == nil {
			closed = true
			err = f.Close()
		}
		if err != nil {
			return copyFailure(fail, err)
		}
		return nil
	}
	end, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return fail(mboxDSN(errnoOf(err), "5.3.0"), "error writing message: "+strerror(err))
	}
	_, err = mailcopy.Copy(&limitWriter{f: f, size: end, limit: o.SizeLimit}, body, o.Envelope, flags)
	if err == nil {
		err = f.Sync()
	}
	if err == nil && created {
		// The new mailbox's name must survive a crash as its content
		// does (Postfix does not sync it).
		err = syncDir(filepath.Dir(path))
	}
	if err != nil {
		// Before close, while the locks are still held.
		unix.Ftruncate(fd, end)
		return copyFailure(fail, err)
	}
	closed = true
	if err := f.Close(); err != nil {
		return copyFailure(fail, err)
	}
	return nil
}

// copyFailure words a failed copy as mail_copy() does. A failure to read
// the message is temporary here, where Postfix bounces most (5.3.0):
// mailtee reads it through a pipe from the server, which can break.
func copyFailure(fail func(status, reason string) *deliver.Error, err error) *deliver.Error {
	var re *mailcopy.ErrRead
	if errors.As(err, &re) {
		return fail("4.3.0", "error reading message: "+strerror(re.Err))
	}
	return fail(mboxDSN(errnoOf(err), "5.3.0"), "error writing message: "+strerror(err))
}

// rawWriter writes to a non-blocking descriptor, returning EAGAIN rather
// than waiting.
type rawWriter int

func (w rawWriter) Write(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		m, err := unix.Write(int(w), p[n:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return n, err
		}
		n += m
	}
	return n, nil
}

// limitWriter refuses, with EFBIG, a write that would take the file
// beyond limit bytes, as the kernel does under Postfix's RLIMIT_FSIZE.
type limitWriter struct {
	f     *os.File
	size  int64
	limit int64
}

func (w *limitWriter) Write(p []byte) (int, error) {
	if w.limit > 0 && w.size+int64(len(p)) > w.limit {
		return 0, unix.EFBIG
	}
	n, err := w.f.Write(p)
	w.size += int64(n)
	return n, err
}

// mailboxUnusable is the status of a mailbox that cannot be used (see
// the package doc: Postfix's is 5.2.0).
const mailboxUnusable = "4.2.0"

// mboxDSN is Postfix's mbox_dsn(): the status for a system error.
func mboxDSN(errno unix.Errno, def string) string {
	switch errno {
	case unix.EAGAIN, unix.ESTALE:
		return "4.2.0"
	case unix.ENOSPC:
		return "4.3.0"
	case unix.EDQUOT, unix.EFBIG:
		return "5.2.2"
	}
	return def
}

// syncDir fsyncs dir, unless it may not be read (mode -wx: Postfix
// delivers there, so mailtee does too, without the sync).
func syncDir(dir string) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err == unix.EACCES {
		return nil
	}
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Fsync(fd)
}

func strerror(err error) string { return deliver.Strerror(err) }
