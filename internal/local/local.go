// Package local is mailtee's local(8): delivery to the domains in
// mydestination, as Postfix's src/local does it. A recipient is expanded
// through alias_maps (with owner- aliases, |command, /file and :include:
// destinations), then through the user's .forward file (forward_path),
// and what remains is delivered to the user's mailbox: over LMTP
// (mailbox_transport), to mailbox_command, to a Maildir or an mbox in
// the home directory (home_mailbox) or in mail_spool_directory. Remote
// addresses an expansion yields are forwarded as new messages.
//
// Privileges are local(8)'s. A mailbox is written with its owner's uid
// and gid. A command or file named by an alias runs as the owner of the
// alias table, or as default_privs when root owns it; one named by a
// .forward file runs as its user; one named by an :include: file runs as
// the owner of that file when the context was root's. When mailtee runs
// as root, that work happens in internal/asuser's helper processes; run
// as another user, everything is done as that user.
//
// The mailbox_bcc_maps copies of the mailboxes are not messages of their
// own: they are returned with the result (Result.Add), for the queue to
// add to the same message in the record of the delivery, so that no
// retry writes a mailbox again for a copy's sake, and no crash loses one.
//
// Deviations from Postfix (DESIGN.md): an alias name may be a full
// address. The full recipient address is looked up first, then the local
// part, so the seed's user_maps keyed by user@relay.example works. Local
// addresses found in an expansion are delivered in the same attempt, not
// resubmitted as new messages (local(8)'s deliver_indirect).
package local

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/mailtee/mailtee/internal/asuser"
	"github.com/mailtee/mailtee/internal/deliver"
	"github.com/mailtee/mailtee/internal/envelope"
	"github.com/mailtee/mailtee/internal/header"
	"github.com/mailtee/mailtee/internal/maps"
	"github.com/mailtee/mailtee/internal/migration"
	"github.com/mailtee/mailtee/internal/users"
)

// maxDepth bounds alias nesting; Postfix stops at 100 expansions too.
const maxDepth = 100

// User is a passwd entry.
type User = users.User

// Options configure local delivery, from main.cf.
type Options struct {
	// Aliases are alias_maps, each with the owner of its file, whose
	// rights its commands and files get (0, root: default_privs).
	Aliases   []AliasTable
	Myorigin  string // domain for bare names in alias values
	Delimiter string // recipient_delimiter
	// IsLocal reports whether a domain is delivered here (mydestination).
	IsLocal func(domain string) bool
	// IsLocalErr, when set, is IsLocal where a table in mydestination
	// can fail: mailbox_bcc_maps and phase lookups then defer instead of
	// skipping the bare "user" keys (maps.AddressOptions.IsLocalErr).
	IsLocalErr func(domain string) (bool, error)

	// Mailbox location: SpoolDir is mail_spool_directory (an mbox per
	// user, or a Maildir when it ends in "/"); HomeMailbox is
	// home_mailbox, relative to the user's home (a Maildir when it ends
	// in "/"), and wins when set.
	SpoolDir    string
	HomeMailbox string
	// MailboxCommand is mailbox_command; MailboxCommandMaps,
	// mailbox_command_maps, looked up with the user name, wins.
	MailboxCommand     string
	MailboxCommandMaps maps.Table
	// Users looks up a login name, through NSS as getpwnam does; an
	// error (a directory that does not answer) defers.
	Users func(name string) (User, bool, error)
	// UserByID looks up a uid (the owner of an :include: file).
	UserByID func(uid uint32) (User, bool, error)

	// AsUser, set when mailtee runs as root, does each mailbox, file and
	// command in a helper process with the right uid and gid, as local(8)
	// does; DefaultPrivs (default_privs) is the identity of what root
	// would otherwise run, and of spool Maildirs with no passwd entry.
	// Unset, everything is done by this process, as whoever runs it.
	AsUser       *asuser.Pool
	DefaultPrivs User

	// LMTP, when set, delivers to mailboxes instead
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
	// Migration, when set, gives the migration settings a message was
	// accepted with (deliver.Message.Settings): its mailbox_bcc_maps,
	// in place of MailboxBCC, and the phase of each mailbox that has a
	// copy (dual_delivery_phase): off keeps the mailbox and makes no
	// copy, forward sends the mail only to the copy's address.
	// An error (the settings cannot be read now) defers the delivery.
	Migration func(settings string) (*migration.Tables, error)
	// CopiesApart is copy_transport set: a forward-phase mailbox's mail
	// to an address in a local domain leaves by it; without it such mail
	// could not leave, so the mailbox is kept.
	CopiesApart bool
	// Rewrite, when set, is cleanup's address rewriting of mail mailtee
	// makes itself (canonical, virtual aliases), applied to the copies
	// as it was when they were re-injected as messages of their own.
	Rewrite func(ctx context.Context, from string, rcpts []envelope.Rcpt) ([]envelope.Rcpt, error)

	// ForwardPath is forward_path, split into its elements, unexpanded.
	ForwardPath []string
	// AllowCommands and AllowFiles are allow_mail_to_commands and
	// allow_mail_to_files: where |command and /file may come from.
	AllowCommands, AllowFiles Expansion
	// CommandFilter and ForwardFilter are command_expansion_filter and
	// forward_expansion_filter: the characters an attribute that an
	// outside sender controls may keep; others become '_'.
	CommandFilter, ForwardFilter string
	// ExecDir is command_execution_directory, unexpanded, and
	// ExecDirFilter execution_directory_expansion_filter.
	ExecDir, ExecDirFilter string
	// Shell is local_command_shell; TimeLimit command_time_limit;
	// Export export_environment.
	Shell     string
	TimeLimit time.Duration
	Export    []string
	// Locks is mailbox_delivery_lock; SizeLimit mailbox_size_limit (0:
	// none); StrictOwner strict_mailbox_ownership.
	Locks       []string
	SizeLimit   int64
	StrictOwner bool
	// StaleLockTime, LockAttempts and LockDelay are stale_lock_time,
	// deliver_lock_attempts and deliver_lock_delay.
	StaleLockTime, LockDelay time.Duration
	LockAttempts             int
	// OrigRcpt is enable_original_recipient: X-Original-To: headers.
	OrigRcpt bool
	// Warn logs what local(8) logs as a warning (an ignored .forward).
	Warn func(string)
}

