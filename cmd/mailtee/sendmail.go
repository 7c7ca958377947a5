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
	"strings"
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
// internal/maildrop). Options Postfix accepts for compatibility (-i,
// -oi, -odi, -F name, ...) are accepted too.
func runSendmail(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	dir := defaultConfigDir()
	var from string
	fromSet, extract, dotEnds := false, false, true
	var rcpts []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		next := func() (string, bool) {
			if i+1 < len(args) {
				i++
				return args[i], true
			}
			return "", false
		}
		switch {
		case a == "--":
			rcpts = append(rcpts, args[i+1:]...)
			i = len(args)
		case a == "-c" || a == "-C":
			v, ok := next()
			if !ok {
				fmt.Fprintln(stderr, "mailtee sendmail: -c needs a directory")
				return exitBadData
			}
			dir = v
		case a == "-f" || a == "-r":
			v, ok := next()
			if !ok {
				fmt.Fprintln(stderr, "mailtee sendmail: -f needs an address")
				return exitBadData
			}
			from, fromSet = v, true
		case strings.HasPrefix(a, "-f") || strings.HasPrefix(a, "-r") && len(a) > 2:
			from, fromSet = a[2:], true
		case a == "-t":
			extract = true
		case a == "-i" || a == "-oi":
			dotEnds = false
		case a == "-F" || a == "-N" || a == "-R" || a == "-V" || a == "-B" || a == "-O" || a == "-o":
			next()
		case strings.HasPrefix(a, "-o") || strings.HasPrefix(a, "-F") || strings.HasPrefix(a, "-N") ||
			strings.HasPrefix(a, "-R") || strings.HasPrefix(a, "-V") || strings.HasPrefix(a, "-B") || a == "-v" || a == "-m":
			// accepted and ignored, as by Postfix
		case strings.HasPrefix(a, "-b"):
			fmt.Fprintf(stderr, "mailtee sendmail: %s is not supported (only message submission is)\n", a)
			return exitBadData
		case strings.HasPrefix(a, "-") && len(a) > 1:
			fmt.Fprintf(stderr, "mailtee sendmail: unknown option %s\n", a)
			return exitBadData
		default:
			rcpts = append(rcpts, a)
		}
	}
	// The environment of a setgid run is the caller's: nothing in it may
	// steer the write (MAIL_CONFIG was read above, and is checked now).
	if postdropGid >= 0 {
		os.Clearenv()
	}
	if err := configDirAllowed(dir); err != nil {
		fmt.Fprintf(stderr, "mailtee sendmail: %v\n", err)
		return exitBadData
	}
	// main.cf only: no table is opened here. Rewriting, BCC copies and
	// header completion are the server's (pickup hands the file to
	// cleanup), as in Postfix.
	cfg, err := config.Load(dir)
	if err != nil {
		fmt.Fprintf(stderr, "mailtee sendmail: %v\n", err)
		return exitBadData
	}
	limit, _ := cfg.Int("message_size_limit")
	body, err := maildrop.ReadMessage(stdin, dotEnds, limit)
	if errors.Is(err, maildrop.ErrTooBig) {
		fmt.Fprintf(stderr, "mailtee sendmail: message too big (message_size_limit is %d bytes)\n", limit)
		return exitBadData
	}
	if err != nil {
		fmt.Fprintf(stderr, "mailtee sendmail: reading the message: %v\n", err)
		return exitRuntime
	}
	// The login name of the real uid, as Postfix's sendmail takes it
	// from the password file (never from $USER).
	login := ""
	if u, err := user.LookupId(strconv.Itoa(os.Getuid())); err == nil {
		login = u.Username
	}
	if login == "" {
		login = strconv.Itoa(os.Getuid())
	}
	if !fromSet {
		from = login
	}
	// The sender is parsed as an SMTP client's would be: a CR or LF in
	// it would break the queue file's envelope, and a bounce to it would
	// be retried for ever. Pickup checks again; this is for the message.
	fa, err := address.Parse(from)
	if err != nil {
		fmt.Fprintf(stderr, "mailtee sendmail: bad sender address in -f: %v\n", err)
		return exitBadData
	}
	if extract {
		hdr, rest := maildrop.SplitHeader(body)
		more, kept, err := maildrop.ExtractRecipients(hdr)
		if err != nil {
			fmt.Fprintf(stderr, "mailtee sendmail: -t: %v\n", err)
			return exitBadData
		}
		rcpts = append(rcpts, more...)
		body = append(kept, rest...)
	}
	if len(rcpts) == 0 {
		fmt.Fprintln(stderr, "mailtee sendmail: no recipients specified")
		return exitBadData
	}
	for _, r := range rcpts {
		if a, err := address.Parse(r); err != nil || a.IsNull() {
			fmt.Fprintf(stderr, "mailtee sendmail: bad recipient %q: %v\n", r, err)
			return exitBadData
		}
	}
	d := &maildrop.Drop{UID: uint32(os.Getuid()), User: login, Arrival: time.Now(), From: fa.String(), Rcpts: rcpts}
	qdir := master.QueueDir(cfg)
	err = withPostdrop(func() error {
		_, _, err := maildrop.Post(qdir, d, body)
		return err
	})
	if err != nil {
		fmt.Fprintf(stderr, "mailtee sendmail: cannot drop the message into %s: %v\n", filepath.Join(qdir, maildrop.DropDir), err)
		if errors.Is(err, fs.ErrPermission) || errors.Is(err, maildrop.ErrNoMaildrop) {
			fmt.Fprintln(stderr, "mailtee sendmail: users other than root submit through the setgid install of mailtee (group setgid_group), into the maildrop that mailtee serve makes at its start")
		}
		return exitRuntime
	}
	// A stopped server is no failure: the file waits in maildrop for
	// its next start, as with Postfix.
	return exitOK
}
