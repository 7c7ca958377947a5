// Package diag carries the findings of configuration and table parsers:
// a place (file and line), a severity and a message an administrator can
// act on. Parsers collect them instead of stopping at the first problem so
// that `mailtee check` can report everything in one run.
package diag

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// Severity orders findings: an Error stops `serve`, a Warning does not.
type Severity int

const (
	Warning Severity = iota
	Error
	// Info says what mailtee will do where main.cf could be read two
	// ways (whose queue, how local mail is stored); it asks for nothing
	// and counts as neither an error nor a warning.
	Info
)

func (s Severity) String() string {
	switch s {
	case Error:
		return "error"
	case Info:
		return "info"
	}
	return "warning"
}

// Diag is one finding. Line is 0 when the finding is about a whole file.
type Diag struct {
	File     string
	Line     int
	Severity Severity
	Msg      string
}

// String formats the finding the way Postfix's tools do:
// "/etc/postfix/main.cf, line 3: ...".
func (d Diag) String() string {
	var b strings.Builder
	b.WriteString(d.Severity.String())
	b.WriteString(": ")
	if d.File != "" {
		b.WriteString(d.File)
		if d.Line > 0 {
			fmt.Fprintf(&b, ", line %d", d.Line)
		}
		b.WriteString(": ")
	}
	b.WriteString(d.Msg)
	return b.String()
}

// Error makes a Diag usable as an error.
func (d Diag) Error() string { return d.String() }

// List collects findings.
type List []Diag

// Warnf appends a warning.
func (l *List) Warnf(file string, line int, format string, args ...any) {
	*l = append(*l, Diag{file, line, Warning, OneLine(fmt.Sprintf(format, args...))})
}

// Errorf appends an error.
func (l *List) Errorf(file string, line int, format string, args ...any) {
	*l = append(*l, Diag{file, line, Error, OneLine(fmt.Sprintf(format, args...))})
}

// Infof appends an Info.
func (l *List) Infof(file string, line int, format string, args ...any) {
	*l = append(*l, Diag{file, line, Info, OneLine(fmt.Sprintf(format, args...))})
}

// HasErrors reports whether any finding is an Error.
func (l List) HasErrors() bool {
	for _, d := range l {
		if d.Severity == Error {
			return true
		}
	}
	return false
}

// Err returns the errors of l joined into one error, or nil.
func (l List) Err() error {
	var errs []error
	for _, d := range l {
		if d.Severity == Error {
			errs = append(errs, d)
		}
	}
	return errors.Join(errs...)
}

// OneLine keeps a finding on its one line ("warning: file, line N: ..."),
// each distinct line of the text once: a database driver's error lists
// every address it tried on a line of its own (pgx, twice with libpq's
// default sslmode=prefer: with TLS, then without).
func OneLine(s string) string {
	if !strings.Contains(s, "\n") {
		return s
	}
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" && !slices.Contains(out, l) {
			out = append(out, l)
		}
	}
	return strings.ReplaceAll(strings.Join(out, "; "), ":; ", ": ")
}

// RedactURL hides a password in a database URL or URI for a finding or
// a log line: the user's (postgres://u:secret@host) and libpq's query
// parameter (?password=secret). A value that does not parse but could
// hold a password (a user part, or the word) is not shown at all;
// anything else (a host:port) is returned as it is.
func RedactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		if strings.Contains(s, "password") || strings.Contains(s, "@") {
			return "(a URI that does not parse)"
		}
		return s
	}
	changed := false
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
			changed = true
		}
	}
	if q := u.Query(); q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
		changed = true
	}
	if !changed {
		return s
	}
	return u.String()
}
