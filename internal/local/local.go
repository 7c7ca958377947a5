// Package local is mailtee's local(8): delivery to the domains in
// mydestination. A recipient is first expanded through alias_maps
// (recursively, loop-safe, with Postfix's owner- convention), then each
// resulting local user gets the message in a Maildir or over LMTP, and
// each resulting remote address gets it forwarded as a new message.
// The mailbox_bcc_maps copies of the mailboxes are not messages of their
// own: they are returned with the result (Result.Add), for the queue to
// add to the same message in the record of the delivery, so that no
// retry writes a mailbox again for a copy's sake, and no crash loses one.
//
// Deviation from Postfix (DESIGN.md): an alias name may be a full
// address. The full recipient address is looked up first, then the local
// part, so the seed's user_maps keyed by user@relay.example works.
package local

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/mailtee/mailtee/internal/address"
	"github.com/mailtee/mailtee/internal/asuser"
	"github.com/mailtee/mailtee/internal/deliver"
	"github.com/mailtee/mailtee/internal/envelope"
	"github.com/mailtee/mailtee/internal/header"
	"github.com/mailtee/mailtee/internal/maildir"
	"github.com/mailtee/mailtee/internal/maps"
)

// maxDepth bounds alias nesting; Postfix stops at 100 expansions too.
const maxDepth = 100

// Options configure local delivery, from main.cf.
type Options struct {
	Aliases   maps.Table // alias_maps; nil for none
	Myorigin  string     // domain for bare names in alias values
	Delimiter string     // recipient_delimiter
	// IsLocal reports whether a domain is delivered here (mydestination).
	IsLocal func(domain string) bool

	// Mailbox location: SpoolDir (mail_spool_directory ending in "/")
	// holds one Maildir per user; HomeMailbox (home_mailbox ending in
	// "/") is a Maildir under the user's home directory.
	SpoolDir    string
	HomeMailbox string
	// Users looks up a login name in the passwd database.
	Users func(name string) (User, bool)

	// AsUser, set when mailtee runs as root, writes each mailbox in a
	// helper process with its recipient's uid and gid, as local(8) does;
	// a mailbox name with no passwd entry gets DefaultPrivs'
	// (default_privs). Unset, mailboxes are written by this process, as
	// whoever runs it.
	AsUser       *asuser.Pool
	DefaultPrivs User

	// LMTP, when set, delivers to mailboxes instead of Maildir
	// (mailbox_transport = lmtp:...). rcpts are full addresses.
	LMTP func(ctx context.Context, msg *deliver.Message, rcpts []string) []error

	// Forward re-injects a message for remote targets of an alias, as
	// Postfix's local(8) does through cleanup: same body, envelope
	// sender from, and a Delivered-To: header when deliveredTo is set.
	Forward func(ctx context.Context, from string, rcpts []envelope.Rcpt, msg *deliver.Message, deliveredTo string) error

	// MailboxBCC is mailbox_bcc_maps (mailtee only): looked up with each
	// final local mailbox address; each address in the value gets an
	// automatic copy (Result.Add).
	MailboxBCC maps.Table
	// Rewrite, when set, is cleanup's address rewriting of mail mailtee
	// makes itself (canonical, virtual aliases), applied to the copies
	// as it was when they were re-injected as messages of their own.
	Rewrite func(ctx context.Context, from string, rcpts []envelope.Rcpt) ([]envelope.Rcpt, error)
}

// User is a passwd entry.
type User struct {
	Name     string
	UID, GID uint32
	Home     string
}

// Local delivers to local recipients.
type Local struct{ o Options }

// New returns a local delivery agent.
func New(o Options) *Local { return &Local{o: o} }

// target is one result of alias expansion.
type target struct {
	addr  string
	local bool   // deliver to the mailbox of user
	user  string // mailbox owner (local part, folded, no extension): the mailbox's key
	owner string // owner-NAME address that takes errors, or ""
}

// Rcpt is one recipient handed to local delivery.
type Rcpt struct {
	Addr string
	// Copy marks an automatic copy: what it expands to stays a copy,
	// so failures further on are reported to postmaster.
	Copy bool
}

// Result is what happened for one Rcpt: Done says what was done, for the
// log ("delivered to maildir of a@x; forwarded to b@y"); Err is nil or a
// *deliver.Error.
type Result struct {
	Done string
	Err  error
	// Add, with Err nil, are the mailbox_bcc_maps copies of the
	// mailboxes that got the message: recipients for the caller to add
	// to the same message (Copy set, Orig the mailbox's address), in the
	// same durable record as this delivery. A failed delivery has none:
	// its retry makes them.
	Add []envelope.Rcpt
}

