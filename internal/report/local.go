package report

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/mailtee/mailtee/internal/config"
	"github.com/mailtee/mailtee/internal/ledger"
)

// LocalPath is where this host's ledger is: ledger_database, an SQLite
// file under data_directory or a fleet's PostgreSQL URL; "" for none.
func LocalPath(cfg *config.Config) string {
	return ledger.Location(cfg.DataDirectory(), cfg.Get("ledger_database"))
}

// OpenLocal opens this host's ledger for reading with open
// (ledger.OpenReader, or a test's). A fleet's PostgreSQL ledger holds
// every node's messages. A missing SQLite file is an error that says
// what to do, rather than an empty ledger that reports nothing.
func OpenLocal(cfg *config.Config, open func(string) (ledger.Reader, io.Closer, error)) (ledger.Reader, io.Closer, error) {
	path := LocalPath(cfg)
	if path == "" {
		return nil, nil, fmt.Errorf("ledger_database is empty in %s: there is no ledger to read", cfg.Dir)
	}
	if ledger.Shared(path) {
		return open(path)
	}
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("no ledger at %s (ledger_database): has `mailtee serve -c %s` run since it was set?", path, cfg.Dir)
	} else if err != nil {
		return nil, nil, fmt.Errorf("ledger: %w", err)
	}
	return open(path)
}
