package queue

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/mailtee/mailtee/internal/envelope"
	"github.com/mailtee/mailtee/internal/safeio"
)

// On-disk format. A message is one immutable file, queue/ID:
//
//	"MAILTEE1\n"
//	body bytes, exactly as received (CRLF line endings)
//	"\nMETA " JSON(meta) "\n"
//	"END " offset-of-META " " crc32c(everything before "END") "\n"
//
// and its delivery state is an append-only sidecar, queue/ID.st, of lines
// "JSON(record) crc32c\n". The message file is complete only when its END
// line checks out, so a file torn by a crash is recognised; a torn state
// line is ignored, which at worst repeats a delivery that was in flight.
// A message is removed by unlinking the message file first, then the
// sidecar: an orphan sidecar is harmless, an orphan message file without
// its state would deliver again to recipients that already have it.
const magic = "MAILTEE1\n"

var crcTable = crc32.MakeTable(crc32.Castagnoli)

type meta struct {
	Env      envelope.Envelope
	BodySize int64
}

// Status of one recipient.
type Status string

const (
	Pending Status = ""
	Sent    Status = "sent"
	Bounced Status = "bounced"
)

// RcptState is a recipient and what happened to it so far.
type RcptState struct {
	envelope.Rcpt
	Status   Status
	Attempts int
	NextTry  time.Time
	LastErr  string // reason of the last failure, as logged
	DSN      string // enhanced status of the last attempt
	Relay    string // where the last attempt went
	Expired  bool   // bounced because the message stayed too long
	Notified bool   // a notification about the bounce has been queued
}

// Message is a queued message: its envelope, where its body is, and the
// state of each recipient.
type Message struct {
	ID    string
	Env   envelope.Envelope
	Size  int64 // body size
	Rcpts []RcptState
	Hold  bool

	path    string
	bodyOff int64
}

// Open returns the body, as stored.
func (m *Message) Open() (io.ReadCloser, error) {
	f, err := os.Open(m.path)
	if err != nil {
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{io.NewSectionReader(f, m.bodyOff, m.Size), f}, nil
}

// record is one line of a sidecar state file.
type record struct {
	Rcpt    int    `json:"r"`           // recipient index, -1 for message-level records
	Op      string `json:"op"`          // "sent", "bounced", "deferred", "hold", "release"
	Next    int64  `json:"n,omitempty"` // next try, Unix seconds (deferred)
	Err     string `json:"e,omitempty"` // reason
	DSN     string `json:"d,omitempty"` // enhanced status code
	Relay   string `json:"relay,omitempty"`
	Expired bool   `json:"x,omitempty"`
}

// store is the spool directory.
type store struct {
	dir     string // queue_directory
	qdir    string // queue_directory/queue
	corrupt string // queue_directory/corrupt
	syncer  *safeio.DirSyncer
	seq     atomic.Uint64
}

func openStore(dir string) (*store, error) {
	s := &store{dir: dir, qdir: filepath.Join(dir, "queue"), corrupt: filepath.Join(dir, "corrupt")}
	for _, d := range []string{dir, s.qdir, s.corrupt} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("queue directory: %w", err)
		}
	}
	s.syncer = &safeio.DirSyncer{Dir: s.qdir}
	return s, nil
}

// newID returns a queue ID in the shape of Postfix's short IDs: upper-case
// hex, from the clock in microseconds, the process ID and a counter, so
// that the server and sendmail processes do not pick the same one
// (creation with O_EXCL, and Put's link, catch the rest).
func (s *store) newID() string {
	n := s.seq.Add(1)
	return fmt.Sprintf("%X%03X%03X", time.Now().UnixMicro(), os.Getpid()&0xfff, n&0xfff)
}

// errBody marks an error from the body reader, as opposed to the disk.
type errBody struct{ error }

func (e errBody) Unwrap() error { return e.error }

