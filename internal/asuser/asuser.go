// Package asuser writes mailboxes with their recipient's privileges, as
// Postfix's local(8) does with set_eugid() before it opens a mailbox
// (src/local/maildir.c, mailbox.c): a file or directory in a mailbox is
// created by the recipient's uid and gid, so a link that the recipient
// put on the path leads only where the recipient could write anyway.
//
// Go cannot give one thread another uid (setuid applies to the whole
// process), so the work runs in helper processes: `mailtee local-helper
// UID GID`, started as root by a Pool, drops to that uid and gid (and no
// supplementary group but gid, as set_eugid does) before it reads any
// request, and is then not dumpable, so its user cannot attach a debugger
// to it. A helper lives as long as it is used (it exits after Idle
// without work, or when the server's end of its socket closes) and serves
// one identity's deliveries concurrently, so a busy mailbox costs one
// process start, not one per message.
//
// The wire: a SOCK_SEQPACKET socket pair, one JSON record per request or
// reply. A request carries, as SCM_RIGHTS, the read end of a pipe on which
// the server writes the message, followed by its byte count (8 bytes, big
// endian); a message without that trailer — the server failed to read it
// from the queue — fails the delivery instead of leaving half of it in
// the mailbox. The helper never gets a queue file: a user who takes
// control of her helper (it runs with her uid) sees only her own mail.
package asuser

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mailtee/mailtee/internal/command"
	"github.com/mailtee/mailtee/internal/deliver"
	"github.com/mailtee/mailtee/internal/mailcopy"
	"github.com/mailtee/mailtee/internal/mbox"
)

// Cred is who a delivery runs as.
type Cred struct{ UID, GID uint32 }

func (c Cred) String() string { return fmt.Sprintf("uid=%d gid=%d", c.UID, c.GID) }

// Command is the hidden subcommand that runs a helper.
const Command = "local-helper"

// request is one delivery for a helper.
type request struct {
	ID          uint64             `json:"id"`
	Op          string             `json:"op"` // "maildir", "mbox", "command", "open"
	Path        string             `json:"path"`
	QueueID     string             `json:"qid"`
	From        string             `json:"from"`
	DeliveredTo string             `json:"to"`
	Env         *mailcopy.Envelope `json:"env,omitempty"`  // maildir; else From and DeliveredTo
	Mbox        *mbox.Options      `json:"mbox,omitempty"` // mbox
	// Open is how an "open" request checks the file it opens.
	Open *OpenOptions `json:"open,omitempty"`
	// Size is the message's size as the queue knows it (0: unknown); a
	// larger one than maxInline goes through a pipe straight away.
	Size int64 `json:"-"`
	// Command is what op "command" runs (command.go).
	Command *command.Spec `json:"cmd,omitempty"`
}

// reply is a helper's answer to the request with the same ID.
type reply struct {
	ID  uint64         `json:"id"`
	Err *deliver.Error `json:"err,omitempty"`
	// Owner is the owner of a file opened by an "open" request, whose
	// descriptor comes with the reply (file).
	Owner uint32   `json:"owner,omitempty"`
	file  *os.File // from SCM_RIGHTS
}

// A record is a request (JSON, a newline, then the message when it is
// inline) or a reply (JSON). maxInline is the largest message sent
// inline; maxRecord bounds a record, well below the socket's buffer
// (net.core.wmem_default, 208 KB), which bounds a SOCK_SEQPACKET record.
const (
	maxInline = 64 << 10
	maxRecord = maxInline + 16<<10
)

// recBufs holds request records, each with room for the largest.
var recBufs = sync.Pool{New: func() any {
	b := make([]byte, 0, maxRecord)
	return &b
}}

// readSmall appends the whole message to rec when it has at most
// maxInline bytes, and says whether it did; when it has more, or cannot
// be read, head is what was read of it, to send before the rest.
func readSmall(body io.Reader, rec []byte) (out, head []byte, ok bool) {
	n := len(rec)
	if cap(rec) < n+maxInline+1 {
		return rec, nil, false
	}
	rec = rec[:n+maxInline+1]
	m, err := io.ReadFull(body, rec[n:])
	if err == io.ErrUnexpectedEOF || err == io.EOF {
		return rec[:n+m], nil, true
	}
	return rec[:n], append([]byte(nil), rec[n:n+m]...), false
}

