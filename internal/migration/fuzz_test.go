package migration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// A settings record read back from the queue directory, whatever its
// bytes: never a panic, and never settings other than the current ones
// unless the record is whole (its content gives its name).
func FuzzSettingsRecord(f *testing.F) {
	f.Add([]byte(`{"phase":"dual","mailbox_bcc_maps":["hash:/x"],"files":{"/x":"YSBi"}}`))
	f.Add([]byte(`{"phase":"forward","dual_delivery_phase_maps":["regexp:/p"],"files":{"/p":"L14vIGZvcndhcmQ="}}`))
	f.Add([]byte(`{"phase":"off"}`))
	f.Add([]byte(`{`))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		st := NewStore(dir, nil)
		cur := &Tables{ID: "current", Settings: &Settings{Phase: Dual}}
		st.cur = cur
		os.WriteFile(filepath.Join(dir, "abc.json"), data, 0o600)
		if got := st.For("abc"); got != cur {
			t.Fatalf("a record named abc was used: %+v", got.Settings)
		}
		// The same bytes under their own name are used if they parse.
		var s Settings
		if err := json.Unmarshal(data, &s); err == nil {
			id := s.ID()
			os.WriteFile(filepath.Join(dir, id+".json"), data, 0o600)
			if got := st.For(id); got != cur && got.ID != id {
				t.Fatalf("For(%s) gave %s", id, got.ID)
			}
		}
	})
}
