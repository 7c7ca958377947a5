package local

import (
	"context"
	"path/filepath"
	"strings"

	"github.com/mailtee/mailtee/internal/asuser"
	"github.com/mailtee/mailtee/internal/command"
	"github.com/mailtee/mailtee/internal/mailcopy"
	"github.com/mailtee/mailtee/internal/maildir"
	"github.com/mailtee/mailtee/internal/mbox"
)

// store puts the message into each mailbox, and returns the addresses
// of those that have it. A mailbox that fails for good is added to
// failed and the others go on; one that fails for now is the error.
func (d *delivery) store(ctx context.Context, rcpt Rcpt, mailboxes []target, done *[]string, failed *[]error) (map[string]bool, error) {
	l, msg := d.l, d.msg
	ok := map[string]bool{}
	if l.o.LMTP != nil {
		addrs := make([]string, len(mailboxes))
		for i, t := range mailboxes {
			addrs[i] = t.addr
		}
		errs := l.o.LMTP(ctx, msg, addrs)
		for _, err := range errs {
			if err != nil && !isPermanent(err) {
				return nil, err
			}
		}
		var got []string
		for i, t := range mailboxes {
			if i < len(errs) && errs[i] != nil {
				*failed = append(*failed, errs[i])
				continue
			}
			d.done[t.key()] = true
			ok[strings.ToLower(t.addr)] = true
			got = append(got, t.addr)
		}
		if len(got) > 0 {
			*done = append(*done, "delivered over LMTP for "+strings.Join(got, ", "))
		}
		return ok, nil
	}
	for _, t := range mailboxes {
		how, err := d.mailbox(ctx, rcpt, t)
		if err != nil {
			if !isPermanent(err) {
				return nil, err
			}
			*failed = append(*failed, err)
			continue
		}
		ok[strings.ToLower(t.addr)] = true
		d.done[t.key()] = true
		// local(8) logs each address an alias yields on a line of its
		// own; here one line says them all.
		if !strings.EqualFold(t.addr, rcpt.Addr) {
			how += " of " + t.addr
		}
		*done = append(*done, how)
	}
	return ok, nil
}

// envelope is what the lines added to a delivered message say: the
// Delivered-To: address is the recipient as the queue had it, not what
// its aliases made of it (Postfix's frozen_delivered_to = yes), so that
// loop detection sees it in forwarded copies.
func (d *delivery) envelope(rcpt Rcpt) mailcopy.Envelope {
	env := mailcopy.Envelope{Sender: d.msg.From, DeliveredTo: rcpt.Addr}
	if d.l.o.OrigRcpt {
		env.OrigRcpt = rcpt.Orig
	}
	return env
}

// mailbox delivers to t's mailbox as local(8)'s deliver_mailbox does:
// mailbox_command_maps, mailbox_command, a Maildir or mbox in the home
// directory (home_mailbox), a Maildir or mbox in mail_spool_directory.
// It returns what it did, for the log.
func (d *delivery) mailbox(ctx context.Context, rcpt Rcpt, t target) (string, error) {
	l := d.l
	u, found, err := l.o.Users(t.user)
	if err != nil {
		return "", tempErrCode("4.0.0", "user lookup error for %s: %v", t.user, err)
	}
	inSpoolMaildir := l.o.HomeMailbox == "" && l.o.MailboxCommand == "" && l.o.MailboxCommandMaps == nil && strings.HasSuffix(l.o.SpoolDir, "/")
	if !found && !inSpoolMaildir {
		return "", permErr("5.1.1", "unknown user: %q", t.user)
	}
	env := d.envelope(rcpt)
	cmd := l.o.MailboxCommand
	if l.o.MailboxCommandMaps != nil {
		v, ok, err := l.o.MailboxCommandMaps.Lookup(ctx, t.user)
		if err != nil {
			return "", tempErr("mailbox_command_maps lookup for %s: table lookup failure: %v", t.user, err)
		}
		if ok {
			cmd = v
		}
	}
	switch {
	case cmd != "":
		if err := d.command(ctx, rcpt, t, u, cmd); err != nil {
			return "", err
		}
		return "delivered to command: " + cmd, nil
	case l.o.HomeMailbox != "":
		path := filepath.Join(u.Home, l.o.HomeMailbox)
		if strings.HasSuffix(l.o.HomeMailbox, "/") {
			return "delivered to maildir", d.maildir(ctx, path+"/", u, env)
		}
		return "delivered to mailbox", d.mbox(ctx, path, u, asuser.Cred{UID: u.UID, GID: u.GID}, nil, env, false)
	case strings.HasSuffix(l.o.SpoolDir, "/"):
		if !found {
			u = l.o.DefaultPrivs
		}
		dir, err := spoolPath(l.o.SpoolDir, t.user)
		if err != nil {
			return "", err
		}
		if l.o.AsUser != nil && u.UID != 0 {
			if err := spoolMaildir(dir, u); err != nil {
				return "", err
			}
		}
		return "delivered to maildir", d.maildir(ctx, dir+"/", u, env)
	}
	path, err := spoolPath(l.o.SpoolDir, t.user)
	if err != nil {
		return "", err
	}
	// mailbox.c: a world-writable spool is written as the user; a
	// group-writable one (Debian's /var/mail, root:mail 2775) as the user
	// with the spool's group, so that the file is the user's and the
	// dotlock can be made; any other as root, the file then handed to
	// the user.
	uid, gid, chown := mbox.SpoolCred(l.o.SpoolDir, u.UID, u.GID)
	return "delivered to mailbox", d.mbox(ctx, path, u, asuser.Cred{UID: uid, GID: gid}, chown, env, false)
}

