package local

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/mailtee/mailtee/internal/address"
	"github.com/mailtee/mailtee/internal/asuser"
	"github.com/mailtee/mailtee/internal/command"
	"github.com/mailtee/mailtee/internal/config"
	"github.com/mailtee/mailtee/internal/deliver"
	"github.com/mailtee/mailtee/internal/maps"
)

// Expansion says where a destination was found, for
// allow_mail_to_commands and allow_mail_to_files.
type Expansion uint8

const (
	FromAlias   Expansion = 1 << iota // an alias_maps entry
	FromForward                       // a .forward file
	FromInclude                       // an :include: file
)

// ParseExpansion reads the words of allow_mail_to_commands or
// allow_mail_to_files.
func ParseExpansion(words []string) (Expansion, error) {
	var e Expansion
	for _, w := range words {
		switch strings.ToLower(w) {
		case "alias":
			e |= FromAlias
		case "forward":
			e |= FromForward
		case "include":
			e |= FromInclude
		default:
			return 0, fmt.Errorf("%q is not one of alias, forward, include", w)
		}
	}
	return e, nil
}

func (e Expansion) String() string {
	switch e {
	case FromAlias:
		return "alias"
	case FromForward:
		return "forward"
	case FromInclude:
		return "include"
	}
	return "recipient"
}

// kind is what a target is.
type kind uint8

const (
	toMailbox kind = iota
	toRemote
	toCommand
	toFile
)

// target is one result of expansion.
type target struct {
	kind   kind
	addr   string // the address delivered to, or for which a command or file was named
	user   string // its login name: local part, folded, without extension
	local  string // its local part, folded, with extension
	ext    string // its extension, without the delimiter
	domain string
	owner  string    // owner-NAME address that takes errors of forwards, or ""
	what   string    // command text, or file path
	priv   User      // command, file: whose rights (UID 0: root's, so default_privs)
	from   Expansion // command, file: where it was named
}

// key tells deliveries apart, as local(8)'s duplicate filter does.
func (t target) key() string {
	switch t.kind {
	case toCommand:
		return fmt.Sprintf("command %s:%d %s", t.user, t.priv.UID, t.what)
	case toFile:
		return "file " + t.what
	}
	return "mailbox " + t.user
}

func (t target) String() string {
	switch t.kind {
	case toCommand:
		return "command: " + t.what
	case toFile:
		return "file: " + t.what
	}
	return "mailbox of " + t.addr
}

// scope is what an expansion passes down, local(8)'s USER_ATTR and the
// parts of MSG_ATTR that change with it.
type scope struct {
	priv  User      // rights for commands and files; UID 0: root's
	from  Expansion // where the addresses being read come from; 0 at the top
	owner string    // owner- address for errors of forwards
	// self is the alias, user or list being expanded: an address in its
	// own expansion that names it goes to its mailbox, as local(8)'s
	// exp_from does ("user: \user, user@elsewhere").
	self  string
	depth int
}

// expansion resolves one recipient.
type expansion struct {
	l     *Local
	ctx   context.Context
	rcpt  Rcpt
	loops map[string]bool // Delivered-To: addresses
	seen  map[string]bool
	out   []target
	// failed are destinations that failed for good (a command not
	// allowed, an :include: file that cannot be read): reported, while
	// the others are delivered.
	failed []error
}

