package asuser

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/mailtee/mailtee/internal/deliver"
)

// OpenOptions say which files OpenFile accepts, as local(8) checks a
// .forward file (dotforward.c) and an :include: file (include.c) before
// it reads them.
type OpenOptions struct {
	// NoFollow refuses a symbolic link at path (.forward: lstat_as).
	NoFollow bool `json:"nofollow,omitempty"`
	// Owners, when not empty, lists the only owners accepted
	// (.forward: root or the user).
	Owners []uint32 `json:"owners,omitempty"`
}

// ErrNotFound is OpenFile's error for a path that does not exist.
var ErrNotFound = errors.New("no such file")

// OpenFile opens path for reading with the privileges of the calling
// process, and returns it with its owner. It must be a regular file,
// not writable by others, owned as o says. A missing file is ErrNotFound;
// any other refusal says why, naming the file.
func OpenFile(path string, o OpenOptions) (*os.File, uint32, error) {
	flags := unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NONBLOCK // a FIFO must not hang us
	if o.NoFollow {
		flags |= unix.O_NOFOLLOW
	}
	fd, err := unix.Open(path, flags, 0)
	switch {
	case err == unix.ENOENT:
		return nil, 0, ErrNotFound
	case err == unix.ELOOP && o.NoFollow:
		return nil, 0, fmt.Errorf("file %s is not a regular file (a symbolic link)", path)
	case err != nil:
		return nil, 0, fmt.Errorf("cannot open file %s: %v", path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("cannot stat file %s: %v", path, err)
	}
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		err = fmt.Errorf("file %s is not a regular file", path)
	case st.Mode&0o002 != 0:
		err = fmt.Errorf("file %s is world writable", path)
	case len(o.Owners) > 0 && !hasOwner(o.Owners, st.Uid):
		err = fmt.Errorf("file %s has bad owner uid %d", path, st.Uid)
	}
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	if err := unix.SetNonblock(fd, false); err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, st.Uid, nil
}

func hasOwner(owners []uint32, uid uint32) bool {
	for _, o := range owners {
		if o == uid {
			return true
		}
	}
	return false
}

// Open opens path as c, as local(8)'s open_as() does: the file is
// opened by c's helper, with c's privileges, and its descriptor passed
// back, so that a link in a user's home directory leads only where that
// user could read anyway. Errors are as OpenFile's; a helper that cannot
// be reached is a *deliver.Error.
func (p *Pool) Open(ctx context.Context, c Cred, path string, o OpenOptions) (*os.File, uint32, error) {
	h, err := p.get(c)
	if err != nil {
		return nil, 0, failure("cannot start local delivery helper (%v): %v", c, err)
	}
	defer p.release(h)
	r := h.roundTrip(ctx, request{Op: "open", Path: path, Open: &o}, strings.NewReader(""))
	if r.Err != nil {
		if r.file != nil {
			r.file.Close()
		}
		switch {
		case r.Err.Enhanced == "" && r.Err.Text == ErrNotFound.Error():
			return nil, 0, ErrNotFound
		case r.Err.Enhanced == "":
			return nil, 0, errors.New(r.Err.Text)
		}
		return nil, 0, r.Err
	}
	if r.file == nil {
		return nil, 0, failure("local delivery helper (%v) sent no file for %s", c, path)
	}
	return r.file, r.Owner, nil
}

// handleOpen is the helper's side of Open. Refusals travel as an error
// without a status code, told apart from a helper failure.
func handleOpen(req request) reply {
	var o OpenOptions
	if req.Open != nil {
		o = *req.Open
	}
	f, owner, err := OpenFile(req.Path, o)
	if err != nil {
		return reply{Err: &deliver.Error{Text: err.Error()}}
	}
	return reply{Owner: owner, file: f}
}
