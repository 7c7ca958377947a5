package maps

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"unsafe"

	"github.com/mailtee/mailtee/internal/diag"
	"github.com/mailtee/mailtee/internal/pfline"
)

// fixedTable is an in-memory table of literal keys: the hash, btree, lmdb,
// texthash, inline and alias types all end up here. Keys are stored folded
// to lower case, as postmap(1) folds them by default, and lookups fold the
// query the same way.
type fixedTable struct {
	m      map[string]string
	shapes shape // the key shapes present, to skip futile address lookups
	// file and src are the postmap(1) source, kept for Source (the
	// table's keys and values are substrings of src anyway); empty for
	// inline, alias and passwd tables.
	file, src string
}

// shape classifies keys by the address lookup forms they can answer.
type shape uint8

const (
	shapeAddress shape = 1 << iota // user@domain
	shapeLocal                     // user, with no '@'
	shapeDomain                    // @domain
)

func shapeOf(key string) shape {
	switch i := strings.LastIndexByte(key, '@'); {
	case i < 0:
		return shapeLocal
	case i == 0:
		return shapeDomain
	}
	return shapeAddress
}

// mayHave reports whether a key of this shape can be in the table: a
// table of full addresses need not be asked for "user" or "@domain",
// which makes a miss one or two probes instead of five.
func (t *fixedTable) mayHave(s shape) bool { return t.shapes&s != 0 }

// newFixed sizes the map for the number of lines in the source, an upper
// bound on the entries, so a large table loads without rehashing.
func newFixed(data []byte) *fixedTable {
	return &fixedTable{m: make(map[string]string, bytes.Count(data, []byte{'\n'})+1)}
}

func (t *fixedTable) Lookup(_ context.Context, key string) (string, bool, error) {
	v, ok := t.m[foldKey(key)]
	return v, ok, nil
}

// Entries returns the entries sorted by key; like Postfix's hash tables,
// the order carries no meaning.
func (t *fixedTable) Entries() []Entry {
	out := make([]Entry, 0, len(t.m))
	for k, v := range t.m {
		out = append(out, Entry{Key: k, Value: v})
	}
	slices.SortFunc(out, func(a, b Entry) int { return strings.Compare(a.Key, b.Key) })
	return out
}
func (t *fixedTable) FixedKeys() {}

// add stores key unless it is already present: Postfix keeps the first of
// duplicate entries and warns about the rest.
func (t *fixedTable) add(key, value string) bool {
	if _, dup := t.m[key]; dup {
		return false
	}
	t.m[key] = value
	t.shapes |= shapeOf(key)
	return true
}

// foldKey lower-cases ASCII without allocating when s already is. Address
// keys are nearly always lower case already, which keeps lookups
// allocation-free on the hot path.
func foldKey(s string) string {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' || c >= 0x80 {
			return strings.ToLower(s)
		}
	}
	return s
}

// parseText reads postmap(1) source text: "key whitespace value" per
// logical line. A key may be a "quoted string" that holds whitespace; the
// quotes stay part of the key, as in Postfix.
//
// Deviation from Postfix, as DESIGN.md requires: a key ending in ':' (the
// alias-file habit in the seed's bcc_map_to_relay) is stored without the
// colon. Postfix keeps the colon, so such a key never matches there.
func parseText(file string, data []byte) (*fixedTable, diag.List) {
	var diags diag.List
	t := newFixed(data)
	t.file, t.src = file, asString(data)
	eachText(file, t.src, &diags, func(key, value string, line int) {
		if !t.add(key, value) {
			diags.Warnf(file, line, "duplicate entry: %q; the first one is used", key)
		}
	})
	return t, diags
}

// eachText calls fn for every entry of postmap(1) source text, with its
// key as the table stores it, and reports lines that are not entries.
func eachText(file, text string, diags *diag.List, fn func(key, value string, line int)) {
	pfline.Each(file, text, diags, func(l pfline.Line) {
		key, value := splitKeyValue(l.Text)
		if value == "" {
			diags.Warnf(file, l.Num, "expected format: key whitespace value; line ignored")
			return
		}
		if k, ok := strings.CutSuffix(key, ":"); ok && k != "" {
			diags.Warnf(file, l.Num, "key %q ends in ':'; mailtee uses the key %q, but Postfix's postmap keeps the colon as part of the key, so on Postfix this entry never matches", key, k)
			key = k
		}
		fn(foldKey(key), value, l.Num)
	})
}

// splitKeyValue splits "key   value text" at the first whitespace outside
// a leading quoted string.
func splitKeyValue(s string) (key, value string) {
	end := 0
	if strings.HasPrefix(s, "\"") {
		if i := strings.IndexByte(s[1:], '"'); i >= 0 {
			end = i + 2
		}
	}
	i := strings.IndexAny(s[end:], " \t")
	if i < 0 {
		return s, ""
	}
	return s[:end+i], strings.TrimSpace(s[end+i:])
}

// asString views a table source as a string without copying it: keys and
// values are then substrings of the file, and a 70 MB table costs 70 MB
// once, not twice. The callers own data (read from the file for this
// table) and never write it again.
func asString(data []byte) string {
	if len(data) == 0 {
		return ""
	}
	return unsafe.String(&data[0], len(data))
}
