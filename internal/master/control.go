package master

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/mailtee/mailtee/internal/queue"
)

// The control socket lets `mailtee queue ...`, `mailtee sendmail` and
// `mailtee reload` talk to a running server: one request line
// ("list", "flush", "delete ID", "hold ID", "release ID", "pickup ID",
// "reload") and one JSON reply; "drain [to=NODE] [wait=DURATION]" gets
// one JSON line per step of the drain (drain.go). It lives in
// queue_directory, mode 0600, so only the queue's owner can use it.
const controlName = "control"

// ControlReply is the server's answer to a control request.
type ControlReply struct {
	OK    bool         `json:"ok"`
	Error string       `json:"error,omitempty"`
	List  []queue.Info `json:"list,omitempty"`
}

type controlServer struct {
	l net.Listener
}

func startControl(qdir string, s *Server) (*controlServer, error) {
	path := filepath.Join(qdir, controlName)
	// A socket left by a server that died is in the way; a live one is
	// not ours to take over.
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("another mailtee is running on %s", qdir)
	}
	os.Remove(path)
	// Made 0600 from the start: queue_directory is passable for
	// setgid_group (maildrop), and a chmod after Listen leaves a window.
	umask := syscall.Umask(0o177)
	l, err := net.Listen("unix", path)
	syscall.Umask(umask)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	os.Chmod(path, 0o600)
	cs := &controlServer{l: l}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go cs.handle(c, s)
		}
	}()
	return cs, nil
}

func (cs *controlServer) Close() error { return cs.l.Close() }

func (cs *controlServer) handle(c net.Conn, s *Server) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Minute))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return
	}
	verb, arg, _ := strings.Cut(strings.TrimSpace(line), " ")
	if verb == "list" {
		writeList(c, s.q)
		return
	}
	if verb == "drain" {
		s.controlDrain(c, arg) // its progress, line by line (drain.go)
		return
	}
	var reply ControlReply
	err = nil
	switch {
	case (strings.Contains(" delete hold release pickup ", " "+verb+" ") || verb == "flush" && arg != "") && !queue.ValidID(arg):
		// An ID names a file in the spool; a path must not (pickup used
		// to load, deliver and delete any file it was given).
		err = fmt.Errorf("%q: %w", arg, queue.ErrBadID)
	case verb == "flush" && arg != "":
		err = s.q.FlushID(arg) // postqueue -i
	case verb == "flush":
		s.q.Flush()
	case verb == "delete":
		err = s.q.Delete(arg)
	case verb == "hold":
		err = s.q.Hold(arg)
	case verb == "release":
		err = s.q.Release(arg)
	case verb == "pickup":
		err = s.q.Pickup(arg)
	case verb == "reload":
		err = s.Reload(s.cfg.Dir)
	default:
		err = fmt.Errorf("unknown request %q", verb)
	}
	if err == nil && arg != "" && verb != "pickup" {
		s.log.Printf("postsuper", "%s: %s by the administrator", arg, verbPast(verb))
	}
	reply.OK = err == nil
	if err != nil {
		reply.Error = err.Error()
	}
	json.NewEncoder(c).Encode(reply)
}

// writeList writes the reply to "list" one message at a time, in the
// shape of a ControlReply: the server never holds the whole listing.
func writeList(c net.Conn, q *queue.Queue) {
	w := bufio.NewWriterSize(c, 32<<10)
	w.WriteString(`{"ok":true,"list":[`)
	enc := json.NewEncoder(w)
	sep := ""
	err := q.Each(func(in queue.Info) error {
		w.WriteString(sep)
		sep = ","
		return enc.Encode(in)
	})
	if err == nil {
		w.WriteString("]}\n")
		w.Flush()
	}
}

func verbPast(v string) string {
	switch v {
	case "delete":
		return "removed"
	case "hold":
		return "placed on hold"
	case "release":
		return "released from hold"
	case "flush":
		return "flushed"
	}
	return v
}

// ErrNoServer means no server answers on the control socket.
var ErrNoServer = errors.New("mailtee is not running")

// Control sends one request to the server of queue directory qdir.
func Control(qdir, request string) (*ControlReply, error) {
	c, err := net.DialTimeout("unix", filepath.Join(qdir, controlName), 2*time.Second)
	if err != nil {
		return nil, fmt.Errorf("%w (no control socket in %s: %v)", ErrNoServer, qdir, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Minute))
	if _, err := fmt.Fprintf(c, "%s\n", request); err != nil {
		return nil, err
	}
	var r ControlReply
	if err := json.NewDecoder(c).Decode(&r); err != nil {
		return nil, fmt.Errorf("bad reply from mailtee: %w", err)
	}
	if !r.OK {
		return &r, errors.New(r.Error)
	}
	return &r, nil
}
