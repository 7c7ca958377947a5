package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"time"

	"github.com/mailtee/mailtee/internal/address"
	"github.com/mailtee/mailtee/internal/config"
	"github.com/mailtee/mailtee/internal/maildrop"
	"github.com/mailtee/mailtee/internal/master"
)

// runSendmail is Postfix's sendmail(1) and postdrop(1) for cron jobs and
// scripts: the message on standard input, for the recipients on the
// command line (or, with -t, in its To/Cc/Bcc headers), is dropped into
// the spool's maildrop for the server's pickup, which queues it (see
// internal/maildrop). Its other modes (-bs, -bp, -bi, -q) are those of
// Postfix's sendmail, which runs another program for each; options
// Postfix accepts for compatibility (-oi, -odi, -F name, ...) are
// accepted too.
func runSendmail(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return sendmail("sendmail", args, stdin, stdout, stderr)
}

// sendmail runs as the program name (sendmail, or newaliases, which is
// sendmail -bi in Postfix). Messages are "NAME: fatal: ...", as
// Postfix's, and exit codes its sysexits ones.
func sendmail(name string, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	o, err := parseSendmail(name, args)
	if err != nil {
		fmt.Fprintf(stderr, "%s: fatal: %v\n", name, err)
		return exUsage
	}
	if o.mode != smEnqueue && o.mode != smSMTP {
		// The setgid group is for the drop into maildrop alone.
		if err := dropPostdrop(); err != nil {
			fmt.Fprintf(stderr, "%s: fatal: %v\n", name, err)
			return exNoPerm
		}
	}
	dir, from, fromSet, extract, dotEnds, rcpts := o.dir, o.from, o.fromSet, o.extract, o.dotEnds, o.rcpts
	// The environment of a setgid run is the caller's: nothing in it may
	// steer the write (MAIL_CONFIG was read above, and is checked now).
	if postdropGid >= 0 {
		os.Clearenv()
	}
	if err := configDirAllowed(dir); err != nil {
		fmt.Fprintf(stderr, "%s: fatal: %v\n", name, err)
		return exNoPerm
	}
	// main.cf only: no table is opened here. Rewriting, BCC copies and
	// header completion are the server's (pickup hands the file to
	// cleanup), as in Postfix.
	cfg, err := config.Load(dir)
	if err != nil {
		// EX_TEMPFAIL, as every fatal error of Postfix's sendmail
		// (msg_cleanup(tempfail) in sendmail.c): callers such as
		// Dovecot's LDA retry then, where another code bounces.
		fmt.Fprintf(stderr, "%s: fatal: %v\n", name, err)
		return exTempFail
	}
	switch o.mode {
	case smIgnore:
		return exitOK
	case smMailq:
		return postqueue(name, []string{"-c", dir, "-p"}, "", stdout, stderr)
	case smFlush:
		switch {
		case o.siteFlush != "":
			return postqueue(name, []string{"-c", dir, "-s", o.siteFlush}, "", stdout, stderr)
		case o.idFlush != "":
			return postqueue(name, []string{"-c", dir, "-i", o.idFlush}, "", stdout, stderr)
		}
		return postqueue(name, []string{"-c", dir, "-f"}, "", stdout, stderr)
	case smNewaliases:
		return newaliases(name, cfg, o.aliasFile, stderr)
	case smSMTP:
		return sendmailSMTP(name, cfg, stdin, stdout, stderr)
	}
	limit, _ := cfg.Int("message_size_limit")
	body, err := maildrop.ReadMessage(stdin, dotEnds, limit)
	if errors.Is(err, maildrop.ErrTooBig) {
		fmt.Fprintf(stderr, "%s: fatal: message too big (message_size_limit is %d bytes)\n", name, limit)
		return exDataErr
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: fatal: error reading input: %v\n", name, err)
		return exDataErr
	}
	login := loginName()
	if !fromSet {
		from = login
	}
	// The sender is parsed as an SMTP client's would be: a CR or LF in
	// it would break the queue file's envelope, and a bounce to it would
	// be retried for ever. Pickup checks again; this is for the message.
	fa, err := address.Parse(from)
	if err != nil {
		fmt.Fprintf(stderr, "%s: fatal: bad sender address in -f: %v\n", name, err)
		return exDataErr
	}
	if extract {
		hdr, rest := maildrop.SplitHeader(body)
		more, kept, err := maildrop.ExtractRecipients(hdr)
		if err != nil {
			fmt.Fprintf(stderr, "%s: fatal: %s(%d): unable to extract recipients: %v\n", name, from, os.Getuid(), err)
			return exDataErr
		}
		rcpts = append(rcpts, more...)
		body = append(kept, rest...)
	}
	if len(rcpts) == 0 {
		if extract {
			fmt.Fprintf(stderr, "%s: fatal: %s(%d): No recipient addresses found in message header\n", name, from, os.Getuid())
		} else {
			fmt.Fprintf(stderr, "%s: fatal: %s(%d): Recipient addresses must be specified on the command line or via the -t option\n", name, from, os.Getuid())
		}
		return exUsage
	}
	for _, r := range rcpts {
		if a, err := address.Parse(r); err != nil || a.IsNull() {
			if err == nil {
				err = errors.New("the null address")
			}
			fmt.Fprintf(stderr, "%s: fatal: bad recipient address %q: %v\n", name, r, err)
			return exDataErr
		}
	}
	qdir := master.QueueDir(cfg)
	if err := dropMessage(qdir, login, fa.String(), rcpts, body); err != nil {
		fmt.Fprintf(stderr, "%s: fatal: cannot drop the message into %s: %v\n", name, filepath.Join(qdir, maildrop.DropDir), err)
		if errors.Is(err, fs.ErrPermission) || errors.Is(err, maildrop.ErrNoMaildrop) {
			fmt.Fprintf(stderr, "%s: users other than root submit through the setgid install of mailtee (group setgid_group), into the maildrop that mailtee serve makes at its start\n", name)
		}
		switch {
		case errors.Is(err, fs.ErrPermission):
			return exNoPerm
		case errors.Is(err, maildrop.ErrNoMaildrop):
			return exUnavailable
		}
		return exTempFail // a write error: the caller may try again
	}
	// A stopped server is no failure: the file waits in maildrop for
	// its next start, as with Postfix.
	return exitOK
}

// loginName is the login name of the real uid, as Postfix's sendmail
// takes it from the password file (never from $USER), or the uid.
func loginName() string {
	if u, err := user.LookupId(strconv.Itoa(os.Getuid())); err == nil && u.Username != "" {
		return u.Username
	}
	return strconv.Itoa(os.Getuid())
}

// dropMessage writes one submission into qdir's maildrop, with the
// setgid group when there is one, and pokes the server's pickup.
func dropMessage(qdir, login, from string, rcpts []string, body []byte) error {
	d := &maildrop.Drop{UID: uint32(os.Getuid()), User: login, Arrival: time.Now(), From: from, Rcpts: rcpts}
	return withPostdrop(func() error {
		_, _, err := maildrop.Post(qdir, d, body)
		return err
	})
}
