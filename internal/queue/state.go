package queue

import (
	"bytes"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mailtee/mailtee/internal/envelope"
)

// Delivery state. A message's sidecar, queue/ID.st, is a sequence of
// lines "\nJSON(record) crc32c" (each record starts a line of its own, so
// that a record torn by a crash, without its newline, cannot swallow the
// next one). A record is about one recipient (r), or about several (rs,
// ranges of recipient indexes: "0-99,105"; r is then -1), or about the
// message (r -1: hold, release), or adds a recipient to the message (op
// "add", r its index, add the recipient: a mailbox_bcc_maps copy, written
// with the record of the delivery that made it, so that the delivery and
// its copy are recorded together or not at all).
//
// The file stays O(recipients), however often they are retried:
//
//   - the records of one delivery pass that say the same thing (a next
//     hop that is down defers all its recipients with one reason) are
//     written as one record for all of them;
//   - when the file has grown past twice the size of its compacted form
//     (and past stateCompactMin), it is rewritten as that form: one record
//     per group of recipients in the same state, with its attempt count
//     (a), written to a temporary file, fsynced, renamed over the old one
//     and the directory fsynced. A crash leaves the old file or the new
//     one, both complete.
//
// Files written before the ranges existed (one record per recipient per
// attempt, no a) load as they did, and are compacted at their next
// state change.

// stateCompactMin is the size under which a sidecar is never rewritten:
// one file system block.
const stateCompactMin = 4096

// Status of one recipient.
type Status uint8

const (
	Pending Status = iota
	Sent
	Bounced
)

func (s Status) String() string {
	switch s {
	case Sent:
		return "sent"
	case Bounced:
		return "bounced"
	}
	return ""
}

// Attempt is the outcome of a recipient's last delivery attempt; the
// recipients with the same one share it (every recipient behind a next
// hop that is down, 660,000 in a backlog). Never changed once made.
type Attempt struct {
	LastErr string // reason of the last failure, as logged (the reply, when sent)
	DSN     string // enhanced status of the last attempt
	Relay   string // where the last attempt went
}

// noAttempt is the Attempt of a recipient never tried.
var noAttempt Attempt

// RcptState is a recipient and what happened to it so far: 80 bytes
// besides its addresses and the shared Attempt.
type RcptState struct {
	envelope.Rcpt
	*Attempt       // never nil: &noAttempt before the first attempt
	next     int64 // next try, Unix seconds; 0: now
	Attempts int32
	Status   Status
	Expired  bool // bounced because the message stayed too long
	Notified bool // a notification about the bounce has been queued
	// lost marks the place of an added recipient whose record never
	// reached the disk (a write that failed, then one that did not):
	// it holds the index of those after it, and is never delivered.
	lost bool
}

// NextTry is when the recipient may be tried next (zero: now).
func (r *RcptState) NextTry() time.Time {
	if r.next == 0 {
		return time.Time{}
	}
	return time.Unix(r.next, 0)
}

// record is one line of a sidecar state file.
type record struct {
	Rcpt     int            `json:"r"`            // recipient index, -1 for message-level records and ranges
	Rcpts    string         `json:"rs,omitempty"` // recipient ranges, "0-99,105"
	Op       string         `json:"op"`           // "sent", "bounced", "deferred", "notified", "hold", "release", "add"
	Next     int64          `json:"n,omitempty"`  // next try, Unix seconds (deferred)
	Err      string         `json:"e,omitempty"`  // reason
	DSN      string         `json:"d,omitempty"`  // enhanced status code
	Relay    string         `json:"relay,omitempty"`
	Expired  bool           `json:"x,omitempty"`
	Attempts int32          `json:"a,omitempty"`   // attempts so far (compacted deferrals); otherwise a deferral counts one
	Add      *envelope.Rcpt `json:"add,omitempty"` // the recipient an "add" record adds, at index r

	at *Attempt // Err, DSN and Relay, shared (intern)
}

// interner shares the Attempts that many recipients hold alike: the
// reason, relay and status code of a deferral (the same for every
// recipient behind a dead next hop), or the reply to a transaction.
type interner struct {
	mu sync.Mutex
	m  map[Attempt]*Attempt
}

