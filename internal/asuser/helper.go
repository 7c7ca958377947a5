package asuser

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/mailtee/mailtee/internal/deliver"
)

// Main is the helper process: args are UID and GID. It drops to them,
// then serves requests on file descriptor 3 until the server closes it.
// It returns the exit code.
func Main(args []string) int {
	if len(args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: mailtee "+Command+" UID GID (started by mailtee serve)")
		return 1
	}
	uid, err1 := strconv.ParseUint(args[0], 10, 32)
	gid, err2 := strconv.ParseUint(args[1], 10, 32)
	if err1 != nil || err2 != nil {
		fmt.Fprintln(os.Stderr, "bad UID or GID:", args)
		return 1
	}
	if err := drop(int(uid), int(gid)); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// Nothing the helper was given may reach the commands it runs: not
	// descriptor 3, its socket to the server (a command holding it could
	// read other deliveries' requests and forge replies), nor any other
	// the server inherited. FileConn works on a close-on-exec copy.
	if err := unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
		fmt.Fprintln(os.Stderr, "close_range:", err)
		return 1
	}
	f := os.NewFile(3, "asuser")
	conn, err := net.FileConn(f)
	f.Close()
	if err != nil {
		fmt.Fprintln(os.Stderr, "no socket on descriptor 3:", err)
		return 1
	}
	serve(conn.(*net.UnixConn))
	return 0
}

// drop gives the process uid and gid, gid as its only group, for every
// thread (Go's syscall package changes all threads on Linux), and makes
// it not dumpable, so its user can neither attach to it nor read its
// memory through /proc. Root is refused: a helper that could not drop
// would write as root, which is what it exists to prevent.
func drop(uid, gid int) error {
	if uid == 0 {
		return errors.New("refusing to run as root")
	}
	if err := syscall.Setgroups([]int{gid}); err != nil {
		return fmt.Errorf("setgroups %d: %w", gid, err)
	}
	if err := syscall.Setresgid(gid, gid, gid); err != nil {
		return fmt.Errorf("setgid %d: %w", gid, err)
	}
	if err := syscall.Setresuid(uid, uid, uid); err != nil {
		return fmt.Errorf("setuid %d: %w", uid, err)
	}
	if os.Getuid() != uid || os.Geteuid() != uid || os.Getgid() != gid || os.Getegid() != gid {
		return fmt.Errorf("privileges not dropped: uid %d/%d gid %d/%d", os.Getuid(), os.Geteuid(), os.Getgid(), os.Getegid())
	}
	if syscall.Setuid(0) == nil {
		return errors.New("could set uid 0 again after dropping privileges")
	}
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("prctl(PR_SET_DUMPABLE): %w", err)
	}
	return nil
}

// serve runs each request as it comes, and waits for them all once the
// server has closed its end.
func serve(conn *net.UnixConn) {
	var (
		wmu sync.Mutex
		wg  sync.WaitGroup
	)
	buf := make([]byte, maxRecord)
	oob := make([]byte, unix.CmsgSpace(4*4))
	for {
		n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
		if err != nil {
			break
		}
		var req request
		head, inline, _ := bytes.Cut(buf[:n], []byte{'\n'})
		fd, ferr := bodyFile(oob[:oobn])
		if err := json.Unmarshal(head, &req); err != nil || ferr != nil {
			if fd != nil {
				fd.Close()
			}
			fmt.Fprintf(os.Stderr, "bad request: %v %v\n", err, ferr)
			break
		}
		var body io.ReadCloser
		if fd != nil {
			body = struct {
				io.Reader
				io.Closer
			}{&framed{r: fd}, fd}
		} else {
			body = io.NopCloser(bytes.NewReader(append([]byte(nil), inline...)))
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var r reply
			if req.Op == "open" {
				body.Close()
				r = handleOpen(req)
			} else {
				r.Err = handle(req, body)
			}
			r.ID = req.ID
			rec, _ := json.Marshal(r)
			var oob []byte
			if r.file != nil {
				oob = unix.UnixRights(int(r.file.Fd()))
				defer r.file.Close()
			}
			wmu.Lock()
			conn.WriteMsgUnix(rec, oob, nil)
			wmu.Unlock()
		}()
	}
	wg.Wait()
}

// bodyFile is the descriptor a request carries, if any: the pipe of a
// message too large to come inline.
func bodyFile(oob []byte) (*os.File, error) {
	if len(oob) == 0 {
		return nil, nil
	}
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, err
	}
	var fds []int
	for _, m := range msgs {
		f, err := unix.ParseUnixRights(&m)
		if err != nil {
			return nil, err
		}
		fds = append(fds, f...)
	}
	if len(fds) != 1 {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return nil, fmt.Errorf("%d descriptors in a request, want 1", len(fds))
	}
	unix.CloseOnExec(fds[0])
	return os.NewFile(uintptr(fds[0]), "message"), nil
}

// handle does one request with the helper's privileges.
func handle(req request, body io.ReadCloser) *deliver.Error {
	defer body.Close()
	opened := false
	msg := &deliver.Message{ID: req.QueueID, From: req.From, Open: func() (io.ReadCloser, error) {
		if opened {
			return nil, errors.New("message already read")
		}
		opened = true
		return io.NopCloser(body), nil
	}}
	var err error
	switch req.Op {
	case "maildir":
		err = doMaildir(req, msg)
	case "mbox":
		err = doMbox(req, msg)
	case "command":
		err = runCommand(req, msg)
	default:
		err = failure("unknown request %q", req.Op)
	}
	if err == nil {
		return nil
	}
	var de *deliver.Error
	if errors.As(err, &de) {
		return de
	}
	return failure("%v", err)
}

// framed reads a message that ends with its own length (8 bytes, big
// endian), and fails at an end without it: the server could not read the
// whole message, and no part of it may be delivered.
type framed struct {
	r   io.Reader
	buf []byte // read, not yet returned; its last 8 bytes may be the trailer
	tmp [32 << 10]byte
	n   uint64 // bytes returned
	err error
}

var errTruncated = errors.New("message truncated on its way to the local delivery helper")

func (f *framed) Read(p []byte) (int, error) {
	for {
		if len(f.buf) > 8 {
			n := copy(p, f.buf[:len(f.buf)-8])
			f.buf = append(f.buf[:0], f.buf[n:]...)
			f.n += uint64(n)
			return n, nil
		}
		if f.err != nil {
			return 0, f.err
		}
		m, err := f.r.Read(f.tmp[:])
		f.buf = append(f.buf, f.tmp[:m]...)
		switch {
		case err == io.EOF:
			if len(f.buf) == 8 && binary.BigEndian.Uint64(f.buf) == f.n {
				f.buf = f.buf[:0]
				f.err = io.EOF
			} else {
				f.buf = f.buf[:0]
				f.err = errTruncated
			}
		case err != nil:
			f.err = err
		}
	}
}
