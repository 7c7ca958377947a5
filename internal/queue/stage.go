package queue

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/mailtee/mailtee/internal/envelope"
	"github.com/mailtee/mailtee/internal/safeio"
)

// Staging is how mail taken over from another MTA (import-postfix-queue)
// enters the spool without ever being queued twice. A message is first
// written, complete, into queue_directory/import (StageDir): the message
// file, its state sidecar (held, recipients already bounced or
// deferred), then a note of the caller's, which makes the staged
// message count (Staged lists it). The caller then does what must
// happen exactly once (moving the source file out of the other MTA's
// queue) and Commits: the sidecar, then the message file, are renamed
// into the spool, where a running server finds them at its next rescan.
// A staged message without its note is debris of a crash and is
// discarded; one with its note is the caller's to Commit or Discard,
// depending on whether its own step was done. Rename is atomic and the
// staged name disappears with it, so Commit run again after a crash
// never queues a message the server may already have delivered.

// StageDir is the staging directory under queue_directory: on the
// spool's file system, so that Commit is a rename.
const StageDir = "import"

// Initial is the state a staged recipient starts in.
type Initial struct {
	// Op is "" (pending), "deferred" (pending, with the reason of its
	// last failure elsewhere, for mailq) or "bounced" (failed for good
	// elsewhere, its notice not yet sent: the queue sends it).
	Op     string
	Reason string
	DSN    string // enhanced status code
	Relay  string
}

// StageOptions say what a staged message starts as.
type StageOptions struct {
	Hold bool
	// Rcpts are the initial states of env.Rcpts, by index; missing
	// entries are pending.
	Rcpts []Initial
	// Note is kept beside the staged message until Commit or Discard.
	Note []byte
}

// Staged is a message in the staging directory.
type Staged struct {
	ID   string
	Note []byte // nil: no note, debris of a crash before it was written
}

// Stage writes a message into queue_directory/import, durably, and
// returns its queue ID. It is not in the spool until Commit.
func Stage(dir string, env *envelope.Envelope, body io.Reader, o StageOptions) (string, error) {
	if len(env.Rcpts) == 0 {
		return "", errors.New("no recipients")
	}
	s, err := openStore(dir)
	if err != nil {
		return "", err
	}
	sdir := filepath.Join(dir, StageDir)
	if err := os.MkdirAll(sdir, 0o700); err != nil {
		return "", err
	}
	if env.Arrival.IsZero() {
		env.Arrival = time.Now()
	}
	var recs []record
	if o.Hold {
		recs = append(recs, record{Rcpt: -1, Op: "hold"})
	}
	for i, in := range o.Rcpts {
		switch in.Op {
		case "":
		case "bounced", "deferred":
			recs = append(recs, record{Rcpt: i, Op: in.Op, Err: in.Reason, DSN: in.DSN, Relay: in.Relay})
		default:
			return "", fmt.Errorf("stage: recipient %d: unknown state %q", i, in.Op)
		}
	}
	nf, _, err := s.write(env, body)
	if err != nil {
		return "", err
	}
	defer nf.Close()
	var id string
	for try := 0; ; try++ {
		id = s.newID()
		err = nf.Link(filepath.Join(sdir, id))
		if err == nil {
			break
		}
		if !os.IsExist(err) || try == 10 {
			return "", err
		}
	}
	if len(recs) > 0 {
		b, err := encodeState(nil, recs)
		if err != nil {
			return "", err
		}
		if err := safeio.WriteFile(filepath.Join(sdir, id+".st"), b, 0o600); err != nil {
			return "", err
		}
	}
	// The note last: it makes the staged message count.
	if err := safeio.WriteFile(filepath.Join(sdir, id+".note"), o.Note, 0o600); err != nil {
		return "", err
	}
	return id, nil
}

// ListStaged lists the staging directory of queue_directory dir.
func ListStaged(dir string) ([]Staged, error) {
	sdir := filepath.Join(dir, StageDir)
	ents, err := os.ReadDir(sdir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	byID := map[string]*Staged{}
	for _, e := range ents {
		name := e.Name()
		id, ext, _ := strings.Cut(name, ".")
		if !ValidID(id) {
			continue // safeio's temporary files
		}
		st := byID[id]
		if st == nil {
			st = &Staged{ID: id}
			byID[id] = st
		}
		if ext == "note" {
			b, err := os.ReadFile(filepath.Join(sdir, name))
			if err != nil {
				return nil, err
			}
			if b == nil {
				b = []byte{}
			}
			st.Note = b
		}
	}
	out := make([]Staged, 0, len(byID))
	for _, st := range byID {
		out = append(out, *st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// Commit moves a staged message into the spool. Run again after a
// crash, it finishes what is left; a message already moved is not
// moved again (its staged name is gone).
func Commit(dir, id string) error {
	if !ValidID(id) {
		return fmt.Errorf("%q: %w", id, ErrBadID)
	}
	sdir, qdir := filepath.Join(dir, StageDir), filepath.Join(dir, "queue")
	src, dst := filepath.Join(sdir, id), filepath.Join(qdir, id)
	// The sidecar first: a message file without it would be delivered
	// although held.
	if err := safeio.RenameNoReplace(src+".st", dst+".st"); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("commit %s: %w", id, err)
	}
	if err := safeio.RenameNoReplace(src, dst); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("commit %s: %w", id, err)
	}
	if err := safeio.SyncDir(qdir); err != nil {
		return err
	}
	if err := os.Remove(src + ".note"); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return safeio.SyncDir(sdir)
}

// Discard removes a staged message: the note first, so that a crash
// halfway leaves debris that ListStaged shows without a note.
func Discard(dir, id string) error {
	if !ValidID(id) {
		return fmt.Errorf("%q: %w", id, ErrBadID)
	}
	sdir := filepath.Join(dir, StageDir)
	for _, ext := range []string{".note", ".st", ""} {
		if err := os.Remove(filepath.Join(sdir, id+ext)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if ext == ".note" {
			if err := safeio.SyncDir(sdir); err != nil {
				return err
			}
		}
	}
	return nil
}