// Deliver delivers msg to local recipients, all of one message. A
// mailbox reached through several of them (a list and its member, or
// the same user under several mydestination domains, with an extension,
// in another case) gets the message once, and its mailbox_bcc_maps
// copies are made once: mailboxes are told apart by user alone, as
// Postfix's local(8) does ("mailbox %s" in its duplicate filter).
func (l *Local) Deliver(ctx context.Context, msg *deliver.Message, rcpts []Rcpt) []Result {
	loops, err := deliveredTo(msg)
	out := make([]Result, len(rcpts))
	if err != nil {
		for i := range out {
			out[i].Err = tempErr("cannot read message headers: %v", err)
		}
		return out
	}
	d := &delivery{l: l, msg: msg, loops: loops, mailboxes: map[string]bool{}}
	for i, r := range rcpts {
		var done []string
		out[i].Err = d.one(ctx, r, &done, &out[i].Add)
		out[i].Done = strings.Join(done, "; ")
		if out[i].Err != nil {
			out[i].Add = nil
		}
	}
	return out
}

// delivery is the state shared by the recipients of one Deliver call.
type delivery struct {
	l         *Local
	msg       *deliver.Message
	loops     map[string]bool // Delivered-To: addresses in the message
	mailboxes map[string]bool // users (target.user) whose mailbox has the message now
}

func (d *delivery) one(ctx context.Context, rcpt Rcpt, done *[]string, add *[]envelope.Rcpt) error {
	l, msg := d.l, d.msg
	if d.loops[strings.ToLower(rcpt.Addr)] {
		return permErr("5.4.6", "mail forwarding loop for %s", rcpt.Addr)
	}
	targets, err := l.expand(ctx, rcpt.Addr)
	if err != nil {
		return err
	}
	// Remote targets are forwarded as new messages, grouped by who gets
	// their errors: the owner- alias when there is one, as in Postfix,
	// else the original sender.
	remote := map[string][]envelope.Rcpt{}
	var senders []string
	var mailboxes []target
	picked := map[string]bool{}
	for _, t := range targets {
		if t.local {
			if !d.mailboxes[t.user] && !picked[t.user] {
				picked[t.user] = true
				mailboxes = append(mailboxes, t)
			} else {
				*done = append(*done, "duplicate of "+t.addr+", delivered once")
			}
			continue
		}
		from := msg.From
		if t.owner != "" && from != "" {
			from = t.owner
		}
		if _, ok := remote[from]; !ok {
			senders = append(senders, from)
		}
		remote[from] = append(remote[from], envelope.Rcpt{Addr: t.addr, Orig: rcpt.Addr, Copy: rcpt.Copy})
	}
	// The copies are looked up first: a table that fails then defers
	// before anything is written. Then mailboxes: their failures are the
	// common ones (a full disk, an LMTP 4xx), and a retry then repeats
	// nothing that went out. Forwards, which only queue a new message,
	// come last, as local(8) commits forwards only once the rest
	// succeeded.
	copies, err := d.mailboxCopies(ctx, mailboxes)
	if err != nil {
		return err
	}
	if len(mailboxes) > 0 {
		if err := d.store(ctx, mailboxes, done); err != nil {
			return err
		}
	}
	for _, from := range senders {
		if err := l.forward(ctx, from, remote[from], msg, rcpt.Addr); err != nil {
			return err
		}
		*done = append(*done, "forwarded to "+joinAddrs(remote[from]))
	}
	if len(copies) > 0 {
		*add = append(*add, copies...)
		*done = append(*done, "mailbox copy to "+joinAddrs(copies))
	}
	return nil
}

// store puts the message into each mailbox.
func (d *delivery) store(ctx context.Context, mailboxes []target, done *[]string) error {
	l, msg := d.l, d.msg
	if l.o.LMTP != nil {
		addrs := make([]string, len(mailboxes))
		for i, t := range mailboxes {
			addrs[i] = t.addr
		}
		for _, err := range l.o.LMTP(ctx, msg, addrs) {
			if err != nil {
				return err
			}
		}
		for _, t := range mailboxes {
			d.mailboxes[t.user] = true
		}
		*done = append(*done, "delivered over LMTP for "+strings.Join(addrs, ", "))
		return nil
	}
	for _, t := range mailboxes {
		if err := l.writeMaildir(ctx, t, msg); err != nil {
			return err
		}
		d.mailboxes[t.user] = true
		*done = append(*done, "delivered to maildir of "+t.addr)
	}
	return nil
}

