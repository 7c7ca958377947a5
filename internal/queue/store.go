package queue

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mailtee/mailtee/internal/envelope"
	"github.com/mailtee/mailtee/internal/safeio"
)

// On-disk format. A message of at most journalMax bytes is first a record
// in the intake journal (journal.go) and gets a file of its own only
// before its first state record; any other message is one immutable
// file from the start, queue/ID:
//
//	"MAILTEE1\n"
//	body bytes, exactly as received (CRLF line endings)
//	"\nMETA " JSON(meta) "\n"
//	"END " offset-of-META " " crc32c(everything before "END") "\n"
//
// and its delivery state is a sidecar, queue/ID.st, of lines
// "JSON(record) crc32c\n" (state.go), appended to, and compacted when it
// has grown to twice what it records. The message file is complete only
// when its END line checks out, so a file torn by a crash is recognised;
// a torn state line is ignored, which at worst repeats a delivery that
// was in flight. A message is removed by unlinking the message file
// first, then the sidecar: an orphan sidecar is harmless, an orphan
// message file without its state would deliver again to recipients that
// already have it.
const magic = "MAILTEE1\n"

var crcTable = crc32.MakeTable(crc32.Castagnoli)

type meta struct {
	Env      envelope.Envelope
	BodySize int64
}

// Message is a queued message: its envelope, where its body is, and the
// state of each recipient.
type Message struct {
	ID string
	// Env is the envelope without its recipients (Env.Rcpts is nil):
	// they are in Rcpts, once.
	Env  envelope.Envelope
	Size int64 // body size
	// Rcpts are the envelope's recipients, then those added since
	// (Outcome.Add), in the order they were added.
	Rcpts []RcptState
	Hold  bool

	nEnv int // recipients of the stored envelope; the rest are in the sidecar

	dir     string // the spool directory of its own file (s.qdir, not a copy); set before jn is cleared
	bodyOff int64
	data    atomic.Pointer[[]byte] // the body, while it is kept in memory
	jn      atomic.Pointer[jref]   // where it is in the journal, while it is

	stMu     sync.Mutex // appends to the sidecar, moves, removal
	hasState bool       // the sidecar exists
	stSynced bool       // and its directory entry is durable
	gone     bool       // removed: nothing more is recorded
	stSize   int64      // bytes in the sidecar
	stBase   int64      // bytes of its compacted form, when last known
	// sentState is the payload of its S record while it is in the
	// journal, delivered and waiting for the ledger: a move out of the
	// journal voids the S record, so the state goes with the message.
	sentState []byte
}

// newMessage is a message with every recipient pending. An original
// address equal to the final one shares its bytes (a queue read from
// disk would otherwise hold every address twice).
func newMessage(id string, env *envelope.Envelope, size int64) *Message {
	m := &Message{ID: id, Env: *env, Size: size}
	m.Env.Rcpts = nil
	m.Rcpts = make([]RcptState, len(env.Rcpts))
	m.nEnv = len(env.Rcpts)
	for i, r := range env.Rcpts {
		if r.Orig == r.Addr {
			r.Orig = r.Addr
		}
		m.Rcpts[i].Rcpt = r
		m.Rcpts[i].Attempt = &noAttempt
	}
	return m
}

// envelope is m's envelope with its recipients, as stored: without the
// recipients added since, which the sidecar records.
func (m *Message) envelope() *envelope.Envelope {
	env := m.Env
	env.Rcpts = make([]envelope.Rcpt, m.nEnv)
	for i := range env.Rcpts {
		env.Rcpts[i] = m.Rcpts[i].Rcpt
	}
	return &env
}

// Open returns the body, as stored.
func (m *Message) Open() (io.ReadCloser, error) {
	if d := m.data.Load(); d != nil {
		return io.NopCloser(bytes.NewReader(*d)), nil
	}
	if r := m.jn.Load(); r != nil {
		rc, err := openSection(r.seg.path, r.off, m.Size)
		if err == nil || m.jn.Load() == r {
			return rc, err
		}
		// Moved to a file of its own meanwhile, and the segment deleted.
	}
	return openSection(m.file(), m.bodyOff, m.Size)
}

