package maillog

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Facilities are syslog_facility's names and numbers as Postfix knows them
// on Linux (src/util/msg_syslog.c, from <syslog.h>).
var Facilities = map[string]int{
	"kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5,
	"lpr": 6, "news": 7, "uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11,
	"local0": 16, "local1": 17, "local2": 18, "local3": 19,
	"local4": 20, "local5": 21, "local6": 22, "local7": 23,
}

// Syslog severities, as msg_syslog.c maps Postfix's levels: info, warning,
// error, and fatal and panic both LOG_CRIT.
const (
	sevCrit    = 2
	sevErr     = 3
	sevWarning = 4
	sevInfo    = 6
	sevDebug   = 7
)

// DefaultSyslogSocket is where glibc's syslog(3) sends (_PATH_LOG); a
// variable only so that tests of the callers can point it elsewhere.
var DefaultSyslogSocket = "/dev/log"

// SyslogOptions configure NewSyslog. The zero value is Postfix's default:
// /dev/log, facility mail.
type SyslogOptions struct {
	// Socket is the syslog daemon's socket (default /dev/log).
	Socket string
	// Facility is a syslog_facility name (default "mail").
	Facility string
	// QueueLen is how many lines may wait for the daemon (default 10000);
	// past it new lines are dropped and counted.
	QueueLen int
	// SendTimeout is how long one send may block on a daemon that does
	// not read (default 1s) before it is given up and retried.
	SendTimeout time.Duration
}

// Syslog sends the lines of a Handler to the local syslog daemon, as
// Postfix 3.4+ logs when maillog_file is empty, so that the daemon writes
// them into /var/log/mail.log as it writes Postfix's. Each line
//
//	Mmm dd hh:mm:ss HOST PROGRAM/COMPONENT[PID]: TEXT
//
// becomes the record glibc's syslog(3) sends for Postfix, the host left to
// the daemon (RFC 3164 as sent on the local socket):
//
//	<PRI>Mmm dd hh:mm:ss PROGRAM/COMPONENT[PID]: TEXT
//
// PRI is facility*8 + severity, the severity read from the text as
// msg_syslog.c writes it ("warning: " 4, "error: " 3, "fatal: " and
// "panic: " 2, "debug: " 7, else info 6); TEXT is cut at 2000 bytes after
// the severity, as Postfix's MSG_SYSLOG_RECLEN. Like glibc it connects a
// datagram socket and falls back to a stream one, records ended by a NUL,
// when the daemon listens on a stream; after a failed send it reconnects
// and sends again, so a restarted daemon loses no line.
//
// Write never blocks: lines wait in a bounded queue for a sender
// goroutine. When the daemon is stuck or gone, the queue fills and the
// lines that do not fit are dropped and counted; once the daemon takes
// lines again, a warning says how many were lost. Mail delivery never waits
// for the log.
type Syslog struct {
	socket   string
	facility int
	timeout  time.Duration
	q        chan []byte

	pending atomic.Int64 // queued and not yet sent or given up
	dropped atomic.Int64 // total dropped, for Dropped
	unsaid  atomic.Int64 // dropped and not yet reported in the log

	stop     chan struct{}
	done     chan struct{}
	stopOnce sync.Once

	// Owned by the sender goroutine.
	conn   net.Conn
	stream bool
	prefix []byte // "PROGRAM/master[PID]: " of the last line, for the drop warning
}

// NewSyslog connects to the syslog socket and returns a Syslog sending to
// it; an error means no daemon listens there (a container, a host without
// syslog), and the caller logs elsewhere.
func NewSyslog(o SyslogOptions) (*Syslog, error) {
	if o.Socket == "" {
		o.Socket = DefaultSyslogSocket
	}
	if o.Facility == "" {
		o.Facility = "mail"
	}
	fac, ok := Facilities[o.Facility]
	if !ok {
		return nil, fmt.Errorf("syslog_facility: unknown facility %q", o.Facility)
	}
	if o.QueueLen <= 0 {
		o.QueueLen = 10000
	}
	if o.SendTimeout <= 0 {
		o.SendTimeout = time.Second
	}
	s := &Syslog{socket: o.Socket, facility: fac, timeout: o.SendTimeout,
		q: make(chan []byte, o.QueueLen), stop: make(chan struct{}), done: make(chan struct{})}
	if err := s.dial(); err != nil {
		return nil, err
	}
	go s.run()
	return s, nil
}

