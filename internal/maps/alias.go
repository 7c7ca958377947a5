package maps

import (
	"strings"

	"github.com/mailtee/mailtee/internal/diag"
	"github.com/mailtee/mailtee/internal/pfline"
)

// parseAlias reads an aliases(5) file: "name: value, value, ..." per
// logical line (continuation lines start with whitespace). The name may be
// a "quoted string". Values are stored as postalias stores them: the
// elements separated by commas outside quotes, trimmed, joined by ", ".
//
// Deviations from Postfix, as DESIGN.md requires, each with a warning:
//   - a line "name value" without the colon is accepted (postalias skips
//     it: "need name:value pair");
//   - a name may be a full address, user@domain (postalias skips it: "name
//     must be local"; local(8) looks aliases up by local part only).
//
// Commands, files and :include: are kept as values; local delivery
// decides whether they are allowed (allow_mail_to_commands, ...).
func parseAlias(file string, data []byte) (*fixedTable, diag.List) {
	var diags diag.List
	t := newFixed(data)
	pfline.Each(file, asString(data), &diags, func(l pfline.Line) {
		name, value, ok := cutAliasName(l.Text)
		if !ok {
			k, v := splitKeyValue(l.Text)
			if v == "" {
				diags.Warnf(file, l.Num, "need name:value pair; line ignored")
				return
			}
			diags.Warnf(file, l.Num, "no ':' after the name %q; mailtee reads this as an alias, but Postfix's postalias skips the line (\"need name:value pair\")", k)
			name, value = k, v
		}
		name = strings.TrimSpace(name)
		if unq, ok := Unquote(name); ok {
			name = unq
		}
		value = normalizeAliasValue(value)
		if name == "" || value == "" {
			diags.Warnf(file, l.Num, "need name:value pair; line ignored")
			return
		}
		if strings.Contains(name, "@") {
			diags.Warnf(file, l.Num, "alias name %q is a full address; mailtee matches it against the whole recipient address, but Postfix's postalias skips it (\"name must be local\")", name)
		}
		name = foldKey(name)
		if !t.add(name, value) {
			diags.Warnf(file, l.Num, "duplicate entry: %q; the first one is used", name)
		}
	})
	return t, diags
}

// cutAliasName splits at the first ':' outside quotes.
func cutAliasName(s string) (name, value string, ok bool) {
	inQ := false
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			inQ = !inQ
		case ':':
			if !inQ {
				// ":include:" as the name is not a name.
				if i == 0 {
					return "", "", false
				}
				return s[:i], s[i+1:], true
			}
		case ' ', '\t':
			if !inQ {
				// "name value" with a colon later in the value.
				rest := strings.TrimLeft(s[i:], " \t")
				if !strings.HasPrefix(rest, ":") {
					return "", "", false
				}
				return s[:i], rest[1:], true
			}
		}
	}
	return "", "", false
}

// normalizeAliasValue trims each element and drops a leading backslash
// (\user, "do not expand further"), then joins with ", " as postalias does.
func normalizeAliasValue(v string) string {
	parts := SplitAliasValue(v)
	for i, p := range parts {
		parts[i] = strings.TrimPrefix(p, "\\")
	}
	return strings.Join(parts, ", ")
}

// Unquote removes the double quotes around an alias name or destination
// ("a b", "|command with blanks") and their backslash escapes; ok is
// false, and s returned as it is, when s is not quoted.
func Unquote(s string) (string, bool) {
	if len(s) < 2 || s[0] != '"' || s[len(s)-1] != '"' {
		return s, false
	}
	var b strings.Builder
	for i := 1; i < len(s)-1; i++ {
		if s[i] == '\\' && i+1 < len(s)-1 {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String(), true
}

// SplitAliasValue splits an alias value at commas outside quotes and
// trims each element.
func SplitAliasValue(v string) []string {
	v = strings.TrimSpace(v)
	if v == "" {
		return nil
	}
	var parts []string
	inQ, start := false, 0
	for i := 0; i < len(v); i++ {
		switch v[i] {
		case '\\':
			i++
		case '"':
			inQ = !inQ
		case ',':
			if !inQ {
				parts = append(parts, strings.TrimSpace(v[start:i]))
				start = i + 1
			}
		}
	}
	return append(parts, strings.TrimSpace(v[start:]))
}
