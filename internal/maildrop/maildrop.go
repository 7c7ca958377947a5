// Package maildrop is Postfix's postdrop(1) and pickup(8) for mailtee:
// `mailtee sendmail` writes each submission as one file into the
// spool's maildrop directory and pokes the server; the server's pickup
// reads it, checks it and hands it to cleanup. The client opens no
// table and needs no running server: a file dropped while the server
// is stopped is picked up at its next start.
//
// The layout under queue_directory follows Postfix's:
//
//	maildrop/       mode 1730, group setgid_group: members (the setgid
//	                sendmail) may create files, never list, read or
//	                remove another user's
//	public/         mode 0710, group setgid_group
//	public/pickup   a FIFO, mode 0622: a byte written to it wakes pickup;
//	                it carries no data
//	corrupt/        files pickup refused, for the administrator
//
// Every file in maildrop is hostile input from a local user: pickup
// opens it without following links, takes regular files with one link
// only, bounds its size by message_size_limit, parses the format (see
// Encode) strictly and checks that the uid it records is its owner's.
package maildrop

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/mailtee/mailtee/internal/safeio"
)

// Names under queue_directory.
const (
	DropDir    = "maildrop"
	PublicDir  = "public"
	PickupFIFO = "public/pickup"
	CorruptDir = "corrupt"
)

// tmpPrefix starts the name of a file being written; pickup leaves such
// files alone until they are older than staleTemp.
const (
	tmpPrefix = ".tmp-"
	staleTemp = time.Hour
)

// ErrNoMaildrop means queue_directory has no maildrop yet and this user
// may not make one: the server has never run there.
var ErrNoMaildrop = errors.New("no maildrop directory (has mailtee serve run with this queue_directory?)")

// Post writes d and the message into queueDir's maildrop, complete and
// synced before it gets its final name, so that pickup never sees a
// partial file. It then pokes a running server; running says whether
// one took the poke. With none, the file waits for the next start.
func Post(queueDir string, d *Drop, msg []byte) (name string, running bool, err error) {
	dir := filepath.Join(queueDir, DropDir)
	if err := ensureDropDir(queueDir); err != nil {
		return "", false, err
	}
	tmp := filepath.Join(dir, tmpPrefix+randomName())
	// 0600: no one but the submitter and pickup (root) reads it, even
	// in a directory the whole group may write.
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return "", false, err
	}
	defer os.Remove(tmp) // a no-op once renamed
	werr := Encode(f, d, msg)
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return "", false, werr
	}
	// Another user may have taken a name (the directory is shared and
	// sticky): never replace, try another.
	for try := 0; ; try++ {
		name = randomName()
		err = safeio.RenameNoReplace(tmp, filepath.Join(dir, name))
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrExist) && !errors.Is(err, fs.ErrPermission) || try == 9 {
			return "", false, err
		}
	}
	// The rename is durable once the directory is synced; members of
	// the group cannot open maildrop (no read permission) to sync it. On
	// a journalling file system a second fsync of the file commits the
	// transaction that holds the rename.
	if safeio.SyncDir(dir) != nil {
		if f, err := os.Open(filepath.Join(dir, name)); err == nil {
			f.Sync()
			f.Close()
		}
	}
	return name, Poke(queueDir), nil
}

// ensureDropDir makes maildrop when the caller may (root, or the owner
// of a spool the server has not prepared yet); pickup fixes its group
// and mode at start. Anyone else gets ErrNoMaildrop.
func ensureDropDir(queueDir string) error {
	dir := filepath.Join(queueDir, DropDir)
	fi, err := os.Lstat(dir)
	if err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("%s is not a directory", dir)
		}
		return nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := os.MkdirAll(queueDir, 0o755); err != nil {
		if errors.Is(err, fs.ErrPermission) {
			return ErrNoMaildrop
		}
		return err
	}
	if err := os.Mkdir(dir, 0o730); err != nil && !errors.Is(err, fs.ErrExist) {
		if errors.Is(err, fs.ErrPermission) {
			return ErrNoMaildrop
		}
		return err
	}
	return os.Chmod(dir, 0o730|os.ModeSticky)
}

// randomName is a maildrop file name: the time in microseconds then
// random bits, upper-case hex, so that names sort by arrival and cannot
// be guessed by another user who wants to take them first.
func randomName() string {
	var b [5]byte
	rand.Read(b[:])
	return fmt.Sprintf("%014X%010X", time.Now().UnixMicro(), binary.BigEndian.Uint64(append([]byte{0, 0, 0}, b[:]...)))
}

// validName says whether name has randomName's shape.
func validName(name string) bool {
	if len(name) != 24 {
		return false
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; !('0' <= c && c <= '9' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// Poke wakes the pickup of a running server through its FIFO, without
// waiting: a FIFO nobody reads (no server) refuses the open, and a
// full one already holds a wake-up. It reports whether a server took it.
func Poke(queueDir string) bool {
	f, err := os.OpenFile(filepath.Join(queueDir, PickupFIFO), os.O_WRONLY|syscall.O_NONBLOCK|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || fi.Mode()&fs.ModeNamedPipe == 0 {
		return false
	}
	_, err = f.Write([]byte{'W'}) // Postfix's TRIGGER_REQ_WAKEUP
	return err == nil || errors.Is(err, syscall.EAGAIN)
}

// SplitHeader splits a CRLF message at the first empty line; a message
// with no header at all gets an empty header.
func SplitHeader(b []byte) (hdr, rest []byte) {
	if bytes.HasPrefix(b, []byte("\r\n")) {
		return nil, b
	}
	if i := bytes.Index(b, []byte("\r\n\r\n")); i >= 0 {
		return b[:i+2], b[i+2:]
	}
	// All header, or all body: a first line that is no header field
	// means there is no header.
	first, _, _ := bytes.Cut(b, []byte("\r\n"))
	if bytes.IndexByte(first, ':') <= 0 || bytes.ContainsAny(first[:bytes.IndexByte(first, ':')], " \t") {
		return nil, append([]byte("\r\n"), b...)
	}
	return b, []byte("\r\n")
}