// Write queues the syslog records of the whole lines in p (a Handler
// writes one per call). It never blocks and never fails: a line that does
// not fit in the queue is dropped and counted.
func (s *Syslog) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		line := p
		if i := bytes.IndexByte(p, '\n'); i >= 0 {
			line, p = p[:i], p[i+1:]
		} else {
			p = nil
		}
		if len(line) == 0 {
			continue
		}
		rec := s.record(line)
		s.pending.Add(1)
		select {
		case s.q <- rec:
		default:
			s.pending.Add(-1)
			s.dropped.Add(1)
			s.unsaid.Add(1)
		}
	}
	return n, nil
}

// Dropped is how many lines were lost since the start.
func (s *Syslog) Dropped() int64 { return s.dropped.Load() }

// Flush waits until the queued lines are sent, for at most 5 seconds: a
// stuck daemon must not hold up a shutdown.
func (s *Syslog) Flush() error {
	for deadline := time.Now().Add(5 * time.Second); s.pending.Load() > 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			return fmt.Errorf("syslog %s: %d log lines not sent", s.socket, s.pending.Load())
		}
	}
	return nil
}

// Close flushes and stops the sender.
func (s *Syslog) Close() error {
	err := s.Flush()
	s.stopOnce.Do(func() { close(s.stop) })
	<-s.done
	return err
}

// record turns a Handler line into a syslog record (see Syslog). A line
// not in the Handler's shape is sent whole, after the current time.
func (s *Syslog) record(line []byte) []byte {
	const stampLen = len(time.Stamp)
	var stamp, tag []byte
	if len(line) > stampLen+1 && line[stampLen] == ' ' {
		rest := line[stampLen+1:]
		if i := bytes.IndexByte(rest, ' '); i >= 0 {
			stamp, tag = line[:stampLen], rest[i+1:] // the host goes
		}
	}
	if stamp == nil {
		stamp, tag = time.Now().AppendFormat(nil, time.Stamp), line
	}
	sev := sevInfo
	if i := bytes.Index(tag, []byte("]: ")); i >= 0 {
		text := tag[i+3:]
		cut := 0
		for _, p := range severityWords {
			if bytes.HasPrefix(text, []byte(p.word)) {
				sev, cut = p.sev, len(p.word)
				break
			}
		}
		if end := i + 3 + cut + maxText; len(tag) > end {
			tag = tag[:end]
		}
	}
	rec := make([]byte, 0, 6+len(stamp)+1+len(tag))
	rec = append(rec, '<')
	rec = strconv.AppendInt(rec, int64(s.facility*8+sev), 10)
	rec = append(rec, '>')
	rec = append(rec, stamp...)
	rec = append(rec, ' ')
	return append(rec, tag...)
}

// maxText is Postfix's MSG_SYSLOG_RECLEN: "a little below the 2048-byte
// limit of older syslog() implementations".
const maxText = 2000

// severityWords are the prefixes msg_syslog.c writes before the text of a
// line that is not info, and the severity each is sent with.
var severityWords = []struct {
	word string
	sev  int
}{{"warning: ", sevWarning}, {"error: ", sevErr}, {"fatal: ", sevCrit}, {"panic: ", sevCrit}, {"debug: ", sevDebug}}

// dial connects as glibc's openlog_internal does: a datagram socket,
// else a stream one when the daemon listens on a stream (EPROTOTYPE).
func (s *Syslog) dial() error {
	c, err := net.DialTimeout("unixgram", s.socket, s.timeout)
	stream := false
	if errors.Is(err, syscall.EPROTOTYPE) {
		c, err = net.DialTimeout("unix", s.socket, s.timeout)
		stream = true
	}
	if err != nil {
		return fmt.Errorf("syslog socket %s: %w", s.socket, err)
	}
	s.conn, s.stream = c, stream
	return nil
}

func (s *Syslog) run() {
	defer close(s.done)
	defer func() {
		if s.conn != nil {
			s.conn.Close()
		}
	}()
	retry := 50 * time.Millisecond
	for {
		var rec []byte
		select {
		case rec = <-s.q:
		case <-s.stop:
			return
		}
		for {
			err := s.send(rec)
			if err == nil || errors.Is(err, syscall.EMSGSIZE) {
				retry = 50 * time.Millisecond
				break
			}
			// The daemon is gone or stuck: keep the line, and let the
			// queue take (and drop) what comes meanwhile.
			select {
			case <-time.After(retry):
				retry = min(2*retry, time.Second)
			case <-s.stop:
				return
			}
		}
		s.rememberPrefix(rec)
		s.pending.Add(-1)
		if n := s.unsaid.Swap(0); n > 0 {
			msg := s.dropWarning(n)
			if s.send(msg) != nil {
				s.unsaid.Add(n)
			}
		}
	}
}