func (in *interner) get(a Attempt) *Attempt {
	in.mu.Lock()
	defer in.mu.Unlock()
	if p, ok := in.m[a]; ok {
		return p
	}
	if in.m == nil || len(in.m) >= 4096 {
		in.m = make(map[Attempt]*Attempt)
	}
	p := &a
	in.m[a] = p
	return p
}

// intern makes r share its Attempt with the records that say the same.
func (s *store) intern(r *record) {
	if r.Op == "sent" || r.Op == "bounced" || r.Op == "deferred" {
		r.at = s.shared.get(Attempt{r.Err, r.DSN, r.Relay})
		r.Err, r.DSN, r.Relay = r.at.LastErr, r.at.DSN, r.at.Relay
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
	case "add":
		m.addRcpt(r)
		return
	}
	if r.Rcpts != "" {
		eachRcpt(r.Rcpts, len(m.Rcpts), func(i int) { m.applyRcpt(i, &r) })
		return
	}
	if r.Rcpt >= 0 && r.Rcpt < len(m.Rcpts) {
		m.applyRcpt(r.Rcpt, &r)
	}
}

// addGapMax bounds the lost recipients an add record may imply: one
// record must not take the memory of millions.
const addGapMax = 1 << 16

// addRcpt adds the recipient of an add record at its index. An index
// that is taken is a record seen before (a compacted file replayed
// onto a message that has it); one past the end follows add records that
// never reached the disk: their places are kept, lost, so that every
// later record names the recipient it named when it was written.
func (m *Message) addRcpt(r record) {
	if r.Add == nil || r.Rcpt < len(m.Rcpts) || r.Rcpt > len(m.Rcpts)+addGapMax {
		return
	}
	for len(m.Rcpts) < r.Rcpt {
		m.Rcpts = append(m.Rcpts, RcptState{Attempt: &noAttempt, Status: Sent, lost: true})
	}
	m.Rcpts = append(m.Rcpts, RcptState{Rcpt: *r.Add, Attempt: &noAttempt})
}

// applyAdds adds the recipients of a delivery pass's add records to m,
// once the pass is over (q.mu held). The spool may be reading m's
// recipients meanwhile (moving it out of the journal): not while they
// grow.
func (m *Message) applyAdds(adds []record) {
	if len(adds) == 0 {
		return
	}
	m.stMu.Lock()
	defer m.stMu.Unlock()
	for _, r := range adds {
		m.addRcpt(r)
	}
}

func (m *Message) applyRcpt(i int, r *record) {
	st := &m.Rcpts[i]
	if st.lost {
		return
	}
	if r.Op == "notified" {
		st.Notified = true
		return
	}
	if r.at == nil {
		r.at = &Attempt{r.Err, r.DSN, r.Relay}
	}
	st.Attempt = r.at
	switch r.Op {
	case "sent":
		st.Status = Sent
	case "bounced":
		st.Status, st.Expired = Bounced, r.Expired
	case "deferred":
		if r.Attempts > 0 {
			st.Attempts = r.Attempts
		} else {
			st.Attempts++
		}
		st.next = r.Next
	}
}

// eachRcpt calls f with every index in ranges ("0-99,105") below n;
// what does not parse is skipped (a record's checksum has vouched for it:
// this is only a guard against a writer's bug).
func eachRcpt(ranges string, n int, f func(int)) {
	for part := range strings.SplitSeq(ranges, ",") {
		a, b, isRange := strings.Cut(part, "-")
		lo, err := strconv.Atoi(a)
		if err != nil || lo < 0 {
			continue
		}
		hi := lo
		if isRange {
			if hi, err = strconv.Atoi(b); err != nil || hi < lo {
				continue
			}
		}
		for i := lo; i <= min(hi, n-1); i++ {
			f(i)
		}
	}
}

