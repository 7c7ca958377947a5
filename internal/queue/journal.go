package queue

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mailtee/mailtee/internal/envelope"
	"github.com/mailtee/mailtee/internal/safeio"
)

// The intake journal. A message of at most journalMax bytes is not given
// a file of its own when it is accepted: its record is appended to the
// current journal segment, queue_directory/journal/SEQ, with those of
// concurrent sessions, and one fdatasync makes all of them durable
// before their 250 (group commit: fewer than one fsync per message under
// load, and no file creation at all).
//
// A message stays in the journal only until its first state change. A
// delivery pass that leaves anything to record (a deferral, a hold, a
// bounce notice, an added recipient) first moves it to a file of its own
// (migrate), as any
// large message is stored; a message all of whose recipients are done
// gets a D record instead of a removal. So the messages of a segment are
// normally done within seconds, and segments are deleted oldest first
// once all their messages are done: a D record may name a message of an
// older segment, never of a newer one, so deleting in order never brings
// a done message back.
//
// A segment is preallocated (fallocate) when it is created, so that the
// records of acceptance never meet a full disk half-way and D records,
// which may use the last segmentReserve bytes that messages may not,
// find room when new messages no longer do. Where a segment cannot be
// made (a disk with less than a segment free), messages go to files of
// their own as before.
//
// Each record is
//
//	type   1 byte: 'M' message, 'D' done
//	length 4 bytes, little endian: of the payload
//	crc    4 bytes, little endian: crc32c of the segment's sequence
//	       number (8 bytes, little endian), type, length and payload
//	payload
//
// An M payload is the ID's length (1 byte), the ID, the body's length
// (4 bytes), the body as received and the META JSON; a D payload is the
// ID. The unwritten rest of a segment reads as zeros, a type that ends
// it. At start-up the server moves every message the journal still holds
// to a file of its own and deletes the segments: the journal only ever
// holds the running server's messages.

const (
	recHeader = 9
	recMsg    = 'M'
	recDone   = 'D'
	// recSent: every recipient of a journal message was delivered, and
	// the message waits for the ledger before its D record (queue
	// Ledger). The payload is the ID's length, the ID and the state
	// records, as a sidecar holds them: a crash meanwhile must not
	// deliver it again, and the ledger gets its replies at restart.
	// Written without fsync: a process that dies leaves it in the page
	// cache; only a power loss can cost it, and then a delivery is
	// repeated, never lost.
	recSent = 'S'
	// journalMax is the largest body that goes to the journal: the
	// record is built in memory.
	journalMax = cacheMax
)

// Segment geometry, taken by each journal when it opens (as journalKeep
// is); variables for tests.
var (
	segmentSize    int64 = 16 << 20
	segmentReserve int64 = 512 << 10 // for D records only
)

// segmentRetry is how long after a failure to create a segment messages
// go to files of their own before the journal tries again.
const segmentRetry = time.Second

// errNoSegment says the journal has no room: store the message as a
// file of its own.
var errNoSegment = errors.New("no journal segment")

type segment struct {
	seq  uint64
	path string
	f    *os.File

	// Under journal.mu:
	written int64 // end of the complete records
	synced  int64 // end of the records known to be durable
	syncing bool  // an fdatasync is running
	users   int   // writers whose sync has not returned
	err     error // a failed fdatasync: nothing more is durable here
	live    int   // messages in it not yet done
	bytes   int64 // their records' bytes
	full    bool  // takes no more messages
}

// jref is where a journal message's body is.
type jref struct {
	seg *segment
	off int64 // of the body, in the segment file
	n   int64 // the record's length
}