// mailboxCopies returns the mailbox_bcc_maps copies of mailboxes, which
// are about to get the message: looked up with the final mailbox
// address, after alias expansion, so list mail is copied too
// (recipient_bcc_maps sees only the list's address). A mailbox reached
// as a copy makes its copies too; the queue adds an address to a message
// once, so copies of copies end.
func (d *delivery) mailboxCopies(ctx context.Context, mailboxes []target) ([]envelope.Rcpt, error) {
	l := d.l
	if l.o.MailboxBCC == nil || len(mailboxes) == 0 {
		return nil, nil
	}
	var copies []envelope.Rcpt
	for _, t := range mailboxes {
		m, ok, err := maps.LookupAddress(ctx, l.o.MailboxBCC, t.addr, maps.AddressOptions{Delimiters: l.o.Delimiter, IsLocal: l.o.IsLocal})
		if err != nil {
			return nil, tempErr("mailbox_bcc_maps lookup for %s: %v", t.addr, err)
		}
		if !ok {
			continue
		}
		for _, a := range splitAddrs(m.Value) {
			copies = append(copies, envelope.Rcpt{Addr: a, Orig: t.addr, Copy: true})
		}
	}
	if len(copies) == 0 || l.o.Rewrite == nil {
		return copies, nil
	}
	out, err := l.o.Rewrite(ctx, d.msg.From, copies)
	if err != nil {
		return nil, tempErr("address rewriting of the mailbox_bcc_maps copies %s: %v", joinAddrs(copies), err)
	}
	return out, nil
}

func (l *Local) forward(ctx context.Context, from string, rcpts []envelope.Rcpt, msg *deliver.Message, deliveredTo string) error {
	if l.o.Forward == nil {
		return permErr("5.3.0", "forwarding is not configured")
	}
	if err := l.o.Forward(ctx, from, rcpts, msg, deliveredTo); err != nil {
		return tempErr("cannot forward to %s: %v", joinAddrs(rcpts), err)
	}
	return nil
}

// splitAddrs splits a table value listing addresses by commas and/or
// blanks.
func splitAddrs(v string) []string {
	return strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' })
}

func joinAddrs(rs []envelope.Rcpt) string {
	s := make([]string, len(rs))
	for i, r := range rs {
		s[i] = r.Addr
	}
	return strings.Join(s, ", ")
}

// writeMaildir puts msg into t's Maildir, with its recipient's
// privileges when mailtee runs as root.
func (l *Local) writeMaildir(ctx context.Context, t target, msg *deliver.Message) error {
	dir, owner, err := l.maildir(t.user)
	if err != nil {
		return err
	}
	if l.o.AsUser == nil || owner.UID == 0 {
		// Not root: everything as ourselves. Root's own mailbox: as
		// root, as local(8) does.
		return maildir.Deliver(dir, msg, t.addr)
	}
	if l.o.HomeMailbox == "" || !strings.HasSuffix(l.o.HomeMailbox, "/") {
		if err := spoolMaildir(dir, owner); err != nil {
			return err
		}
	}
	return l.o.AsUser.Maildir(ctx, asuser.Cred{UID: owner.UID, GID: owner.GID}, dir, msg, t.addr)
}

// maildir is where user's mail goes, and who owns it: the passwd entry,
// or DefaultPrivs for a mailbox name without one.
func (l *Local) maildir(user string) (string, User, error) {
	var u User
	found := false
	if l.o.Users != nil {
		u, found = l.o.Users(user)
	}
	switch {
	case l.o.HomeMailbox != "" && strings.HasSuffix(l.o.HomeMailbox, "/"):
		if !found {
			return "", u, permErr("5.1.1", "unknown user: %q", user)
		}
		return filepath.Join(u.Home, l.o.HomeMailbox) + "/", u, nil
	case strings.HasSuffix(l.o.SpoolDir, "/"):
		// A name that cannot be a directory is a permanent failure, not
		// one to retry for days (255 bytes: NAME_MAX on Linux).
		if strings.ContainsAny(user, "/\x00") || user == "." || user == ".." || user == "" || len(user) > 255 {
			return "", u, permErr("5.1.3", "bad mailbox name %q", user)
		}
		if !found {
			u = l.o.DefaultPrivs
		}
		return filepath.Join(l.o.SpoolDir, user) + "/", u, nil
	}
	// mbox: Postfix's default, which mailtee does not write. Mail waits.
	return "", u, tempErr("mailbox delivery needs a Maildir: set home_mailbox = Maildir/ or a mail_spool_directory ending in /")
}

