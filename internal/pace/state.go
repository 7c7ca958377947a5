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

	"github.com/mailtee/mailtee/internal/provider"
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

// SavedLimiter is one limiter's history: its kind ("box", "site"),
// transport and profile name it, as Pacer.limiter does; its windows are
// those it had.
type SavedLimiter struct {
	Kind      string
	Transport string `json:",omitempty"` // "": a state saved when limiters were per windows
	Profile   string `json:",omitempty"`
	Windows   string // ratelimit.FormatWindows
	History   ratelimit.History
}

// savedKinds are the limiters worth keeping.
var savedKinds = map[string]bool{"box": true, "site": true}

// Save returns the pacer's state at now.
func (p *Pacer) Save(now time.Time) State {
	st := State{Saved: now, Sites: p.site.Save(now), Mailboxes: p.box.Save(now)}
	p.mu.Lock()
	type lim struct {
		kind, transport, profile string
		l                        *ratelimit.Limiter
	}
	var lims []lim
	for key, l := range p.lims {
		f := strings.SplitN(key, " ", 3) // kind transport profile
		if len(f) == 3 && savedKinds[f[0]] {
			lims = append(lims, lim{f[0], f[1], f[2], l})
		}
	}
	p.mu.Unlock()
	for _, x := range lims {
		if h := x.l.Save(now); len(h) > 0 {
			st.Limiters = append(st.Limiters, SavedLimiter{Kind: x.kind, Transport: x.transport, Profile: x.profile,
				Windows: ratelimit.FormatWindows(x.l.Windows()), History: h})
		}
	}
	return st
}

// Load restores a state Save gave. A limiter is restored under the
// windows it had; if main.cf now says others, its first use changes
// them and keeps the history.
func (p *Pacer) Load(st State, now time.Time) {
	p.site.Load(st.Sites, now)
	p.box.Load(st.Mailboxes, now)
	for _, sl := range st.Limiters {
		ws, err := ratelimit.ParseWindows(sl.Windows)
		if err != nil || !savedKinds[sl.Kind] || len(ws) == 0 {
			continue
		}
		if sl.Transport != "" {
			p.limiter(sl.Kind, sl.Transport, sl.Profile, ws).Load(sl.History, now)
			continue
		}
		// Saved when limiters were per windows: each key names its
		// transport ("smtp:site|mailbox"), the windows its profile.
		profile := windowsProfile(sl.Kind, sl.Windows)
		byTransport := map[string]ratelimit.History{}
		for key, ends := range sl.History {
			tr, _, ok := strings.Cut(key, ":")
			if !ok {
				continue
			}
			if byTransport[tr] == nil {
				byTransport[tr] = ratelimit.History{}
			}
			byTransport[tr][key] = ends
		}
		for tr, h := range byTransport {
			p.limiter(sl.Kind, tr, profile, ws).Load(h, now)
		}
	}
}

// windowsProfile is the profile whose windows of kind are ws, else "".
func windowsProfile(kind, ws string) string {
	for _, name := range provider.Names() {
		prof, _ := provider.Lookup(name)
		pw := prof.RecipientRate
		if kind == "site" {
			pw = prof.DestinationRate
		}
		if len(pw) > 0 && ratelimit.FormatWindows(pw) == ws {
			return prof.Name
		}
	}
	return ""
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
