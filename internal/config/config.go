// Package config reads Postfix's main.cf the way Postfix does.
//
// The file format (postconf(5)): "name = value" lines; a line that starts
// with whitespace continues the previous one; a line whose first non-blank
// character is '#' is a comment ('#' elsewhere is part of the value); the
// last definition of a name wins. Values may refer to other parameters with
// $name, ${name}, $(name) and the conditional forms handled in expand.go.
//
// Every Postfix 3.7 parameter is known with its default, plus mailtee's own
// few. What mailtee does with each is in support.go: a parameter that is
// set but not honoured is reported, never silently ignored.
package config

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mailtee/mailtee/internal/diag"
	"github.com/mailtee/mailtee/internal/pfline"
	"github.com/mailtee/mailtee/internal/pflist"
)

// Setting is one explicit "name = value" from main.cf.
type Setting struct {
	Name, Value string
	Line        int
}

// Config is a parsed main.cf over Postfix's defaults.
type Config struct {
	Dir  string // configuration directory
	File string // path of main.cf

	set      map[string]Setting
	machine  map[string]string
	userDefs map[string]bool // names not Postfix's but referenced as $name
	services []MasterService // master.cf's entries, see SetMasterNames

	netsMu sync.Mutex
	nets   map[netsKey]netsResult // computed mynetworks, see mynetworks.go
	Diags  diag.List              // syntax findings; Check adds the rest
}

// Load reads DIR/main.cf. A missing or unreadable file is an error; syntax
// problems are recorded in Diags so that all of them can be reported.
func Load(dir string) (*Config, error) {
	file := filepath.Join(dir, "main.cf")
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("cannot read configuration: %w", err)
	}
	return Parse(dir, file, data), nil
}

// Parse reads main.cf text. It never fails: bad lines become Diags.
func Parse(dir, file string, data []byte) *Config {
	c := &Config{
		Dir:      dir,
		File:     file,
		set:      make(map[string]Setting),
		machine:  machineDefaults(dir),
		userDefs: make(map[string]bool),
	}
	pfline.Each(file, string(data), &c.Diags, func(l pfline.Line) {
		name, value, ok := strings.Cut(l.Text, "=")
		name = strings.TrimSpace(name)
		if !ok {
			c.Diags.Errorf(file, l.Num, "missing '=' after attribute name: %q", l.Text)
			return
		}
		if name == "" || strings.ContainsAny(name, " \t") {
			c.Diags.Errorf(file, l.Num, "bad parameter name %q: expected \"name = value\"", name)
			return
		}
		value = strings.TrimSpace(value)
		if old, dup := c.set[name]; dup {
			c.Diags.Warnf(file, l.Num, "overriding earlier entry: %s=%s (line %d)", name, old.Value, old.Line)
		}
		c.set[name] = Setting{Name: name, Value: value, Line: l.Num}
	})
	// A name Postfix does not know is still legitimate when another value
	// refers to it as $name: postconf(5) calls these user-defined.
	for _, s := range c.set {
		if IsRaw(s.Name) {
			continue // $user in mailbox_command is local(8)'s, see rawParams
		}
		for _, ref := range References(s.Value) {
			if _, known := defaults[ref]; !known {
				c.userDefs[ref] = true
			}
		}
	}
	// So are the names of smtpd_restriction_classes (postconf_user.c).
	for _, n := range strings.FieldsFunc(c.set["smtpd_restriction_classes"].Value, isListSep) {
		c.userDefs[n] = true
	}
	return c
}

// Known reports whether name is a Postfix or mailtee parameter.
func Known(name string) bool {
	_, ok := defaults[name]
	return ok
}

// Set returns the explicit setting of name in main.cf, if any.
func (c *Config) Set(name string) (Setting, bool) {
	s, ok := c.set[name]
	return s, ok
}