// spoolPath is user's mailbox in spool; a name that cannot be a file
// there is a permanent failure, not one to retry for days (255 bytes:
// NAME_MAX on Linux).
func spoolPath(spool, user string) (string, error) {
	if strings.ContainsAny(user, "/\x00") || user == "." || user == ".." || user == "" || len(user) > 255 {
		return "", permErr("5.1.3", "bad mailbox name %q", user)
	}
	return filepath.Join(spool, user), nil
}

// maildir writes the Maildir dir as u.
func (d *delivery) maildir(ctx context.Context, dir string, u User, env mailcopy.Envelope) error {
	l := d.l
	if l.o.AsUser == nil || u.UID == 0 {
		// Not root: everything as ourselves. Root's own mailbox: as
		// root, as local(8) does.
		return maildir.DeliverEnv(dir, d.msg, env)
	}
	return l.o.AsUser.MaildirEnv(ctx, asuser.Cred{UID: u.UID, GID: u.GID}, dir, d.msg, env)
}

// mbox appends to the mbox file path as c, for u; file says it is a
// /file destination, not a mailbox.
func (d *delivery) mbox(ctx context.Context, path string, u User, c asuser.Cred, chown *mbox.Owner, env mailcopy.Envelope, file bool) error {
	l := d.l
	o := mbox.Options{Envelope: env, Flags: mailcopy.Mbox, Locks: l.o.Locks, SizeLimit: l.o.SizeLimit, User: u.Name, File: file, Chown: chown,
		StrictOwnership: l.o.StrictOwner && !file, RecipientUID: u.UID,
		StaleLockTime: l.o.StaleLockTime, LockAttempts: l.o.LockAttempts, LockDelay: l.o.LockDelay}
	if l.o.AsUser == nil {
		o.Chown = nil // not root: everything is ours
		return mbox.Deliver(path, d.msg, o)
	}
	if c.UID == 0 {
		return mbox.Deliver(path, d.msg, o)
	}
	return l.o.AsUser.Mbox(ctx, c, path, d.msg, o)
}

// deliverOther delivers to a command or a file named by an alias, a
// .forward or an :include: file, with the rights found with it; root's
// become default_privs (command.c, file.c).
func (d *delivery) deliverOther(ctx context.Context, rcpt Rcpt, t target) error {
	priv := t.priv
	if t.kind == toCommand {
		return d.command(ctx, rcpt, t, priv, t.what)
	}
	if t.what == "/dev/null" {
		return nil // the usual alias for mail to drop; nothing to lock or write
	}
	priv = unprivileged(priv, d.l.o.DefaultPrivs)
	env := d.envelope(rcpt)
	if strings.HasSuffix(t.what, "/") {
		return d.maildir(ctx, t.what, priv, env)
	}
	return d.mbox(ctx, t.what, priv, asuser.Cred{UID: priv.UID, GID: priv.GID}, nil, env, true)
}

// unprivileged is u with default_privs' uid for root's, and its gid for
// group 0 (a login whose primary group is root: RHEL's operator, an LDAP
// user), as command.c and file.c do.
func unprivileged(u, def User) User {
	if u.UID == 0 {
		u.UID = def.UID
	}
	if u.GID == 0 {
		u.GID = def.GID
	}
	return u
}

// command runs cmd for t with u's rights (default_privs for root's), with
// local(8)'s environment.
func (d *delivery) command(ctx context.Context, rcpt Rcpt, t target, u User, cmd string) error {
	l := d.l
	run := unprivileged(u, l.o.DefaultPrivs)
	attrs := command.Attrs{
		Home: u.Home, Shell: u.Shell, User: t.user, Sender: d.msg.From, Recipient: t.addr,
		Local: t.local, Extension: t.ext, Domain: t.domain, OrigRecipient: rcpt.Orig,
		ClientName: d.msg.ClientName, ClientAddr: d.msg.ClientAddr, ClientHelo: d.msg.ClientHelo, ClientProtocol: d.msg.ClientProtocol,
	}
	env := command.Env(attrs, l.o.Export, l.o.CommandFilter)
	// An attribute without a value expands to nothing here (command.c
	// checks only the syntax, which check has checked).
	dir, _ := l.expandAttrs(l.o.ExecDir, t, u, l.o.ExecDirFilter)
	spec := command.Spec{Command: cmd, Shell: l.o.Shell, Env: env, Dir: dir, TimeLimit: l.o.TimeLimit, Envelope: d.envelope(rcpt), Flags: mailcopy.Command}
	if l.o.AsUser == nil {
		return command.Run(ctx, spec, d.msg)
	}
	if run.UID == 0 {
		return permErr("5.3.0", "refusing to run %q as root: default_privs is root", cmd)
	}
	return l.o.AsUser.Command(ctx, asuser.Cred{UID: run.UID, GID: run.GID}, spec, d.msg)
}
