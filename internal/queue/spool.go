package queue

import (
	"fmt"
	"io"
	"log/slog"

	"github.com/mailtee/mailtee/internal/envelope"
)

// spool is the queue's storage as the scheduler (queue.go) sees it:
// messages stored, loaded, their delivery state recorded, removed. How
// is the store's business alone: message files, the intake journal and
// its segments (journal.go), the pool of files reused for new messages,
// the state sidecars and their compaction (state.go). The crash
// guarantees are kept there, under this interface: a message is durable
// when put returns, a durable record when record returns, a removal when
// remove returns.
type spool interface {
	// newID returns a fresh queue ID.
	newID() string
	// put stores a new message durably under id.
	put(id string, env *envelope.Envelope, body io.Reader) (*Message, error)
	// load reads the message id that another process (sendmail) stored.
	load(id string) (*Message, error)
	// ids lists the messages stored as files (for a rescan).
	ids() ([]string, error)
	// record appends state records to m's state; with durable set they
	// are on stable storage when it returns.
	record(m *Message, durable bool, recs ...record) error
	// delivered records, without fsync, that every recipient of m was
	// delivered (recs), while its removal waits for the ledger.
	delivered(m *Message, recs []record) error
	// intern makes r share its reason and relay with the records that
	// say the same, before it is applied.
	intern(r *record)
	// dropCache lets go of m's body in memory.
	dropCache(m *Message)
	// remove deletes m durably; with reuse its file may be written over
	// by a new message (no delivery may be reading it).
	remove(m *Message, reuse bool) error
	// compacts says whether compact must run periodically.
	compacts() bool
	// compact frees storage that older messages hold up (journal
	// segments), and logs what it did: pick gets a test for the
	// messages to move and returns those of the queue that pass it.
	compact(pick func(moveIt func(*Message) bool) []*Message)
	// close closes what the spool holds open (at stop).
	close()
}

var _ spool = (*store)(nil)

// openSpool opens the spool in dir for the server and loads every
// message in it: those the journal of the previous run still holds are
// moved to files of their own first; damaged files go to corrupt/, with
// a log line. Without journal every message gets a file of its own.
// finished, when set, gets the journal's delivered messages that waited
// for the ledger when the last server stopped (S records), and returns
// once the ledger has them: they need no file of their own.
func openSpool(dir string, journal bool, log *slog.Logger, finished func([]*Message)) (*store, []*Message, error) {
	st, err := openStore(dir)
	if err != nil {
		return nil, nil, err
	}
	st.log = log
	ids, err := st.scan(true)
	if err != nil {
		return nil, nil, err
	}
	st.resetPool()
	if journal {
		moved, js, err := st.recoverJournal(ids, finished)
		if err != nil {
			return nil, nil, err
		}
		for p, n := range js.damaged {
			log.Warn(fmt.Sprintf("queue journal %s: %d damaged records skipped; segment moved to %s", p, n, st.corrupt))
		}
		for _, note := range js.notes {
			log.Info("queue journal " + note)
		}
		if len(moved) > 0 {
			log.Info(fmt.Sprintf("queue journal: %d messages of the previous run moved to files of their own", len(moved)))
		}
		ids = append(ids, moved...)
		if st.jn, err = openJournal(st.jdir, js.last+1); err != nil {
			return nil, nil, err
		}
	}
	loaded, errs := st.loadAll(ids)
	out := loaded[:0]
	for k, id := range ids {
		m, err := loaded[k], errs[k]
		if err != nil {
			if mvErr := st.moveCorrupt(id); mvErr != nil {
				log.Error("cannot move damaged queue file aside", "id", id, "err", mvErr)
				continue
			}
			log.Warn(fmt.Sprintf("%s: damaged queue file moved to %s: %v", id, st.corrupt, err))
			continue
		}
		out = append(out, m)
	}
	return st, out, nil
}

// listSpool reads the messages of a spool that no server is running on,
// the journal's included; damaged ones are left out.
func listSpool(dir string) ([]*Message, error) {
	st, err := openStore(dir)
	if err != nil {
		return nil, err
	}
	ids, err := st.scan(false)
	if err != nil {
		return nil, err
	}
	var out []*Message
	have := map[string]bool{}
	loaded, errs := st.loadAll(ids)
	for k, id := range ids {
		if errs[k] != nil {
			continue
		}
		have[id] = true
		out = append(out, loaded[k])
	}
	// Messages the server had not moved out of its journal yet.
	js, err := readJournal(st.jdir)
	if err != nil {
		return nil, err
	}
	for _, jm := range js.live {
		if !have[jm.id] {
			if m := jm.message(); !st.allSent(m, jm.state) {
				out = append(out, m)
			}
		}
	}
	return out, nil
}

func (s *store) ids() ([]string, error) { return s.scan(false) }

func (s *store) record(m *Message, durable bool, recs ...record) error {
	return s.appendState(m, durable, recs...)
}

func (s *store) delivered(m *Message, recs []record) error {
	b, err := encodeState(nil, coalesce(recs))
	if err != nil {
		return err
	}
	// Under stMu: a compaction that moves m out of the journal meanwhile
	// would leave the S record naming a message the journal no longer has.
	m.stMu.Lock()
	if r := m.jn.Load(); r != nil && !m.gone {
		err := s.jn.sent(m.ID, b)
		if err == nil {
			m.sentState = b // for a move out of the journal (migrate)
		}
		m.stMu.Unlock()
		return err
	}
	m.stMu.Unlock()
	return s.appendState(m, false, recs...)
}

func (s *store) compacts() bool { return s.jn != nil }

// compact moves the messages of pinned journal segments to files of
// their own (see journalKeep).
func (s *store) compact(pick func(func(*Message) bool) []*Message) {
	if s.jn == nil {
		return
	}
	pinned := s.jn.pinned()
	if len(pinned) == 0 {
		return
	}
	move := pick(func(m *Message) bool {
		r := m.jn.Load()
		return r != nil && pinned[r.seg]
	})
	for _, m := range move {
		if err := s.evacuate(m); err != nil {
			s.log.Warn("queue journal: cannot move a message to a file of its own; it keeps older journal segments on disk", "id", m.ID, "err", err)
			return
		}
	}
	if len(move) > 0 {
		s.log.Info(fmt.Sprintf("queue journal: %d messages moved to files of their own, to free %d older segments", len(move), len(pinned)))
	}
}

func (s *store) close() {
	if s.jn != nil {
		s.jn.close()
	}
}
