package main

import (
	"flag"
	"fmt"
	"io"

	"github.com/mailtee/mailtee/internal/maillog"
	"github.com/mailtee/mailtee/internal/master"
	"github.com/mailtee/mailtee/internal/queue"
	"github.com/mailtee/mailtee/internal/showq"
)

// runQueue implements `mailtee queue list|flush|delete ID|hold ID|release
// ID` against a running server; list, delete, hold and release also work
// on a stopped one, on the spool files.
func runQueue(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("queue", flag.ContinueOnError)
	cfg, rest, ok := loadConfigArgs("queue", fs, args, 2, stderr) // VERB [ID]
	if !ok {
		return exitBadData
	}
	if len(rest) == 0 {
		fmt.Fprintln(stderr, usageOf("queue"))
		return exitBadData
	}
	qdir := master.QueueDir(cfg)
	verb := rest[0]
	switch verb {
	case "list":
		if len(rest) != 1 {
			break
		}
		list, err := listQueue(qdir)
		if err != nil {
			fmt.Fprintf(stderr, "mailtee queue: %v\n", err)
			return exitRuntime
		}
		showq.Print(stdout, list)
		return exitOK
	case "flush":
		if len(rest) != 1 {
			break
		}
		if _, err := master.Control(qdir, "flush"); err != nil {
			fmt.Fprintf(stderr, "mailtee queue: %v\n", err)
			return exitRuntime
		}
		return exitOK
	case "delete", "hold", "release":
		if len(rest) != 2 {
			break
		}
		// As postsuper: through the running server, or on the spool
		// of a stopped one (master.EditQueue).
		if !queue.ValidID(rest[1]) {
			fmt.Fprintf(stderr, "mailtee queue: %s %s: %v\n", verb, rest[1], queue.ErrBadID)
			return exitBadData
		}
		closeLog := func() {}
		_, found, err := master.EditQueue(qdir, verb, []string{rest[1]}, nil, func(id string, offline bool) {
			if offline {
				var log *maillog.Logger
				if log, closeLog = commandLog(cfg); log != nil {
					log.Printf("postsuper", "%s: %s by the administrator", id, map[string]string{"delete": "removed", "hold": "placed on hold", "release": "released from hold"}[verb])
				}
			}
		}, stderr)
		closeLog()
		if err != nil {
			fmt.Fprintf(stderr, "mailtee queue: %s %s: %v\n", verb, rest[1], err)
			return exitRuntime
		}
		if found == 0 {
			fmt.Fprintf(stderr, "mailtee queue: %s %s: %v\n", verb, rest[1], queue.ErrNotFound)
			return exitBadData
		}
		return exitOK
	}
	fmt.Fprintln(stderr, usageOf("queue"))
	return exitBadData
}
