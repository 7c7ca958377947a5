package migration

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/mailtee/mailtee/internal/safeio"
)

// Record is the stored record of settings id, as another node's Store
// takes it (Import): a message handed over (mailtee drain) is finished
// under the settings it was accepted with there. nil, nil for "" (no
// settings recorded) or a record that is gone: the receiver then
// follows its own settings, as this node would have.
func (st *Store) Record(id string) ([]byte, error) {
	if id == "" || !validID(id) {
		return nil, nil
	}
	b, err := os.ReadFile(filepath.Join(st.dir, id+".json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	return b, err
}

// Import stores a record another node's Store gave (Record) under its
// ID, durably, unless it is there already, and returns the ID. A record
// whose content is not settings is refused.
func (st *Store) Import(rec []byte) (string, error) {
	var s Settings
	if err := json.Unmarshal(rec, &s); err != nil {
		return "", fmt.Errorf("migration settings handed over: %w", err)
	}
	if !ValidPhase(s.Phase) {
		return "", fmt.Errorf("migration settings handed over: phase %q", s.Phase)
	}
	id := s.ID()
	path := filepath.Join(st.dir, id+".json")
	if _, err := os.Stat(path); err == nil {
		return id, nil
	}
	if err := os.MkdirAll(st.dir, 0o700); err != nil {
		return "", fmt.Errorf("migration settings: %w", err)
	}
	// Written as SetCurrent writes its own: what the ID hashes.
	b, err := json.Marshal(&s)
	if err != nil {
		return "", err
	}
	if err := safeio.WriteFile(path, b, 0o600); err != nil {
		return "", fmt.Errorf("migration settings: cannot record them in %s: %w", path, err)
	}
	return id, nil
}
