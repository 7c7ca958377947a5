package ledger

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// A ledger in PostgreSQL is another host: it goes down, restarts, is
// moved. What could not be written to it meanwhile waits in the spill
// file, beside the marker in this node's queue directory, fsynced
// before the queue is told it may remove the messages, and is written
// to the database, in order, before anything newer once it answers. So
// a database down for minutes or hours leaves no gap and costs no mail.
//
// Why not let the queue keep the finished messages until the database
// has them: the queue waits for its ledger's answer when it opens (the
// finished messages a crash left) and when it closes, so a database
// that is down would stop a node from starting and from stopping.
//
// Only when the file cannot take more (maxSpill, a full disk) do
// records become a gap, as with SQLite.

// maxSpill bounds the spill file: some 500,000 messages.
const maxSpill = 512 << 20

// Retries of a database that did not answer: from spillRetryMin,
// doubling, up to spillRetryMax; meanwhile batches go to the file
// without waiting for a connection to fail.
const (
	spillRetryMin = time.Second
	spillRetryMax = 30 * time.Second
)

// SpillFile is where a Recorder with marker keeps what a PostgreSQL
// ledger could not take yet.
func SpillFile(marker string) string {
	if marker == "" {
		return ""
	}
	return filepath.Join(filepath.Dir(marker), "ledger.pending")
}

type spillState struct {
	size   int64     // bytes in the file (0: nothing waiting)
	msgs   int       // message records in it (this run's and, at start, estimated)
	retry  time.Time // when the database is tried again
	delay  time.Duration
	since  time.Time // when the database stopped answering (zero: it answers)
	forced bool      // closing: try once more whatever the delay
	// offset is where the replay goes on (what is before it is in the
	// database); written counts the records it wrote, for the log.
	offset  int64
	written int
}

// spillRec is one line of the file: a message's records of one batch,
// or a gap.
type spillRec struct {
	Node     string     `json:"node,omitempty"`
	ID       string     `json:"id,omitempty"`
	Head     *Message   `json:"head,omitempty"`
	Finished time.Time  `json:"finished,omitzero"`
	Rows     []Delivery `json:"rows,omitempty"`
	Gap      *Gap       `json:"gap,omitempty"`
}

func (r *Recorder) shared() bool { return Shared(r.o.Path) }

// loadSpill notes a spill file left by the last run (NewRecorder).
func (r *Recorder) loadSpill() {
	p := SpillFile(r.o.Marker)
	if p == "" || !r.shared() {
		return
	}
	if fi, err := os.Lstat(p); err == nil && fi.Mode().IsRegular() && fi.Size() > 0 {
		r.spill.size = fi.Size()
		r.spill.msgs = int(fi.Size() / 512) // an estimate, for Stats
	}
}

// syncHeldLocked publishes the spill's count for Stats.
func (r *Recorder) syncHeldLocked() {
	n := r.spill.msgs
	if r.spill.size > 0 {
		n = max(n, 1)
	} else {
		n = 0
	}
	r.held.Store(int64(n))
}

// heldLocked says whether the database is not to be tried now: records
// wait in the file and the retry delay has not passed.
func (r *Recorder) heldLocked(now time.Time) bool {
	return r.spill.size > 0 && !r.spill.forced && now.Before(r.spill.retry)
}

// spillDue says whether the spill file waits and its retry is due (the
// run loop then tries the database with no new event).
func (r *Recorder) spillDue(now time.Time) (bool, time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.spill.size == 0 {
		return false, time.Time{}
	}
	return !now.Before(r.spill.retry), r.spill.retry
}

// failedLocked drops the connection after a failure (the next try
// connects again and reads the database's identity: a database
// recreated meanwhile shows as a gap) and sets the next retry.
func (r *Recorder) failedLocked(err error) {
	if r.st != nil {
		r.st.Close()
		r.st = nil
	}
	now := time.Now()
	r.spill.delay = min(max(2*r.spill.delay, spillRetryMin), spillRetryMax)
	r.spill.retry = now.Add(r.spill.delay)
	if r.spill.since.IsZero() {
		r.spill.since = now
		r.o.Log("warning: ledger %s: %v; holding its records in %s until the database answers (nothing is lost, mail keeps flowing)",
			Describe(r.o.Path), err, SpillFile(r.o.Marker))
		r.lastWarn = now
	}
}

