package route

import (
	"fmt"
	"slices"
	"strings"

	"github.com/mailtee/mailtee/internal/diag"
	"github.com/mailtee/mailtee/internal/maps"
)

// TransportParams are main.cf's parameters written "transport[:nexthop]".
// (mailbox_transport, which only lmtp: may be, is checked with main.cf.)
var TransportParams = []string{"default_transport", "relay_transport", "local_transport"}

// Setting is a parameter's expanded value and the line of main.cf that
// sets it (0 for a default).
type Setting struct {
	Name, Value string
	Line        int
}

// Map is an opened transport_maps table and the line of main.cf that
// names it.
type Map struct {
	Spec  string
	Line  int
	Table maps.Table
}

// CheckTransports reports every transport name that `check` can see and
// mailtee does not deliver with: in the transport parameters of main.cf
// (file), and in the results of the transport_maps tables that can list
// them (maps.Sourced: the indexed types, texthash, inline, static, and
// the results of regexp and pcre rules whose transport is literal). A
// finding names the table's file and line, or main.cf's line for a table
// written in main.cf. Results built from $N at lookup time are left to
// serve, which defers the mail, as Postfix does.
//
// known are the transports mailtee delivers with (qmgr's agents): Postfix
// would take any master.cf service name and defer mail for one that does
// not exist; mailtee has no master.cf, so any other name is a mistake.
func CheckTransports(file string, known []string, params []Setting, tables []Map) diag.List {
	var out diag.List
	isKnown := func(name string) bool { return slices.Contains(known, name) }
	unknownTransport := func(value, t string) string { return unknownTransport(known, value, t) }
	for _, p := range params {
		t, _, _ := strings.Cut(p.Value, ":")
		switch {
		case t == "":
			out.Errorf(file, p.Line, "%s: %q: null transport is not allowed; write transport:nexthop, such as smtp:[relay.example]", p.Name, p.Value)
		case !isKnown(t):
			out.Errorf(file, p.Line, "%s: %s", p.Name, unknownTransport(p.Value, t))
		}
	}
	for _, m := range tables {
		s, ok := m.Table.(maps.Sourced)
		if !ok {
			continue
		}
		s.Source(func(e maps.SourceEntry) {
			v := strings.TrimSpace(e.Value)
			t, _, colon := strings.Cut(v, ":")
			if e.Partial && !colon {
				return // the transport comes from the lookup key
			}
			if t == "" || isKnown(t) { // "" keeps the class's transport
				return
			}
			if e.Partial {
				v += "..." // the rest comes from the lookup key
			}
			where, line := e.File, e.Line
			if where == "" {
				where, line = file, m.Line
			}
			out.Errorf(where, line, "transport_maps (%s): %s", m.Spec, unknownTransport(v, t))
		})
	}
	return out
}

func unknownTransport(known []string, value, t string) string {
	msg := fmt.Sprintf("%q: unknown mail transport %q; mailtee delivers with %s, and mail for it would wait in the queue", value, t, strings.Join(known, ", "))
	for _, k := range known {
		if oneEdit(t, k) {
			return msg + "; did you mean " + k + "?"
		}
	}
	return msg
}

// oneEdit reports whether a becomes b by one insertion, deletion,
// substitution or swap of adjacent letters: the typos worth a suggestion.
func oneEdit(a, b string) bool {
	if a == b {
		return false
	}
	i := 0
	for i < len(a) && i < len(b) && a[i] == b[i] {
		i++
	}
	a, b = a[i:], b[i:]
	switch {
	case len(a) == len(b):
		return a[1:] == b[1:] || len(a) >= 2 && a[0] == b[1] && a[1] == b[0] && a[2:] == b[2:]
	case len(a) == len(b)+1:
		return a[1:] == b
	case len(b) == len(a)+1:
		return b[1:] == a
	}
	return false
}