// file is the path of the message's own file.
func (m *Message) file() string { return m.dir + string(filepath.Separator) + m.ID }

// openSection opens size bytes at off of the file at path.
func openSection(path string, off, size int64) (io.ReadCloser, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{io.NewSectionReader(f, off, size), f}, nil
}

// store is the spool directory: the spool interface's implementation.
type store struct {
	log     *slog.Logger // the server's (openSpool); nil otherwise
	dir     string       // queue_directory
	qdir    string       // queue_directory/queue
	jdir    string       // queue_directory/journal
	jn      *journal     // nil: every message gets a file of its own
	corrupt string       // queue_directory/corrupt
	syncer  *safeio.DirSyncer
	seq     atomic.Uint64
	// tmpfile: new files are made with O_TMPFILE and linked into place
	// once complete (one directory operation per message); otherwise
	// under a hidden name, linked, then unlinked.
	tmpfile bool
	cached  atomic.Int64 // bytes of message bodies kept in memory
	appends atomic.Int64 // sidecar writes, for tests
	shared  interner
	// compactions of sidecars, and those that failed (the records were
	// appended instead), for tests
	compactions, compactErrs atomic.Int64
	fileSyncs                atomic.Int64 // fsyncs of message files, for benchmarks

	// free holds files of delivered messages, written over by new ones
	// (safeio.Reuse). Only the server uses it: it empties it at start.
	free     string
	poolMu   sync.Mutex
	pool     []string // names in free
	reusable bool     // the server's store, whose pool is in use
}

// poolMax bounds the files kept for reuse: enough for the messages in
// flight under load.
const poolMax = 1024

// Bodies of at most cacheMax bytes stay in memory from acceptance to the
// first delivery attempt, while all of them together take less than
// cacheBudget: the delivery then reads no file. A backlog beyond the
// budget is read from disk.
const (
	cacheMax    = 128 << 10
	cacheBudget = 64 << 20
)

func openStore(dir string) (*store, error) {
	s := &store{dir: dir, qdir: filepath.Join(dir, "queue"), jdir: filepath.Join(dir, "journal"), corrupt: filepath.Join(dir, "corrupt"), free: filepath.Join(dir, "free")}
	// The queue is private; directories above it that mailtee makes are
	// not, since a mail spool may sit beside it, and mailbox owners'
	// delivery helpers must pass through to reach it.
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return nil, fmt.Errorf("queue directory: %w", err)
	}
	for _, d := range []string{dir, s.qdir, s.corrupt, s.free} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("queue directory: %w", err)
		}
	}
	s.syncer = &safeio.DirSyncer{Dir: s.qdir}
	// Only where a linked O_TMPFILE file is as durable as a named one
	// (not on ext4 without a journal: see safeio.TmpfileDurable).
	s.tmpfile = safeio.TmpfileWorks(s.qdir) && safeio.TmpfileDurable(s.qdir)
	return s, nil
}

// newID returns a queue ID in the shape of Postfix's short IDs: upper-case
// hex, from the clock in microseconds, the process ID and a counter, so
// that the server and sendmail processes do not pick the same one
// (linking, which never replaces a name, catches the rest).
func (s *store) newID() string {
	n := s.seq.Add(1)
	return fmt.Sprintf("%X%03X%03X", time.Now().UnixMicro(), os.Getpid()&0xfff, n&0xfff)
}

