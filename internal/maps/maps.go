// Package maps implements Postfix lookup tables behind one interface.
//
// A table is named as Postfix names it, "type:name": hash:/etc/postfix/transport,
// regexp:/etc/postfix/header_checks, cidr:/etc/postfix/clients,
// inline:{ a=b, c=d }, static:value. The indexed types (hash, btree, lmdb,
// texthash) are read from their source text, so no .db file is needed and
// postmap need not be run after an edit.
//
// Lookups follow Postfix: fixed-string tables fold keys to lower case;
// pattern tables (regexp, pcre, cidr) see the key as given. Address lookups
// in Postfix's order are in address.go, alias files in alias.go.
package maps

import (
	"context"

	"github.com/mailtee/mailtee/internal/diag"
)

// Table is a Postfix lookup table. A key that is absent is (\"\", false, nil);
// err is for tables that cannot answer now.
type Table interface {
	Lookup(ctx context.Context, key string) (value string, ok bool, err error)
}

// Entry is one key and value of a table.
type Entry struct {
	Key, Value string
}

// Lister is implemented by tables that support sequential access
// (postmap -s).
type Lister interface {
	Entries() []Entry
}

// Fixed is implemented by tables whose keys are literal strings, as opposed
// to patterns. Postfix's address lookup order differs between the two: a
// pattern table is asked only once, with the full address.
type Fixed interface {
	FixedKeys()
}

// Prober is implemented by tables that another process answers (a
// database, a socketmap server). Probe says whether it answers now, for
// check's warnings: a table that does not answer never stops a
// configuration from loading, because its lookups fail with an error and
// the mail that needs them waits (4xx at RCPT, deferred in the queue).
type Prober interface {
	Probe(ctx context.Context) error
}

// KeyAsGiven is implemented by tables that must see a key in the case it
// was written: a socketmap server is sent the address as Postfix sends it
// (a pattern table, never folded), where fixed tables fold.
type KeyAsGiven interface {
	KeyAsGiven()
}

// Loaded is what parsing a table produced: the table and the findings about
// its source (warnings such as a stripped trailing colon, and errors for
// lines that were skipped).
type Loaded struct {
	Table Table
	Diags diag.List
}
