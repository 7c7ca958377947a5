package pace

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mailtee/mailtee/internal/ratelimit"
	"github.com/mailtee/mailtee/internal/safeio"
)

// State is what the pacer must not forget across a restart: the
// windows' recent deliveries per mailbox and site, and the suspensions
// throttling replies started. (Postfix's rate delay is forgotten, as
// Postfix forgets it: "The delay timer state does not survive postfix
// reload or postfix stop".)
type State struct {
	Saved     time.Time
	Limiters  []SavedLimiter                  `json:",omitempty"`
	Sites     map[string]ratelimit.Suspension `json:",omitempty"`
	Mailboxes map[string]ratelimit.Suspension `json:",omitempty"`
}

// SavedLimiter is one limiter's history: its kind ("box", "site") and
// windows name it, as Pacer.limiter does.
type SavedLimiter struct {
	Kind    string
	Windows string // ratelimit.FormatWindows
	History ratelimit.History
}

// savedKinds are the limiters worth keeping.
var savedKinds = map[string]bool{"box": true, "site": true}

// Save returns the pacer's state at now.
func (p *Pacer) Save(now time.Time) State {
	st := State{Saved: now, Sites: p.site.Save(now), Mailboxes: p.box.Save(now)}
	p.mu.Lock()
	type lim struct {
		kind string
		l    *ratelimit.Limiter
	}
	var lims []lim
	for key, l := range p.lims {
		kind, _, _ := strings.Cut(key, " ")
		if savedKinds[kind] {
			lims = append(lims, lim{kind, l})
		}
	}
	p.mu.Unlock()
	for _, x := range lims {
		if h := x.l.Save(now); len(h) > 0 {
			st.Limiters = append(st.Limiters, SavedLimiter{Kind: x.kind, Windows: ratelimit.FormatWindows(x.l.Windows()), History: h})
		}
	}
	return st
}

// Load restores a state Save gave. A limiter whose windows main.cf no
// longer names is restored all the same: it is dropped when its
// deliveries leave its windows, and a limiter with the same windows
// picks them up.
func (p *Pacer) Load(st State, now time.Time) {
	p.site.Load(st.Sites, now)
	p.box.Load(st.Mailboxes, now)
	for _, sl := range st.Limiters {
		ws, err := ratelimit.ParseWindows(sl.Windows)
		if err != nil || !savedKinds[sl.Kind] || len(ws) == 0 {
			continue
		}
		p.limiter(sl.Kind, ws).Load(sl.History, now)
	}
}

// SaveFile writes the pacer's state to path, atomically.
func (p *Pacer) SaveFile(path string) error {
	data, err := json.Marshal(p.Save(time.Now()))
	if err != nil {
		return err
	}
	return safeio.WriteFile(path, data, 0o600)
}

// LoadFile restores the state in path; a missing file is no state.
func (p *Pacer) LoadFile(path string) error {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var st State
	if err := json.Unmarshal(data, &st); err != nil {
		return fmt.Errorf("%s: %w (remove it to start with empty windows)", filepath.Base(path), err)
	}
	p.Load(st, time.Now())
	return nil
}