// put writes a new message durably under id: the files are written under
// hidden names (.ID, .ID.st) and linked into place, so that a crash in
// the middle of a submission leaves only a hidden file behind, never a
// torn message file that looks damaged at the next start; one directory
// sync, shared with concurrent puts, makes the entries durable. If body
// fails, nothing is left and the body's error is returned.
func (s *store) put(id string, env *envelope.Envelope, body io.Reader) (*Message, error) {
	m, err := s.writeHidden("."+id, env, body)
	if err != nil {
		return nil, err
	}
	defer os.Remove(m.path)
	defer os.Remove(m.path + ".st")
	if err := s.publish(m, id); err != nil {
		return nil, err
	}
	return m, nil
}

// publish links a hidden message and its sidecar under id (a link never
// replaces what another process stored under the same name: the error
// is then os.ErrExist) and syncs the directory. The hidden names stay for
// the caller to remove.
func (s *store) publish(m *Message, id string) error {
	final := filepath.Join(s.qdir, id)
	// The sidecar goes first: nothing scans a sidecar without its message.
	if err := os.Link(m.path+".st", final+".st"); err != nil {
		return err
	}
	if err := os.Link(m.path, final); err != nil {
		os.Remove(final + ".st")
		return err
	}
	if err := s.syncer.Sync(); err != nil {
		os.Remove(final)
		return err
	}
	m.ID, m.path = id, final
	return nil
}

// writeHidden writes the message file and an empty sidecar under the
// hidden name tmp, the file data synced.
func (s *store) writeHidden(tmp string, env *envelope.Envelope, body io.Reader) (*Message, error) {
	path := filepath.Join(s.qdir, tmp)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*Message, error) {
		f.Close()
		os.Remove(path)
		return nil, err
	}
	crc := crc32.New(crcTable)
	w := bufio.NewWriterSize(io.MultiWriter(f, crc), 64<<10)
	w.WriteString(magic)
	n, err := io.Copy(w, readerOnly{body})
	if err != nil {
		var be errBody
		if errors.As(err, &be) {
			return fail(be.error)
		}
		return fail(err)
	}
	mj, err := json.Marshal(meta{Env: *env, BodySize: n})
	if err != nil {
		return fail(err)
	}
	metaOff := int64(len(magic)) + n + 1
	w.WriteString("\nMETA ")
	w.Write(mj)
	w.WriteString("\n")
	if err := w.Flush(); err != nil {
		return fail(err)
	}
	if _, err := fmt.Fprintf(f, "END %d %08x\n", metaOff, crc.Sum32()); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return nil, err
	}
	// The empty sidecar is made now so that publish's one directory sync
	// covers it too; later state appends need only fsync it.
	st, err := os.OpenFile(path+".st", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		os.Remove(path)
		return nil, err
	}
	st.Close()
	m := &Message{ID: tmp, Env: *env, Size: n, path: path, bodyOff: int64(len(magic))}
	m.Rcpts = make([]RcptState, len(env.Rcpts))
	for i, r := range env.Rcpts {
		m.Rcpts[i].Rcpt = r
	}
	return m, nil
}

// readerOnly tags errors from the body so put can tell them from write
// errors, and hides WriterTo so io.Copy goes through Read.
type readerOnly struct{ r io.Reader }

func (r readerOnly) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF {
		err = errBody{err}
	}
	return n, err
}