// AliasTable is one table of alias_maps and the owner of its file.
type AliasTable struct {
	Table maps.Table
	Owner uint32
}

// Local delivers to local recipients.
type Local struct{ o Options }

// New returns a local delivery agent.
func New(o Options) *Local {
	if o.Users == nil {
		o.Users = func(string) (User, bool, error) { return User{}, false, nil }
	}
	if o.UserByID == nil {
		o.UserByID = func(uint32) (User, bool, error) { return User{}, false, nil }
	}
	return &Local{o: o}
}

// Rcpt is one recipient handed to local delivery.
type Rcpt struct {
	Addr string
	// Orig is the original recipient, for X-Original-To:.
	Orig string
	// Copy marks an automatic copy: what it expands to stays a copy,
	// so failures further on are reported to postmaster.
	Copy bool
}

// Result is what happened for one Rcpt: Done says what was done, for the
// log ("delivered to mailbox of a@x; forwarded to b@y"); Err is nil or a
// *deliver.Error.
type Result struct {
	Done string
	Err  error
	// Add are the mailbox_bcc_maps copies of the mailboxes that got the
	// message: recipients for the caller to add to the same message
	// (Copy set, Orig the mailbox's address), in the same durable record
	// as this delivery. A deferred delivery has none: its retry makes
	// them. A bounced one may have some: the mailboxes its other
	// destinations reached.
	Add []envelope.Rcpt
}

// Deliver delivers msg to local recipients, all of one message. A
// mailbox reached through several of them (a list and its member, or
// the same user under several mydestination domains, with an extension,
// in another case) gets the message once, and its mailbox_bcc_maps
// copies are made once: mailboxes are told apart by user alone, as
// Postfix's local(8) does ("mailbox %s" in its duplicate filter); a
// command by its user, uid and text, a file by its path.
func (l *Local) Deliver(ctx context.Context, msg *deliver.Message, rcpts []Rcpt) []Result {
	loops, err := deliveredTo(msg)
	out := make([]Result, len(rcpts))
	if err != nil {
		for i := range out {
			out[i].Err = tempErr("cannot read message headers: %v", err)
		}
		return out
	}
	d := &delivery{l: l, msg: msg, loops: loops, done: map[string]bool{}}
	for i, r := range rcpts {
		var done []string
		out[i].Err = d.one(ctx, r, &done, &out[i].Add)
		out[i].Done = strings.Join(done, "; ")
		if out[i].Err != nil && !isPermanent(out[i].Err) {
			out[i].Add = nil // the retry makes them
		}
	}
	return out
}

// delivery is the state shared by the recipients of one Deliver call.
type delivery struct {
	l     *Local
	msg   *deliver.Message
	loops map[string]bool // Delivered-To: addresses in the message
	done  map[string]bool // targets (target.key) that have the message now
}