// Settings returns the explicit settings in name order (postconf -n).
func (c *Config) Settings() []Setting {
	out := make([]Setting, 0, len(c.set))
	for _, s := range c.set {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Default returns the default raw value of a parameter (postconf -d).
func (c *Config) Default(name string) (string, bool) {
	if v, ok := c.machine[name]; ok {
		return v, true
	}
	if name == "mydomain" {
		// Postfix derives mydomain from myhostname as configured.
		return domainOf(c.getWithout("myhostname", name)), true
	}
	if name == "mynetworks" {
		// From the defaults of inet_interfaces and the others alone,
		// as postconf -d shows it; errors are Check's (see Mynetworks).
		v, _ := c.defaultNets()
		return v, true
	}
	v, ok := defaults[name]
	return v, ok
}

// getWithout expands the value of name, which a derived default depends
// on, with $self refused (expanding to nothing): "myhostname = $mydomain"
// with mydomain's default derived from myhostname must not recurse
// forever (found by FuzzParse).
func (c *Config) getWithout(name, self string) string {
	raw, _ := c.Raw(name)
	e := expander{lookup: func(n string) (string, bool) {
		if n == self {
			return "", false
		}
		return c.Raw(n)
	}}
	v, err := e.expand(raw, 0)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(v)
}

// Stressed returns the configuration as Postfix's smtpd(8) reads it in
// stress mode, when master(8) starts it with "-o stress=yes" because the
// service has reached its process limit: $stress is "yes", so that
// defaults such as smtpd_timeout = ${stress?{10}:{300}}s take their
// stress value, and so do main.cf settings written the same way.
func (c *Config) Stressed() *Config {
	st := &Config{Dir: c.Dir, File: c.File, machine: c.machine, userDefs: c.userDefs,
		services: c.services,
		set:      make(map[string]Setting, len(c.set)+1)}
	for k, v := range c.set {
		st.set[k] = v
	}
	st.set["stress"] = Setting{Name: "stress", Value: "yes"}
	return st
}

// Raw returns the unexpanded value: explicit, else default.
func (c *Config) Raw(name string) (string, bool) {
	if s, ok := c.set[name]; ok {
		return s.Value, true
	}
	if name == "mynetworks" {
		// Unlike other defaults, it depends on what main.cf sets
		// (inet_interfaces, ...); an error is reported by Check.
		v, _ := c.Mynetworks()
		return v, true
	}
	if _, set := c.set["queue_directory"]; set && name == "postfix_queue_directory" {
		// What `postconf -h queue_directory` says for this main.cf:
		// where Postfix, and so Dovecot, puts private/.
		return "$queue_directory", true
	}
	return c.Default(name)
}

// Names returns every parameter name that has a value: known ones and
// those set in main.cf, sorted (postconf with no arguments).
func (c *Config) Names() []string {
	seen := make(map[string]bool, len(defaults)+len(c.set))
	out := make([]string, 0, len(defaults)+len(c.set))
	for n := range defaults {
		seen[n] = true
		out = append(out, n)
	}
	for n := range c.set {
		if !seen[n] {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// Expand expands $name references in s against this configuration.
func (c *Config) Expand(s string) (string, error) {
	e := expander{lookup: c.Raw}
	v, err := e.expand(s, 0)
	return strings.TrimSpace(v), err
}

// Get returns the expanded value of name. An expansion error yields the
// empty string here; Check reports it with the line.
func (c *Config) Get(name string) string {
	raw, _ := c.Raw(name)
	if IsRaw(name) {
		return strings.TrimSpace(raw)
	}
	v, err := c.Expand(raw)
	if err != nil {
		return ""
	}
	if name == "myorigin" && strings.HasPrefix(v, "/") {
		// Debian's Postfix reads myorigin from a file such as
		// /etc/mailname, and Debian's installer writes it that way.
		if data, err := os.ReadFile(v); err == nil {
			if f := strings.Fields(string(data)); len(f) > 0 {
				return f[0]
			}
		}
	}
	return v
}

// List returns the expanded value of name split as a Postfix list.
func (c *Config) List(name string) []string {
	return SplitList(c.Get(name))
}

// Bool returns a yes/no parameter.
func (c *Config) Bool(name string) (bool, error) {
	switch v := strings.ToLower(c.Get(name)); v {
	case "yes", "true", "on", "1":
		return true, nil
	case "no", "false", "off", "0":
		return false, nil
	default:
		return false, fmt.Errorf("%s = %s: expected yes or no", name, v)
	}
}

// Int returns an integer parameter.
func (c *Config) Int(name string) (int64, error) {
	v := c.Get(name)
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s = %s: expected a number", name, v)
	}
	return n, nil
}

// Duration returns a time parameter. Postfix time values are a number
// with an optional unit (s, m, h, d, w); without a unit, the unit of the
// parameter's default applies (postconf(5)).
func (c *Config) Duration(name string) (time.Duration, error) {
	v := c.Get(name)
	unit := byte('s')
	if d, ok := c.Default(name); ok && d != "" {
		if u := d[len(d)-1]; u < '0' || u > '9' {
			unit = u
		}
	}
	d, err := ParseDuration(v, unit)
	if err != nil {
		return 0, fmt.Errorf("%s = %s: %w", name, v, err)
	}
	return d, nil
}

// ParseDuration parses a Postfix time value; unit applies when v has none.
func ParseDuration(v string, unit byte) (time.Duration, error) { return pflist.ParseTime(v, unit) }

// SplitList splits a Postfix list: elements are separated by commas
// and/or whitespace, and an element in braces {...} (such as
// inline:{ a=b, c=d }) keeps its commas and spaces.
func SplitList(s string) []string { return pflist.Split(s) }

// References returns the parameter names that s refers to with $name,
// ${name...} or $(name).
func References(s string) []string {
	var out []string
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 >= len(s) {
			continue
		}
		j := i + 1
		switch s[j] {
		case '$':
			i++
			continue
		case '{', '(':
			j++
			j += blanks(s[j:]) // "$( name)" is a reference too (mac_expand.c)
		}
		k := j
		for k < len(s) && isNameByte(s[k]) {
			k++
		}
		if k > j {
			out = append(out, s[j:k])
		}
	}
	return out
}

// origin returns the parameter that names list element el of name's
// value, and the line of main.cf that sets it (0 for a default): name
// itself when an element of its value produces el, else the parameter
// that an element such as "$virtual_alias_maps" refers to, followed as
// far as it goes. A finding about a table then points to the line the
// administrator wrote, not to virtual_alias_domains, whose default
// $virtual_alias_maps the file never sets.
func (c *Config) origin(name, el string) (string, int) {
	p := name
	for range maxDepth {
		raw, _ := c.Raw(p)
		next := ""
		for _, e := range SplitList(raw) {
			if v, err := c.Expand(e); err == nil && slices.Contains(SplitList(v), el) {
				next = soleReference(e) // "" when written here
				break
			}
		}
		if next == "" || next == p {
			break
		}
		p = next
	}
	return p, c.set[p].Line
}

// soleReference returns x when s is just "$x", "${x}" or "$(x)".
func soleReference(s string) string {
	if len(s) < 2 || s[0] != '$' {
		return ""
	}
	in := s[1:]
	if in[0] == '{' && in[len(in)-1] == '}' || in[0] == '(' && in[len(in)-1] == ')' {
		in = in[1 : len(in)-1]
	}
	for i := 0; i < len(in); i++ {
		if !isNameByte(in[i]) {
			return ""
		}
	}
	return in
}