type journal struct {
	dir           string
	syncer        *safeio.DirSyncer
	size, reserve int64 // segmentSize, segmentReserve
	keep          int   // journalKeep

	mu       sync.Mutex
	cond     *sync.Cond
	segs     []*segment // oldest first; the last takes new records
	next     uint64     // sequence number of the next segment
	failedAt time.Time  // last failure to create a segment

	gcMu  sync.Mutex   // deletions of segments, one at a time, in order
	syncs atomic.Int64 // fdatasyncs, for tests and benchmarks
	recs  atomic.Int64 // M records
}

func openJournal(dir string, next uint64) (*journal, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("queue journal: %w", err)
	}
	j := &journal{dir: dir, syncer: &safeio.DirSyncer{Dir: dir}, next: next, size: segmentSize, reserve: segmentReserve, keep: journalKeep}
	j.cond = sync.NewCond(&j.mu)
	return j, nil
}

func segName(seq uint64) string { return fmt.Sprintf("%016X", seq) }

// current returns the segment a record of n bytes goes to, creating one
// when needed; a message (done false) may not use the reserve.
func (j *journal) currentLocked(n int64, done bool) (*segment, error) {
	var cur *segment
	if len(j.segs) > 0 {
		cur = j.segs[len(j.segs)-1]
	}
	limit := j.size - j.reserve
	if done {
		limit = j.size
	}
	if cur != nil && cur.err == nil && (done || !cur.full) && cur.written+n <= limit {
		return cur, nil
	}
	if cur != nil && !done {
		cur.full = true
	}
	if time.Since(j.failedAt) < segmentRetry {
		return nil, errNoSegment
	}
	seg, err := j.create()
	if err != nil {
		j.failedAt = time.Now()
		return nil, fmt.Errorf("%w: %v", errNoSegment, err)
	}
	if cur != nil {
		cur.full = true
	}
	j.segs = append(j.segs, seg)
	return seg, nil
}

// create makes a new preallocated segment, its name durable.
func (j *journal) create() (*segment, error) {
	seq := j.next
	j.next++
	path := filepath.Join(j.dir, segName(seq))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Fallocate(int(f.Fd()), 0, 0, j.size); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("preallocate %s: %w", path, err)
	}
	if err := j.syncer.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return nil, err
	}
	return &segment{seq: seq, path: path, f: f}, nil
}

// write appends a record whose payload follows recHeader bytes left
// free at the start of rec, and returns its segment and offset. The
// caller must then call sync.
func (j *journal) write(typ byte, rec []byte) (*segment, int64, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	seg, err := j.currentLocked(int64(len(rec)), typ == recDone || typ == recSent)
	if err != nil {
		return nil, 0, err
	}
	seal(rec, typ, seg.seq)
	off := seg.written
	if _, err := seg.f.WriteAt(rec, off); err != nil {
		// Whatever of it reached the file is not a record: the next
		// one must not follow it. The message, not acknowledged, may
		// still get a file of its own.
		seg.full, seg.err = true, err
		return nil, 0, fmt.Errorf("%w: %v", errNoSegment, err)
	}
	seg.written += int64(len(rec))
	seg.users++
	if typ == recMsg {
		seg.live++
		seg.bytes += int64(len(rec))
		j.recs.Add(1)
	}
	return seg, off, nil
}

// seal fills in a record's header.
func seal(rec []byte, typ byte, seq uint64) {
	rec[0] = typ
	binary.LittleEndian.PutUint32(rec[1:5], uint32(len(rec)-recHeader))
	binary.LittleEndian.PutUint32(rec[5:9], recordSum(seq, rec[:5], rec[recHeader:]))
}

func recordSum(seq uint64, head, payload []byte) uint32 {
	var s [8]byte
	binary.LittleEndian.PutUint64(s[:], seq)
	c := crc32.Update(0, crcTable, s[:])
	c = crc32.Update(c, crcTable, head)
	return crc32.Update(c, crcTable, payload)
}

// fsyncObserver is ObserveFsync's function.
var fsyncObserver atomic.Pointer[func(time.Duration)]

