package maps

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/mailtee/mailtee/internal/diag"
)

// indexSuffixes are the files that postmap(1) and postalias(1) build from
// a source text file, per table type (dict_db.c, dict_lmdb.c, dict_cdb.c,
// dict_dbm.c). Postfix's programs read only these; mailtee reads only the
// source.
var indexSuffixes = map[string][]string{
	"hash": {".db"}, "btree": {".db"}, "lmdb": {".lmdb"}, "cdb": {".cdb"},
	"dbm": {".pag", ".dir"}, "sdbm": {".pag", ".dir"},
}

// builtIndex returns the path and modification time of the file Postfix
// built from source name for type typ, if there is one.
func builtIndex(typ, name string) (string, time.Time, bool) {
	for _, suf := range indexSuffixes[typ] {
		if st, err := os.Stat(name + suf); err == nil && st.Mode().IsRegular() {
			return name + suf, st.ModTime(), true
		}
	}
	return "", time.Time{}, false
}

// tool is the program that builds and dumps the tables of one kind.
func tool(alias bool) string {
	if alias {
		return "postalias"
	}
	return "postmap"
}

// missingSource explains a source file that is not there while Postfix's
// indexed file built from it is (err is the error of reading the source):
// Postfix would run, mailtee cannot. It returns err unchanged otherwise.
func missingSource(typ, name string, alias bool, err error) error {
	if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	idx, _, ok := builtIndex(typ, name)
	if !ok {
		return err
	}
	return fmt.Errorf("source file %s not found, only %s, which %s built from it: mailtee reads the source text, not the %s file; "+
		"restore the source, for example with `%s -s %s:%s > %s` while Postfix is still installed (it lists every entry of %s)",
		name, idx, tool(alias), idx[len(name):], tool(alias), typ, name, name, idx)
}

// staleIndex warns when the source was changed after Postfix's indexed
// file was last built from it: Postfix would still answer from the old
// file until postmap (or postalias) is run; mailtee already uses the
// source. Both files and their times are named.
func staleIndex(typ, name string, alias bool, diags *diag.List) {
	idx, built, ok := builtIndex(typ, name)
	if !ok {
		return
	}
	st, err := os.Stat(name)
	if err != nil || !st.ModTime().After(built) {
		return
	}
	const layout = "2006-01-02 15:04:05"
	diags.Warnf(name, 0, "changed at %s, after %s was built from it at %s: Postfix would still use the old %s until `%s %s:%s` is run; mailtee reads %s itself, so the change is in effect",
		st.ModTime().Format(layout), idx, built.Format(layout), idx, tool(alias), typ, name, name)
}

// indexSource returns the source of a table named by its indexed file, as in
// "hash:/etc/aliases.db", when that source exists: Postfix would look for
// /etc/aliases.db.db, mailtee reads /etc/aliases rather than the binary
// file. Otherwise it returns name.
func indexSource(typ, name string) string {
	for _, suf := range indexSuffixes[typ] {
		if base, ok := strings.CutSuffix(name, suf); ok && base != "" {
			if st, err := os.Stat(base); err == nil && st.Mode().IsRegular() {
				return base
			}
		}
	}
	return name
}