// ranges writes sorted, distinct indexes as "0-99,105".
func ranges(idx []int) string {
	var b []byte
	for k := 0; k < len(idx); {
		j := k
		for j+1 < len(idx) && idx[j+1] == idx[j]+1 {
			j++
		}
		if len(b) > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, int64(idx[k]), 10)
		if j > k {
			b = append(b, '-')
			b = strconv.AppendInt(b, int64(idx[j]), 10)
		}
		k = j + 1
	}
	return string(b)
}

// groupKey is what a group record says about each of its recipients.
type groupKey struct {
	op, err, dsn, relay string
	next                int64
	expired             bool
	attempts            int32
}

// groups writes recs (recipient records, each index once) as one record
// per distinct groupKey, in the order of their first appearance.
func groups(recs []record) []record {
	idx := map[groupKey][]int{}
	var order []groupKey
	for _, r := range recs {
		k := groupKey{r.Op, r.Err, r.DSN, r.Relay, r.Next, r.Expired, r.Attempts}
		if _, ok := idx[k]; !ok {
			order = append(order, k)
		}
		idx[k] = append(idx[k], r.Rcpt)
	}
	out := make([]record, 0, len(order))
	for _, k := range order {
		is := idx[k]
		r := record{Rcpt: is[0], Op: k.op, Next: k.next, Err: k.err, DSN: k.dsn, Relay: k.relay, Expired: k.expired, Attempts: k.attempts}
		if len(is) > 1 {
			slices.Sort(is)
			r.Rcpt, r.Rcpts = -1, ranges(is)
		}
		out = append(out, r)
	}
	return out
}

// coalesce writes the records of one delivery pass that say the same
// thing as one record. Records about the message, or naming a recipient
// twice, are kept as they are: their order matters. Add records go last,
// as they are: a pass records nothing else about the recipients it adds.
func coalesce(recs []record) []record {
	if len(recs) < 2 {
		return recs
	}
	for k := range recs {
		if recs[k].Op == "add" {
			var rest, adds []record
			for _, r := range recs {
				if r.Op == "add" {
					adds = append(adds, r)
				} else {
					rest = append(rest, r)
				}
			}
			return append(coalesce(rest), adds...)
		}
	}
	seen := make(map[int]bool, len(recs))
	for _, r := range recs {
		if r.Rcpt < 0 || r.Rcpts != "" || seen[r.Rcpt] {
			return recs
		}
		seen[r.Rcpt] = true
	}
	return groups(recs)
}

// snapshot is the compacted form of m's state: what replaying it gives.
func snapshot(m *Message) []record {
	var adds, recs, notified []record
	for i := m.nEnv; i < len(m.Rcpts); i++ {
		if r := &m.Rcpts[i]; !r.lost {
			adds = append(adds, record{Rcpt: i, Op: "add", Add: &r.Rcpt})
		}
	}
	for i := range m.Rcpts {
		r := &m.Rcpts[i]
		if r.lost {
			continue
		}
		rec := record{Rcpt: i, Err: r.LastErr, DSN: r.DSN, Relay: r.Relay}
		switch r.Status {
		case Sent:
			rec.Op = "sent"
		case Bounced:
			rec.Op, rec.Expired = "bounced", r.Expired
			if r.Notified {
				notified = append(notified, record{Rcpt: i, Op: "notified"})
			}
		default:
			if r.Attempts == 0 {
				continue
			}
			rec.Op, rec.Next, rec.Attempts = "deferred", r.next, r.Attempts
		}
		recs = append(recs, rec)
	}
	out := append(adds, groups(recs)...)
	out = append(out, groups(notified)...)
	if m.Hold {
		out = append(out, record{Rcpt: -1, Op: "hold"})
	}
	return out
}

// encodeState appends recs as sidecar lines to b.
func encodeState(b []byte, recs []record) ([]byte, error) {
	for _, r := range recs {
		js, err := json.Marshal(r)
		if err != nil {
			return nil, err
		}
		b = append(b, '\n')
		b = append(b, js...)
		b = fmt.Appendf(b, " %08x", crc32.Checksum(js, crcTable))
	}
	return b, nil
}

