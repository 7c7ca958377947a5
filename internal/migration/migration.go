// Package migration keeps the settings that decide what the migration
// layer does with a message — dual_delivery_phase, its per-user
// dual_delivery_phase_maps, and the copy maps — so that each message is
// finished under the settings it was accepted with, whatever a reload
// changes later.
//
// A message's copies are decided at two moments: recipient_bcc_maps when
// it is accepted (cleanup), mailbox_bcc_maps when it reaches a mailbox
// after alias expansion (local delivery, possibly days later, after a
// restart). A switch of the phase, or from one copy map to the other,
// with mail queued would otherwise make a second copy (the copy made at
// acceptance, then another at the mailbox) or none. So each distinct set
// of settings is written once to the queue directory, tables' source
// text included, under an ID that the message's envelope records
// (envelope.Envelope.Settings); local delivery asks for the tables of
// that ID.
package migration

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/mailtee/mailtee/internal/config"
	"github.com/mailtee/mailtee/internal/maps"
	"github.com/mailtee/mailtee/internal/pflist"
	"github.com/mailtee/mailtee/internal/safeio"
)

// The phases (dual_delivery_phase).
const (
	Off     = "off"
	Dual    = "dual"
	Forward = "forward"
)

// ValidPhase says whether p is a phase.
func ValidPhase(p string) bool { return p == Off || p == Dual || p == Forward }

// Settings are what decides a message's copies and phase. Files holds
// the source text of the file tables the lists name, by the path read,
// so that the tables can be opened again as they were.
type Settings struct {
	Phase        string            `json:"phase"`
	PhaseMaps    []string          `json:"dual_delivery_phase_maps,omitempty"`
	MailboxBCC   []string          `json:"mailbox_bcc_maps,omitempty"`
	RecipientBCC []string          `json:"recipient_bcc_maps,omitempty"`
	Files        map[string][]byte `json:"files,omitempty"`
}

// ID names s: the same settings, the same ID.
func (s *Settings) ID() string {
	b, _ := json.Marshal(s) // map keys are sorted: the encoding is stable
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:8])
}

// Summary is the settings in one line, for the ledger and the log:
// "phase=dual; mailbox_bcc_maps=hash:/etc/postfix/bcc; settings=ID".
func (s *Settings) Summary() string { return s.summary(s.ID()) }

// Summary is t's settings in one line, as Settings.Summary, with the ID
// already computed: the ledger asks for it with every message, and the
// ID hashes the tables' whole text (with a 100,000-entry mailbox_bcc_maps,
// 14 ms a call).
func (t *Tables) Summary() string { return t.Settings.summary(t.ID) }

func (s *Settings) summary(id string) string {
	parts := []string{"phase=" + s.Phase}
	add := func(name string, specs []string) {
		if len(specs) > 0 {
			parts = append(parts, name+"="+strings.Join(specs, ","))
		}
	}
	add("dual_delivery_phase_maps", s.PhaseMaps)
	add("recipient_bcc_maps", s.RecipientBCC)
	add("mailbox_bcc_maps", s.MailboxBCC)
	return strings.Join(parts, "; ") + "; settings=" + id
}

// Tables are Settings opened: what cleanup and local delivery ask.
type Tables struct {
	Settings   *Settings
	ID         string
	PhaseMaps  maps.Table // nil: none
	MailboxBCC maps.Table // nil: none
}

// FromConfig reads the settings main.cf gives now, tables included, and
// opens them.
func FromConfig(cfg *config.Config) (*Tables, error) {
	s := &Settings{Phase: cfg.Get("dual_delivery_phase"), Files: map[string][]byte{}}
	if !ValidPhase(s.Phase) {
		return nil, fmt.Errorf("dual_delivery_phase = %s: expected off, dual or forward", s.Phase)
	}
	s.PhaseMaps = cfg.List("dual_delivery_phase_maps")
	s.MailboxBCC = cfg.List("mailbox_bcc_maps")
	s.RecipientBCC = cfg.List("recipient_bcc_maps")
	record := func(name string) ([]byte, error) {
		b, err := os.ReadFile(name)
		if err == nil {
			s.Files[name] = b
		}
		return b, err
	}
	t := &Tables{Settings: s}
	var err error
	if t.PhaseMaps, err = openList("dual_delivery_phase_maps", s.PhaseMaps, record); err != nil {
		return nil, err
	}
	if t.MailboxBCC, err = openList("mailbox_bcc_maps", s.MailboxBCC, record); err != nil {
		return nil, err
	}
	// recipient_bcc_maps is applied at acceptance and never asked again:
	// it is recorded by name, for the ledger, not by content.
	if len(s.Files) == 0 {
		s.Files = nil
	}
	t.ID = s.ID()
	return t, nil
}