// Options configure a Pool.
type Options struct {
	// Path and Args start a helper; "UID GID" is appended. The default is
	// this executable (/proc/self/exe) with the argument Command.
	Path string
	Args []string
	// Idle is how long a helper without work lives on; 60 s when zero.
	Idle time.Duration
	// MaxIdle is how many idle helpers are kept at most; 16 when zero.
	// Busy helpers are never stopped, so the number of processes is at
	// most this plus the deliveries in flight.
	MaxIdle int
	// Warn receives what a helper writes to its standard error (a
	// failure to start, to drop privileges) and helper exits.
	Warn func(msg string)
}

// Pool runs deliveries in helper processes, one per identity.
type Pool struct {
	o       Options
	mu      sync.Mutex
	helpers map[Cred]*helper
	closed  bool
	stop    chan struct{}
}

// NewPool returns a Pool; Close stops its helpers.
func NewPool(o Options) *Pool {
	if o.Path == "" {
		o.Path, o.Args = "/proc/self/exe", []string{Command}
	}
	if o.Idle <= 0 {
		o.Idle = time.Minute
	}
	if o.MaxIdle <= 0 {
		o.MaxIdle = 16
	}
	if o.Warn == nil {
		o.Warn = func(string) {}
	}
	p := &Pool{o: o, helpers: map[Cred]*helper{}, stop: make(chan struct{})}
	go p.reap()
	return p
}

// Close stops every helper; deliveries in flight fail with a temporary
// error.
func (p *Pool) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.closed = true
	close(p.stop)
	for c, h := range p.helpers {
		h.shut()
		delete(p.helpers, c)
	}
}

// Helpers is how many helper processes are running, for tests.
func (p *Pool) Helpers() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.helpers)
}

// Maildir delivers msg into the Maildir dir as c; see maildir.Deliver.
// The error is nil or a *deliver.Error.
func (p *Pool) Maildir(ctx context.Context, c Cred, dir string, msg *deliver.Message, deliveredTo string) error {
	return p.do(ctx, c, request{Op: "maildir", Path: dir, QueueID: msg.ID, From: msg.From, DeliveredTo: deliveredTo, Size: msg.Size}, msg)
}

func (p *Pool) do(ctx context.Context, c Cred, req request, msg *deliver.Message) error {
	h, err := p.get(c)
	if err != nil {
		return failure("cannot start local delivery helper (%v): %v", c, err)
	}
	defer p.release(h)
	body, err := msg.Open()
	if err != nil {
		return failure("cannot read message %s: %v", msg.ID, err)
	}
	defer body.Close()
	return h.call(ctx, req, body)
}

// get returns c's helper, started if needed, and counts a use of it.
func (p *Pool) get(c Cred) (*helper, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, errors.New("server is stopping")
	}
	if h := p.helpers[c]; h != nil && !h.isDead() {
		h.busy++
		return h, nil
	}
	h, err := start(p.o, c)
	if err != nil {
		return nil, err
	}
	p.helpers[c] = h
	h.busy++
	p.trimLocked()
	return h, nil
}

func (p *Pool) release(h *helper) {
	p.mu.Lock()
	defer p.mu.Unlock()
	h.busy--
	h.used = time.Now()
	if h.isDead() && p.helpers[h.cred] == h {
		delete(p.helpers, h.cred)
	}
}

// trimLocked stops the least recently used idle helpers beyond MaxIdle.
func (p *Pool) trimLocked() {
	for {
		var idle []*helper
		for _, h := range p.helpers {
			if h.busy == 0 {
				idle = append(idle, h)
			}
		}
		if len(idle) <= p.o.MaxIdle {
			return
		}
		oldest := idle[0]
		for _, h := range idle[1:] {
			if h.used.Before(oldest.used) {
				oldest = h
			}
		}
		oldest.shut()
		delete(p.helpers, oldest.cred)
	}
}

