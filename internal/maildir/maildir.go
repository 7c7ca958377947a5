// Package maildir delivers a message into a Maildir
// (cr.yp.to/proto/maildir.html) as Postfix's local(8) does for a mailbox
// path ending in "/", durably: a delivery survives a crash once Deliver
// returns nil. Failures are *deliver.Error, with local(8)'s wording and
// mbox_dsn()'s status codes.
package maildir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mailtee/mailtee/internal/deliver"
	"github.com/mailtee/mailtee/internal/mailcopy"
	"github.com/mailtee/mailtee/internal/safeio"
)

var maildirSeq atomic.Uint64

// DeliverEnv delivers msg into the Maildir dir, as Postfix's local(8) does
// for a mailbox path ending in "/":
//
//   - dir, dir/tmp, dir/new and dir/cur are created as needed, mode 0700;
//   - the message file, mode 0600, gets a unique name
//     (seconds.MmicrosecondsPpidQcounter.hostname, after
//     cr.yp.to/proto/maildir.html), written by mailcopy with
//     mailcopy.Maildir: "Return-Path: <sender>", "X-Original-To:" when
//     env has an original recipient, and "Delivered-To: address"
//     prepended (mail_copy.c, in that order), CRLF line ends turned into
//     LF;
//   - the file is written and fsynced, then linked into new/, and new/ is
//     fsynced, so that the delivery survives a crash once DeliverEnv
//     returns nil.
//
// Where it is safe (see safeio.TmpfileDurable), the file is written without a
// name in tmp/ (O_TMPFILE) and linked straight into new/: it never
// appears in tmp/, which saves making and removing an entry there (mail
// readers only look at new/ and cur/, and a crash leaves nothing behind).
// Otherwise it is written to tmp/ under its name, linked into new/
// (renamed, without hard links) and removed from tmp/, as Postfix does.
// Which way a Maildir takes is decided at its first delivery. Concurrent
// deliveries into one Maildir share fsyncs of new/, each returning only
// after an fsync that began after its link.
//
// Errors are *deliver.Error with Postfix's status codes (mbox_dsn()): a
// full file system (ENOSPC) is 4.3.0, EAGAIN and ESTALE 4.2.0, all
// temporary; a full mailbox (EDQUOT, EFBIG) is 5.2.2, permanent. Any
// other failure, such as a permission problem, is deferred (4.2.0) — Postfix bounces those
// (5.2.0), but a mailbox misconfiguration is better fixed than bounced.
func DeliverEnv(dir string, msg *deliver.Message, env mailcopy.Envelope) error {
	return maildirDeliver(dir, msg, env, maildirAuto)
}

// Deliver is DeliverEnv with the sender msg.From and no X-Original-To:.
func Deliver(dir string, msg *deliver.Message, deliveredTo string) error {
	return DeliverEnv(dir, msg, mailcopy.Envelope{Sender: msg.From, DeliveredTo: deliveredTo})
}

// maildirMode says how maildirDeliver writes the file.
type maildirMode int

const (
	maildirAuto    maildirMode = iota // unnamed where that is safe
	maildirUnnamed                    // unnamed if O_TMPFILE works at all (tests, benchmarks)
	maildirNamed                      // in tmp/ under its name
)

func maildirDeliver(dir string, msg *deliver.Message, env mailcopy.Envelope, mode maildirMode) error {
	for _, sub := range []string{"tmp", "new", "cur"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return maildirError(err, "create maildir directory %s", filepath.Join(dir, sub))
		}
	}
	md := maildirFor(dir)
	name := maildirName()
	if mode != maildirNamed && md.useTmpfile(dir, mode == maildirUnnamed) {
		err := md.deliverUnnamed(dir, name, msg, env)
		if err != errNoTmpfile {
			return err
		}
		// The file system no longer takes O_TMPFILE (another one was
		// mounted there): use tmp/ from now on.
		md.tmpfile.Store(false)
	}
	return md.deliverNamed(dir, name, msg, env)
}

// maildirState is what is kept per Maildir across deliveries.
type maildirState struct {
	probe   sync.Once
	tmpfile atomic.Bool      // O_TMPFILE and linkat work in tmp/
	durable bool             // and that is safe, see safeio.TmpfileDurable
	syncNew safeio.DirSyncer // fsyncs of new/
}

// maildirs maps a Maildir's path, as given, to its *maildirState: one
// small entry per Maildir delivered to.
var maildirs sync.Map

func maildirFor(dir string) *maildirState {
	v, ok := maildirs.Load(dir)
	if !ok {
		v, _ = maildirs.LoadOrStore(dir, &maildirState{syncNew: safeio.DirSyncer{Dir: filepath.Join(dir, "new")}})
	}
	return v.(*maildirState)
}

// useTmpfile says whether this Maildir gets unnamed files: O_TMPFILE and
// linkat must work in tmp/, and unless anyway, tmp/ must be on a file
// system where that is safe. The first delivery probes; concurrent first
// deliveries wait for the one probe (two probes at once in one process
// use the same probe name and can fail each other). A probe that fails
// for any reason, a full disk included, leaves this Maildir on the
// named-file path, which works wherever the probe does not.
func (md *maildirState) useTmpfile(dir string, anyway bool) bool {
	md.probe.Do(func() {
		tmp := filepath.Join(dir, "tmp")
		md.durable = safeio.TmpfileDurable(tmp)
		md.tmpfile.Store(safeio.TmpfileWorks(tmp))
	})
	return (md.durable || anyway) && md.tmpfile.Load()
}

