package maps

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/mailtee/mailtee/internal/diag"
	"github.com/mailtee/mailtee/internal/socketmap"
	"github.com/mailtee/mailtee/internal/sqltable"
	"github.com/mailtee/mailtee/internal/users"
)

// indexed are the Postfix types built by postmap/postalias from a source
// text file. mailtee reads the source itself.
var indexed = map[string]bool{
	"hash": true, "btree": true, "lmdb": true, "cdb": true, "dbm": true,
	"sdbm": true, "texthash": true,
}

// Types lists the supported table types, for error messages.
const Types = "hash, btree, lmdb, cdb, dbm, sdbm, texthash, regexp, pcre, cidr, inline, static, unix, proxy, pgsql, mysql, sqlite, socketmap"

// Open opens a table named "type:name" whose source is in postmap(1)
// format. It returns the findings about the source; any finding of
// severity Error also makes Open return an error, because a table that is
// partly read would answer wrongly.
func Open(spec string) (Table, diag.List, error) {
	return open(spec, false, nil)
}

// OpenAlias opens a table named "type:name" whose source is an aliases(5)
// file, as for alias_maps: the indexed types are read in alias syntax.
func OpenAlias(spec string) (Table, diag.List, error) {
	return open(spec, true, nil)
}

// ReadFunc reads a table's source file.
type ReadFunc func(name string) ([]byte, error)

// OpenWith opens a table as Open (or OpenAlias, when alias is set) does,
// reading its source files through read: with a read that records what
// it returns, a table can be kept as it is now and opened again later
// from the record (internal/migration), whatever becomes of the files.
// Given a read other than os.ReadFile, the file system is not looked at
// otherwise (no stale-index warnings, no source found beside an index).
func OpenWith(spec string, alias bool, read ReadFunc) (Table, diag.List, error) {
	return open(spec, alias, read)
}

func open(spec string, alias bool, read ReadFunc) (Table, diag.List, error) {
	onDisk := read == nil
	if onDisk {
		read = os.ReadFile
	}
	typ, name, ok := strings.Cut(spec, ":")
	if ok && typ != "" && name == "" {
		// dict_open.c: "static:" is as malformed as "static".
		return nil, nil, fmt.Errorf("%q: expecting \"type:name\" form: the name after %s: is empty", spec, typ)
	}
	if !ok || typ == "" {
		return nil, nil, fmt.Errorf("%q: expected type:name, for example hash:%s", spec, spec)
	}
	var (
		t     Table
		diags diag.List
	)
	switch typ {
	case "proxy":
		// proxymap(8) only shares an open table between processes; one
		// mailtee process has no such need.
		return open(name, alias, read)
	case "inline":
		t, diags = parseInline(spec, name)
	case "static":
		var err error
		if t, err = openStatic(name); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", spec, err)
		}
	case "pgsql", "mysql", "sqlite":
		// pgsql_table(5) and friends: name is the .cf file. Opening
		// does not connect (internal/sqltable).
		st, d, err := sqltable.Open(typ, name, read)
		if err != nil {
			return nil, d, fmt.Errorf("%s: %w", spec, err)
		}
		t, diags = st, d
	case "unix":
		var err error
		if t, err = openUnix(name); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", spec, err)
		}
	case "socketmap":
		st, err := socketmap.Open(name)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", spec, err)
		}
		t = st
	case "regexp", "pcre", "cidr":
		if strings.HasPrefix(name, "{") {
			data, err := inlineRules(typ, name)
			if err != nil {
				return nil, nil, fmt.Errorf("%s: %w", spec, err)
			}
			if typ == "cidr" {
				t, diags = parseCIDR(spec, data)
			} else {
				t, diags = parseRegexp(spec, data, typ == "pcre")
			}
			break
		}
		fallthrough
	default:
		if indexed[typ] && onDisk {
			name = indexSource(typ, name)
		}
		data, err := read(name)
		if err != nil && indexed[typ] {
			// "hash:/etc/aliases.db" is sometimes written out in full.
			if base, ok := strings.CutSuffix(name, ".db"); ok {
				data, err = read(base)
				name = base
			}
		}
		if !indexed[typ] && typ != "regexp" && typ != "pcre" && typ != "cidr" {
			return nil, nil, fmt.Errorf("%s: unsupported table type %q; mailtee supports %s", spec, typ, Types)
		}
		if err != nil {
			if onDisk {
				err = missingSource(typ, name, alias, err)
			}
			return nil, nil, fmt.Errorf("%s: %w", spec, err)
		}
		var stale diag.List
		if onDisk {
			staleIndex(typ, name, alias, &stale)
		}
		switch {
		case typ == "regexp" || typ == "pcre":
			t, diags = parseRegexp(name, data, typ == "pcre")
		case typ == "cidr":
			t, diags = parseCIDR(name, data)
		case alias && typ != "texthash":
			// texthash is always postmap format, even in alias_maps:
			// Postfix reads it so.
			t, diags = parseAlias(name, data)
		default:
			t, diags = parseText(name, data)
		}
		diags = append(stale, diags...)
	}
	if err := diags.Err(); err != nil {
		return nil, diags, fmt.Errorf("%s: %w", spec, err)
	}
	return t, diags, nil
}

// staticTable answers every key with the same value (static:value).
type staticTable string

func (s staticTable) Lookup(context.Context, string) (string, bool, error) {
	return string(s), true, nil
}

// openUnix opens unix:passwd.byname, the table behind Postfix's default
// local_recipient_maps: a key is a login name, found through the name
// service at each lookup as dict_unix.c's getpwnam() (LDAP and SSSD users
// included, a new account at once); the value is its passwd line. A failed
// name service is an error (the RCPT is deferred), where Postfix says
// "not found" unless getpwuid(0) fails too.
func openUnix(name string) (Table, error) {
	if name != "passwd.byname" {
		return nil, fmt.Errorf("unsupported unix table %q; mailtee supports unix:passwd.byname", name)
	}
	return passwdTable{}, nil
}

type passwdTable struct{}

func (passwdTable) Lookup(_ context.Context, key string) (string, bool, error) {
	u, ok, err := users.Lookup(key) // case-sensitive, as login names are
	if err != nil || !ok {
		return "", false, err
	}
	return fmt.Sprintf("%s:x:%d:%d::%s:%s", u.Name, u.UID, u.GID, u.Home, u.Shell), true, nil
}
func (passwdTable) FixedKeys() {}

// exactTable is a fixed table that does not fold case.
type exactTable struct{ m map[string]string }

func (t exactTable) Lookup(_ context.Context, key string) (string, bool, error) {
	v, ok := t.m[key]
	return v, ok, nil
}
func (t exactTable) FixedKeys() {}
