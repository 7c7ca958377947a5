// Package mastercf reads Postfix's master.cf the way Postfix's master(8)
// and postconf(1) do (src/master/master_ent.c, src/postconf/postconf_master.c,
// master(5)).
//
// The file format: logical lines as in main.cf (a line whose first
// non-blank character is '#' is a comment, a line that starts with
// whitespace continues the one before it). Each logical line is one
// service, eight fields separated by blanks, then the command's
// arguments:
//
//	service type private unpriv chroot wakeup maxproc command [args...]
//
// type is inet, unix, unix-dgram, fifo or pass; private, unpriv and
// chroot are y, n or "-" (the default); wakeup is "-" or a number with an
// optional "?"; maxproc is "-" or a number. A token may hold blanks
// inside balanced braces; an argument that starts with '{' loses its
// braces and the blanks just inside them, as master(8) passes it
// (extpar). The leading arguments that start with '-' are the daemon's
// options (getopt "cdDi:lm:n:o:r:s:St:uvVz"); "-o name=value" and
// "-o { name = value }" override a main.cf parameter for that service
// (split_nameval: blanks around '=' and the value's ends go).
//
// An inet service's name is "port", "host:port" or "[host]:port" (IPv6
// inside the brackets, optionally "ipv6:"), host_port.c's forms; a port
// that is not a number is a service name from the services database
// (ServicePort).
package mastercf

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/mailtee/mailtee/internal/diag"
)

// Service is one master.cf entry. The fields keep their text as written
// ("-" for a default), so that findings can quote them.
type Service struct {
	Name, Type              string
	Private, Unpriv, Chroot string
	Wakeup, MaxProc         string
	Command                 string
	// Args are the command's arguments as master(8) passes them, braces
	// stripped, options (and their values) included.
	Args []string
	// Overrides are the "-o name=value" options, in order; a later one
	// for the same name wins, as in the daemon.
	Overrides []Override
	Line      int // where the entry starts
}

// Override is one "-o name=value" of a service, the value unexpanded (the
// daemon expands it when it reads the parameter).
type Override struct {
	Name, Value string
	Line        int // the physical line that holds the "-o"
}

// File is a parsed master.cf.
type File struct {
	Path     string
	Services []Service
}

// Load reads DIR/master.cf. A directory with no master.cf gives nil, nil,
// nil: mailtee then runs as it does without one (smtpd_port on
// inet_interfaces).
func Load(dir string) (*File, diag.List, error) {
	path := filepath.Join(dir, "master.cf")
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("cannot read %s: %w", path, err)
	}
	f, d := Parse(path, data)
	return f, d, nil
}

// Lookup returns the service with this name and type, the last one when
// several have it (master(8) would refuse to start; Parse reports it).
func (f *File) Lookup(name, typ string) *Service {
	if f == nil {
		return nil
	}
	for i := len(f.Services) - 1; i >= 0; i-- {
		if s := &f.Services[i]; s.Name == name && s.Type == typ {
			return s
		}
	}
	return nil
}

// Override returns the value of the service's last "-o name=...".
func (s *Service) Override(name string) (Override, bool) {
	for i := len(s.Overrides) - 1; i >= 0; i-- {
		if s.Overrides[i].Name == name {
			return s.Overrides[i], true
		}
	}
	return Override{}, false
}

// Program is the command's base name (smtpd, smtp, pipe, ...), as
// master(8) runs it from daemon_directory.
func (s *Service) Program() string { return filepath.Base(s.Command) }

// Operands are the command's arguments after its options (pipe's
// "flags=... argv=...").
func (s *Service) Operands() []string {
	_, ops, _ := options(s.Args)
	return ops
}

var types = []string{"inet", "unix", "unix-dgram", "fifo", "pass"}

// Parse reads master.cf text. It never fails: an entry that Postfix
// would refuse is reported as an error at its line and left out.
func Parse(file string, data []byte) (*File, diag.List) {
	f := &File{Path: file}
	var d diag.List
	seen := map[string]int{}
	for _, l := range logicalLines(string(data)) {
		if l.orphan {
			d.Warnf(file, l.num, "logical line must not start with whitespace: %q; Postfix ignores it, and so does mailtee", short(l.text))
			continue
		}
		s, err := parseEntry(l)
		if err != nil {
			d.Errorf(file, err.line, "%s; Postfix refuses to start with this master.cf: fix or remove the entry", err.msg)
			continue
		}
		key := s.Name + "/" + s.Type
		if prev, dup := seen[key]; dup {
			// master_conf.c: "duplicate service name" is fatal.
			d.Errorf(file, s.Line, "duplicate service %s (first defined at line %d); Postfix refuses to start: remove one of them", key, prev)
		}
		seen[key] = s.Line
		f.Services = append(f.Services, s)
	}
	return f, d
}