// ValidID reports whether id has the shape newID gives: upper-case hex,
// of a sane length. An ID names a file in the spool, and comes from
// outside the server (the control socket, a spool listing): anything
// else (a path, "..", a hidden file) names no message.
func ValidID(id string) bool {
	if len(id) < 6 || len(id) > 32 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; !('0' <= c && c <= '9' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// errBody marks an error from the body reader, as opposed to the disk.
type errBody struct{ error }

func (e errBody) Unwrap() error { return e.error }

// put writes a new message durably under id. The file is written without
// a name (or under a hidden one) and linked into place once synced, so a
// crash in the middle of a submission never leaves a torn message file
// that looks damaged at the next start; one directory sync, shared with
// concurrent puts and removals, makes the entry durable. If body fails,
// nothing is left and the body's error is returned. A message has no
// state sidecar until its first state change.
func (s *store) put(id string, env *envelope.Envelope, body io.Reader) (*Message, error) {
	if s.jn != nil {
		bp := recPool.Get().(*[]byte)
		defer func() {
			if cap(*bp) <= 2*journalMax {
				recPool.Put(bp)
			}
		}()
		rec, bodyAt, big, err := msgRecord(*bp, id, env, body)
		*bp = rec[:0]
		if err != nil {
			var be errBody
			if errors.As(err, &be) {
				return nil, be.error
			}
			return nil, err
		}
		if big {
			body = io.MultiReader(bytes.NewReader(rec[bodyAt:]), body)
		} else {
			m, err := s.putJournal(id, env, rec, bodyAt)
			if !errors.Is(err, errNoSegment) {
				return m, err
			}
			body = bytes.NewReader(bodyBytes(rec, bodyAt))
		}
	}
	nf, m, err := s.write(env, body)
	if err != nil {
		return nil, err
	}
	defer s.closeNew(nf)
	if err := s.publish(nf, m, id); err != nil {
		s.dropCache(m)
		return nil, err
	}
	return m, nil
}

var recPool = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

// putJournal stores a message whose record is built in the journal.
func (s *store) putJournal(id string, env *envelope.Envelope, rec []byte, bodyAt int) (*Message, error) {
	r, err := s.jn.add(rec, int64(bodyAt))
	if err != nil {
		return nil, err
	}
	body := bodyBytes(rec, bodyAt)
	m := newMessage(id, env, int64(len(body)))
	m.jn.Store(r)
	if s.cached.Load() < cacheBudget {
		d := bytes.Clone(body)
		m.data.Store(&d)
		s.cached.Add(int64(len(d)))
	}
	return m, nil
}

// migrate moves a journal message to a file of its own, before its
// first state record (with m.stMu held). The file is durable before the
// journal's D record: a crash in between leaves both, and the file wins.
func (s *store) migrate(m *Message, r *jref) error {
	body, err := m.Open()
	if err != nil {
		return err
	}
	m2, err := s.ownFile(m.ID, m.envelope(), body)
	if err != nil {
		return err
	}
	if len(m.sentState) > 0 {
		// Before the D record, which voids the S record: a crash must
		// not deliver it again.
		if err := s.writeSidecar(m2.file()+".st", m.sentState); err != nil {
			os.Remove(m2.file()) // the journal's copy stays the message
			return err
		}
		m.hasState, m.stSynced = true, true
		m.stSize, m.stBase = int64(len(m.sentState)), int64(len(m.sentState))
		m.sentState = nil
	}
	m.dir, m.bodyOff = m2.dir, m2.bodyOff
	m.jn.Store(nil)
	// Without the D record a restart finds the message twice and keeps
	// the file; only a crash after the file's delivery and removal, with
	// this segment not yet deleted, would bring it back (done counts the
	// message out of the segment all the same).
	s.jn.done(r, m.ID)
	return nil
}

// ownFile stores a message that was in the journal as a file of its own,
// durably, under id; it keeps no copy of the body in memory, and closes
// body.
func (s *store) ownFile(id string, env *envelope.Envelope, body io.ReadCloser) (*Message, error) {
	nf, m, err := s.write(env, body)
	body.Close()
	if err != nil {
		return nil, err
	}
	defer s.closeNew(nf)
	s.dropCache(m)
	if err := s.publish(nf, m, id); err != nil {
		return nil, err
	}
	return m, nil
}

// writeSidecar writes a new sidecar holding state, durably.
func (s *store) writeSidecar(path string, state []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(state)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = s.syncer.Sync()
	}
	return err
}

// evacuate moves a message out of the journal, if it is still there
// (compaction).
func (s *store) evacuate(m *Message) error {
	m.stMu.Lock()
	defer m.stMu.Unlock()
	if r := m.jn.Load(); r != nil && !m.gone {
		return s.migrate(m, r)
	}
	return nil
}

// publish links a written message under id (a link never replaces what
// another process stored under the same name: the error is then
// os.ErrExist) and syncs the directory.
func (s *store) publish(nf *safeio.NewFile, m *Message, id string) error {
	final := filepath.Join(s.qdir, id)
	if err := nf.Link(final); err != nil {
		return err
	}
	if err := s.syncer.Sync(); err != nil {
		os.Remove(final)
		return err
	}
	m.ID, m.dir = id, s.qdir
	return nil
}

var bufPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 64<<10) }}