// spillLocked appends b to the spill file and fsyncs it: once it
// returns nil, the queue may remove b's messages.
func (r *Recorder) spillLocked(b *batch) error {
	p := SpillFile(r.o.Marker)
	if p == "" {
		return errors.New("no queue directory to hold the records in")
	}
	var buf []byte
	for _, k := range b.order {
		e := b.msgs[k]
		rec := spillRec{Node: k.node, ID: k.id, Finished: e.finished}
		if e.head != nil {
			h := *e.head
			h.Deliveries = nil // the rows carry them
			rec.Head = &h
		}
		for _, i := range e.rowOrder {
			rec.Rows = append(rec.Rows, *e.rows[i])
		}
		line, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		buf = append(append(buf, line...), '\n')
	}
	for i := range b.gaps {
		line, _ := json.Marshal(spillRec{Gap: &b.gaps[i]})
		buf = append(append(buf, line...), '\n')
	}
	if r.spill.size+int64(len(buf)) > maxSpill {
		return fmt.Errorf("%s is full (%d MiB)", p, maxSpill>>20)
	}
	f, err := os.OpenFile(p, os.O_RDWR|os.O_APPEND|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	// A crash mid-write leaves a line without its end: this batch's
	// first line must not be glued to it (the replay would skip both,
	// and this batch's messages are removed from the queue).
	if fi.Size() > 0 {
		last := make([]byte, 1)
		if _, err := f.ReadAt(last, fi.Size()-1); err != nil {
			f.Close()
			return err
		}
		if last[0] != '\n' {
			buf = append([]byte{'\n'}, buf...)
		}
	}
	_, err = f.Write(buf)
	if err == nil {
		err = f.Sync()
	}
	if err != nil {
		f.Truncate(fi.Size()) // no torn line for the next batch to follow
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if fi.Size() == 0 {
		syncDir(filepath.Dir(p)) // the new file's name survives a crash
	}
	r.spill.size = fi.Size() + int64(len(buf))
	r.spill.msgs += len(b.order)
	return nil
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// spillChunk is how many messages one transaction of a replay holds,
// and replayChunks how many transactions one turn of the writer runs:
// a long spill is written a turn at a time, the batches meanwhile added
// to its end, so that the writer keeps taking events.
// (Variables for the tests.)
var (
	spillChunk   = 1000
	replayChunks = 10
)

// replayLocked writes the spill file to the open database, in order,
// from where the last turn stopped, in transactions of spillChunk
// messages, and removes it when it is all written (done). A failure
// midway starts the next turn where it stopped: the records written
// again after a crash are taken by the upserts without harm.
func (r *Recorder) replayLocked() (done bool, err error) {
	p := SpillFile(r.o.Marker)
	f, err := os.Open(p)
	if errors.Is(err, os.ErrNotExist) {
		r.spill = spillState{}
		return true, nil
	} else if err != nil {
		return false, err
	}
	defer f.Close()
	if _, err := f.Seek(r.spill.offset, 0); err != nil {
		return false, err
	}
	rd := bufio.NewReaderSize(f, 64<<10)
	b, off, chunks := newBatch(), r.spill.offset, 0
	flush := func() error {
		if len(b.order) == 0 && len(b.gaps) == 0 {
			return nil
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		err := r.st.write(ctx, b)
		cancel()
		if err == nil {
			r.spill.written += len(b.order)
			r.spill.offset = off
			chunks++
		}
		b = newBatch()
		return err
	}
	for chunks < replayChunks {
		line, rerr := rd.ReadBytes('\n')
		if len(line) > 0 && line[len(line)-1] == '\n' {
			off += int64(len(line))
			var rec spillRec
			if json.Unmarshal(line, &rec) != nil {
				// A line torn by a crash: its messages were not
				// removed from the queue, which gives them again.
			} else if rec.Gap != nil {
				b.gaps = append(b.gaps, *rec.Gap)
			} else {
				rec.addTo(b)
			}
			if len(b.order) >= spillChunk {
				if err := flush(); err != nil {
					return false, err
				}
			}
		}
		if rerr == io.EOF {
			if err := flush(); err != nil {
				return false, err
			}
			f.Close()
			if err := os.Remove(p); err != nil {
				return false, err
			}
			syncDir(filepath.Dir(p))
			down := "since the last start"
			if !r.spill.since.IsZero() {
				down = "for " + time.Since(r.spill.since).Round(time.Second).String()
			}
			r.o.Log("ledger %s answers again (it did not %s): %d message record(s) held in %s written, no gap",
				Describe(r.o.Path), down, r.spill.written, p)
			r.spill = spillState{}
			return true, nil
		} else if rerr != nil {
			return false, rerr
		}
	}
	return false, nil
}

// addTo merges rec into b as the accumulator merges events: the first
// head's phase stays, a later head with the message's end replaces it.
func (rec *spillRec) addTo(b *batch) {
	e := b.entry(msgKey{rec.Node, rec.ID}, time.Time{})
	if h := rec.Head; h != nil && (e.head == nil || !h.Finished.IsZero()) {
		if e.head != nil && e.head.Phase != "" {
			h.Phase = e.head.Phase
		}
		e.head = h
	}
	if !rec.Finished.IsZero() {
		e.finished = rec.Finished
	}
	for i := range rec.Rows {
		d := rec.Rows[i]
		e.row(&d)
	}
}