// replayState calls f with every record of a sidecar's data that checks
// out; lines that do not (a write torn by a crash) are skipped.
func replayState(data []byte, f func(record)) {
	for len(data) > 0 {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
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
		f(r)
	}
}

// applyState replays the sidecar onto m.
func (s *store) applyState(m *Message) {
	data, err := os.ReadFile(m.file() + ".st")
	if err != nil {
		return
	}
	m.hasState, m.stSynced, m.stSize = true, true, int64(len(data))
	replayState(data, func(r record) {
		s.intern(&r)
		m.apply(r)
	})
}

// appendState records state changes; with durable set the records are
// fsynced before it returns (deliveries and bounces, which must not be
// repeated), otherwise they may be lost in a crash (deferrals, which
// only cost an earlier retry). When the sidecar would pass twice the
// size of its compacted form, it is compacted instead (durably).
func (s *store) appendState(m *Message, durable bool, recs ...record) error {
	b, err := encodeState(nil, coalesce(recs))
	if err != nil {
		return err
	}
	s.appends.Add(1)
	m.stMu.Lock()
	defer m.stMu.Unlock()
	if m.gone {
		return nil // deleted meanwhile: nothing to keep a record for
	}
	if r := m.jn.Load(); r != nil {
		if err := s.migrate(m, r); err != nil {
			return err
		}
	}
	if m.hasState && m.stSize+int64(len(b)) > max(stateCompactMin, 2*m.stBase) {
		done, err := s.compactState(m, recs)
		if done {
			if durable {
				return err
			}
			return nil
		}
		// The records must not be lost for it: append them as ever.
		s.compactErrs.Add(1)
	}
	flags := os.O_WRONLY | os.O_APPEND
	if !m.hasState {
		flags |= os.O_CREATE
		m.stSize, m.stBase = 0, int64(len(b)) // coalesced: as good as compact
	}
	f, err := os.OpenFile(m.file()+".st", flags, 0o600)
	if err != nil {
		return err
	}
	m.hasState = true
	n, err := f.Write(b)
	m.stSize += int64(n)
	if err != nil {
		f.Close()
		return err
	}
	if durable {
		if err := f.Sync(); err != nil {
			f.Close()
			return err
		}
	}
	if err := f.Close(); err != nil {
		return err
	}
	if durable && !m.stSynced {
		// The sidecar's directory entry must be durable too for the
		// record to count. (A lost deferral only costs an earlier retry,
		// so deferrals alone do not sync it.)
		if err := s.syncer.Sync(); err != nil {
			return err
		}
		m.stSynced = true
	}
	return nil
}

// compactState rewrites m's sidecar, with recs applied, as its
// compacted form, atomically (m.stMu held); done says the records are in
// the new file, err whether the rename is not known to be durable. The
// state is replayed from the file itself, not taken from m, whose
// recipients the queue may be changing meanwhile. When the compacted
// form is not much smaller (every recipient in a state of its own), it
// still replaces the file: the threshold then doubles from its size.
func (s *store) compactState(m *Message, recs []record) (done bool, err error) {
	path := m.file() + ".st"
	data, err := os.ReadFile(path)
	if err != nil {
		return false, err
	}
	scratch := &Message{Rcpts: make([]RcptState, m.nEnv), nEnv: m.nEnv}
	for i := range scratch.Rcpts {
		scratch.Rcpts[i].Attempt = &noAttempt
	}
	replayState(data, scratch.apply)
	for _, r := range recs {
		scratch.apply(r)
	}
	b, err := encodeState(nil, snapshot(scratch))
	if err != nil {
		return false, err
	}
	tmp := m.dir + string(os.PathSeparator) + "." + m.ID + ".st.tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return false, err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return false, fmt.Errorf("compact state file %s: %w", path, err)
	}
	s.compactions.Add(1)
	m.stSize, m.stBase = int64(len(b)), int64(len(b))
	// Until the directory is synced a crash may bring back the old file,
	// which is as good, but a durable record must not be lost with it.
	m.stSynced = false
	if err := s.syncer.Sync(); err != nil {
		return true, err
	}
	m.stSynced = true
	return true, nil
}