// load reads a message file and applies its state sidecar.
func (s *store) load(id string) (*Message, error) {
	path := filepath.Join(s.qdir, id)
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	size := fi.Size()
	// The END line is short: find it in the last bytes of the file.
	tail := int64(64)
	if tail > size {
		tail = size
	}
	buf := make([]byte, tail)
	if _, err := f.ReadAt(buf, size-tail); err != nil {
		return nil, err
	}
	if !bytes.HasSuffix(buf, []byte("\n")) {
		return nil, errors.New("incomplete file: no END line")
	}
	i := bytes.LastIndex(buf[:len(buf)-1], []byte("\nEND "))
	if i < 0 {
		return nil, errors.New("incomplete file: no END line")
	}
	endOff := size - tail + int64(i) + 1
	var metaOff int64
	var sum uint32
	if _, err := fmt.Sscanf(string(buf[i+1:]), "END %d %x\n", &metaOff, &sum); err != nil {
		return nil, fmt.Errorf("bad END line: %v", err)
	}
	if metaOff < int64(len(magic)) || metaOff >= endOff {
		return nil, errors.New("bad END line: offset out of range")
	}
	crc := crc32.New(crcTable)
	if _, err := io.Copy(crc, io.NewSectionReader(f, 0, endOff)); err != nil {
		return nil, err
	}
	if crc.Sum32() != sum {
		return nil, errors.New("checksum mismatch")
	}
	head := make([]byte, len(magic))
	if _, err := f.ReadAt(head, 0); err != nil || string(head) != magic {
		return nil, errors.New("not a mailtee queue file")
	}
	metaLine := make([]byte, endOff-metaOff)
	if _, err := f.ReadAt(metaLine, metaOff); err != nil {
		return nil, err
	}
	js, ok := bytes.CutPrefix(bytes.TrimSuffix(metaLine, []byte("\n")), []byte("META "))
	if !ok {
		return nil, errors.New("bad META line")
	}
	var mt meta
	if err := json.Unmarshal(js, &mt); err != nil {
		return nil, fmt.Errorf("bad META line: %v", err)
	}
	if mt.BodySize != metaOff-1-int64(len(magic)) {
		return nil, errors.New("body size does not match")
	}
	m := &Message{ID: id, Env: mt.Env, Size: mt.BodySize, path: path, bodyOff: int64(len(magic))}
	m.Rcpts = make([]RcptState, len(mt.Env.Rcpts))
	for i, r := range mt.Env.Rcpts {
		m.Rcpts[i].Rcpt = r
	}
	s.applyState(m)
	return m, nil
}

// applyState replays the sidecar onto m. Lines that do not check out
// (a write torn by a crash) are skipped.
func (s *store) applyState(m *Message) {
	data, err := os.ReadFile(m.path + ".st")
	if err != nil {
		return
	}
	for _, line := range bytes.Split(data, []byte("\n")) {
		sp := bytes.LastIndexByte(line, ' ')
		if sp < 0 {
			continue
		}
		sum, err := strconv.ParseUint(string(line[sp+1:]), 16, 32)
		if err != nil || crc32.Checksum(line[:sp], crcTable) != uint32(sum) {
			continue
		}
		var r record
		if json.Unmarshal(line[:sp], &r) != nil {
			continue
		}
		m.apply(r)
	}
}

func (m *Message) apply(r record) {
	switch r.Op {
	case "hold":
		m.Hold = true
		return
	case "release":
		m.Hold = false
		return
	}
	if r.Rcpt < 0 || r.Rcpt >= len(m.Rcpts) {
		return
	}
	st := &m.Rcpts[r.Rcpt]
	if r.Op == "notified" {
		st.Notified = true
		return
	}
	st.LastErr, st.DSN, st.Relay = r.Err, r.DSN, r.Relay
	switch r.Op {
	case "sent":
		st.Status = Sent
	case "bounced":
		st.Status, st.Expired = Bounced, r.Expired
	case "deferred":
		st.Attempts++
		st.NextTry = time.Unix(r.Next, 0)
	}
}