// ObserveFsync has f told how long each fdatasync of the intake journal
// took, the wait of every 250 after DATA (mailtee_journal_fsync_seconds);
// nil stops it. It is process-wide, as the disk is: every queue of the
// process reports to the last f set.
func ObserveFsync(f func(time.Duration)) {
	if f == nil {
		fsyncObserver.Store(nil)
		return
	}
	fsyncObserver.Store(&f)
}

// sync returns once seg is durable up to end. One fdatasync serves every
// writer that wrote before it began; writers arriving meanwhile wait for
// it and then share the next one.
func (j *journal) sync(seg *segment, end int64) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	defer func() { seg.users-- }()
	for seg.synced < end {
		if seg.err != nil {
			return seg.err
		}
		if seg.syncing {
			j.cond.Wait()
			continue
		}
		seg.syncing = true
		target := seg.written
		j.mu.Unlock()
		start := time.Now()
		err := unix.Fdatasync(int(seg.f.Fd()))
		if f := fsyncObserver.Load(); f != nil {
			(*f)(time.Since(start))
		}
		j.syncs.Add(1)
		j.mu.Lock()
		seg.syncing = false
		if err != nil {
			// After a failed fdatasync the kernel may have dropped the
			// dirty pages: nothing in this segment counts any more.
			seg.err, seg.full = fmt.Errorf("fdatasync %s: %w", seg.path, err), true
		} else {
			seg.synced = max(seg.synced, target)
		}
		j.cond.Broadcast()
	}
	return nil
}

// add stores a message record durably.
func (j *journal) add(rec []byte, bodyOff int64) (*jref, error) {
	seg, off, err := j.write(recMsg, rec)
	if err != nil {
		return nil, err
	}
	if err := j.sync(seg, off+int64(len(rec))); err != nil {
		// Not acknowledged: the message is not queued. Its record may
		// still be on disk; a D record, if it gets there, says so.
		j.done(&jref{seg: seg, n: int64(len(rec))}, idOfRecord(rec))
		return nil, err
	}
	return &jref{seg: seg, off: off + bodyOff, n: int64(len(rec))}, nil
}

func idOfRecord(rec []byte) string {
	n := int(rec[recHeader])
	return string(rec[recHeader+1 : recHeader+1+n])
}

// done records, durably, that the message id of r's segment is no longer
// in the journal (delivered, deleted, or moved to a file of its own),
// and deletes the segments that hold nothing live any more.
//
// The message counts as done in its segment even when the record cannot
// be written: deleting the segment later is as good a record, and the
// segment must not stay forever, holding up the deletion of every newer
// one, for a message the queue no longer has.
func (j *journal) done(r *jref, id string) error {
	rec := make([]byte, recHeader+len(id))
	copy(rec[recHeader:], id)
	seg, off, err := j.write(recDone, rec)
	if err == nil {
		err = j.sync(seg, off+int64(len(rec)))
	}
	j.mu.Lock()
	r.seg.live--
	r.seg.bytes -= r.n
	j.mu.Unlock()
	j.collect()
	return err
}

// Segments are deleted in order, so one message whose first delivery
// takes long (a slow next hop, a big message) would keep every newer
// segment on disk. When there are more than journalKeep segments, the
// queue moves the messages still in the oldest ones to files of their
// own (compaction), as long as they fill less than a quarter of it:
// a segment full of messages waiting their turn is a backlog, which
// takes its room either way.
var journalKeep = 4

// pinned returns the oldest segments that hold up the deletion of newer
// ones and are worth emptying.
func (j *journal) pinned() map[*segment]bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	out := map[*segment]bool{}
	for _, s := range j.segs[:max(0, len(j.segs)-j.keep)] {
		if s.full && s.live > 0 && s.bytes*4 < j.size {
			out[s] = true
		}
	}
	return out
}

