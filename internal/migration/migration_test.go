package migration

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailtee/mailtee/internal/config"
	"github.com/mailtee/mailtee/internal/maps"
)

// load writes main.cf (and the files in files, relative to dir) and
// reads the settings it gives.
func load(t *testing.T, dir, mainCf string, files map[string]string) *Tables {
	t.Helper()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mainCf = strings.ReplaceAll(mainCf, "DIR", dir)
	if err := os.WriteFile(filepath.Join(dir, "main.cf"), []byte(mainCf), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	tb, err := FromConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

var local = maps.AddressOptions{IsLocal: func(d string) bool { return d == "students.example" }}

func phaseOf(t *testing.T, tb *Tables, addr string) string {
	t.Helper()
	p, err := tb.Phase(context.Background(), addr, local)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func bccOf(t *testing.T, tb *Tables, addr string) string {
	t.Helper()
	if tb.MailboxBCC == nil {
		return ""
	}
	m, ok, err := maps.LookupAddress(context.Background(), tb.MailboxBCC, addr, local)
	if err != nil {
		t.Fatal(err)
	}
	if !ok {
		return ""
	}
	return m.Value
}

// A message keeps the settings it was accepted with: after the tables'
// files change (and even after they are removed), the ID the message
// recorded still opens the tables as they were, from the queue
// directory; the new settings get another ID.
func TestSettingsKeptWhateverChanges(t *testing.T) {
	dir, q := t.TempDir(), t.TempDir()
	mainCf := "dual_delivery_phase = dual\ndual_delivery_phase_maps = hash:DIR/phases\nmailbox_bcc_maps = hash:DIR/bcc\n"
	old := load(t, dir, mainCf, map[string]string{
		"phases": "user1@students.example forward\nuser2 off\n",
		"bcc":    "user1@students.example user1@relay.example\nuser2@students.example user2@relay.example\nuser3@students.example user3@relay.example\n",
	})
	st := NewStore(Dir(q), nil)
	if err := st.SetCurrent(old); err != nil {
		t.Fatal(err)
	}
	if got := phaseOf(t, old, "user1@students.example"); got != Forward {
		t.Errorf("user1: %s, want forward", got)
	}
	if got := phaseOf(t, old, "user2@students.example"); got != Off {
		t.Errorf("user2 (by its local part): %s, want off", got)
	}
	if got := phaseOf(t, old, "user3@students.example"); got != Dual {
		t.Errorf("user3 (the default): %s, want dual", got)
	}

	// Everyone forward, user3 no longer copied, the phase table gone.
	os.Remove(filepath.Join(dir, "phases"))
	cur := load(t, dir, "dual_delivery_phase = forward\nmailbox_bcc_maps = hash:DIR/bcc\n", map[string]string{
		"bcc": "user1@students.example user1@relay.example\n",
	})
	if cur.ID == old.ID {
		t.Fatal("new settings, same ID")
	}
	if err := st.SetCurrent(cur); err != nil {
		t.Fatal(err)
	}
	// A restart: a new store on the same directory.
	st = NewStore(Dir(q), t.Logf)
	if err := st.SetCurrent(cur); err != nil {
		t.Fatal(err)
	}
	was := st.For(old.ID)
	if was == nil || was.ID != old.ID {
		t.Fatalf("For(%s) = %+v, want the old settings", old.ID, was)
	}
	if got := phaseOf(t, was, "user2@students.example"); got != Off {
		t.Errorf("old settings, user2: %s, want off", got)
	}
	if got := bccOf(t, was, "user3@students.example"); got != "user3@relay.example" {
		t.Errorf("old settings, user3's copy: %q", got)
	}
	if got := phaseOf(t, st.For(cur.ID), "user2@students.example"); got != Forward {
		t.Errorf("new settings, user2: %s, want forward", got)
	}
	if got := bccOf(t, st.For(""), "user3@students.example"); got != "" {
		t.Errorf("no ID follows the current settings; user3's copy: %q", got)
	}

	// Pruning keeps what is in use and the current settings.
	if gone := st.Prune(map[string]bool{old.ID: true}); len(gone) != 0 {
		t.Errorf("pruned %v while in use", gone)
	}
	if gone := st.Prune(nil); len(gone) != 1 || gone[0] != old.ID {
		t.Errorf("pruned %v, want [%s]", gone, old.ID)
	}
	if _, err := os.Stat(filepath.Join(Dir(q), cur.ID+".json")); err != nil {
		t.Errorf("current settings pruned: %v", err)
	}
	// A record that is gone: the current settings, with a warning.
	if got := st.For(old.ID); got != st.Current() {
		t.Errorf("For a pruned ID = %v, want the current settings", got)
	}
}

// A damaged record is not used: its content must match its name.
func TestDamagedRecord(t *testing.T) {
	dir, q := t.TempDir(), t.TempDir()
	a := load(t, dir, "dual_delivery_phase = off\n", nil)
	b := load(t, dir, "dual_delivery_phase = forward\n", nil)
	st := NewStore(Dir(q), nil)
	if err := st.SetCurrent(a); err != nil {
		t.Fatal(err)
	}
	st2 := NewStore(Dir(q), nil)
	if err := st2.SetCurrent(b); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(filepath.Join(Dir(q), b.ID+".json"))
	os.WriteFile(filepath.Join(Dir(q), a.ID+".json"), data, 0o600) // a's name, b's content
	var warned []string
	st3 := NewStore(Dir(q), func(f string, args ...any) { warned = append(warned, f) })
	if err := st3.SetCurrent(b); err != nil {
		t.Fatal(err)
	}
	if got := st3.For(a.ID); got.ID != b.ID || len(warned) != 1 {
		t.Errorf("damaged record: For gave %s, warnings %v", got.ID, warned)
	}
	if st3.For("../../etc/passwd") != st3.Current() {
		t.Error("a path as an ID was not refused")
	}
}

// A phase table's value that is not a phase is an error when looked up
// (the mail defers) and found beforehand by CheckPhaseMaps.
func TestBadPhaseValue(t *testing.T) {
	dir := t.TempDir()
	tb := load(t, dir, "dual_delivery_phase_maps = hash:DIR/phases\n", map[string]string{"phases": "user1 forwrad\nuser2 Dual\n"})
	if _, err := tb.Phase(context.Background(), "user1@students.example", local); err == nil || !strings.Contains(err.Error(), "forwrad") {
		t.Errorf("bad value: err %v", err)
	}
	if got := phaseOf(t, tb, "user2@students.example"); got != Dual {
		t.Errorf("Dual: %s", got)
	}
	bad := CheckPhaseMaps(tb.PhaseMaps)
	if len(bad) != 1 || !strings.Contains(bad[0], "user1") {
		t.Errorf("CheckPhaseMaps = %v", bad)
	}
}

// The ID depends on the settings only: the same tables, the same ID.
func TestIDStable(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{"bcc": "a b\nc d\n"}
	a := load(t, dir, "mailbox_bcc_maps = hash:DIR/bcc\n", files)
	b := load(t, dir, "mailbox_bcc_maps = hash:DIR/bcc\n", files)
	if a.ID != b.ID {
		t.Errorf("same settings, IDs %s and %s", a.ID, b.ID)
	}
	c := load(t, dir, "mailbox_bcc_maps = hash:DIR/bcc\n", map[string]string{"bcc": "a b\nc e\n"})
	if c.ID == a.ID {
		t.Error("a changed table kept the ID")
	}
	if !strings.Contains(a.Settings.Summary(), "mailbox_bcc_maps=hash:") || !strings.Contains(a.Settings.Summary(), "settings="+a.ID) {
		t.Errorf("Summary = %s", a.Settings.Summary())
	}
}