// open opens s's tables from its recorded files.
func (s *Settings) open() (*Tables, error) {
	read := func(name string) ([]byte, error) {
		if b, ok := s.Files[name]; ok {
			return b, nil
		}
		// A table that is not a file (static:, inline:, unix:) never
		// comes here; one whose file is missing from the record could
		// not be read when it was made, so it is not read now either.
		return nil, fmt.Errorf("%s: not in the recorded settings", name)
	}
	t := &Tables{Settings: s, ID: s.ID()}
	var err error
	if t.PhaseMaps, err = openList("dual_delivery_phase_maps", s.PhaseMaps, read); err != nil {
		return nil, err
	}
	if t.MailboxBCC, err = openList("mailbox_bcc_maps", s.MailboxBCC, read); err != nil {
		return nil, err
	}
	return t, nil
}

func openList(param string, specs []string, read maps.ReadFunc) (maps.Table, error) {
	var l maps.List
	for _, spec := range specs {
		if !pflist.IsTable(spec) {
			return nil, fmt.Errorf("%s: %q is not a type:table", param, spec)
		}
		t, _, err := maps.OpenWith(spec, false, read)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", param, err)
		}
		l = append(l, t)
	}
	if len(l) == 0 {
		return nil, nil
	}
	return l, nil
}

// Phase returns the phase of the mailbox or recipient addr: its entry in
// dual_delivery_phase_maps (looked up as the copy maps are: the full
// address, user@domain, user for a local domain, @domain), else
// dual_delivery_phase. A table that cannot answer now is an error: the
// caller defers rather than guess.
func (t *Tables) Phase(ctx context.Context, addr string, o maps.AddressOptions) (string, error) {
	if t.PhaseMaps != nil {
		m, ok, err := maps.LookupAddress(ctx, t.PhaseMaps, addr, o)
		if err != nil {
			return "", fmt.Errorf("dual_delivery_phase_maps lookup for %s: %w", addr, err)
		}
		if ok {
			p := strings.ToLower(strings.TrimSpace(m.Value))
			if !ValidPhase(p) {
				return "", fmt.Errorf("dual_delivery_phase_maps: %s has %q: expected off, dual or forward", m.Key, m.Value)
			}
			return p, nil
		}
	}
	return t.Settings.Phase, nil
}

// CheckPhaseMaps reports the entries of the listable phase tables whose
// value is not a phase, for `mailtee check`.
func CheckPhaseMaps(t maps.Table) []string {
	var bad []string
	var walk func(t maps.Table)
	walk = func(t maps.Table) {
		switch x := t.(type) {
		case maps.List:
			for _, e := range x {
				walk(e)
			}
		case maps.Lister:
			for _, e := range x.Entries() {
				if !ValidPhase(strings.ToLower(strings.TrimSpace(e.Value))) {
					bad = append(bad, fmt.Sprintf("%s: %q is not a phase (off, dual or forward)", e.Key, e.Value))
				}
			}
		}
	}
	walk(t)
	return bad
}

// Store keeps settings in a directory of the queue (queue_directory/
// settings), one file per ID, and the opened tables of each in memory.
type Store struct {
	dir string

	mu     sync.Mutex
	cur    *Tables
	opened map[string]*Tables
	warned map[string]bool
	log    func(format string, args ...any)
}

// Dir is where a queue directory keeps its settings.
func Dir(queueDir string) string { return filepath.Join(queueDir, "settings") }

// NewStore returns the store in dir; log takes its warnings.
func NewStore(dir string, log func(format string, args ...any)) *Store {
	if log == nil {
		log = func(string, ...any) {}
	}
	return &Store{dir: dir, opened: map[string]*Tables{}, warned: map[string]bool{}, log: log}
}

