package main

import (
	"io"

	"github.com/mailtee/mailtee/internal/ledger"
	"github.com/mailtee/mailtee/internal/pflog"
)

// The report's hooks, filled in by the packages that now exist: the
// Postfix log reader (internal/pflog) and the ledger store.
func init() {
	loadPostfixLog = func(logFile, configDir string) (ledger.Reader, error) {
		return pflog.Load(logFile, configDir, pflog.Options{})
	}
	openLedger = func(path string) (ledger.Reader, io.Closer, error) {
		s, err := ledger.OpenReader(path)
		if err != nil {
			return nil, nil, err
		}
		return s, s, nil
	}
}
