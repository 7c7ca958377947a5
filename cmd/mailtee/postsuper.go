package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/mailtee/mailtee/internal/config"
	"github.com/mailtee/mailtee/internal/maillog"
	"github.com/mailtee/mailtee/internal/master"
	"github.com/mailtee/mailtee/internal/queue"
)

// superQueues are the queue names postsuper takes as operands, with
// mailtee's meaning (showq.Class); maildrop is Postfix's too, but
// mailtee's maildrop files are not queued messages yet.
var superQueues = []string{"hold", "incoming", "active", "deferred"}

// superAction is one -d, -h or -H of the command line, in order.
type superAction struct {
	op  string // delete, hold, release
	arg string // a queue ID, ALL, or - (IDs from standard input)
}

// runPostsuper is Postfix's postsuper(1) for what mailtee's spool has:
// -d (delete), -h (hold), -H (release), each with a queue ID, ALL, or -
// for IDs on standard input, restricted to the queues named as
// operands, done in command-line order (src/postsuper/postsuper.c).
// With a running server the changes go through its control socket;
// with none, straight to the spool, under the lock a starting server
// takes (master.EditQueue). Messages go to standard error as Postfix's:
// "postsuper: ID: removed", then "postsuper: Deleted: N messages".
func runPostsuper(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	const name = "postsuper"
	fl := flag.NewFlagSet(name, flag.ContinueOnError)
	fl.SetOutput(io.Discard)
	dir := fl.String("c", defaultConfigDir(), "")
	var actions []superAction
	var refused string
	for op, letter := range map[string]string{"delete": "d", "hold": "h", "release": "H"} {
		fl.Func(letter, "", func(v string) error { actions = append(actions, superAction{op, v}); return nil })
	}
	for _, letter := range []string{"e", "f", "r"} {
		fl.Func(letter, "", func(string) error { refused = "-" + letter; return nil })
	}
	for _, letter := range []string{"p", "s", "S", "v"} {
		fl.Bool(letter, false, "") // queue repair and verbosity: mailtee's spool needs none
	}
	queues, err := parseArgs(fl, args)
	if err != nil {
		fmt.Fprintf(stderr, "%s: fatal: usage: postsuper [-c config_dir] [-d queue_id (delete)] [-h queue_id (hold)] [-H queue_id (un-hold)] [-p] [-s] [-S] [-v] [queue...]\n", name)
		return exitBadData
	}
	if refused != "" {
		what := map[string]string{"-e": "-e (expire)", "-f": "-f (expire and release)", "-r": "-r (requeue)"}[refused]
		fmt.Fprintf(stderr, "%s: fatal: %s is not supported by mailtee: use -d, -h or -H, or mailtee queue flush\n", name, what)
		return exitBadData
	}
	for _, q := range queues {
		if q == "maildrop" {
			fmt.Fprintf(stderr, "%s: fatal: queue maildrop: mailtee's maildrop files are not queued yet (the server's pickup queues them); start the server, then name the queue ID\n", name)
			return exitBadData
		}
		if !slices.Contains(superQueues, q) {
			fmt.Fprintf(stderr, "%s: fatal: invalid directory name: %s (use %s)\n", name, q, strings.Join(superQueues, ", "))
			return exitBadData
		}
	}
	if os.Getuid() != 0 {
		fmt.Fprintf(stderr, "%s: fatal: use of this command is reserved for the superuser\n", name)
		return exitBadData
	}
	cfg, err := config.Load(*dir)
	if err != nil {
		fmt.Fprintf(stderr, "%s: fatal: %v\n", name, err)
		return exitBadData
	}
	qdir := master.QueueDir(cfg)
	// The server logs the changes made through it; those made on the
	// spool of a stopped one are logged here, opened at the first.
	var mlog *maillog.Logger
	closeLog := func() {}
	logOffline := func(cfg *config.Config, id, what string) {
		if mlog == nil {
			if mlog, closeLog = commandLog(cfg); mlog == nil {
				return
			}
		}
		mlog.Printf("postsuper", "%s: %s by the administrator", id, what)
	}
	counts := map[string]int{}
	used := map[string]bool{}
	for _, a := range actions {
		used[a.op] = true
		var ids []string // nil: ALL
		switch a.arg {
		case "ALL":
		case "-":
			sc := bufio.NewScanner(stdin)
			for sc.Scan() {
				if id := strings.TrimSpace(sc.Text()); id != "" {
					ids = append(ids, id)
				}
			}
			if ids == nil {
				continue
			}
		default:
			ids = []string{a.arg}
		}
		var valid []string
		for _, id := range ids {
			if queue.ValidID(id) {
				valid = append(valid, id)
			} else {
				fmt.Fprintf(stderr, "%s: warning: invalid mail queue id: %s\n", name, id)
			}
		}
		if ids != nil && valid == nil {
			continue
		}
		n, _, err := master.EditQueue(qdir, a.op, valid, queues, func(id string, offline bool) {
			what := map[string]string{"delete": "removed", "hold": "placed on hold", "release": "released from hold"}[a.op]
			fmt.Fprintf(stderr, "%s: %s: %s\n", name, id, what)
			if offline {
				logOffline(cfg, id, what)
			}
		}, stderr)
		counts[a.op] += n
		if err != nil {
			closeLog()
			fmt.Fprintf(stderr, "%s: fatal: %v\n", name, err)
			return exitRuntime
		}
	}
	closeLog()
	for _, op := range []string{"delete", "hold", "release"} {
		if used[op] {
			s := ""
			if counts[op] != 1 {
				s = "s"
			}
			fmt.Fprintf(stderr, "%s: %s: %d message%s\n", name, map[string]string{"delete": "Deleted", "hold": "Placed on hold", "release": "Released from hold"}[op], counts[op], s)
		}
	}
	return exitOK
}
