package sqltable

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/mailtee/mailtee/internal/diag"
	"github.com/mailtee/mailtee/internal/pfline"
)

// param is one "name = value" of a .cf file and the line it is on.
type param struct {
	value string
	line  int
}

// cfFile is a .cf file as cfg_parser(3) reads it: dict_load_fp() over
// readllines() (comments, blank lines, continuation lines that start with
// whitespace) and split_nameval() ("name = value", blanks around both
// trimmed). A later entry overrides an earlier one, with a warning.
type cfFile struct {
	file   string
	params map[string]param
}

// parseCF reads a .cf file. A line without "name =" is an error, as
// dict_load_fp() makes it fatal; the rest of the file is still read so
// that check reports everything at once.
func parseCF(file string, data []byte, diags *diag.List) *cfFile {
	cf := &cfFile{file: file, params: map[string]param{}}
	pfline.Scan(string(data), func(l pfline.Line) {
		if l.Orphan {
			diags.Warnf(file, l.Num, "logical line must not start with whitespace: ignored")
			return
		}
		name, value, err := splitNameval(l.Text)
		if err != "" {
			text := fmt.Sprintf("%q", l.Text)
			if strings.Contains(strings.ToLower(l.Text), "password") {
				text = "(the line is not shown: it may hold a password)"
			}
			diags.Errorf(file, l.Num, "%s: %s: write \"name = value\"", err, text)
			return
		}
		if old, ok := cf.params[name]; ok && old.value != value {
			shown := old.value
			if name == "password" || strings.Contains(strings.ToLower(old.value), "password") {
				shown = "(not shown)" // the mail log and check's output are no place for it
			}
			diags.Warnf(file, l.Num, "overriding earlier entry on line %d: %s=%s", old.line, name, shown)
		}
		cf.params[name] = param{value, l.Num}
	})
	return cf
}

// splitNameval is split_nameval(3).
func splitNameval(s string) (name, value, err string) {
	s = strings.TrimLeft(s, blanks)
	if s == "" || s[0] == '=' {
		return "", "", "missing attribute name"
	}
	end := strings.IndexAny(s, blanks+"=")
	if end < 0 {
		return "", "", "missing '=' after attribute name"
	}
	name = s[:end]
	rest := strings.TrimLeft(s[end:], blanks)
	if rest == "" || rest[0] != '=' {
		return "", "", "missing '=' after attribute name"
	}
	return name, strings.Trim(rest[1:], blanks), ""
}

// blanks are the characters ISSPACE() skips.
const blanks = " \t\r\n\f\v"

// str is cfg_get_str(): the value or def, and an error naming the line
// when it is shorter than min (Postfix: "bad string length").
func (cf *cfFile) str(name, def string, min int, diags *diag.List) string {
	p, ok := cf.params[name]
	if !ok {
		p.value = def
	}
	if len(p.value) < min {
		diags.Errorf(cf.file, p.line, "%s must not be empty", name)
	}
	return p.value
}

// has reports whether name is set to a non-empty value (cfg_get_str
// with a null default).
func (cf *cfFile) has(name string) bool { return cf.params[name].value != "" }

// num is cfg_get_int().
func (cf *cfFile) num(name string, def, min int, diags *diag.List) int {
	p, ok := cf.params[name]
	if !ok {
		return def
	}
	n, err := strconv.ParseInt(p.value, 10, 32)
	if err != nil {
		diags.Errorf(cf.file, p.line, "bad numerical configuration: %s = %s: write a whole number", name, p.value)
		return def
	}
	if min != 0 && int(n) < min {
		diags.Errorf(cf.file, p.line, "invalid %s parameter value %d < %d", name, n, min)
		return def
	}
	return int(n)
}

// boolean is cfg_get_bool(): yes or no, any case.
func (cf *cfFile) boolean(name string, def bool, diags *diag.List) bool {
	p, ok := cf.params[name]
	if !ok {
		return def
	}
	switch strings.ToLower(p.value) {
	case "yes":
		return true
	case "no":
		return false
	}
	diags.Errorf(cf.file, p.line, "bad boolean configuration: %s = %s: write yes or no", name, p.value)
	return def
}

// known lists the parameters each type reads (pgsql_table(5),
// mysql_table(5), sqlite_table(5)).
var known = map[string][]string{
	"pgsql": {"hosts", "user", "password", "dbname", "encoding", "query", "result_format", "domain",
		"expansion_limit", "retry_interval", "idle_interval", "select_function",
		"table", "select_field", "where_field", "additional_conditions"},
	"mysql": {"hosts", "user", "password", "dbname", "charset", "query", "result_format", "domain",
		"expansion_limit", "retry_interval", "idle_interval", "option_file", "option_group",
		"tls_cert_file", "tls_key_file", "tls_CAfile", "tls_CApath", "tls_ciphers", "tls_verify_cert",
		"require_result_set", "table", "select_field", "where_field", "additional_conditions"},
	"sqlite": {"dbpath", "query", "result_format", "domain", "expansion_limit",
		"table", "select_field", "where_field", "additional_conditions"},
}

// checkNames warns about parameters the type does not read: Postfix
// ignores them silently, so a misspelt "qeury" would otherwise go
// unnoticed until the table answers nothing.
func (cf *cfFile) checkNames(typ string, diags *diag.List) {
	names := known[typ]
	var set []string
	for name := range cf.params {
		set = append(set, name)
	}
	// In file order, for a stable report.
	sort.Slice(set, func(i, j int) bool { return cf.params[set[i]].line < cf.params[set[j]].line })
	for _, name := range set {
		p := cf.params[name]
		found := false
		for _, k := range names {
			if k == name {
				found = true
				break
			}
		}
		if found {
			continue
		}
		hint := ""
		for _, k := range names {
			if strings.EqualFold(k, name) || editDistance1(k, name) {
				hint = fmt.Sprintf(" (did you mean %s?)", k)
				break
			}
		}
		diags.Warnf(cf.file, p.line, "unknown %s_table(5) parameter %q is ignored%s", typ, name, hint)
	}
}

// editDistance1 reports whether a and b differ by one insertion,
// deletion, substitution or swap of neighbours: the usual typos.
func editDistance1(a, b string) bool {
	if len(a) < len(b) {
		a, b = b, a
	}
	switch len(a) - len(b) {
	case 0:
		i := 0
		for i < len(a) && a[i] == b[i] {
			i++
		}
		if i == len(a) {
			return false
		}
		if a[i+1:] == b[i+1:] {
			return true
		}
		return i+1 < len(a) && a[i] == b[i+1] && a[i+1] == b[i] && a[i+2:] == b[i+2:]
	case 1:
		i := 0
		for i < len(b) && a[i] == b[i] {
			i++
		}
		return a[i+1:] == b[i:]
	}
	return false
}