// write writes the message file, synced, as a new file not yet linked
// into the spool.
func (s *store) write(env *envelope.Envelope, body io.Reader) (*safeio.NewFile, *Message, error) {
	nf, err := s.newFile()
	if err != nil {
		return nil, nil, err
	}
	fail := func(err error) (*safeio.NewFile, *Message, error) {
		s.closeNew(nf)
		return nil, nil, err
	}
	bw := bufPool.Get().(*bufio.Writer)
	bw.Reset(nf.File)
	defer func() { bw.Reset(nil); bufPool.Put(bw) }()
	crc := crc32.New(crcTable)
	w := io.MultiWriter(bw, crc)
	io.WriteString(w, magic)
	keep := &capture{max: cacheMax}
	if s.cached.Load() >= cacheBudget {
		keep.max = -1
	}
	n, err := io.Copy(w, readerOnly{body, keep})
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
	io.WriteString(w, "\nMETA ")
	w.Write(mj)
	io.WriteString(w, "\n")
	// The END line goes in the same buffer: a small message is one write.
	fmt.Fprintf(bw, "END %d %08x\n", metaOff, crc.Sum32())
	if err := bw.Flush(); err != nil {
		return fail(err)
	}
	if nf.Reused() != "" {
		// What the file held before may have been longer.
		end, err := nf.File.Seek(0, io.SeekCurrent)
		if err == nil {
			err = nf.File.Truncate(end)
		}
		if err != nil {
			return fail(err)
		}
	}
	if err := nf.File.Sync(); err != nil {
		return fail(err)
	}
	s.fileSyncs.Add(1)
	m := newMessage("", env, n)
	m.bodyOff = int64(len(magic))
	if keep.max > 0 && int64(len(keep.b)) == n {
		m.data.Store(&keep.b)
		s.cached.Add(n)
	}
	return nf, m, nil
}

// newFile is the file a new message is written to: a reused one when
// the pool has one, otherwise a new one.
func (s *store) newFile() (*safeio.NewFile, error) {
	for {
		s.poolMu.Lock()
		if len(s.pool) == 0 {
			s.poolMu.Unlock()
			return safeio.CreateNew(s.qdir, s.tmpfile)
		}
		name := s.pool[len(s.pool)-1]
		s.pool = s.pool[:len(s.pool)-1]
		s.poolMu.Unlock()
		if nf, err := safeio.Reuse(filepath.Join(s.free, name)); err == nil {
			return nf, nil
		}
	}
}

// closeNew closes a new file that was not published; a reused one goes
// back to the pool.
func (s *store) closeNew(nf *safeio.NewFile) {
	nf.Close()
	if p := nf.Reused(); p != "" {
		s.poolMu.Lock()
		s.pool = append(s.pool, filepath.Base(p))
		s.poolMu.Unlock()
	}
}

// retire takes a delivered message's file out of the spool into the
// pool, or unlinks it when the pool is full or off.
func (s *store) retire(m *Message) error {
	s.poolMu.Lock()
	room := s.reusable && len(s.pool) < poolMax
	s.poolMu.Unlock()
	if room {
		name := m.ID
		if safeio.RenameNoReplace(m.file(), filepath.Join(s.free, name)) == nil {
			s.poolMu.Lock()
			s.pool = append(s.pool, name)
			s.poolMu.Unlock()
			return nil
		}
	}
	if err := os.Remove(m.file()); err != nil && !os.IsNotExist(err) {
		return err
	}
	return nil
}

// resetPool empties the free directory, at server start: after a crash a
// rename into the spool may have left the same file under both names,
// and a file of the pool must never be a queued message.
func (s *store) resetPool() {
	entries, _ := os.ReadDir(s.free)
	queued := map[uint64]bool{}
	if len(entries) > 0 {
		qs, _ := os.ReadDir(s.qdir)
		for _, e := range qs {
			if fi, err := e.Info(); err == nil {
				if st, ok := fi.Sys().(*syscall.Stat_t); ok {
					queued[st.Ino] = true
				}
			}
		}
	}
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil {
			continue
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && queued[st.Ino] {
			continue // the queued message's other name: leave it be
		}
		os.Remove(filepath.Join(s.free, e.Name()))
	}
	s.reusable = true
}

