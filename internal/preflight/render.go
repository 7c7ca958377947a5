package preflight

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"unicode"
)

// WriteText writes the report as a table, one row per check, and a line
// of totals. What to do follows a row on its own line, so that long
// texts do not stretch the table.
func (r *Report) WriteText(w io.Writer) error {
	wc, wk, wt := len("STATUS"), len("CHECK"), len("TARGET")
	for _, row := range r.Rows {
		wc = max(wc, len(row.Status))
		wk = max(wk, len(row.Check))
		wt = max(wt, min(len(row.Target), 40))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%-*s  %-*s  %-*s  %s\n", wc, "STATUS", wk, "CHECK", wt, "TARGET", "SEEN")
	dest := "\x00"
	for _, row := range r.Rows {
		if row.Dest != dest {
			dest = row.Dest
			if dest == "" {
				b.WriteString("# this host\n")
			} else {
				b.WriteString("# " + oneLine(dest) + "\n")
			}
		}
		fmt.Fprintf(&b, "%-*s  %-*s  %-*s  %s\n", wc, row.Status, wk, oneLine(row.Check), wt, oneLine(row.Target), oneLine(row.Seen))
		if row.Do != "" && row.Status != OK {
			fmt.Fprintf(&b, "%*s  -> %s\n", wc+wk+wt+4, "", oneLine(row.Do))
		}
	}
	c := r.Counts()
	fmt.Fprintf(&b, "preflight: %d check(s): %d ok, %d warn, %d FAIL, %d unknown\n", len(r.Rows), c[OK], c[Warn], c[Fail], c[Unknown])
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteJSON writes the report as one JSON object: the rows, the counts
// and whether a check failed.
func (r *Report) WriteJSON(w io.Writer) error {
	c := r.Counts()
	rows := r.Rows
	if rows == nil {
		rows = []Row{}
	}
	out := struct {
		Rows   []Row          `json:"rows"`
		Counts map[Status]int `json:"counts"`
		Failed bool           `json:"failed"`
	}{rows, c, r.Failed()}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

// oneLine folds a multi-line reply into one line, and shows a control
// character as '?': replies and certificate names are the server's
// text, printed on the administrator's terminal (an escape sequence
// could rewrite what the table says).
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return '?'
		}
		return r
	}, s)
}
