// Package pfline splits Postfix configuration text into logical lines, the
// way Postfix's readlline() does for main.cf and every lookup table source:
//
//   - a line whose first non-blank character is '#' is a comment, and blank
//     lines are ignored; neither ends a logical line;
//   - a line that starts with whitespace continues the logical line before
//     it; only the newline between them goes, blanks on both sides stay
//     ("value   \n  more" is "value     more"), as in Postfix;
//   - '#' anywhere else is ordinary text (Postfix has no trailing comments).
package pfline

import (
	"strings"

	"github.com/mailtee/mailtee/internal/diag"
)

// Line is one logical line and the number of the physical line it starts on.
type Line struct {
	Num  int
	Text string
	// Orphan is set when the logical line began with whitespace, that is,
	// a continuation with nothing to continue. Postfix warns "logical line
	// must not start with whitespace" and ignores it; callers should too.
	Orphan bool
}

const blanks = " \t\r\f\v"

// Scan calls fn for each logical line of text, in order. Lines that are
// not continued are substrings of text, so scanning a large table copies
// nothing. Scan never fails: every input has a reading, which keeps the
// parsers above it total.
func Scan(text string, fn func(Line)) {
	var cur Line
	have := false
	num := 0
	for len(text) > 0 {
		var raw string
		if i := strings.IndexByte(text, '\n'); i >= 0 {
			raw, text = text[:i], text[i+1:]
		} else {
			raw, text = text, ""
		}
		num++
		// A file edited on Windows: the CR belongs to the line ending.
		raw = strings.TrimSuffix(raw, "\r")
		trimmed := strings.TrimLeft(raw, blanks)
		if len(trimmed) == 0 || trimmed[0] == '#' {
			continue
		}
		if len(trimmed) != len(raw) { // starts with whitespace: continuation
			if have {
				cur.Text += raw
				continue
			}
			cur, have = Line{Num: num, Text: trimmed, Orphan: true}, true
			continue
		}
		if have {
			cur.Text = strings.TrimRight(cur.Text, blanks)
			fn(cur)
		}
		cur, have = Line{Num: num, Text: raw}, true
	}
	if have {
		cur.Text = strings.TrimRight(cur.Text, blanks)
		fn(cur)
	}
}

// Each calls fn for each logical line of a file's text, except orphans
// (a first line that starts with whitespace), which it reports in diags
// as Postfix's readllines() does, and drops.
func Each(file, text string, diags *diag.List, fn func(Line)) {
	Scan(text, func(l Line) {
		if l.Orphan {
			diags.Warnf(file, l.Num, "logical line must not start with whitespace: %q; Postfix ignores it, and so does mailtee", l.Text)
			return
		}
		fn(l)
	})
}

// Lines returns the logical lines of a file's text, orphans reported and
// dropped as by Each.
func Lines(file string, data []byte, diags *diag.List) []Line {
	var out []Line
	Each(file, string(data), diags, func(l Line) { out = append(out, l) })
	return out
}