// collect deletes the oldest segments while they take no more records and
// hold nothing live, each deletion durable before the next (a newer
// segment may hold the D records of an older one's messages).
func (j *journal) collect() {
	j.gcMu.Lock()
	defer j.gcMu.Unlock()
	for {
		j.mu.Lock()
		if len(j.segs) < 2 {
			j.mu.Unlock()
			return
		}
		s := j.segs[0]
		if !s.full || s.live > 0 || s.users > 0 {
			j.mu.Unlock()
			return
		}
		if err := os.Remove(s.path); err != nil && !os.IsNotExist(err) {
			// It stays first, and every newer one with it: they may
			// hold the D records of its messages.
			j.mu.Unlock()
			return
		}
		j.segs = j.segs[1:]
		j.mu.Unlock()
		s.f.Close()
		if err := j.syncer.Sync(); err != nil {
			return
		}
	}
}

// close closes the segment files (at server stop; nothing is deleted:
// the next start moves what they still hold).
func (j *journal) close() {
	j.gcMu.Lock()
	defer j.gcMu.Unlock()
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, s := range j.segs {
		s.f.Close()
	}
	j.segs = nil
}

// jmsg is a message found in the journal at start-up.
type jmsg struct {
	id    string
	meta  meta
	path  string // segment file
	off   int64  // of the body
	state []byte // sidecar records from S records
}

// journalScan is what the segments of a stopped or crashed server hold.
type journalScan struct {
	segs    []string       // segment files, oldest first
	last    uint64         // highest sequence number seen
	live    []jmsg         // messages without a D record, in journal order
	damaged map[string]int // segment file: damaged records
	notes   []string       // incomplete records ignored, for the log
}

// readJournal reads every segment in dir. A record that does not check
// out ends its segment, unless the one its length points to checks out
// (a damaged record rather than the torn end of a write a crash
// interrupted, which was never acknowledged): then it is skipped and
// counted as damage.
func readJournal(dir string) (*journalScan, error) {
	js := &journalScan{damaged: map[string]int{}}
	entries, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return js, nil
	}
	if err != nil {
		return nil, err
	}
	type seg struct {
		seq  uint64
		path string
	}
	var segs []seg
	for _, e := range entries {
		seq, err := strconv.ParseUint(e.Name(), 16, 64)
		if err != nil || len(e.Name()) != 16 {
			continue
		}
		segs = append(segs, seg{seq, filepath.Join(dir, e.Name())})
	}
	sort.Slice(segs, func(a, b int) bool { return segs[a].seq < segs[b].seq })
	var order []string
	msgs := map[string]jmsg{}
	for _, sg := range segs {
		js.segs = append(js.segs, sg.path)
		js.last = max(js.last, sg.seq)
		data, unmap, err := mapSegment(sg.path)
		if err != nil {
			return nil, err
		}
		defer unmap()
		off := 0
		lastSeg := sg.path == segs[len(segs)-1].path
		for off+recHeader <= len(data) && data[off] != 0 {
			n, ok := checkRecord(data, off, sg.seq)
			if !ok {
				next := off + recHeader + n
				if n >= 0 && next+recHeader <= len(data) && data[next] != 0 {
					if _, ok := checkRecord(data, next, sg.seq); ok {
						js.damaged[sg.path]++
						off = next
						continue
					}
				}
				// Every record after the first that is not complete on
				// disk was written after it, and its fdatasync, which
				// would have covered both, never returned: in the last
				// segment that is the write a crash interrupted. In an
				// older one it is most likely damage (or a write torn
				// just as the next segment began, not acknowledged
				// either): reported, and the segment kept.
				if lastSeg {
					js.notes = append(js.notes, fmt.Sprintf("%s: incomplete record at offset %d, the end of a write that a crash interrupted (never acknowledged); ignored", sg.path, off))
				} else {
					js.damaged[sg.path]++
				}
				break
			}
			p := data[off+recHeader : off+recHeader+n]
			switch data[off] {
			case recMsg:
				m, err := parseMsg(p)
				if err != nil {
					js.damaged[sg.path]++
					break
				}
				m.path = sg.path
				m.off += int64(off + recHeader)
				if _, dup := msgs[m.id]; !dup {
					order = append(order, m.id)
				}
				msgs[m.id] = m
			case recDone:
				delete(msgs, string(p))
			case recSent:
				if len(p) < 1 || len(p) < 1+int(p[0]) {
					js.damaged[sg.path]++
					break
				}
				id := string(p[1 : 1+p[0]])
				if m, ok := msgs[id]; ok {
					m.state = append(m.state, p[1+p[0]:]...) // a copy: p is mapped
					msgs[id] = m
				}
			}
			off += recHeader + n
		}
	}
	for _, id := range order {
		if m, ok := msgs[id]; ok {
			js.live = append(js.live, m)
			delete(msgs, id) // once, even if listed twice
		}
	}
	return js, nil
}