// walk expands addr; a leading backslash (\user) delivers to the mailbox
// without alias or .forward expansion.
func (x *expansion) walk(addr string, s scope) error {
	l := x.l
	if s.depth > maxDepth {
		return permErr("5.4.6", "alias expansion too deep for %s", x.rcpt.Addr)
	}
	noExpand := strings.HasPrefix(addr, `\`)
	addr = strings.TrimPrefix(addr, `\`)
	local, domain := address.Split(addr)
	if strings.LastIndexByte(addr, '@') < 0 {
		domain = l.o.Myorigin
		addr = local + "@" + domain
	}
	if l.o.IsLocal != nil && !l.o.IsLocal(domain) {
		x.out = append(x.out, target{kind: toRemote, addr: addr, owner: s.owner})
		return nil
	}
	folded := strings.ToLower(local)
	user, ext := address.SplitExt(folded, l.o.Delimiter)
	if ext != "" {
		ext = ext[1:] // without its delimiter, as local(8)'s $extension
	}
	if strings.Contains(ext, "/") {
		folded, ext = user, "" // local(8) drops an extension with a '/'
	}
	if user == "" {
		return permErr("5.1.3", "null username in %q", addr)
	}
	t := target{kind: toMailbox, addr: addr, user: user, local: folded, ext: ext, domain: strings.ToLower(domain), owner: s.owner}
	key := strings.ToLower(addr)
	if s.self != "" && (s.self == folded || s.self == user || s.self == key) {
		// The alias's (or .forward's) own name, with or without a
		// backslash (Postfix's tokenizer drops it): delivered as if there
		// were no alias, so the user's .forward is read, then the mailbox
		// (alias.c's exp_from, recipient.c's deliver_switch). In the
		// .forward being read, it is the mailbox (dotForward: recursive).
		if found, err := x.dotForward(t, s); found || err != nil {
			return err
		}
		x.out = append(x.out, t)
		return nil
	}
	if noExpand {
		x.out = append(x.out, t)
		return nil
	}
	if x.seen[key] {
		return nil // duplicate elimination, and a loop ends here
	}
	x.seen[key] = true
	if s.depth > 0 && x.loops[key] {
		return permErr("5.4.6", "mail forwarding loop for %s", addr)
	}
	if found, err := x.alias(t, s); found || err != nil {
		return err
	}
	if found, err := x.dotForward(t, s); found || err != nil {
		return err
	}
	x.out = append(x.out, t)
	return nil
}

// alias expands t through alias_maps: the full address (a mailtee
// extension), then the local part with its extension, then without.
func (x *expansion) alias(t target, s scope) (bool, error) {
	l := x.l
	for _, k := range []string{strings.ToLower(t.addr), t.local, t.user} {
		for _, at := range l.o.Aliases {
			v, ok, err := at.Table.Lookup(x.ctx, k)
			if err != nil {
				return true, tempErr("alias lookup failed for %s: %v", t.addr, err)
			}
			if !ok {
				continue
			}
			ns := scope{from: FromAlias, owner: s.owner, self: k, depth: s.depth + 1}
			// Commands and files run with the rights of the table's
			// owner; root's table gives default_privs (alias.c).
			if at.Owner != 0 {
				u, found, err := l.o.UserByID(at.Owner)
				if err != nil || !found {
					return true, tempErr("cannot find alias database owner (uid %d) for %s: %v", at.Owner, k, err)
				}
				ns.priv = u
			}
			o, ok, err := x.lookupAlias("owner-" + k)
			if err != nil {
				// alias.c defers: errors would otherwise go to the
				// sender instead of the list's owner.
				return true, tempErr("alias lookup failed for owner-%s: %v", k, err)
			}
			if ok && o != "" {
				ns.owner = "owner-" + k
				if !strings.Contains(k, "@") {
					ns.owner += "@" + l.o.Myorigin
				}
			}
			for _, el := range maps.SplitAliasValue(v) {
				if err := x.tokenOrFail(el, t, ns); err != nil {
					return true, err
				}
			}
			return true, nil
		}
	}
	return false, nil
}

func (x *expansion) lookupAlias(k string) (string, bool, error) {
	for _, at := range x.l.o.Aliases {
		if v, ok, err := at.Table.Lookup(x.ctx, k); ok || err != nil {
			return v, ok, err
		}
	}
	return "", false, nil
}

// tokenOrFail is token, with a failure for good recorded in x.failed,
// not returned: it concerns that destination alone.
func (x *expansion) tokenOrFail(el string, t target, s scope) error {
	err := x.token(el, t, s)
	if err != nil && isPermanent(err) {
		x.failed = append(x.failed, err)
		return nil
	}
	return err
}

// token handles one destination of an alias, .forward or :include:
// (local(8)'s deliver_token): a |command, a /file, ~/file, :include:, or
// an address.
func (x *expansion) token(el string, t target, s scope) error {
	kind, v := ParseDestination(el)
	l := x.l
	switch kind {
	case "":
		return nil
	case DestCommand:
		if l.o.AllowCommands&s.from == 0 {
			return permErr("5.7.1", "mail to command is restricted (|%s in %s; allow_mail_to_commands)", v, s.from)
		}
		x.out = append(x.out, target{kind: toCommand, addr: t.addr, user: t.user, local: t.local, ext: t.ext, domain: t.domain,
			owner: s.owner, what: v, priv: s.priv, from: s.from})
	case DestFile:
		if strings.HasPrefix(v, "~/") {
			if s.priv.Home == "" {
				return permErr("5.3.5", "%s: no home directory to resolve ~/ in", v)
			}
			v = filepath.Join(s.priv.Home, v[2:])
		}
		if l.o.AllowFiles&s.from == 0 {
			return permErr("5.7.1", "mail to file is restricted (%s in %s; allow_mail_to_files)", v, s.from)
		}
		x.out = append(x.out, target{kind: toFile, addr: t.addr, user: t.user, local: t.local, ext: t.ext, domain: t.domain,
			owner: s.owner, what: v, priv: s.priv, from: s.from})
	case DestInclude:
		return x.include(v, t, s)
	default:
		return x.walk(v, s)
	}
	return nil
}

// The kinds of destination ParseDestination tells apart.
const (
	DestCommand = "command" // |command: the command
	DestFile    = "file"    // /file or ~/file: the path as written
	DestInclude = "include" // :include:/path: the path
	DestAddress = "address" // anything else: the address, without <>
)

// ParseDestination says what one element of an alias value, a .forward
// or an :include: file names, as local(8)'s deliver_token tells them
// apart, and returns what it names; kind is "" for an empty element.
// Delivery and `mailtee check` (which elements allow_mail_to_* forbid)
// both read destinations through it.
func ParseDestination(el string) (kind, value string) {
	el = strings.TrimSpace(el)
	if unq, ok := maps.Unquote(el); ok {
		el = unq
	}
	const include = ":include:"
	switch {
	case el == "":
		return "", ""
	case strings.HasPrefix(el, "|"):
		return DestCommand, strings.TrimSpace(el[1:])
	case strings.HasPrefix(el, "/"), strings.HasPrefix(el, "~/"):
		return DestFile, el
	case len(el) > len(include) && strings.EqualFold(el[:len(include)], include):
		return DestInclude, strings.TrimSpace(el[len(include):])
	}
	return DestAddress, strings.Trim(el, "<>")
}

// include expands an :include: file (local(8)'s include.c). It is read
// with the rights of the scope; when those are root's, commands and
// files in it get the rights of the file's owner.
func (x *expansion) include(path string, t target, s scope) error {
	l := x.l
	if s.depth > maxDepth {
		return permErr("5.4.6", ":include: nesting limit exceeded for %s", path)
	}
	if !filepath.IsAbs(path) {
		return permErr("5.3.5", "mail system configuration error: :include:%s uses a relative path", path)
	}
	key := fmt.Sprintf("include %d %s", s.priv.UID, path)
	if x.seen[key] {
		return nil
	}
	x.seen[key] = true
	f, owner, err := x.open(s.priv, path, asuser.OpenOptions{})
	if err != nil {
		var de *deliver.Error
		if errors.As(err, &de) {
			return err // the helper failed: try again later
		}
		return permErr("5.3.5", "mail system configuration error: :include: file: %v", err)
	}
	defer f.Close()
	ns := scope{priv: s.priv, from: FromInclude, owner: s.owner, self: t.local, depth: s.depth + 1}
	if s.priv.UID == 0 && owner != 0 {
		u, found, err := l.o.UserByID(owner)
		if err != nil || !found {
			return tempErrCode("4.3.5", "mail system configuration error: cannot find the owner (uid %d) of :include: file %s: %v", owner, path, err)
		}
		ns.priv = u
	}
	_, err = x.readTokens(f, path, t, ns)
	return err
}

// dotForward expands the user's .forward file, the first of
// forward_path's files that exists (local(8)'s dotforward.c). Its
// commands and files run as the user. A file that is not the user's or
// root's, is writable by others, or is not a regular file is ignored,
// with a warning, as local(8) does; the mailbox gets the mail then.
func (x *expansion) dotForward(t target, s scope) (bool, error) {
	l := x.l
	if len(l.o.ForwardPath) == 0 {
		return false, nil
	}
	u, found, err := l.o.Users(t.user)
	if err != nil {
		return true, tempErrCode("4.0.0", "user lookup error for %s: %v", t.user, err)
	}
	if !found {
		return false, nil
	}
	for _, el := range l.o.ForwardPath {
		path, ok := l.expandAttrs(el, t, u, l.o.ForwardFilter)
		if !ok || path == "" {
			continue
		}
		// Most users have no .forward. Looking as root first saves a
		// round trip to the user's helper, an eighth of a Maildir
		// delivery; root learns only that nothing is there (any other
		// answer, EACCES on a home root may not read included, goes on
		// to the helper, which looks with the user's rights).
		if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		f, _, err := x.open(u, path, asuser.OpenOptions{NoFollow: true, Owners: []uint32{0, u.UID}})
		if errors.Is(err, asuser.ErrNotFound) {
			continue
		}
		var de *deliver.Error
		if errors.As(err, &de) {
			return true, err
		}
		if err != nil {
			l.warn("%s: %v; mail for %s goes to the mailbox", t.addr, err, t.user)
			return false, nil
		}
		key := "forward " + path
		if x.seen[key] {
			// Read already: found if it named someone; while it is
			// being read (the user's own name in it), not found, so the
			// mailbox gets the mail (dotforward.c's forward-done).
			f.Close()
			return x.seen["forward-done "+path], nil
		}
		x.seen[key] = true
		ns := scope{priv: u, from: FromForward, owner: s.owner, self: t.local, depth: s.depth + 1}
		n, err := x.readTokens(f, path, t, ns)
		f.Close()
		if err != nil {
			return true, err
		}
		if n > 0 {
			x.seen["forward-done "+path] = true
		}
		return n > 0, nil
	}
	return false, nil
}

// readTokens expands each destination in f, one or more per line, comma
// separated; lines starting with '#' are comments. It returns how many
// destinations it found.
func (x *expansion) readTokens(f *os.File, path string, t target, s scope) (int, error) {
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 4096), 1<<20)
	n := 0
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		for _, el := range maps.SplitAliasValue(line) {
			if el == "" {
				continue
			}
			n++
			if err := x.tokenOrFail(el, t, s); err != nil {
				return n, err
			}
		}
	}
	if err := sc.Err(); err != nil {
		return n, tempErr("error reading forwarding file %s: %v", path, err)
	}
	return n, nil
}

// open opens path for reading with u's rights: in a helper when mailtee
// runs as root and u is not root, else in this process.
func (x *expansion) open(u User, path string, o asuser.OpenOptions) (*os.File, uint32, error) {
	if x.l.o.AsUser == nil || u.UID == 0 {
		return asuser.OpenFile(path, o)
	}
	return x.l.o.AsUser.Open(x.ctx, asuser.Cred{UID: u.UID, GID: u.GID}, path, o)
}

// expandAttrs expands local(8)'s attributes ($user, $home, $extension,
// ...) in s, each value filtered through filter; ok is false when s
// names an attribute that has no value, which skips a forward_path
// element (local_expand.c).
func (l *Local) expandAttrs(s string, t target, u User, filter string) (string, bool) {
	delim := ""
	if len(t.local) > len(t.user) {
		delim = t.local[len(t.user) : len(t.user)+1]
	}
	attrs := map[string]string{
		"user": t.user, "home": u.Home, "shell": u.Shell, "domain": t.domain,
		"local": t.local, "mailbox": t.local, "recipient": t.addr,
		"extension": t.ext, "recipient_delimiter": delim,
	}
	out, undefined, err := config.ExpandAttrs(s, func(name string) (string, bool) {
		v := attrs[strings.ToLower(name)]
		if v == "" {
			return "", false
		}
		return command.Filter(v, filter), true
	})
	if err != nil {
		l.warn("bad parameter value syntax %q: %v", s, err)
		return "", false
	}
	return out, len(undefined) == 0
}

func (l *Local) warn(format string, args ...any) {
	if l.o.Warn != nil {
		l.o.Warn(fmt.Sprintf(format, args...))
	}
}