func (d *delivery) one(ctx context.Context, rcpt Rcpt, done *[]string, add *[]envelope.Rcpt) error {
	l, msg := d.l, d.msg
	if d.loops[strings.ToLower(rcpt.Addr)] {
		return permErr("5.4.6", "mail forwarding loop for %s", rcpt.Addr)
	}
	x := &expansion{l: l, ctx: ctx, rcpt: rcpt, loops: d.loops, seen: map[string]bool{}}
	if err := x.walk(rcpt.Addr, scope{}); err != nil {
		return err
	}
	// A destination that fails for good does not stop the others, as in
	// local(8)'s deliver_token_string: its failure is reported when all
	// else is done. One that fails for now defers the whole recipient.
	failed := x.failed
	// Remote targets are forwarded as new messages, grouped by who gets
	// their errors: the owner- alias when there is one, as in Postfix,
	// else the original sender.
	remote := map[string][]envelope.Rcpt{}
	var senders []string
	var mailboxes, others []target
	picked := map[string]bool{}
	for _, t := range x.out {
		if t.kind == toRemote {
			from := msg.From
			if t.owner != "" && from != "" {
				from = t.owner
			}
			if _, ok := remote[from]; !ok {
				senders = append(senders, from)
			}
			remote[from] = append(remote[from], envelope.Rcpt{Addr: t.addr, Orig: rcpt.Addr, Copy: rcpt.Copy})
			continue
		}
		if d.done[t.key()] || picked[t.key()] {
			what := t.addr
			if t.kind != toMailbox {
				what = t.String()
			}
			*done = append(*done, "duplicate of "+what+", delivered once")
			continue
		}
		picked[t.key()] = true
		if t.kind == toMailbox {
			mailboxes = append(mailboxes, t)
		} else {
			others = append(others, t)
		}
	}
	// The copies are looked up first: a table that fails then defers
	// before anything is written. Then mailboxes: their failures are the
	// common ones (a full disk, an LMTP 4xx), and a retry then repeats
	// nothing that went out. Then commands and files, and forwards, which
	// only queue a new message, last, as local(8) commits forwards only
	// once the rest succeeded.
	copies, forwards, err := d.mailboxCopies(ctx, mailboxes, rcpt.Copy)
	if err != nil {
		return err
	}
	if len(forwards) > 0 {
		// Forward phase: the mailbox is not written; its mail goes to
		// the copy's address, as a delivery of its own (added to the
		// message below, in the same record as this outcome).
		kept := mailboxes[:0:0]
		for _, t := range mailboxes {
			if forwards[strings.ToLower(t.addr)] {
				d.done[t.key()] = true
				continue
			}
			kept = append(kept, t)
		}
		mailboxes = kept
	}
	delivered := copies[:0:0]
	for _, c := range copies {
		if c.Migration == envelope.MigrationForward {
			delivered = append(delivered, c)
		}
	}
	if len(mailboxes) > 0 {
		ok, err := d.store(ctx, rcpt, mailboxes, done, &failed)
		if err != nil {
			return err
		}
		for _, c := range copies {
			if c.Migration != envelope.MigrationForward && ok[strings.ToLower(c.Orig)] {
				delivered = append(delivered, c)
			}
		}
	}
	copies = delivered
	for _, t := range others {
		if err := d.deliverOther(ctx, rcpt, t); err != nil {
			if !isPermanent(err) {
				return err
			}
			failed = append(failed, err)
			continue
		}
		d.done[t.key()] = true
		*done = append(*done, "delivered to "+t.String())
	}
	for _, from := range senders {
		if err := l.forward(ctx, from, remote[from], msg, rcpt.Addr); err != nil {
			return err
		}
		*done = append(*done, "forwarded to "+joinAddrs(remote[from]))
	}
	if len(copies) > 0 {
		*add = append(*add, copies...)
		var c, f []envelope.Rcpt
		for _, r := range copies {
			if r.Migration == envelope.MigrationForward {
				f = append(f, r)
			} else {
				c = append(c, r)
			}
		}
		if len(c) > 0 {
			*done = append(*done, "mailbox copy to "+joinAddrs(c))
		}
		if len(f) > 0 {
			*done = append(*done, "forward phase: sent on to "+joinAddrs(f))
		}
	}
	return joinFailures(failed, *done)
}

// joinFailures is the permanent error of a recipient some of whose
// destinations failed for good: the first one's status, every reason,
// and what was delivered all the same.
func joinFailures(failed []error, done []string) error {
	if len(failed) == 0 {
		return nil
	}
	var de *deliver.Error
	errors.As(failed[0], &de)
	texts := make([]string, len(failed))
	for i, err := range failed {
		texts[i] = err.Error()
	}
	text := strings.Join(texts, "; ")
	if len(done) > 0 {
		text += " (otherwise " + strings.Join(done, "; ") + ")"
	}
	return &deliver.Error{Permanent: true, Enhanced: de.Enhanced, Text: text, Relay: "local"}
}