// reap stops helpers that have been idle for longer than Idle.
func (p *Pool) reap() {
	t := time.NewTicker(p.o.Idle / 4)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case now := <-t.C:
			p.mu.Lock()
			for c, h := range p.helpers {
				if h.busy == 0 && now.Sub(h.used) > p.o.Idle || h.isDead() && h.busy == 0 {
					h.shut()
					delete(p.helpers, c)
				}
			}
			p.mu.Unlock()
		}
	}
}

// helper is one running helper process, seen from the server.
type helper struct {
	cred Cred
	cmd  *exec.Cmd
	conn *net.UnixConn
	warn func(string)

	busy int       // deliveries using it; guarded by Pool.mu
	used time.Time // when the last one ended; guarded by Pool.mu

	wmu     sync.Mutex // one record at a time
	mu      sync.Mutex
	next    uint64
	pending map[uint64]chan *reply
	dead    error
}

// start runs a helper for c.
func start(o Options, c Cred) (*helper, error) {
	if c.UID == 0 {
		return nil, errors.New("refusing to start a helper as root")
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), "asuser"), os.NewFile(uintptr(fds[1]), "asuser-helper")
	defer theirs.Close()
	fc, err := net.FileConn(ours)
	ours.Close()
	if err != nil {
		return nil, err
	}
	conn := fc.(*net.UnixConn)
	args := append(append([]string(nil), o.Args...), strconv.FormatUint(uint64(c.UID), 10), strconv.FormatUint(uint64(c.GID), 10))
	cmd := exec.Command(o.Path, args...)
	cmd.Args[0] = "mailtee"
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	if tz, ok := os.LookupEnv("TZ"); ok { // for the mbox From_ line
		cmd.Env = append(cmd.Env, "TZ="+tz)
	}
	cmd.ExtraFiles = []*os.File{theirs} // fd 3
	stderr, err := cmd.StderrPipe()
	if err != nil {
		conn.Close()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		conn.Close()
		return nil, err
	}
	h := &helper{cred: c, cmd: cmd, conn: conn, warn: o.Warn, pending: map[uint64]chan *reply{}, used: time.Now()}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			o.Warn(fmt.Sprintf("local delivery helper (%v): %s", c, sc.Text()))
		}
	}()
	go h.readReplies()
	return h, nil
}

// call sends req with body and waits for the reply.
func (h *helper) call(ctx context.Context, req request, body io.Reader) error {
	r := h.roundTrip(ctx, req, body)
	if r.file != nil {
		r.file.Close()
	}
	if r.Err != nil { // not a nil *deliver.Error in an error
		return r.Err
	}
	return nil
}

