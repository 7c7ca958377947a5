package migrate

import (
	"bufio"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// Header says how an output was made, for its comment lines.
type Header struct {
	Command string    // the command line that made it
	Time    time.Time // when
	Sources []string  // where mailboxes were looked for
	// AliasMaps and AliasDatabase are main.cf's, for the advice that
	// goes with --postfix output (PostfixAdvice).
	AliasMaps, AliasDatabase string
}

// aliasesCopy is where the advice puts --postfix output.
const aliasesCopy = "hash:/etc/postfix/aliases_copy"

// PostfixAdvice says how to use --postfix output on the Postfix primary:
// its table first in alias_maps and alias_database, before the tables
// main.cf has there already (all kept: dropping one would drop its
// aliases and lists).
func PostfixAdvice(h Header) []string {
	join := func(v string) string {
		l := []string{aliasesCopy}
		for _, t := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
			if !strings.HasSuffix(t, "/aliases_copy") { // there already: first
				l = append(l, t)
			}
		}
		return strings.Join(l, ", ")
	}
	return []string{
		"mailtee migrate ... --postfix > /etc/postfix/aliases_copy",
		"postconf -e 'alias_maps = " + join(h.AliasMaps) + "' \\",
		"            'alias_database = " + join(h.AliasDatabase) + "'",
		"postalias /etc/postfix/aliases_copy && postfix reload",
		"(the first table of alias_maps wins, so merged entries replace those of the others;",
		"or append the entries to your alias file, delete the old entries of merged accounts, and run newaliases)",
	}
}

func writeHeader(w *bufio.Writer, h Header, what string, n int, use []string) {
	fmt.Fprintf(w, "# %s, made by mailtee migrate on %s\n", what, h.Time.UTC().Format(time.RFC3339))
	fmt.Fprintf(w, "#   %s\n", h.Command)
	fmt.Fprintf(w, "# %s from: %s\n", mailboxes(n), strings.Join(h.Sources, "; "))
	fmt.Fprintln(w, "# Aliases, lists and system accounts have no entry: mail to them reaches")
	fmt.Fprintln(w, "# the mailboxes listed here, which make the copies.")
	for _, u := range use {
		fmt.Fprintf(w, "# %s\n", u)
	}
}

// WriteTable writes the mailboxes as a mailbox_bcc_maps table in
// postmap(1) format: "user1@example.com   user1@relay.example.com", sorted.
func WriteTable(out io.Writer, h Header, mbs []Mailbox) error {
	w := bufio.NewWriter(out)
	writeHeader(w, h, "mailbox_bcc_maps table", len(mbs),
		[]string{"Use it with: mailbox_bcc_maps = hash:/etc/postfix/mailbox_bcc (no postmap needed for mailtee)"})
	width := 0
	for _, m := range mbs {
		width = max(width, len(m.Addr))
	}
	for _, m := range mbs {
		fmt.Fprintf(w, "%-*s   %s\n", width, m.Addr, m.Copy)
	}
	return w.Flush()
}

// WriteAliases writes aliases(5) entries for a Postfix primary's
// alias_maps: "user1: \user1, user1@relay.example.com". An account with
// an alias entry already keeps that entry's other targets. Virtual
// mailboxes have no alias (Build put them in Notes), and a local part
// is written once whatever its domains.
func WriteAliases(out io.Writer, h Header, mbs []Mailbox) error {
	w := bufio.NewWriter(out)
	var local []Mailbox
	done := map[string]bool{}
	for _, m := range mbs {
		if m.Virtual || done[m.User] {
			continue
		}
		done[m.User] = true
		local = append(local, m)
	}
	slices.SortFunc(local, func(a, b Mailbox) int { return strings.Compare(a.User, b.User) })
	use := []string{"Use it as the FIRST table of alias_maps, so that these entries win over the others':"}
	for _, l := range PostfixAdvice(h)[1:4] {
		use = append(use, "  "+l)
	}
	writeHeader(w, h, "aliases(5) entries for a Postfix primary", len(local), use)
	for _, m := range local {
		fmt.Fprintf(w, "%s: %s\n", aliasName(m.User), strings.Join(AliasTargets(m), ", "))
	}
	return w.Flush()
}

// AliasTargets are the alias entry's targets for m: the mailbox itself
// (\user: no further alias expansion), what an existing entry had, and
// the copy, each once.
func AliasTargets(m Mailbox) []string {
	out := []string{`\` + aliasName(m.User)}
	seen := map[string]bool{strings.ToLower(m.Copy): true}
	if m.Alias != nil {
		for _, t := range m.Alias.Other {
			if k := strings.ToLower(t); !seen[k] {
				seen[k] = true
				out = append(out, t)
			}
		}
	}
	return append(out, m.Copy)
}

// aliasName quotes a name that aliases(5) would otherwise split or
// misread.
func aliasName(s string) string {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`:,"#\@`, c) >= 0 {
			return `"` + strings.ReplaceAll(strings.ReplaceAll(s, `\`, `\\`), `"`, `\"`) + `"`
		}
	}
	return s
}

// Summary writes what was skipped and why, and the notes, for standard
// error: prog is the prefix of each line.
func Summary(w io.Writer, prog string, r *Result, postfix bool) {
	system := 0
	for _, s := range r.Skipped {
		if s.System {
			system++
			continue
		}
		fmt.Fprintf(w, "%s: no entry for %s: %s\n", prog, s.Name, s.Why)
	}
	if system > 0 {
		fmt.Fprintf(w, "%s: no entry for %d system accounts (uid below --min-uid, or nobody)\n", prog, system)
	}
	if postfix {
		for _, m := range r.Mailboxes {
			if m.Alias != nil && !m.Virtual {
				fmt.Fprintf(w, "%s: %s already has an alias in %s (%s): merged, its targets kept, the copy added\n",
					prog, m.User, m.Alias.Table, m.Alias.Key+": "+m.Alias.Value)
			}
		}
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "%s: %s\n", prog, n)
	}
	n := 0
	for _, m := range r.Mailboxes {
		if !postfix || !m.Virtual {
			n++
		}
	}
	fmt.Fprintf(w, "%s: %s written\n", prog, mailboxes(n))
}

func mailboxes(n int) string {
	if n == 1 {
		return "1 mailbox"
	}
	return fmt.Sprintf("%d mailboxes", n)
}
