// Package migrate builds the copy map of a mail migration from the real
// mailboxes of a server (`mailtee migrate`): one entry per mailbox that
// receives mail here, never one for an alias or a list, whose members get
// theirs.
//
// A mailbox is, as Postfix's local(8) and virtual(8) see it:
//
//   - a login account from the name service switch (getent passwd), when
//     local_recipient_maps is empty or names unix:passwd.byname (its
//     default, "proxy:unix:passwd.byname $alias_maps"), keyed
//     user@DOMAIN where DOMAIN is a local (mydestination) domain;
//   - a key of another table named by local_recipient_maps (not an alias
//     file: those keys are aliases), when the table can be listed;
//   - a key of virtual_mailbox_maps, when the table can be listed;
//
// minus system accounts (a uid below MinUID, nobody, a shell that refuses
// a login: nologin, false, or a shell not in /etc/shells) and accounts
// aliased away: an alias_maps entry, or a virtual_alias_maps one, whose
// targets do not include the account itself. local(8) delivers an alias
// that names itself ("user1: \user1, other" or "user1: user1, other") to
// the mailbox: src/local/alias.c, "when an alias includes its own name,
// deliver to the user instead".
//
// The result is written as a mailbox_bcc_maps table (WriteTable) or, for
// a Postfix primary, as aliases(5) entries (WriteAliases): Postfix's
// recipient_bcc_maps sees only the original recipients and allows one
// result, so list members would get no copy; an alias entry
// "user1: \user1, user1@relay.example" copies every message that reaches
// the mailbox, through a list or not.
package migrate

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/mailtee/mailtee/internal/address"
	"github.com/mailtee/mailtee/internal/maps"
	"github.com/mailtee/mailtee/internal/users"
)

// Table is a lookup table and the name main.cf gives it.
type Table struct {
	Spec  string
	Table maps.Table
}

// Options say where mailboxes are and what their copies are.
type Options struct {
	CopyTo Pattern
	// Postfix: the primary is Postfix (WriteAliases). Alias keys are
	// then local parts only, as postalias(1) has them.
	Postfix bool
	// MinUID is the lowest uid of a person's account (--min-uid).
	MinUID uint32
	// Domain is the local domain of the accounts' keys: mail to a bare
	// local name, or through an alias to one, is addressed there
	// ($myorigin), and it is the address users have.
	Domain string
	// IsLocal says whether a domain is delivered here by local(8)
	// (mydestination).
	IsLocal func(domain string) bool
	// Passwd: login accounts are local recipients (local_recipient_maps
	// is empty or names unix:passwd.byname).
	Passwd bool
	// Recipients are the other tables of local_recipient_maps, those
	// that are not alias files.
	Recipients []Table
	// Aliases is alias_maps, in order; VirtualAliases virtual_alias_maps.
	Aliases        []Table
	VirtualAliases []Table
	// VirtualMailboxes is virtual_mailbox_maps.
	VirtualMailboxes []Table
	Delimiter        string // recipient_delimiter
	// CopyTransport is copy_transport: without it a copy to a local
	// address would be delivered here.
	CopyTransport string

	// Accounts lists the name service's accounts (NSSAccounts).
	Accounts func(context.Context) ([]users.User, error)
	// Shells is the set of login shells (LoginShells).
	Shells map[string]bool
}

// Mailbox is one entry of the copy map.
type Mailbox struct {
	Addr string // the key: user@domain, lower case
	User string // the local part (the login name for an account)
	Copy string // where its copy goes
	From string // where it was found: "passwd" or a table's name
	// Virtual: from virtual_mailbox_maps (Postfix's alias_maps cannot
	// copy these; see Result.Notes).
	Virtual bool
	// Alias is the alias_maps entry the account already has (one that
	// delivers to the mailbox too); WriteAliases keeps its targets.
	Alias *Alias
}

// Alias is an existing alias entry.
type Alias struct {
	Table string   // its table, as main.cf names it
	Key   string   // the key that matched
	Value string   // its value, as the table has it
	Other []string // its targets but the mailbox itself
}

// Skipped is an account or key that gets no entry, and why.
type Skipped struct {
	Name, Why string
	System    bool // a system account (uid, nobody): counted, not listed
}

// Result is what Build found.
type Result struct {
	Mailboxes []Mailbox // sorted by Addr
	Skipped   []Skipped
	// Notes are what the administrator should know: tables that cannot
	// be listed, virtual mailboxes a Postfix alias cannot copy.
	Notes []string
}

