package main

import (
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/mailtee/mailtee/internal/config"
	"github.com/mailtee/mailtee/internal/diag"
	"github.com/mailtee/mailtee/internal/maps"
)

// runNewaliases is Postfix's newaliases: sendmail -bi.
func runNewaliases(args []string, stdout, stderr io.Writer) int {
	return sendmail("newaliases", args, os.Stdin, stdout, stderr)
}

// aliasFileTypes are the table types whose source is an aliases(5)
// text file that newaliases can check.
var aliasFileTypes = []string{"hash", "btree", "lmdb", "cdb", "dbm", "sdbm"}

// newaliases is sendmail -bi. Postfix's runs postalias on each table of
// alias_database (src/sendmail/sendmail.c) to rebuild its .db; mailtee
// reads the source text, so there is nothing to build, and newaliases
// validates instead: every alias file of alias_database and of
// alias_maps (what mailtee delivers with), or only file with -oA,
// parsed as delivery parses it. Every finding is printed as
// "newaliases: warning: FILE, line N: ...". The exit is 1 when a file
// cannot be read or has an error serve would refuse to start with; a
// line the table leaves out ("need name:value pair") is a warning with
// exit 0, as Postfix's postalias: Debian's maintainer scripts run
// newaliases under set -e, and one odd line must not fail a package
// install.
func newaliases(name string, cfg *config.Config, file string, stderr io.Writer) int {
	var specs []string
	if file != "" {
		specs = []string{file}
	} else {
		specs = append(cfg.List("alias_database"), cfg.List("alias_maps")...)
	}
	status := exitOK
	seen := map[string]bool{}
	for _, spec := range specs {
		spec = strings.TrimPrefix(spec, "proxy:")
		typ, path, ok := strings.Cut(spec, ":")
		if !ok {
			typ, path = defaultType(cfg.Dir), spec
		}
		if !slices.Contains(aliasFileTypes, typ) {
			continue // nis:, ldap:, static:, ...: no file of ours to check
		}
		path = strings.TrimSuffix(path, ".db")
		if seen[path] {
			continue
		}
		seen[path] = true
		_, diags, err := maps.OpenAlias(typ + ":" + path)
		for _, d := range diags {
			fmt.Fprintf(stderr, "%s: %v\n", name, d)
			if d.Severity == diag.Error {
				status = exitBadData
			}
		}
		if err != nil {
			if len(diags) == 0 {
				fmt.Fprintf(stderr, "%s: fatal: %v\n", name, err)
			}
			status = exitBadData
		}
	}
	return status
}