// isPermanent says whether err is a failure for good.
func isPermanent(err error) bool {
	var de *deliver.Error
	return errors.As(err, &de) && de.Permanent
}

// mailboxCopies returns the mailbox_bcc_maps copies of mailboxes, which
// are about to get the message: looked up with the final mailbox
// address, after alias expansion, so list mail is copied too
// (recipient_bcc_maps sees only the list's address). A mailbox reached
// as a copy makes its copies too; the queue adds an address to a message
// once, so copies of copies end. The tables and the phases are those the
// message was accepted with (Options.Migration): a mailbox in the off
// phase gets no copy; one in the forward phase is in forwards (by its
// lower-case address), not to be written, its copies marked
// envelope.MigrationForward (a copy still only when the recipient was one).
func (d *delivery) mailboxCopies(ctx context.Context, mailboxes []target, rcptCopy bool) (copies []envelope.Rcpt, forwards map[string]bool, err error) {
	l := d.l
	bcc := l.o.MailboxBCC
	var mig *migration.Tables
	if l.o.Migration != nil {
		var err error
		if mig, err = l.o.Migration(d.msg.Settings); err != nil {
			return nil, nil, tempErr("%v", err)
		}
		if mig != nil {
			bcc = mig.MailboxBCC
		}
	}
	if bcc == nil || len(mailboxes) == 0 {
		return nil, nil, nil
	}
	opts := maps.AddressOptions{Delimiters: l.o.Delimiter, IsLocal: l.o.IsLocal, IsLocalErr: l.o.IsLocalErr}
	for _, t := range mailboxes {
		m, ok, err := maps.LookupAddress(ctx, bcc, t.addr, opts)
		if err != nil {
			return nil, nil, tempErr("mailbox_bcc_maps lookup for %s: %v", t.addr, err)
		}
		if !ok {
			continue
		}
		kind, copy := envelope.MigrationCopy, true
		if mig != nil {
			phase, err := mig.Phase(ctx, t.addr, opts)
			if err != nil {
				return nil, nil, tempErr("%v", err)
			}
			switch phase {
			case migration.Off:
				continue
			case migration.Forward:
				if a, ok := l.forwardComesBack(m.Value); ok {
					// Sent on without copy_transport, the mail would wait
					// in the queue (what the migration layer makes is
					// never delivered here) and reach no mailbox until
					// copy_transport is set. Keep this one.
					l.warn("%s: forward phase: %s is in a local domain and copy_transport is not set; the mail stays in the mailbox and no copy is made", t.addr, a)
					continue
				}
				if forwards == nil {
					forwards = map[string]bool{}
				}
				forwards[strings.ToLower(t.addr)] = true
				kind, copy = envelope.MigrationForward, rcptCopy
			}
		}
		owner := ""
		if kind == envelope.MigrationForward && t.owner != "" && d.msg.From != "" {
			// The mailbox's delivery sent on: its failure goes where the
			// list's other forwards' do, to the owner- alias.
			owner = t.owner
		}
		for _, a := range splitAddrs(m.Value) {
			copies = append(copies, envelope.Rcpt{Addr: a, Orig: t.addr, Copy: copy, Migration: kind, NotifyOwner: owner})
		}
	}
	if len(copies) == 0 || l.o.Rewrite == nil {
		return copies, forwards, nil
	}
	out, err := l.o.Rewrite(ctx, d.msg.From, copies)
	if err != nil {
		return nil, nil, tempErr("address rewriting of the mailbox_bcc_maps copies %s: %v", joinAddrs(copies), err)
	}
	return out, forwards, nil
}

// forwardComesBack returns the first of a copy map's addresses that
// would be delivered here again: one in a local domain, when
// copy_transport does not give the migration's recipients a route of
// their own.
func (l *Local) forwardComesBack(value string) (string, bool) {
	if l.o.CopiesApart || l.o.IsLocal == nil {
		return "", false
	}
	for _, a := range splitAddrs(value) {
		if i := strings.LastIndexByte(a, '@'); i >= 0 && l.o.IsLocal(strings.ToLower(a[i+1:])) {
			return a, true
		}
	}
	return "", false
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
	return tempErrCode("4.3.0", format, args...)
}

func tempErrCode(code, format string, args ...any) error {
	return &deliver.Error{Permanent: false, Enhanced: code, Text: fmt.Sprintf(format, args...), Relay: "local"}
}