// Build finds the mailboxes and their copies.
func Build(ctx context.Context, o Options) (*Result, error) {
	r := &Result{}
	b := builder{o: o, r: r, seen: map[string]bool{}}
	if o.IsLocal == nil {
		b.o.IsLocal = func(string) bool { return false }
	}
	accounts, err := o.Accounts(ctx)
	if err != nil {
		return nil, err
	}
	byName := make(map[string]users.User, len(accounts))
	for _, u := range accounts {
		byName[u.Name] = u
	}
	if o.Passwd {
		if !b.o.IsLocal(o.Domain) {
			return nil, &ConfigError{fmt.Errorf("the accounts' domain %q is not a local domain (mydestination); give --domain one of mydestination's domains", o.Domain)}
		}
		for _, u := range accounts {
			if why, system := b.notPerson(u); why != "" {
				r.Skipped = append(r.Skipped, Skipped{Name: u.Name, Why: why, System: system})
				continue
			}
			if err := b.local(ctx, u.Name, o.Domain, "passwd"); err != nil {
				return nil, err
			}
		}
	}
	for _, t := range o.Recipients {
		l, ok := t.Table.(maps.Lister)
		if !ok {
			r.Notes = append(r.Notes, fmt.Sprintf("local_recipient_maps: %s cannot be listed; its mailboxes are not in the output (add them by hand)", t.Spec))
			continue
		}
		for _, e := range l.Entries() {
			user, domain, ok := strings.Cut(e.Key, "@")
			switch {
			case !ok:
				domain = o.Domain
			case user == "":
				r.Skipped = append(r.Skipped, Skipped{Name: e.Key, Why: "a whole domain (" + t.Spec + "), not a mailbox"})
				continue
			case !b.o.IsLocal(domain):
				r.Skipped = append(r.Skipped, Skipped{Name: e.Key, Why: "not in a local domain (" + t.Spec + ")"})
				continue
			}
			if u, isAccount := byName[user]; isAccount {
				if why, system := b.notPerson(u); why != "" {
					r.Skipped = append(r.Skipped, Skipped{Name: e.Key, Why: why, System: system})
					continue
				}
			}
			if err := b.local(ctx, user, domain, t.Spec); err != nil {
				return nil, err
			}
		}
	}
	for _, t := range o.VirtualMailboxes {
		l, ok := t.Table.(maps.Lister)
		if !ok {
			r.Notes = append(r.Notes, fmt.Sprintf("virtual_mailbox_maps: %s cannot be listed; its mailboxes are not in the output (add them by hand)", t.Spec))
			continue
		}
		for _, e := range l.Entries() {
			if err := b.virtual(ctx, e.Key, t.Spec); err != nil {
				return nil, err
			}
		}
	}
	slices.SortFunc(r.Mailboxes, func(a, b Mailbox) int { return strings.Compare(a.Addr, b.Addr) })
	return r, nil
}

type builder struct {
	o    Options
	r    *Result
	seen map[string]bool // keys already in Mailboxes
	// localCopyNoted: the note on copies to local addresses is given once.
	localCopyNoted bool
}

// notPerson says why an account is no person's mailbox, or "".
func (b *builder) notPerson(u users.User) (why string, system bool) {
	shell := u.Shell
	if shell == "" {
		shell = "/bin/sh" // login(1)'s default
	}
	switch {
	case u.UID == Nobody:
		return "nobody (uid 65534)", true
	case u.UID < b.o.MinUID:
		return fmt.Sprintf("system account (uid %d < %d)", u.UID, b.o.MinUID), true
	case noLogin[shell]:
		return "no login shell (" + shell + ")", false
	case !b.o.Shells[shell]:
		return "shell " + shell + " is not in /etc/shells", false
	case strings.HasPrefix(u.Name, "#") || strings.ContainsFunc(u.Name, func(r rune) bool { return r <= ' ' || r == 0x7f || r == '@' }):
		// A table line is "key value": a blank splits the name, a '#'
		// first makes the line a comment, and the copy address
		// would need quoting that --copy-to's %u does not do.
		return fmt.Sprintf("the name %q cannot be written as a table key (blank, control character, '@', or '#' first): add its entry by hand", u.Name), false
	case u.Name != strings.ToLower(u.Name):
		// local(8) folds the recipient to lower case before getpwnam().
		return "upper case in the name: local(8) looks up the lower-case name and never finds this account", false
	}
	return "", false
}

// local adds user@domain, a local mailbox, unless it is aliased away.
func (b *builder) local(ctx context.Context, user, domain, from string) error {
	addr := strings.ToLower(user + "@" + domain)
	if b.seen[addr] {
		return nil
	}
	al, away, err := b.alias(ctx, user, addr)
	if err != nil {
		return err
	}
	if away != "" {
		b.r.Skipped = append(b.r.Skipped, Skipped{Name: user, Why: away})
		return nil
	}
	if away, err := b.virtualAway(ctx, addr); err != nil || away != "" {
		if away != "" {
			b.r.Skipped = append(b.r.Skipped, Skipped{Name: addr, Why: away})
		}
		return err
	}
	return b.add(Mailbox{Addr: addr, User: strings.ToLower(user), From: from, Alias: al})
}