// mapSegment maps a segment file read-only: a segment is preallocated,
// and reading it whole would take its size in memory at every start-up
// however little it holds; a mapping reads only the pages of its
// records. Nothing decoded from it may refer to it after unmap.
func mapSegment(path string) (data []byte, unmap func(), err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	if fi.Size() == 0 {
		return nil, func() {}, nil
	}
	data, err = unix.Mmap(int(f.Fd()), 0, int(fi.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, nil, fmt.Errorf("map %s: %w", path, err)
	}
	return data, func() { unix.Munmap(data) }, nil
}

// checkRecord returns the payload length of the record at off and
// whether it checks out; -1 when even the length is impossible.
func checkRecord(data []byte, off int, seq uint64) (int, bool) {
	n := int(binary.LittleEndian.Uint32(data[off+1 : off+5]))
	if n < 0 || n > len(data)-off-recHeader {
		return -1, false
	}
	typ := data[off]
	sum := binary.LittleEndian.Uint32(data[off+5 : off+9])
	ok := (typ == recMsg || typ == recDone || typ == recSent) && recordSum(seq, data[off:off+5], data[off+recHeader:off+recHeader+n]) == sum
	return n, ok
}

// parseMsg decodes an M payload; off is the body's offset in it.
func parseMsg(p []byte) (jmsg, error) {
	var m jmsg
	if len(p) < 1 {
		return m, errors.New("short record")
	}
	n := int(p[0])
	if len(p) < 1+n+4 {
		return m, errors.New("short record")
	}
	m.id = string(p[1 : 1+n])
	size := int64(binary.LittleEndian.Uint32(p[1+n : 5+n]))
	m.off = int64(5 + n)
	if int64(len(p))-m.off < size {
		return m, errors.New("short body")
	}
	if err := json.Unmarshal(p[m.off+size:], &m.meta); err != nil {
		return m, fmt.Errorf("bad META: %v", err)
	}
	if m.meta.BodySize != size {
		return m, errors.New("body size does not match")
	}
	return m, nil
}

// body reads a journal message's body from its segment.
func (m jmsg) body() (io.ReadCloser, error) {
	return openSection(m.path, m.off, m.meta.BodySize)
}

// message is the queued message a journal record describes.
func (m jmsg) message() *Message {
	return newMessage(m.id, &m.meta.Env, m.meta.BodySize)
}

// msgRecord builds a message's journal record in buf: header room, ID,
// body read from body (at most journalMax bytes), META. It returns the
// record and the body's offset in it, or big set when the body is
// longer: then rec holds the part read so far at bodyAt.
func msgRecord(buf []byte, id string, env *envelope.Envelope, body io.Reader) (rec []byte, bodyAt int, big bool, err error) {
	b := append(buf[:0], make([]byte, recHeader)...)
	b = append(b, byte(len(id)))
	b = append(b, id...)
	b = append(b, 0, 0, 0, 0)
	bodyAt = len(b)
	limit := bodyAt + journalMax
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		end := min(cap(b), limit+1)
		n, rerr := body.Read(b[len(b):end])
		b = b[:len(b)+n]
		if len(b) > limit {
			return b, bodyAt, true, nil
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return b, bodyAt, false, errBody{rerr}
		}
	}
	size := len(b) - bodyAt
	binary.LittleEndian.PutUint32(b[bodyAt-4:bodyAt], uint32(size))
	mj, err := json.Marshal(meta{Env: *env, BodySize: int64(size)})
	if err != nil {
		return b, bodyAt, false, err
	}
	return append(b, mj...), bodyAt, false, nil
}

