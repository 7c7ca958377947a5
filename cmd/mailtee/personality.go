package main

import (
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Exit codes of sendmail(1) and postqueue(1), from <sysexits.h>, as
// Postfix's src/sendmail/sendmail.c and src/postqueue/postqueue.c use
// them: callers (cron, mail(1), PHP) tell a temporary failure (75) from
// a permanent one by them.
const (
	exUsage       = 64 // EX_USAGE: bad command line
	exDataErr     = 65 // EX_DATAERR: bad input data
	exUnavailable = 69 // EX_UNAVAILABLE: service unavailable
	exSoftware    = 70 // EX_SOFTWARE: internal error
	exTempFail    = 75 // EX_TEMPFAIL: try again later
	exNoPerm      = 77 // EX_NOPERM: permission denied
)

// linkNames are the Postfix programs mailtee behaves as when started
// under their name (a link, or a copy): the name is argv[0]'s last
// element, as Postfix's sendmail takes it (src/sendmail/sendmail.c).
var linkNames = []string{"sendmail", "mailq", "newaliases", "postqueue", "postsuper"}

// personality returns the arguments of run for the command line argv:
// argv[1:] for mailtee itself, and the subcommand named by argv[0]
// followed by argv[1:] when mailtee was started as one of linkNames.
func personality(argv []string) []string {
	if len(argv) == 0 {
		return nil
	}
	name := filepath.Base(argv[0])
	if slices.Contains(linkNames, name) {
		return append([]string{name}, argv[1:]...)
	}
	return argv[1:]
}

// usageOrder is the order of the commands in mailtee's usage.
var usageOrder = []string{"serve", "check", "postconf", "postmap", "postalias", "queue", "sendmail", "reload",
	"import-postfix-queue", "mailq", "newaliases", "postqueue", "postsuper", "version"}

func init() {
	commands["mailq"] = runMailq
	commands["newaliases"] = runNewaliases
	commands["postqueue"] = runPostqueue
	commands["postsuper"] = func(args []string, stdout, stderr io.Writer) int {
		return runPostsuper(args, os.Stdin, stdout, stderr)
	}
	commands["version"] = runVersion
	usages["mailq"] = "mailq [-c DIR]             list the queue, as Postfix's mailq"
	usages["newaliases"] = "newaliases [-c DIR] [-oAFILE]   validate the alias files, as Postfix's newaliases"
	usages["postqueue"] = "postqueue [-c DIR] -p | -j | -f | -i ID | -s SITE   list or flush the queue"
	usages["postsuper"] = "postsuper [-c DIR] [-d ID|ALL] [-h ID|ALL] [-H ID|ALL] [queue...]   delete, hold, release"
	usages["sendmail"] = "sendmail [-C DIR] [-f sender] [-t] [-i] [-bs|-bp|-bi|-q] [rcpt ...]   queue the message on standard input"
	usages["version"] = "version                    print mailtee's version"
}

// helps is the full usage of each command, printed by -h (where -h is
// not one of the command's own options) and --help, on standard
// output, with exit 0.
var helps = map[string]string{
	"serve": `usage: mailtee serve [-c DIR]

Runs the MTA on DIR/main.cf (default $MAIL_CONFIG, else /etc/postfix):
the SMTP listeners, the queue in queue_directory, pickup of sendmail's
submissions, and deliveries. Refuses to start when mailtee check finds
an error.

  -c DIR   configuration directory

Signals: SIGHUP reloads main.cf and its tables (as mailtee reload);
SIGTERM and SIGINT stop gracefully: no new connections, sessions and
deliveries in flight get up to 30 seconds to finish.
`,
	"check": `usage: mailtee check [-c DIR]

Reads DIR/main.cf and every table it names and prints each error and
warning as "severity: file, line N: message". Exit 1 on an error.

  -c DIR   configuration directory
`,
	"queue": `usage: mailtee queue [-c DIR] VERB [ID]

Verbs:
  list           list the queue (as mailq); works with the server stopped
  flush          retry every deferred recipient now (as postqueue -f)
  delete ID      remove a message, telling no one (as postsuper -d)
  hold ID        stop deliveries of a message (as postsuper -h)
  release ID     resume deliveries of a held message (as postsuper -H)

delete, hold and release act on the spool directly when the server is
stopped, and through the running server otherwise.

  -c DIR   configuration directory
`,
	"reload": `usage: mailtee reload [-c DIR]

Tells the running server to re-read main.cf and its tables, as SIGHUP
does. A configuration with errors is refused (exit 1), the running one
kept.

  -c DIR   configuration directory
`,
	"version": `usage: mailtee version

Prints "mailtee VERSION (GOVERSION)".
`,
	"sendmail": `usage: mailtee sendmail [options] [recipient...]
       sendmail [options] [recipient...]   (mailtee started through a link)

Queues the message on standard input, as Postfix's sendmail.

  -t             recipients also from To:, Cc: and Bcc: (Bcc: is removed)
  -i, -oi        a line with a single "." does not end the message
  -f ADDR        envelope sender (also -r ADDR, -fADDR)
  -F NAME        sender's full name (accepted; ignored)
  -C FILE|DIR    main.cf, or its directory (also -c DIR)
  -bm            deliver mail (the default)
  -bs            SMTP on standard input and output
  -bp            list the queue (mailq)
  -bi, -I        validate the alias files (newaliases); -oAFILE names one
  -q             flush the queue (postqueue -f); -qRSITE, -qIID as Postfix
  -bh, -bH, -qINTERVAL, -oXXX, -odi, -oem, -v, -G, -U, -N, -R, -V, -B, -L, -O
                 accepted and ignored, as by Postfix
Refused: -bd/-bl (run mailtee serve), -bv, -n, -X.
Exit codes as Postfix's: 0 ok, 64 usage, 65 bad data, 69 unavailable,
75 temporary failure (also an unreadable main.cf), 77 permission denied.
`,
	"mailq": `usage: mailq [-c DIR]

Lists the queue as Postfix's mailq: queue ID ("!" held, "*" being
delivered), size, arrival time, sender, then each pending recipient
with the reason of its last failure.
`,
	"newaliases": `usage: newaliases [-c DIR] [-oAFILE]

Validates the alias files: each file of alias_database, and of
alias_maps, or FILE. mailtee reads the source text, so there is no
database to build. Prints every finding as "file, line N: message";
exit 1 when a line is ignored or a file cannot be read.
`,
	"postqueue": `usage: postqueue [-c DIR] -p | -j | -f | -i ID | -s SITE

  -p       list the queue, as mailq
  -j       list the queue as JSON, one object per message (Postfix's format)
  -f       retry every deferred message now
  -i ID    retry the message ID now
  -s SITE  retry the messages with recipients in domain SITE now
`,
	"postsuper": `usage: postsuper [-c DIR] [-d ID|ALL|-] [-h ID|ALL|-] [-H ID|ALL|-] [queue...]

  -d ID    delete the message (ALL: every message; -: IDs from standard input)
  -h ID    put the message on hold
  -H ID    release the message from hold
  queue    with ALL: only the messages of these queues: hold, deferred,
           incoming, active
  -p, -s, -S, -v  accepted and ignored (mailtee's spool needs no repair)
Refused: -e, -f (expire), -r (requeue).

Works on a stopped server, on the spool directly (under the lock that
mailtee serve takes at its start), and through a running one.
`,
}

// ownH are the commands whose -h is an option of their own (postconf's
// -h, postsuper's hold) or that follow Postfix's options (sendmail,
// postqueue): only --help prints their usage.
var ownH = map[string]bool{"postconf": true, "postmap": true, "postalias": true, "postsuper": true,
	"sendmail": true, "postqueue": true, "mailq": true, "newaliases": true}

// helpFor returns the full usage of command name when args ask for it
// (-h, -help or --help before any "--").
func helpFor(name string, args []string) (string, bool) {
	for _, a := range args {
		if a == "--" {
			break
		}
		if a == "--help" || a == "-help" || a == "-h" && !ownH[name] {
			if h, ok := helps[name]; ok {
				return h, true
			}
			if u, ok := usages[name]; ok {
				return "usage: mailtee " + strings.Replace(u, "   ", "\n\n", 1) + "\n", true
			}
		}
	}
	return "", false
}