// virtual adds a virtual_mailbox_maps key.
func (b *builder) virtual(ctx context.Context, key, from string) error {
	user, domain, ok := strings.Cut(key, "@")
	if !ok || user == "" || domain == "" {
		b.r.Skipped = append(b.r.Skipped, Skipped{Name: key, Why: "not a full address (" + from + "): virtual(8) mailboxes are user@domain"})
		return nil
	}
	if b.seen[key] {
		return nil
	}
	if away, err := b.virtualAway(ctx, key); err != nil || away != "" {
		if away != "" {
			b.r.Skipped = append(b.r.Skipped, Skipped{Name: key, Why: away})
		}
		return err
	}
	if b.o.Postfix {
		b.r.Notes = append(b.r.Notes, fmt.Sprintf("%s (%s) is a virtual mailbox: alias_maps cannot copy it; add to virtual_alias_maps: %s   %s, %s",
			key, from, key, key, b.o.CopyTo.Expand(user, domain)))
	}
	return b.add(Mailbox{Addr: key, User: user, From: from, Virtual: true})
}

func (b *builder) add(m Mailbox) error {
	user, domain, _ := strings.Cut(m.Addr, "@")
	m.Copy = b.o.CopyTo.Expand(user, domain)
	_, cd := address.Split(m.Copy)
	if strings.EqualFold(m.Copy, m.Addr) && b.o.Postfix {
		return &ConfigError{fmt.Errorf("the copy of %s would be %s, the mailbox itself: with --postfix the copy must go to another domain", m.Addr, m.Copy)}
	}
	if b.o.IsLocal(strings.ToLower(cd)) {
		if b.o.Postfix {
			return &ConfigError{fmt.Errorf("the copy of %s, %s, is in a local domain (mydestination): Postfix would deliver it here, not to the new provider; give --copy-to an address at the relay or the provider", m.Addr, m.Copy)}
		}
		if b.o.CopyTransport == "" && !b.localCopyNoted {
			b.localCopyNoted = true
			b.r.Notes = append(b.r.Notes, fmt.Sprintf("copies such as %s are in a local domain: set copy_transport (for example smtp:[aspmx.l.google.com]) so that they leave this host", m.Copy))
		}
	}
	b.seen[m.Addr] = true
	b.r.Mailboxes = append(b.r.Mailboxes, m)
	return nil
}

// alias looks user up in alias_maps as local(8) does (mailtee also takes
// a full address as a key; Postfix does not). An entry that names the
// user itself keeps the mailbox and is returned; one that does not
// aliases the account away, and away says where to.
func (b *builder) alias(ctx context.Context, user, addr string) (al *Alias, away string, err error) {
	keys := []string{addr, strings.ToLower(user)}
	if b.o.Postfix {
		keys = keys[1:]
	}
	for _, k := range keys {
		for _, t := range b.o.Aliases {
			v, ok, err := t.Table.Lookup(ctx, k)
			if err != nil {
				return nil, "", fmt.Errorf("alias_maps %s: lookup of %s: %w", t.Spec, k, err)
			}
			if !ok {
				continue
			}
			targets := maps.SplitAliasValue(v)
			self := false
			var other []string
			for _, tg := range targets {
				if b.isSelf(tg, user) {
					self = true
				} else {
					other = append(other, tg)
				}
			}
			if !self {
				return nil, fmt.Sprintf("aliased away in alias_maps %s: %s: %s", t.Spec, k, v), nil
			}
			return &Alias{Table: t.Spec, Key: k, Value: v, Other: other}, "", nil
		}
	}
	return nil, "", nil
}

// isSelf says whether an alias target is the user's own mailbox: user,
// \user, or user@ a local domain.
func (b *builder) isSelf(target, user string) bool {
	t := strings.ToLower(strings.TrimPrefix(target, `\`))
	if uq, ok := maps.Unquote(t); ok {
		t = uq
	}
	user = strings.ToLower(user)
	if t == user {
		return true
	}
	l, d, ok := strings.Cut(t, "@")
	return ok && l == user && b.o.IsLocal(d)
}

// virtualAway says where virtual_alias_maps sends addr, when it sends it
// elsewhere than to itself (virtual(5): an address that expands to itself
// is kept).
func (b *builder) virtualAway(ctx context.Context, addr string) (string, error) {
	for _, t := range b.o.VirtualAliases {
		m, ok, err := maps.LookupAddress(ctx, t.Table, addr, maps.AddressOptions{Delimiters: b.o.Delimiter, IsLocal: b.o.IsLocal})
		if err != nil {
			return "", fmt.Errorf("virtual_alias_maps %s: lookup of %s: %w", t.Spec, addr, err)
		}
		if !ok {
			continue
		}
		for _, v := range strings.FieldsFunc(m.Value, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
			if strings.EqualFold(v, addr) {
				return "", nil
			}
		}
		return fmt.Sprintf("aliased away in virtual_alias_maps %s: %s %s", t.Spec, m.Key, m.Value), nil
	}
	return "", nil
}