// fsyncs counts every fsync and fdatasync of the acceptance and removal
// paths, for benchmarks (sidecars are not counted).
func (s *store) fsyncs() int64 {
	n := s.fileSyncs.Load() + int64(s.syncer.Syncs())
	if s.jn != nil {
		n += s.jn.syncs.Load() + int64(s.jn.syncer.Syncs())
	}
	return n
}

// dropCache lets go of a message's in-memory body.
func (s *store) dropCache(m *Message) {
	if d := m.data.Swap(nil); d != nil {
		s.cached.Add(-int64(len(*d)))
	}
}

// capture keeps a copy of what passes, up to max bytes; past that it
// keeps nothing.
type capture struct {
	b   []byte
	max int
}

func (c *capture) add(p []byte) {
	if c.max <= 0 {
		return
	}
	if len(c.b)+len(p) > c.max {
		c.b, c.max = nil, -1
		return
	}
	c.b = append(c.b, p...)
}

// readerOnly tags errors from the body so put can tell them from write
// errors, hides WriterTo so io.Copy goes through Read, and lets keep see
// the bytes.
type readerOnly struct {
	r    io.Reader
	keep *capture
}

func (r readerOnly) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.keep.add(p[:n])
	if err != nil && err != io.EOF {
		err = errBody{err}
	}
	return n, err
}

// loadAll loads the messages ids, on every CPU: at start-up with a
// backlog, decoding the envelopes is most of the time it takes.
func (s *store) loadAll(ids []string) ([]*Message, []error) {
	ms, errs := make([]*Message, len(ids)), make([]error, len(ids))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(ids)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := int(next.Add(1)) - 1; k < len(ids); k = int(next.Add(1)) - 1 {
				ms[k], errs[k] = s.load(ids[k])
			}
		}()
	}
	wg.Wait()
	return ms, errs
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
	m := newMessage(id, &mt.Env, mt.BodySize)
	m.dir, m.bodyOff = s.qdir, int64(len(magic))
	s.applyState(m)
	return m, nil
}

// remove deletes a message, durably: after a crash it must not come back
// and be delivered again, since the last deliveries of a message are not
// recorded in its sidecar (the removal is their record). The sidecar
// goes only after the message file's removal is durable: otherwise a
// power loss could bring back the message without its state.
func (s *store) remove(m *Message, reuse bool) error {
	s.dropCache(m)
	m.stMu.Lock()
	defer m.stMu.Unlock()
	m.gone = true
	if r := m.jn.Load(); r != nil {
		return s.jn.done(r, m.ID)
	}
	if reuse {
		if err := s.retire(m); err != nil {
			return err
		}
	} else if err := os.Remove(m.file()); err != nil && !os.IsNotExist(err) {
		return err
	}
	if err := s.syncer.Sync(); err != nil {
		return err
	}
	if m.hasState {
		os.Remove(m.file() + ".st")
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
			// Commit moves a staged message's sidecar first: with
			// the message still staged, the sidecar is its, not an
			// orphan (its hold, its bounced recipients).
			if _, err := os.Lstat(filepath.Join(s.dir, StageDir, base)); err == nil {
				continue
			}
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
// (mailtee sendmail), durably, and returns its ID. The file is linked
// into place only when complete, so that a server scanning the spool
// never sees it half-written; a running server then learns of it through
// Pickup or its periodic rescan.
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
	nf, m, err := s.write(env, body)
	if err != nil {
		return "", err
	}
	defer nf.Close()
	// Another process may have taken an ID: publish then fails rather
	// than replace its message, and another ID is tried.
	for try := 0; try < 10; try++ {
		id := s.newID()
		err := s.publish(nf, m, id)
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

// NewMemMessage is a message held in memory only, never stored: for the
// tests of the packages that handle queued messages (qmgr, bounce).
func NewMemMessage(id string, env *envelope.Envelope, body []byte) *Message {
	m := newMessage(id, env, int64(len(body)))
	m.data.Store(&body)
	return m
}