// bodyBytes is the body inside a record msgRecord built.
func bodyBytes(rec []byte, bodyAt int) []byte {
	size := int(binary.LittleEndian.Uint32(rec[bodyAt-4 : bodyAt]))
	return rec[bodyAt : bodyAt+size]
}

// recoverJournal moves every message the segments of the previous run
// still hold to a file of its own, except those that have one already
// (moved before a crash lost the D record), then deletes the segments,
// durably, before the server delivers anything; damaged segments go to
// corrupt/. It returns the IDs moved and what to log. If a message
// cannot be moved the segments are all kept and the error says so.
func (s *store) recoverJournal(ids []string, finished func([]*Message)) (moved []string, js *journalScan, err error) {
	js, err = readJournal(s.jdir)
	if err != nil {
		return nil, nil, fmt.Errorf("queue journal: %w", err)
	}
	have := make(map[string]bool, len(ids))
	for _, id := range ids {
		have[id] = true
	}
	var done []*Message
	for _, jm := range js.live {
		if have[jm.id] {
			continue
		}
		if m := jm.message(); s.allSent(m, jm.state) {
			done = append(done, m) // delivered: no file, only the ledger
			continue
		}
		if err := s.moveOut(jm); err != nil {
			return nil, nil, fmt.Errorf("queue journal: cannot move message %s from %s to a file of its own: %w; the journal is kept: make room and start again", jm.id, jm.path, err)
		}
		moved = append(moved, jm.id)
	}
	if len(done) > 0 && finished != nil {
		finished(done) // before the segments that hold them go
	}
	for _, p := range js.segs {
		if js.damaged[p] > 0 {
			os.Rename(p, filepath.Join(s.corrupt, "journal-"+filepath.Base(p)))
		} else if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
			return nil, nil, fmt.Errorf("queue journal: %w", err)
		}
	}
	if len(js.segs) > 0 {
		if err := safeio.SyncDir(s.jdir); err != nil {
			return nil, nil, fmt.Errorf("queue journal: %w", err)
		}
	}
	return moved, js, nil
}

// moveOut stores a journal message found at start-up as a file of its
// own, with the state its S records carried.
func (s *store) moveOut(jm jmsg) error {
	body, err := jm.body()
	if err != nil {
		return err
	}
	m, err := s.ownFile(jm.id, &jm.meta.Env, body)
	if err != nil || len(jm.state) == 0 {
		return err
	}
	return s.writeSidecar(m.file()+".st", jm.state)
}

// allSent applies to m the records of its S records, and reports
// whether every recipient of m is sent.
func (s *store) allSent(m *Message, state []byte) bool {
	if len(state) == 0 {
		return false
	}
	replayState(state, func(r record) {
		s.intern(&r)
		m.apply(r)
	})
	for i := range m.Rcpts {
		if m.Rcpts[i].Status != Sent {
			return false
		}
	}
	return true
}

// sent appends an S record for message id (see recSent).
func (j *journal) sent(id string, state []byte) error {
	rec := make([]byte, recHeader+1+len(id)+len(state))
	rec[recHeader] = byte(len(id))
	copy(rec[recHeader+1:], id)
	copy(rec[recHeader+1+len(id):], state)
	_, _, err := j.write(recSent, rec)
	return err
}
