package maps

import "github.com/mailtee/mailtee/internal/diag"

// SourceEntry is one entry of a table, where its source has it.
type SourceEntry struct {
	File string // "" when the table has no file of its own (inline:, static:)
	Line int    // 0 when File is ""
	Key  string // as stored (folded); "" for pattern tables and static:
	// Value is the result as written. For a pattern table's result with
	// $N substitutions, Partial is set and Value is the literal text
	// before the first one: only that much is known before a lookup.
	Value   string
	Partial bool
}

// Sourced is implemented by the tables whose every result can be listed
// with its place in the source: the indexed types and texthash, inline,
// static, regexp and pcre. `mailtee check` uses it to validate results
// that serve would otherwise meet only when a lookup returns them.
type Sourced interface {
	Source(fn func(SourceEntry))
}

// Source lists the entries in source order; a duplicate key, whose value
// lookups never return, is left out. Tables without a source file of their own
// (inline:) list theirs by key.
func (t *fixedTable) Source(fn func(SourceEntry)) {
	if t.src == "" {
		for _, e := range t.Entries() {
			fn(SourceEntry{File: t.file, Key: e.Key, Value: e.Value})
		}
		return
	}
	eachText(t.file, t.src, new(diag.List), func(key, value string, line int) {
		if v, ok := t.m[key]; ok && v == value {
			fn(SourceEntry{File: t.file, Line: line, Key: key, Value: value})
		}
	})
}

func (s staticTable) Source(fn func(SourceEntry)) {
	fn(SourceEntry{Value: string(s)})
}

// Source lists the results of the match rules in order.
func (t *reTable) Source(fn func(SourceEntry)) {
	for _, r := range t.rules {
		if r.op != opMatch {
			continue
		}
		e := SourceEntry{File: t.file, Line: r.line, Value: r.value}
		if r.parts != nil {
			e.Value, e.Partial = "", true
			for _, p := range r.parts {
				if p.group != 0 {
					break
				}
				e.Value += p.lit
			}
		}
		fn(e)
	}
}
