package drain

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	"github.com/mailtee/mailtee/internal/queue"
	"github.com/mailtee/mailtee/internal/safeio"
)

// markers is queue_directory/handoff: out/ID for a message being
// offered, in/ID for one being taken (see the package doc).
type markers struct{ dir string }

// inNote is what an in/ marker remembers: the row the message came from.
type inNote struct {
	From    string `json:"from"`
	QueueID string `json:"queue_id"`
}

func (mk markers) path(kind, id string) string { return filepath.Join(mk.dir, kind, id) }

// put writes a marker durably (file and directory entry).
func (mk markers) put(kind, id string, data []byte) error {
	if err := os.MkdirAll(filepath.Join(mk.dir, kind), 0o700); err != nil {
		return err
	}
	return safeio.WriteFile(mk.path(kind, id), data, 0o600)
}

// drop removes a marker; its absence needs no sync: a marker that
// comes back after a crash only makes the next start ask again.
func (mk markers) drop(kind, id string) {
	os.Remove(mk.path(kind, id))
}

// has says whether a marker is there.
func (mk markers) has(kind, id string) bool {
	_, err := os.Lstat(mk.path(kind, id))
	return err == nil
}

// list returns the markers of kind, by ID (only names that are queue
// IDs: safeio's temporary files are not).
func (mk markers) list(kind string) (map[string][]byte, error) {
	ents, err := os.ReadDir(filepath.Join(mk.dir, kind))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := map[string][]byte{}
	for _, e := range ents {
		if !queue.ValidID(e.Name()) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(mk.dir, kind, e.Name()))
		if err != nil {
			continue
		}
		out[e.Name()] = b
	}
	return out, nil
}

func sortedKeys(m map[string][]byte) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func decodeIn(b []byte) (inNote, bool) {
	var n inNote
	if json.Unmarshal(b, &n) != nil || n.From == "" || n.QueueID == "" {
		return n, false
	}
	return n, true
}