type parseErr struct {
	line int
	msg  string
}

func short(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// parseEntry parses one logical line, as pcf_parse_master_entry checks it
// and get_master_ent reads it.
func parseEntry(l logicalLine) (Service, *parseErr) {
	toks := tokenize(l.text)
	fail := func(pos int, format string, args ...any) (Service, *parseErr) {
		return Service{}, &parseErr{l.lineAt(pos), fmt.Sprintf(format, args...)}
	}
	if len(toks) < 8 {
		return fail(0, "bad field count: %d fields in %q; a service needs 8 (service type private unpriv chroot wakeup maxproc command)", len(toks), short(l.text))
	}
	s := Service{Line: l.num}
	fields := []*string{&s.Name, &s.Type, &s.Private, &s.Unpriv, &s.Chroot, &s.Wakeup, &s.MaxProc, &s.Command}
	for i, p := range fields {
		*p = toks[i].text
	}
	if !contains(types, s.Type) {
		return fail(toks[1].pos, "invalid type field %q for service %s; expected one of %s", s.Type, s.Name, strings.Join(types, ", "))
	}
	for i, name := range []string{"private", "unpriv", "chroot"} {
		v := toks[2+i]
		if v.text != "y" && v.text != "n" && v.text != "-" {
			return fail(v.pos, "invalid %s field %q for service %s; expected y, n or -", name, v.text, s.Name)
		}
	}
	if s.Type == "inet" && s.Private == "y" {
		return fail(toks[2].pos, "service %s: inet service cannot be private; write n or - in the private field", s.Name)
	}
	if w := strings.TrimSuffix(s.Wakeup, "?"); s.Wakeup != "-" && (w == "" || !allDigits(w)) {
		return fail(toks[5].pos, "invalid wakeup field %q for service %s; expected -, a number of seconds, or a number and ?", s.Wakeup, s.Name)
	}
	if s.MaxProc != "-" && !allDigits(s.MaxProc) {
		return fail(toks[6].pos, "invalid maxproc field %q for service %s; expected - or a number", s.MaxProc, s.Name)
	}
	if s.Type == "inet" {
		if _, _, err := SplitEndpoint(s.Name); err != nil {
			return fail(0, "service %s: %v", s.Name, err)
		}
	}
	var lines []int
	for _, t := range toks[8:] {
		a := t.text
		if strings.HasPrefix(a, "{") {
			var err error
			if a, err = extpar(a); err != nil {
				return fail(t.pos, "service %s: %v", s.Name, err)
			}
		}
		s.Args = append(s.Args, a)
		lines = append(lines, l.lineAt(t.pos))
	}
	opts, _, err := options(s.Args)
	if err != nil {
		return fail(0, "service %s: %v", s.Name, err)
	}
	for _, o := range opts {
		if o.letter != 'o' {
			continue
		}
		name, value, err := splitNameval(o.value)
		if err != nil {
			return fail(0, "service %s: invalid \"-o %s\" option value: %v; write -o name=value or -o { name = value }", s.Name, o.value, err)
		}
		s.Overrides = append(s.Overrides, Override{Name: name, Value: value, Line: lines[o.arg]})
	}
	return s, nil
}

// option is one daemon option; arg is the index in Args of the argument
// that holds its value.
type option struct {
	letter byte
	value  string
	arg    int
}

// valueOptions are the daemon options that take a value: the master
// skeletons' getopt string "cdDi:lm:n:o:r:s:St:uvVz" (single_server.c).
const valueOptions = "imnorst"

// options parses the leading options of args as Postfix's daemons do
// (GETOPT with "+": the first argument that is no option ends them, and
// "--" is skipped), and returns them and the operands.
func options(args []string) ([]option, []string, error) {
	var out []option
	i := 0
	for ; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			i++
			break
		}
		if len(a) < 2 || a[0] != '-' {
			break
		}
		for j := 1; j < len(a); j++ {
			c := a[j]
			if !strings.ContainsRune(valueOptions, rune(c)) {
				continue
			}
			switch {
			case j+1 < len(a):
				out = append(out, option{c, a[j+1:], i})
			case i+1 < len(args):
				i++
				out = append(out, option{c, args[i], i})
			default:
				return nil, nil, fmt.Errorf("option -%c requires a value", c)
			}
			break
		}
	}
	return out, args[i:], nil
}

