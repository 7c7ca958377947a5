package migration

import (
	"testing"
)

// A record handed to another node's store gives the same settings
// there, under the same ID.
func TestRecordImport(t *testing.T) {
	s := &Settings{Phase: Forward, MailboxBCC: []string{"hash:/etc/postfix/bcc"}, Files: map[string][]byte{"/etc/postfix/bcc": []byte("a@x b@y\n")}}
	a := NewStore(t.TempDir(), nil)
	if err := a.SetCurrent(&Tables{Settings: s, ID: s.ID()}); err != nil {
		t.Fatal(err)
	}
	rec, err := a.Record(s.ID())
	if err != nil || rec == nil {
		t.Fatalf("record: %v %v", rec, err)
	}
	b := NewStore(t.TempDir(), nil)
	b.cur = &Tables{ID: "current", Settings: &Settings{Phase: Off}}
	id, err := b.Import(rec)
	if err != nil || id != s.ID() {
		t.Fatalf("import: %q %v, want %s", id, err, s.ID())
	}
	got, err := b.Get(id)
	if err != nil || got.Settings.Phase != Forward || got.Summary() != s.Summary() {
		t.Fatalf("got %+v %v", got, err)
	}
	if id2, err := b.Import(rec); err != nil || id2 != id {
		t.Fatalf("import again: %q %v", id2, err)
	}
	if _, err := b.Import([]byte(`{"phase":"sideways"}`)); err == nil {
		t.Fatal("a record with no phase imported")
	}
	if r, err := a.Record(""); r != nil || err != nil {
		t.Fatalf("record of no settings: %q %v", r, err)
	}
}