// expand resolves rcpt through the alias tables.
func (l *Local) expand(ctx context.Context, rcpt string) ([]target, error) {
	var out []target
	seen := map[string]bool{}
	var walk func(addr, owner string, depth int, self string) error
	walk = func(addr, owner string, depth int, self string) error {
		key := strings.ToLower(addr)
		if seen[key] {
			return nil // duplicate elimination, and a loop ends here
		}
		seen[key] = true
		local, domain := address.Split(addr)
		if strings.LastIndexByte(addr, '@') < 0 {
			domain = l.o.Myorigin
			addr = local + "@" + domain
		}
		if l.o.IsLocal != nil && !l.o.IsLocal(domain) {
			out = append(out, target{addr: addr, owner: owner})
			return nil
		}
		user, _ := address.SplitExt(strings.ToLower(local), l.o.Delimiter)
		if depth > maxDepth {
			return permErr("5.4.6", "alias expansion too deep for %s", rcpt)
		}
		// An alias that names itself ("a: a, b") delivers to the mailbox.
		if !strings.EqualFold(addr, self) && l.o.Aliases != nil {
			value, name, found, err := l.lookupAlias(ctx, addr, local, user)
			if err != nil {
				return tempErr("alias lookup failed for %s: %v", addr, err)
			}
			if found {
				own := owner
				if o, _, ok, _ := l.lookupAlias(ctx, "", "owner-"+name, "owner-"+name); ok && o != "" {
					own = "owner-" + name + "@" + l.o.Myorigin
				}
				for _, el := range maps.SplitAliasValue(value) {
					if el == "" {
						continue
					}
					if strings.HasPrefix(el, "|") || strings.HasPrefix(el, "/") || strings.HasPrefix(strings.ToLower(el), ":include:") {
						return tempErr("alias %s: %q is not supported by mailtee (commands, files and :include: are not delivered); mail waits in the queue", name, el)
					}
					elAddr := strings.Trim(el, "<>")
					if err := walk(elAddr, own, depth+1, addr); err != nil {
						return err
					}
				}
				return nil
			}
		}
		out = append(out, target{addr: addr, local: true, user: user, owner: owner})
		return nil
	}
	if err := walk(rcpt, "", 0, ""); err != nil {
		return nil, err
	}
	return out, nil
}

// lookupAlias tries the full address (a mailtee extension), then the
// local part with its extension, then without, as local(8) does.
func (l *Local) lookupAlias(ctx context.Context, full, local, user string) (value, name string, ok bool, err error) {
	for _, k := range []string{full, strings.ToLower(local), user} {
		if k == "" {
			continue
		}
		v, found, err := l.o.Aliases.Lookup(ctx, k)
		if err != nil || found {
			return v, k, found, err
		}
	}
	return "", "", false, nil
}

// deliveredTo returns the addresses of the message's Delivered-To:
// headers, for Postfix's loop detection. It reads the primary header
// field by field, as Postfix's delivered_hdr does, so a header of any
// size costs one field of memory.
func deliveredTo(msg *deliver.Message) (map[string]bool, error) {
	rc, err := msg.Open()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	hr := header.NewReader(bufio.NewReader(rc), deliveredToMax)
	out := map[string]bool{}
	for {
		f, err := hr.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		if name := header.Name(f); strings.EqualFold(string(name), "delivered-to") {
			v := strings.NewReplacer("\r", "", "\n", "").Replace(string(f[bytes.IndexByte(f, ':')+1:]))
			out[strings.ToLower(strings.TrimSpace(v))] = true
		}
	}
}

// deliveredToMax bounds the part of a header field deliveredTo keeps:
// Postfix's default header_size_limit, which cleanup applied already.
const deliveredToMax = 102400

func permErr(code, format string, args ...any) error {
	return &deliver.Error{Permanent: true, Enhanced: code, Text: fmt.Sprintf(format, args...), Relay: "local"}
}

func tempErr(format string, args ...any) error {
	return &deliver.Error{Permanent: false, Enhanced: "4.3.0", Text: fmt.Sprintf(format, args...), Relay: "local"}
}