// splitNameval is Postfix's split_nameval: "name = value", blanks around
// both trimmed, the name ending at a blank or '='.
func splitNameval(s string) (name, value string, err error) {
	s = strings.TrimLeft(s, spaces)
	end := strings.IndexAny(s, spaces+"=")
	if s == "" || s[0] == '=' {
		return "", "", errors.New("missing attribute name")
	}
	if end < 0 {
		return "", "", errors.New("missing '=' after attribute name")
	}
	name, rest := s[:end], strings.TrimLeft(s[end:], spaces)
	if !strings.HasPrefix(rest, "=") {
		return "", "", errors.New("missing '=' after attribute name")
	}
	return name, strings.Trim(rest[1:], spaces), nil
}

// spaces are ISSPACE's characters.
const spaces = " \t\n\v\f\r"

// blanks separate master.cf's fields (CHARS_SPACE).
const blanks = " \t\r\n"

type token struct {
	text string
	pos  int // byte offset in the logical line
}

// tokenize splits a logical line as mystrtokq(bufp, CHARS_SPACE, "{}")
// does: blanks separate tokens except inside braces, which nest; an
// unbalanced '{' keeps the rest of the line in its token.
func tokenize(s string) []token {
	var out []token
	i := 0
	for {
		for i < len(s) && strings.IndexByte(blanks, s[i]) >= 0 {
			i++
		}
		if i >= len(s) {
			return out
		}
		start, level := i, 0
		for ; i < len(s); i++ {
			c := s[i]
			if c == '{' {
				level++
			} else if level > 0 && c == '}' {
				level--
			} else if level == 0 && strings.IndexByte(blanks, c) >= 0 {
				break
			}
		}
		out = append(out, token{s[start:i], start})
	}
}

// extpar strips the braces from "{ text }" and the blanks inside them,
// with Postfix's errors for an unbalanced or trailing text (extpar.c).
func extpar(s string) (string, error) {
	level := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '{':
			level++
		case '}':
			level--
			if level == 0 {
				if i != len(s)-1 {
					return "", fmt.Errorf("syntax error after '}' in %q", s)
				}
				return strings.Trim(s[1:i], spaces), nil
			}
		}
	}
	return "", fmt.Errorf("missing '}' in %q", s)
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// logicalLine is one entry's text and where each of its physical lines
// begins in it, so that an "-o" on a continuation line is reported at
// its own line.
type logicalLine struct {
	num    int
	text   string
	starts []int // offset in text of each physical line after the first
	orphan bool
}

// lineAt is the physical line that holds byte pos of the logical line.
func (l logicalLine) lineAt(pos int) int {
	n := l.num
	for _, st := range l.starts {
		if pos < st {
			break
		}
		n++
	}
	return n
}

// logicalLines joins physical lines as Postfix's readllines() does (see
// package pfline): comments and blank lines are skipped and end nothing;
// a line starting with whitespace continues the entry, the newline
// between them dropped.
func logicalLines(text string) []logicalLine {
	var out []logicalLine
	var cur *logicalLine
	// curEnd is the last physical line accounted for in cur.starts.
	num, curEnd := 0, 0
	for len(text) > 0 {
		raw := text
		if i := strings.IndexByte(text, '\n'); i >= 0 {
			raw, text = text[:i], text[i+1:]
		} else {
			text = ""
		}
		num++
		raw = strings.TrimSuffix(raw, "\r")
		trimmed := strings.TrimLeft(raw, blanks+"\f\v")
		if trimmed == "" || trimmed[0] == '#' {
			continue
		}
		if len(trimmed) != len(raw) && cur != nil {
			// Each physical line gets an entry in starts, even
			// when comment lines came between.
			for curEnd++; curEnd < num; curEnd++ {
				cur.starts = append(cur.starts, len(cur.text))
			}
			cur.starts = append(cur.starts, len(cur.text))
			cur.text += raw
			continue
		}
		// A first line that starts with whitespace is an orphan:
		// Postfix warns and drops it with its continuations.
		out = append(out, logicalLine{num: num, text: trimmed, orphan: len(trimmed) != len(raw)})
		cur, curEnd = &out[len(out)-1], num
	}
	for i := range out {
		out[i].text = strings.TrimRight(out[i].text, blanks+"\f\v")
	}
	return out
}
