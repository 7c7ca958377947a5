package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/mailtee/mailtee/internal/maillog"
	"github.com/mailtee/mailtee/internal/master"
	"github.com/mailtee/mailtee/internal/queue"
)

// runQueue implements `mailtee queue list|flush|delete ID|hold ID|release
// ID` against a running server; list also works on a stopped one, from
// the spool files.
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
		r, err := master.Control(qdir, "list")
		var list []queue.Info
		switch {
		case err == nil:
			list = r.List
		case errors.Is(err, master.ErrNoServer):
			if list, err = queue.ListDir(qdir); err != nil {
				fmt.Fprintf(stderr, "mailtee queue: %v\n", err)
				return exitRuntime
			}
		default:
			fmt.Fprintf(stderr, "mailtee queue: %v\n", err)
			return exitRuntime
		}
		printQueue(stdout, list)
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
		if _, err := master.Control(qdir, verb+" "+rest[1]); err != nil {
			fmt.Fprintf(stderr, "mailtee queue: %s %s: %v\n", verb, rest[1], err)
			if msg := err.Error(); strings.Contains(msg, queue.ErrNotFound.Error()) || strings.Contains(msg, queue.ErrBadID.Error()) {
				return exitBadData
			}
			return exitRuntime
		}
		return exitOK
	}
	fmt.Fprintln(stderr, usageOf("queue"))
	return exitBadData
}

// printQueue prints the queue the way Postfix's mailq does: ID (with '!'
// when held, '*' when being delivered), size, arrival, sender, then each
// pending recipient with the reason of its last failure.
func printQueue(w io.Writer, list []queue.Info) {
	if len(list) == 0 {
		fmt.Fprintln(w, "Mail queue is empty")
		return
	}
	fmt.Fprintln(w, "-Queue ID-      --Size-- ----Arrival Time---- -Sender/Recipient-------")
	var total int64
	for _, m := range list {
		mark := ""
		switch {
		case m.Hold:
			mark = "!"
		case m.Active:
			mark = "*"
		}
		from := m.From
		if from == "" {
			from = "MAILER-DAEMON"
		}
		// Everything but the size and date came from outside (a next
		// hop's reply, a client's addresses, a spool file): shown as the
		// log shows it, so that no escape sequence, CR or NUL reaches
		// the administrator's terminal, as Postfix's showq.
		fmt.Fprintf(w, "%-15s %8d %s  %s\n", maillog.Printable(m.ID)+mark, m.Size, m.Arrival.Format("Mon Jan _2 15:04:05"), maillog.Printable(from))
		for _, r := range m.Rcpts {
			if r.Status == "sent" || r.Status == "bounced" {
				continue
			}
			if r.Reason != "" {
				fmt.Fprintf(w, "%45s(%s)\n", "", maillog.Printable(r.Reason))
			}
			fmt.Fprintf(w, "%45s%s\n", "", maillog.Printable(r.Addr))
		}
		fmt.Fprintln(w)
		total += m.Size
	}
	fmt.Fprintf(w, "-- %d Kbytes in %d Request%s.\n", (total+1023)/1024, len(list), map[bool]string{true: "s", false: ""}[len(list) != 1])
}