// roundTrip sends req with body and returns the reply; a failure to get
// one is a reply with Err set.
func (h *helper) roundTrip(ctx context.Context, req request, body io.Reader) *reply {
	ch := make(chan *reply, 1)
	h.mu.Lock()
	if h.dead != nil {
		h.mu.Unlock()
		return &reply{Err: failure("local delivery helper (%v) is gone: %v", h.cred, h.dead)}
	}
	h.next++
	req.ID = h.next
	h.pending[req.ID] = ch
	h.mu.Unlock()
	forget := func() {
		h.mu.Lock()
		delete(h.pending, req.ID)
		h.mu.Unlock()
	}

	recBuf := recBufs.Get().(*[]byte)
	defer recBufs.Put(recBuf)
	hdr, _ := json.Marshal(req)
	rec := append(append((*recBuf)[:0], hdr...), '\n')
	// A small message goes in the request itself: one record, no pipe.
	// A larger one streams through a pipe while the helper writes it.
	var small bool
	if req.Size <= maxInline {
		var head []byte
		if rec, head, small = readSmall(body, rec); !small {
			body = io.MultiReader(bytes.NewReader(head), body)
		}
	}
	var (
		oob    []byte
		pr, pw *os.File
	)
	if !small {
		var err error
		if pr, pw, err = os.Pipe(); err != nil {
			forget()
			return &reply{Err: failure("cannot make a pipe for the local delivery helper: %v", err)}
		}
		oob = unix.UnixRights(int(pr.Fd()))
	}
	h.wmu.Lock()
	_, _, err := h.conn.WriteMsgUnix(rec, oob, nil)
	h.wmu.Unlock()
	if pr != nil {
		pr.Close()
	}
	if err != nil {
		if pw != nil {
			pw.Close()
		}
		forget()
		h.fail(err)
		return &reply{Err: failure("cannot talk to local delivery helper (%v): %v", h.cred, err)}
	}
	copied := make(chan struct{})
	if pw != nil {
		// A helper that stops reading early (it failed) makes the copy
		// fail with EPIPE, and its reply says why.
		go func() {
			defer close(copied)
			defer pw.Close()
			n, err := io.Copy(pw, body)
			if err != nil {
				return // no trailer: the helper fails the delivery
			}
			var trailer [8]byte
			binary.BigEndian.PutUint64(trailer[:], uint64(n))
			pw.Write(trailer[:])
		}()
	} else {
		close(copied)
	}
	// The caller closes body once call returns: the copy must be over.
	select {
	case r := <-ch:
		<-copied
		return r
	case <-ctx.Done():
		// A helper that has the whole message may be writing it: its
		// answer is the truth, and is waited for a while, so that a
		// stop does not record as deferred what was delivered (and
		// deliver it again after the restart). One still reading it
		// is cut off, and then writes nothing.
		select {
		case <-copied:
		default:
			if pw != nil {
				pw.Close()
			}
			<-copied
		}
		select {
		case r := <-ch:
			return r
		case <-time.After(InterruptGrace):
			forget()
			return &reply{Err: failure("local delivery interrupted: %v (no answer from the helper within %v)", ctx.Err(), InterruptGrace)}
		}
	}
}

// InterruptGrace is how long a delivery whose context ends waits for its
// helper's answer.
var InterruptGrace = 10 * time.Second

// readReplies hands each reply to its caller until the helper goes, then
// reaps the process.
func (h *helper) readReplies() {
	buf := make([]byte, maxRecord)
	oob := make([]byte, unix.CmsgSpace(4))
	for {
		n, oobn, _, _, err := h.conn.ReadMsgUnix(buf, oob)
		if err != nil {
			if err == io.EOF {
				err = errors.New("it exited")
			}
			h.fail(err)
			break
		}
		var r reply
		f, ferr := bodyFile(oob[:oobn])
		if err := json.Unmarshal(buf[:n], &r); err != nil || ferr != nil {
			if f != nil {
				f.Close()
			}
			h.fail(fmt.Errorf("bad reply: %v %v", err, ferr))
			break
		}
		r.file = f
		h.mu.Lock()
		ch := h.pending[r.ID]
		delete(h.pending, r.ID)
		h.mu.Unlock()
		if ch != nil {
			ch <- &r
		} else if f != nil {
			f.Close() // its caller gave up
		}
	}
	// With its socket closed, the helper finishes what it has and exits.
	if err := h.cmd.Wait(); err != nil {
		h.warn(fmt.Sprintf("local delivery helper (%v) exited: %v", h.cred, err))
	}
}

// fail marks the helper dead and fails what waits on it.
func (h *helper) fail(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.dead != nil {
		return
	}
	h.dead = err
	for id, ch := range h.pending {
		ch <- &reply{Err: failure("local delivery helper (%v) failed: %v", h.cred, err)}
		delete(h.pending, id)
	}
	h.conn.Close()
}

func (h *helper) isDead() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.dead != nil
}

// shut closes the helper's socket: it finishes what it has and exits;
// a delivery still waiting for it fails with a temporary error.
func (h *helper) shut() { h.fail(errors.New("stopped")) }

func failure(format string, args ...any) *deliver.Error {
	return &deliver.Error{Enhanced: "4.3.0", Text: fmt.Sprintf(format, args...), Relay: "local"}
}
