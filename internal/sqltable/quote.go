package sqltable

import "strings"

// The key goes into the query as text, escaped the way each Postfix
// driver escapes it, so that a query written for Postfix (with its own
// quotes around %s) means the same here.

// quotePgsql is PQescapeStringConn(): a single quote is doubled, and a
// backslash too when the server's standard_conforming_strings is off
// (only then is it an escape character inside '...').
func quotePgsql(s string, standard bool) string {
	if standard {
		return strings.ReplaceAll(s, "'", "''")
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\'' || s[i] == '\\' {
			b.WriteByte(s[i])
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// mysqlEscaped are the characters quoteMysql escapes with a backslash
// when the server reads one: only these make the two modes' escaping
// differ.
const mysqlEscaped = "\x00\n\r\\\"\x1a"

// quoteMysql is mysql_real_escape_string(): a backslash before NUL,
// newline, carriage return, backslash, double quote and Ctrl-Z; with the
// server's NO_BACKSLASH_ESCAPES mode, none of those. The single quote is
// doubled in both modes (MySQL reads two as one in either), so that a key
// without the characters above is quoted the same whatever the mode.
func quoteMysql(s string, noBackslash bool) string {
	if noBackslash {
		return strings.ReplaceAll(s, "'", "''")
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case 0:
			b.WriteString(`\0`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\'':
			b.WriteString("''")
		case '\\', '"':
			b.WriteByte('\\')
			b.WriteByte(c)
		case 0x1a:
			b.WriteString(`\Z`)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// quoteSqlite is sqlite3_mprintf("%q"): a single quote is doubled.
func quoteSqlite(s string) string { return strings.ReplaceAll(s, "'", "''") }