// send writes one record: on a failure other than a timeout (the daemon
// restarted: ECONNREFUSED, ENOTCONN) it reconnects and sends once more, as
// glibc does.
func (s *Syslog) send(rec []byte) error {
	var err error
	for attempt := 0; attempt < 2; attempt++ {
		if s.conn == nil {
			if err = s.dial(); err != nil {
				return err
			}
		}
		if err = s.write(rec); err == nil || errors.Is(err, syscall.EMSGSIZE) {
			return err
		}
		// A half-written stream record cannot be finished; a datagram
		// socket whose peer went away must be connected anew.
		s.conn.Close()
		s.conn = nil
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return err
		}
	}
	return err
}

func (s *Syslog) write(rec []byte) error {
	s.conn.SetWriteDeadline(time.Now().Add(s.timeout))
	if s.stream {
		rec = append(rec[:len(rec):len(rec)], 0)
	}
	_, err := s.conn.Write(rec)
	return err
}

// rememberPrefix keeps "PROGRAM/" and "[PID]: " of a sent record, so that
// the drop warning reads as one of the process's own lines.
func (s *Syslog) rememberPrefix(rec []byte) {
	start := bytes.IndexByte(rec, '>') + 1 + len(time.Stamp) + 1
	if start > len(rec) {
		return
	}
	tag := rec[start:]
	slash := bytes.IndexByte(tag, '/')
	end := bytes.Index(tag, []byte("]: "))
	if slash < 0 || end < slash {
		return
	}
	pid := bytes.LastIndexByte(tag[:end], '[')
	if pid < slash {
		return
	}
	s.prefix = append(append(append(s.prefix[:0], tag[:slash+1]...), "master"...), tag[pid:end+3]...)
}

func (s *Syslog) dropWarning(n int64) []byte {
	b := []byte("<")
	b = strconv.AppendInt(b, int64(s.facility*8+sevWarning), 10)
	b = append(b, '>')
	b = time.Now().AppendFormat(b, time.Stamp)
	b = append(b, ' ')
	if s.prefix != nil {
		b = append(b, s.prefix...)
	} else {
		b = append(b, "mailtee/master["+strconv.Itoa(os.Getpid())+"]: "...)
	}
	b = append(b, "warning: "...)
	b = strconv.AppendInt(b, n, 10)
	b = append(b, " log lines were dropped: the syslog daemon at "...)
	b = append(b, s.socket...)
	return append(b, " did not take them in time"...)
}

// DefaultLog is where the mail log goes when maillog_file is empty: the
// syslog daemon, as Postfix 3.4+, so that /var/log/mail.log has it. The
// lines are copied to stderr too unless stderr is /dev/null or a socket,
// where nobody reads them or where they are already in the journal (a
// systemd service's stderr is a socket to journald, which also reads
// /dev/log): an administrator running serve in a terminal, a supervisor
// that keeps a service's output (runit, a container runtime) and a test
// reading the output all see the lines. Postfix itself writes to syslog
// only; a copy where someone looks costs nothing and loses nothing.
//
// Without a syslog socket the log is stderr alone, and warning says why,
// to be logged once. A stderr that is not an *os.File (a test's buffer, a
// program embedding the server) is the caller's choice and is used alone.
// closeFn flushes what waits for the daemon.
func DefaultLog(stderr io.Writer, o SyslogOptions) (w io.Writer, closeFn func() error, warning string) {
	f, isFile := stderr.(*os.File)
	if !isFile {
		return stderr, nil, ""
	}
	sl, err := NewSyslog(o)
	if err != nil {
		return stderr, nil, fmt.Sprintf("%v; logging to standard error (set maillog_file to log to a file)", err)
	}
	if copyToStderr(f) {
		return io.MultiWriter(sl, stderr), sl.Close, ""
	}
	return sl, sl.Close, ""
}

// copyToStderr says whether f is a terminal, a pipe or a file, not
// /dev/null (a character device that is no terminal), a socket or closed.
func copyToStderr(f *os.File) bool {
	fi, err := f.Stat()
	if err != nil {
		return false
	}
	switch m := fi.Mode(); {
	case m&os.ModeSocket != 0:
		return false
	case m&os.ModeCharDevice != 0:
		_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
		return err == nil
	}
	return true
}