// appendState records state changes; with durable set the records are
// fsynced before it returns (deliveries and bounces, which must not be
// repeated), otherwise they may be lost in a crash (deferrals, which
// only cost an earlier retry).
func (s *store) appendState(m *Message, durable bool, recs ...record) error {
	var b bytes.Buffer
	for _, r := range recs {
		js, err := json.Marshal(r)
		if err != nil {
			return err
		}
		// Each record starts a line of its own: after a crash the file
		// may end in a torn record without its newline, and the next
		// record must not be glued onto it.
		b.WriteByte('\n')
		b.Write(js)
		fmt.Fprintf(&b, " %08x", crc32.Checksum(js, crcTable))
	}
	f, err := os.OpenFile(m.path+".st", os.O_WRONLY|os.O_APPEND, 0o600)
	created := false
	if os.IsNotExist(err) { // lost or never made: make it, durably
		f, err = os.OpenFile(m.path+".st", os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		created = true
	}
	if err != nil {
		return err
	}
	if _, err := f.Write(b.Bytes()); err != nil {
		f.Close()
		return err
	}
	if durable {
		// put made the sidecar's directory entry durable already.
		if err := f.Sync(); err != nil {
			f.Close()
			return err
		}
	}
	if err := f.Close(); err != nil {
		return err
	}
	if created {
		// A new directory entry: later durable records rely on it.
		return s.syncer.Sync()
	}
	return nil
}

// remove deletes a message file. Its sidecar stays until the next start,
// when scan removes orphans: removing both now, with no ordering between
// the two unlinks on disk, could bring back the message without its
// state after a power loss.
func (s *store) remove(m *Message) error {
	if err := os.Remove(m.path); err != nil && !os.IsNotExist(err) {
		return err
	}
	return nil
}

// scan lists message IDs in the spool. With cleanup (at start-up, when
// no message is being written) it also removes orphan sidecars and
// stale hidden files.
func (s *store) scan(cleanup bool) ([]string, error) {
	entries, err := os.ReadDir(s.qdir)
	if err != nil {
		return nil, err
	}
	have := map[string]bool{}
	var ids []string
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") || strings.HasSuffix(name, ".st") {
			continue
		}
		have[name] = true
		ids = append(ids, name)
	}
	if !cleanup {
		return ids, nil
	}
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") {
			// A submission in progress (Put), or one that a crash
			// interrupted long ago: only the latter is removed.
			if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > time.Hour {
				os.Remove(filepath.Join(s.qdir, name))
			}
			continue
		}
		if base, ok := strings.CutSuffix(name, ".st"); ok && !have[base] {
			os.Remove(filepath.Join(s.qdir, name))
		}
	}
	return ids, nil
}

// moveCorrupt sets a damaged message file aside, with its sidecar.
func (s *store) moveCorrupt(id string) error {
	src := filepath.Join(s.qdir, id)
	if err := os.Rename(src, filepath.Join(s.corrupt, id)); err != nil {
		return err
	}
	os.Rename(src+".st", filepath.Join(s.corrupt, id+".st"))
	return nil
}

// Put stores a message into the spool in dir from another process
// (mailtee sendmail), durably, and returns its ID. The file is written
// under a hidden name and renamed into place, so that a server scanning
// the spool never sees it half-written; a running server then learns of
// it through Pickup or its periodic rescan.
func Put(dir string, env *envelope.Envelope, body io.Reader) (string, error) {
	s, err := openStore(dir)
	if err != nil {
		return "", err
	}
	if len(env.Rcpts) == 0 {
		return "", errors.New("no recipients")
	}
	if env.Arrival.IsZero() {
		env.Arrival = time.Now()
	}
	m, err := s.writeHidden("."+s.newID(), env, body)
	if err != nil {
		return "", err
	}
	tmp := m.path
	defer os.Remove(tmp)
	defer os.Remove(tmp + ".st")
	// Another process may have taken an ID: publish then fails rather
	// than replace its message, and another ID is tried.
	for try := 0; try < 10; try++ {
		id := s.newID()
		err := s.publish(m, id)
		if os.IsExist(err) {
			continue
		}
		if err != nil {
			return "", err
		}
		return id, nil
	}
	return "", errors.New("no free queue ID after 10 tries")
}