// SetCurrent makes t the settings of newly accepted mail, after writing
// them to disk (fsynced) unless they are there already: an ID a message
// records is on disk before the message is.
func (st *Store) SetCurrent(t *Tables) error {
	path := filepath.Join(st.dir, t.ID+".json")
	if _, err := os.Stat(path); err != nil {
		if err := os.MkdirAll(st.dir, 0o700); err != nil {
			return fmt.Errorf("migration settings: %w", err)
		}
		b, err := json.Marshal(t.Settings)
		if err != nil {
			return err
		}
		if err := safeio.WriteFile(path, b, 0o600); err != nil {
			return fmt.Errorf("migration settings: cannot record them in %s: %w", path, err)
		}
	} else {
		// Touched: Prune keeps what is in use.
		now := time.Now()
		os.Chtimes(path, now, now)
	}
	st.mu.Lock()
	st.cur = t
	st.opened[t.ID] = t
	st.mu.Unlock()
	return nil
}

// Current is the settings of newly accepted mail.
func (st *Store) Current() *Tables {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.cur
}

// For returns the tables of the settings id, as they were when it was
// recorded. A message with no ID (queued before settings were recorded)
// or whose record is gone follows the current settings, which is logged
// once per ID.
func (st *Store) For(id string) *Tables {
	t, err := st.Get(id)
	if err != nil {
		return st.Current()
	}
	return t
}

// Get is For for what decides a message's copies (local delivery): a
// record that exists but cannot be read now (too many open files, an
// I/O error) is an error, for the caller to defer on, rather than the
// settings in force, which would make or drop a copy for good.
func (st *Store) Get(id string) (*Tables, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if id == "" {
		return st.cur, nil
	}
	if t, ok := st.opened[id]; ok {
		return t, nil
	}
	t, err := st.load(id)
	var gone *goneError
	if err != nil && !errors.As(err, &gone) {
		return nil, fmt.Errorf("migration settings %s: %w", id, err)
	}
	if err != nil {
		if !st.warned[id] {
			st.warned[id] = true
			st.log("warning: migration settings %s: %v; the messages accepted under them follow the settings in force", id, err)
		}
		return st.cur, nil
	}
	st.opened[id] = t
	return t, nil
}

// validID says whether id is one ID names (16 lower-case hex digits):
// anything else in an envelope is damage, never a file name to try.
func validID(id string) bool {
	if len(id) != 16 {
		return false
	}
	for _, c := range id {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// goneError is a record that cannot come back: missing, damaged, or not
// a settings ID at all.
type goneError struct{ err error }

func (e *goneError) Error() string { return e.err.Error() }
func (e *goneError) Unwrap() error { return e.err }

func (st *Store) load(id string) (*Tables, error) {
	if !validID(id) {
		return nil, &goneError{errors.New("not a settings ID")}
	}
	b, err := os.ReadFile(filepath.Join(st.dir, id+".json"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, &goneError{err}
	}
	if err != nil {
		return nil, err
	}
	var s Settings
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, &goneError{fmt.Errorf("damaged record: %w", err)}
	}
	if s.ID() != id {
		return nil, &goneError{errors.New("damaged record: its content does not match its name")}
	}
	t, err := s.open()
	if err != nil {
		return nil, &goneError{err}
	}
	return t, nil
}

// Prune removes the records that no message uses: inUse are the IDs of
// the queued messages; the current one is kept. It runs at start-up,
// when no record is being written and no message being accepted.
func (st *Store) Prune(inUse map[string]bool) (removed []string) {
	ents, err := os.ReadDir(st.dir)
	if err != nil {
		return nil
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") && strings.Contains(e.Name(), ".json.tmp") {
			// A write a crash interrupted (safeio's temporary file, the
			// record's size). Prune runs at start, once the current record is
			// in place and before any reload can write another.
			os.Remove(filepath.Join(st.dir, e.Name()))
			continue
		}
		id, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || inUse[id] || st.cur != nil && id == st.cur.ID {
			continue
		}
		if os.Remove(filepath.Join(st.dir, e.Name())) == nil {
			removed = append(removed, id)
			delete(st.opened, id)
		}
	}
	sort.Strings(removed)
	return removed
}
