package report

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailtee/mailtee/internal/config"
	"github.com/mailtee/mailtee/internal/ledger"
)

// OpenLocal: no ledger configured, a file not made yet (saying what to
// do), a file there, and a fleet's URL, which is opened without a stat.
func TestOpenLocal(t *testing.T) {
	dir := t.TempDir()
	var opened []string
	open := func(path string) (ledger.Reader, io.Closer, error) {
		opened = append(opened, path)
		return nil, io.NopCloser(nil), nil
	}
	load := func(line string) *config.Config {
		return config.Parse(dir, filepath.Join(dir, "main.cf"), []byte("data_directory = "+dir+"\n"+line+"\n"))
	}
	if _, _, err := OpenLocal(load("ledger_database ="), open); err == nil || !strings.Contains(err.Error(), "there is no ledger to read") {
		t.Errorf("empty ledger_database: %v", err)
	}
	if _, _, err := OpenLocal(load("ledger_database = l.db"), open); err == nil || !strings.Contains(err.Error(), "has `mailtee serve -c "+dir+"` run since it was set?") {
		t.Errorf("no file yet: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "l.db"), nil, 0o600)
	url := "postgres://mailtee@db.example/mailtee?passfile=/etc/mailtee/pgpass"
	for _, line := range []string{"ledger_database = l.db", "ledger_database = " + url} {
		if _, _, err := OpenLocal(load(line), open); err != nil {
			t.Errorf("%s: %v", line, err)
		}
	}
	if want := filepath.Join(dir, "l.db") + "|" + url; strings.Join(opened, "|") != want {
		t.Errorf("opened %q, want %q", opened, want)
	}
}
