package deliver

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

var maildirSeq atomic.Uint64

// Maildir delivers msg into the Maildir dir, as Postfix's local(8) does
// for a mailbox path ending in "/":
//
//   - dir, dir/tmp, dir/new and dir/cur are created as needed, mode 0700;
//   - the message is written to tmp/ under a unique name
//     (seconds.MmicrosecondsPpidQcounter.hostname, after
//     cr.yp.to/proto/maildir.html), with "Return-Path: <sender>" and
//     "Delivered-To: address" prepended (mail_copy.c, in that order) and
//     CRLF line ends turned into LF;
//   - the file is fsynced, linked into new/ and removed from tmp/, and new/
//     is fsynced, so that the delivery survives a crash once Maildir
//     returns nil.
//
// Errors are *Error with Postfix's status codes (mbox_dsn()): a full file
// system (ENOSPC) is 4.3.0, EAGAIN and ESTALE 4.2.0, all temporary; a full
// mailbox (EDQUOT, EFBIG) is 5.2.2, permanent. Any other failure, such as
// a permission problem, is deferred (4.2.0) — Postfix bounces those
// (5.2.0), but a mailbox misconfiguration is better fixed than bounced.
func Maildir(dir string, msg *Message, deliveredTo string) error {
	for _, sub := range []string{"tmp", "new", "cur"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return maildirError(err, "create maildir directory %s", filepath.Join(dir, sub))
		}
	}
	now := time.Now()
	name := fmt.Sprintf("%d.M%dP%dQ%d.%s", now.Unix(), now.Nanosecond()/1000, os.Getpid(), maildirSeq.Add(1), maildirHost())
	tmp := filepath.Join(dir, "tmp", name)
	if err := writeMaildirFile(tmp, msg, deliveredTo); err != nil {
		os.Remove(tmp)
		return err
	}
	defer os.Remove(tmp)
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
	if err := syncDir(newDir); err != nil {
		return maildirError(err, "sync maildir directory %s", newDir)
	}
	return nil
}

func writeMaildirFile(path string, msg *Message, deliveredTo string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return maildirError(err, "create maildir file %s", path)
	}
	defer f.Close()
	body, err := msg.Open()
	if err != nil {
		return tempf("local", "4.3.0", "maildir delivery failed: cannot read message %s: %v", msg.ID, err)
	}
	defer body.Close()

	bw := bufio.NewWriterSize(f, 64<<10)
	fmt.Fprintf(bw, "Return-Path: <%s>\n", msg.From)
	fmt.Fprintf(bw, "Delivered-To: %s\n", deliveredTo)
	lf := &lfWriter{w: bw}
	src := &readErr{r: body}
	if _, err := io.Copy(lf, src); err != nil {
		if src.err != nil {
			return tempf("local", "4.3.0", "maildir delivery failed: error reading message %s: %v", msg.ID, src.err)
		}
		return maildirError(err, "error writing message")
	}
	if err := lf.end(); err != nil {
		return maildirError(err, "error writing message")
	}
	if err := bw.Flush(); err != nil {
		return maildirError(err, "error writing message")
	}
	if err := f.Sync(); err != nil {
		return maildirError(err, "error writing message")
	}
	if err := f.Close(); err != nil {
		return maildirError(err, "error writing message")
	}
	return nil
}

// lfWriter turns CRLF into LF; a CR not followed by LF is kept. It also
// makes sure the file ends with a line end.
type lfWriter struct {
	w    *bufio.Writer
	cr   bool // a CR was held back
	last byte
}

func (l *lfWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if l.cr {
			l.cr = false
			if p[0] != '\n' {
				if err := l.put([]byte{'\r'}); err != nil {
					return 0, err
				}
			}
		}
		i := bytes.IndexByte(p, '\r')
		if i < 0 {
			if err := l.put(p); err != nil {
				return 0, err
			}
			break
		}
		if err := l.put(p[:i]); err != nil {
			return 0, err
		}
		l.cr = true
		p = p[i+1:]
	}
	return n, nil
}

func (l *lfWriter) put(p []byte) error {
	if len(p) == 0 {
		return nil
	}
	l.last = p[len(p)-1]
	_, err := l.w.Write(p)
	return err
}

func (l *lfWriter) end() error {
	if l.cr {
		l.cr = false
		if err := l.put([]byte{'\r'}); err != nil {
			return err
		}
	}
	if l.last != '\n' {
		return l.put([]byte{'\n'})
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// maildirHost is the host name part of a Maildir file name, with "/" and
// ":" written as \057 and \072, as the Maildir specification asks.
func maildirHost() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		h = "localhost"
	}
	return strings.NewReplacer("/", `\057`, ":", `\072`).Replace(h)
}

// maildirError words a file system error as local(8) does and gives it
// mbox_dsn()'s status.
func maildirError(err error, format string, args ...any) *Error {
	what := fmt.Sprintf(format, args...)
	var errno syscall.Errno
	errors.As(err, &errno)
	e := tempf("local", "4.2.0", "maildir delivery failed: %s: %s", what, strerror(err))
	switch errno {
	case syscall.ENOSPC:
		e.Enhanced = "4.3.0"
	case syscall.EDQUOT, syscall.EFBIG:
		e.Permanent, e.Enhanced = true, "5.2.2"
	}
	return e
}
