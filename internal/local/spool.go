package local

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/mailtee/mailtee/internal/deliver"
)

// spoolMaildir makes sure the Maildir dir in mail_spool_directory is a
// directory of its owner's, before the owner's helper writes into it.
// Users cannot create entries in a spool such as Debian's /var/mail
// (root:mail 2775), so a missing one is created here, as root, and handed
// to its owner — with the spool's group when the spool is group-writable,
// as local(8) does for a mailbox file (src/local/mailbox.c). Nothing here
// follows a link: the name is examined and created relative to the open
// spool directory, and a link or another user's directory in its place is
// refused, so that the helper never writes into a place its recipient was
// not given.
func spoolMaildir(dir string, owner User) error {
	dir = strings.TrimSuffix(dir, "/")
	spool, name := filepath.Dir(dir), filepath.Base(dir)
	sfd, err := unix.Open(spool, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		// A spool that is not there yet is made for every mailbox owner
		// to pass through, as /var/mail is; the mailboxes in it are
		// theirs alone.
		if err = os.MkdirAll(spool, 0o755); err == nil {
			sfd, err = unix.Open(spool, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		}
	}
	if err != nil {
		return spoolErr(err, "open mail spool directory %s", spool)
	}
	defer unix.Close(sfd)
	var st unix.Stat_t
	err = unix.Fstatat(sfd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	if errors.Is(err, unix.ENOENT) {
		return createSpoolMaildir(sfd, spool, name, owner)
	}
	if err != nil {
		return spoolErr(err, "examine maildir %s", dir)
	}
	return checkOwned(dir, &st, owner)
}

// createSpoolMaildir creates name in the spool directory sfd for owner.
// It is made under a hidden name, handed over, and only then renamed into
// place (never over anything), so that a concurrent delivery never sees
// it still root's.
func createSpoolMaildir(sfd int, spool, name string, owner User) error {
	dir := filepath.Join(spool, name)
	var sst unix.Stat_t
	if err := unix.Fstat(sfd, &sst); err != nil {
		return spoolErr(err, "examine mail spool directory %s", spool)
	}
	gid := owner.GID
	if sst.Mode&unix.S_IWGRP != 0 && sst.Mode&unix.S_IWOTH == 0 {
		gid = sst.Gid
	}
	tmp := fmt.Sprintf(".%s.mailtee%d.%d", name, os.Getpid(), spoolSeq.Add(1))
	if len(tmp) > 255 {
		tmp = fmt.Sprintf(".mailtee%d.%d", os.Getpid(), spoolSeq.Add(1))
	}
	if err := unix.Mkdirat(sfd, tmp, 0o700); err != nil {
		return spoolErr(err, "create maildir %s", dir)
	}
	err := handOver(sfd, tmp, owner.UID, gid)
	if err == nil {
		err = unix.Renameat2(sfd, tmp, sfd, name, unix.RENAME_NOREPLACE)
	}
	if err != nil {
		unix.Unlinkat(sfd, tmp, unix.AT_REMOVEDIR)
		if !errors.Is(err, unix.EEXIST) {
			return spoolErr(err, "create maildir %s", dir)
		}
		// Another delivery made it first: judge what is there.
		var st unix.Stat_t
		if err := unix.Fstatat(sfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return spoolErr(err, "examine maildir %s", dir)
		}
		return checkOwned(dir, &st, owner)
	}
	// The new entry must outlive a crash like the messages in it.
	if err := unix.Fsync(sfd); err != nil {
		return spoolErr(err, "sync mail spool directory %s", spool)
	}
	return nil
}

var spoolSeq atomic.Uint64

// handOver gives the directory name in sfd, just made by us, to uid:gid.
func handOver(sfd int, name string, uid, gid uint32) error {
	fd, err := unix.Openat(sfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Fchown(fd, int(uid), int(gid))
}

// checkOwned refuses a Maildir in the spool that is not a directory of
// owner's. A directory left owned by root by an older mailtee, which
// wrote every mailbox as root, waits for the administrator: it is never
// taken over silently (`mailtee check` lists each one).
func checkOwned(dir string, st *unix.Stat_t, owner User) error {
	switch {
	case st.Mode&unix.S_IFMT == unix.S_IFLNK:
		return &deliver.Error{Enhanced: "4.2.0", Relay: "local",
			Text: fmt.Sprintf("maildir delivery failed: %s is a symbolic link; mailtee does not follow links in mail_spool_directory", dir)}
	case st.Mode&unix.S_IFMT != unix.S_IFDIR:
		return &deliver.Error{Enhanced: "4.2.0", Relay: "local",
			Text: fmt.Sprintf("maildir delivery failed: %s is not a directory", dir)}
	case st.Uid != owner.UID:
		return &deliver.Error{Enhanced: "4.2.0", Relay: "local",
			Text: fmt.Sprintf("maildir delivery failed: %s is owned by uid %d, not by its recipient %s (uid %d); if it is %s's, give it back: chown -R %d:%d %s",
				dir, st.Uid, owner.Name, owner.UID, owner.Name, owner.UID, owner.GID, dir)}
	}
	return nil
}

func spoolErr(err error, format string, args ...any) error {
	return &deliver.Error{Enhanced: "4.2.0", Relay: "local",
		Text: fmt.Sprintf("maildir delivery failed: %s: %v", fmt.Sprintf(format, args...), err)}
}