// errNoTmpfile: the file system refused O_TMPFILE.
var errNoTmpfile = errors.New("O_TMPFILE not supported")

// deliverUnnamed writes the message to an unnamed file in tmp/ and links
// it into new/ under name.
func (md *maildirState) deliverUnnamed(dir, name string, msg *deliver.Message, env mailcopy.Envelope) error {
	tmpDir := filepath.Join(dir, "tmp")
	nf, err := safeio.CreateNew(tmpDir, true)
	if err != nil {
		// EISDIR: a kernel without O_TMPFILE (it sees O_DIRECTORY only).
		if errors.Is(err, syscall.EOPNOTSUPP) || errors.Is(err, syscall.EISDIR) {
			return errNoTmpfile
		}
		return maildirError(err, "create maildir file %s", filepath.Join(tmpDir, name))
	}
	// Closing an unlinked file discards it. Once linked and synced, the
	// file is delivered whatever close says.
	defer nf.Close()
	if err := writeMaildirFile(nf.File, msg, env); err != nil {
		return err
	}
	newDir := filepath.Join(dir, "new")
	dst := filepath.Join(newDir, name)
	if err := nf.Link(dst); err != nil {
		return maildirError(err, "create maildir file %s", dst)
	}
	if err := md.syncNew.Sync(); err != nil {
		return maildirError(err, "sync maildir directory %s", newDir)
	}
	return nil
}

// deliverNamed writes the message to tmp/name, links it into new/ and
// removes it from tmp/.
func (md *maildirState) deliverNamed(dir, name string, msg *deliver.Message, env mailcopy.Envelope) error {
	tmp := filepath.Join(dir, "tmp", name)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return maildirError(err, "create maildir file %s", tmp)
	}
	defer os.Remove(tmp) // after a rename, or a link, or a failure
	err = writeMaildirFile(f, msg, env)
	if cerr := f.Close(); err == nil && cerr != nil {
		err = maildirError(cerr, "error writing message")
	}
	if err != nil {
		return err
	}
	newDir := filepath.Join(dir, "new")
	dst := filepath.Join(newDir, name)
	if err := os.Link(tmp, dst); err != nil {
		// Some file systems have no hard links; rename is as atomic.
		if !errors.Is(err, syscall.EPERM) && !errors.Is(err, syscall.ENOTSUP) && !errors.Is(err, syscall.EXDEV) {
			return maildirError(err, "create maildir file %s", dst)
		}
		if err := os.Rename(tmp, dst); err != nil {
			return maildirError(err, "create maildir file %s", dst)
		}
	}
	if err := md.syncNew.Sync(); err != nil {
		return maildirError(err, "sync maildir directory %s", newDir)
	}
	return nil
}

// maildirName returns a new unique file name:
// seconds.MmicrosecondsPpidQcounter.hostname.
func maildirName() string {
	now := time.Now()
	return fmt.Sprintf("%d.M%dP%dQ%d.%s", now.Unix(), now.Nanosecond()/1000, os.Getpid(), maildirSeq.Add(1), maildirHost())
}

// writeMaildirFile writes the message to f and fsyncs it; the caller
// closes f.
func writeMaildirFile(f *os.File, msg *deliver.Message, env mailcopy.Envelope) error {
	body, err := msg.Open()
	if err != nil {
		return failure("4.3.0", "maildir delivery failed: cannot read message %s: %v", msg.ID, err)
	}
	defer body.Close()
	if _, err := mailcopy.Copy(f, body, env, mailcopy.Maildir); err != nil {
		var re *mailcopy.ErrRead
		if errors.As(err, &re) {
			return failure("4.3.0", "maildir delivery failed: error reading message %s: %v", msg.ID, re.Err)
		}
		return maildirError(err, "error writing message")
	}
	if err := f.Sync(); err != nil {
		return maildirError(err, "error writing message")
	}
	return nil
}

// maildirHost is the host name part of a Maildir file name, with "/" and
// ":" written as \057 and \072, as the Maildir specification asks.
func maildirHost() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		h = "localhost"
	}
	if !strings.ContainsAny(h, "/:") {
		return h
	}
	return strings.NewReplacer("/", `\057`, ":", `\072`).Replace(h)
}

// maildirError words a file system error as local(8) does and gives it
// mbox_dsn()'s status.
func maildirError(err error, format string, args ...any) *deliver.Error {
	what := fmt.Sprintf(format, args...)
	var errno syscall.Errno
	errors.As(err, &errno)
	e := failure("4.2.0", "maildir delivery failed: %s: %s", what, deliver.Strerror(err))
	switch errno {
	case syscall.ENOSPC:
		e.Enhanced = "4.3.0"
	case syscall.EDQUOT, syscall.EFBIG:
		e.Permanent, e.Enhanced = true, "5.2.2"
	}
	return e
}

// failure is a temporary failure with status; maildirError changes that
// where mbox_dsn() says otherwise.
func failure(status, format string, args ...any) *deliver.Error {
	return &deliver.Error{Enhanced: status, Text: fmt.Sprintf(format, args...), Relay: "local"}
}
