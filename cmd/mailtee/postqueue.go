package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/mailtee/mailtee/internal/config"
	"github.com/mailtee/mailtee/internal/maillog"
	"github.com/mailtee/mailtee/internal/master"
	"github.com/mailtee/mailtee/internal/queue"
)

// listQueue describes the queue of qdir: the running server's, or the
// spool's when no server runs. A spool that was never made (no server
// ever started on this configuration) is an empty queue: listing it
// creates nothing.
func listQueue(qdir string) ([]queue.Info, error) {
	r, err := master.Control(qdir, "list")
	switch {
	case err == nil:
		return r.List, nil
	case !errors.Is(err, master.ErrNoServer):
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(qdir, "queue")); errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	} else if errors.Is(err, fs.ErrPermission) {
		return nil, fmt.Errorf("%w: only root can list mailtee's queue (%s)", err, qdir)
	}
	list, err := queue.ListDir(qdir)
	if errors.Is(err, fs.ErrPermission) {
		return nil, fmt.Errorf("%w: only root can list mailtee's queue (%s)", err, qdir)
	}
	return list, err
}

// queueClass is the Postfix queue a message would be in: hold, active
// (being delivered), deferred (a recipient was tried and failed), or
// incoming (not tried yet), for postsuper's queue operands and
// postqueue -j's queue_name.
func queueClass(m queue.Info) string {
	switch {
	case m.Hold:
		return "hold"
	case m.Active:
		return "active"
	}
	for _, r := range m.Rcpts {
		if r.Status == "deferred" {
			return "deferred"
		}
	}
	return "incoming"
}

// pending are the recipients mailq shows: those not delivered or
// bounced yet.
func pending(m queue.Info) []queue.RcptInfo {
	var out []queue.RcptInfo
	for _, r := range m.Rcpts {
		if r.Status != "sent" && r.Status != "bounced" {
			out = append(out, r)
		}
	}
	return out
}

// printQueue prints the queue the way Postfix's mailq does with long
// queue IDs (src/postqueue/showq_compat.c, L_STRING_FORMAT): ID (with
// '!' when held, '*' when being delivered), size, arrival, sender, then
// each pending recipient after the reason of its last failure, right-
// aligned at column 76 as Postfix's. mailtee's IDs are 19
// characters where Postfix's long ones are 17: the ID column is as wide
// as the longest ID with its mark, so the columns line up under the
// header.
func printQueue(w io.Writer, list []queue.Info) {
	if len(list) == 0 {
		fmt.Fprintln(w, "Mail queue is empty")
		return
	}
	width := 17 // Postfix's long-ID column
	for _, m := range list {
		width = max(width, len(maillog.Printable(m.ID))+1)
	}
	dashes := width - len("Queue ID")
	heading := strings.Repeat("-", dashes/2) + "Queue ID" + strings.Repeat("-", dashes-dashes/2)
	row := fmt.Sprintf("%%-%ds %%8s %%-19s %%s\n", width)
	fmt.Fprintf(w, row, heading, "--Size--", "---Arrival Time----", "--Sender/Recipient------")
	var total int64
	for i, m := range list {
		if i > 0 {
			fmt.Fprintln(w)
		}
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
		fmt.Fprintf(w, row, maillog.Printable(m.ID)+mark, fmt.Sprint(m.Size), m.Arrival.Format("Mon Jan _2 15:04:05"), maillog.Printable(from))
		for _, r := range pending(m) {
			// Each recipient's reason, where Postfix prints one only
			// when it differs from the previous recipient's: a reader
			// (or a script) of one line pair needs no context.
			if show := maillog.Printable(r.Reason); show != "" {
				fmt.Fprintf(w, "%*s(%s)\n", max(76-len(show), 0), "", show)
			}
			fmt.Fprintf(w, row, "", "", "", maillog.Printable(r.Addr))
		}
		total += m.Size
	}
	fmt.Fprintf(w, "\n-- %d Kbytes in %d Request%s.\n", total/1024, len(list), map[bool]string{true: "s", false: ""}[len(list) != 1])
}

// jsonMessage is one line of postqueue -j, in Postfix's format
// (src/postqueue/showq_json.c).
type jsonMessage struct {
	QueueName    string          `json:"queue_name"`
	QueueID      string          `json:"queue_id"`
	ArrivalTime  int64           `json:"arrival_time"`
	MessageSize  int64           `json:"message_size"`
	ForcedExpire bool            `json:"forced_expire"`
	Sender       string          `json:"sender"`
	Recipients   []jsonRecipient `json:"recipients"`
}

type jsonRecipient struct {
	OrigAddress string `json:"orig_address"`
	Address     string `json:"address"`
	DelayReason string `json:"delay_reason,omitempty"`
}

// printJSON prints the queue as postqueue -j: one JSON object per
// message and line, strings made printable as Postfix does.
func printJSON(w io.Writer, list []queue.Info) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	for _, m := range list {
		jm := jsonMessage{QueueName: queueClass(m), QueueID: m.ID, ArrivalTime: m.Arrival.Unix(), MessageSize: m.Size,
			Sender: maillog.Printable(m.From), Recipients: []jsonRecipient{}}
		for _, r := range pending(m) {
			jm.Recipients = append(jm.Recipients, jsonRecipient{Address: maillog.Printable(r.Addr), DelayReason: maillog.Printable(r.Reason)})
		}
		if err := enc.Encode(jm); err != nil {
			return err
		}
	}
	return nil
}

// runMailq is Postfix's mailq: sendmail -bp, which runs postqueue -p
// (src/sendmail/sendmail.c), so it takes sendmail's options.
func runMailq(args []string, stdout, stderr io.Writer) int {
	return sendmail("mailq", args, os.Stdin, stdout, stderr)
}

// runPostqueue is Postfix's postqueue(1): -p, -j, -f, -i ID, -s SITE.
func runPostqueue(args []string, stdout, stderr io.Writer) int {
	return postqueue("postqueue", args, "", stdout, stderr)
}

// postqueue runs postqueue's mode (p, j, f, i, s) given by the
// command line, or mode when it gives none. Exit codes are
// postqueue's (src/postqueue/postqueue.c): 64 for bad usage, 69 when
// the mail system is down for a flush, 77 without permission.
func postqueue(name string, args []string, mode string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet(name, flag.ContinueOnError)
	fl.SetOutput(io.Discard)
	dir := fl.String("c", defaultConfigDir(), "")
	var modes []string
	var id, site string
	for _, m := range []string{"p", "j", "f"} {
		fl.BoolFunc(m, "", func(string) error { modes = append(modes, m); return nil })
	}
	fl.Func("i", "", func(v string) error { modes, id = append(modes, "i"), v; return nil })
	fl.Func("s", "", func(v string) error { modes, site = append(modes, "s"), v; return nil })
	fl.Bool("v", false, "") // verbose: accepted
	usage := func() int {
		if name == "mailq" {
			fmt.Fprintf(stderr, "%s: fatal: usage: mailq [-c DIR]\n", name)
		} else {
			fmt.Fprintf(stderr, "%s: fatal: usage: postqueue -f | postqueue -i queueid | postqueue -j | postqueue -p | postqueue -s site\n", name)
		}
		return exUsage
	}
	operands, err := parseArgs(fl, args)
	if err != nil || len(operands) > 0 || len(modes) > 1 || name == "mailq" && len(modes) > 0 && modes[0] != "p" {
		return usage()
	}
	if len(modes) == 1 {
		mode = modes[0]
	}
	if mode == "" {
		return usage()
	}
	cfg, err := config.Load(*dir)
	if err != nil {
		fmt.Fprintf(stderr, "%s: fatal: %v\n", name, err)
		return exitBadData
	}
	qdir := master.QueueDir(cfg)
	switch mode {
	case "p", "j":
		list, err := listQueue(qdir)
		if err != nil {
			fmt.Fprintf(stderr, "%s: fatal: %v\n", name, err)
			if errors.Is(err, fs.ErrPermission) {
				return exNoPerm
			}
			return exUnavailable
		}
		if mode == "j" {
			err = printJSON(stdout, list)
		} else {
			printQueue(stdout, list)
		}
		if err != nil {
			return exSoftware
		}
		return exitOK
	}
	// Flushes: only a running server delivers.
	request := "flush"
	switch mode {
	case "i":
		if !queue.ValidID(id) {
			fmt.Fprintf(stderr, "%s: fatal: Cannot flush queue ID - invalid name: %q\n", name, id)
			return exUsage
		}
		request = "flush " + id
	case "s":
		// mailtee keeps no per-site flush log (fast_flush_domains):
		// -s flushes the whole queue, which retries the site's mail
		// too, and sooner than nothing.
		if site == "" || strings.ContainsAny(site, " \t\r\n/") {
			fmt.Fprintf(stderr, "%s: fatal: Cannot flush mail queue - invalid destination: %q\n", name, site)
			return exUsage
		}
	}
	if _, err := master.Control(qdir, request); err != nil {
		if errors.Is(err, master.ErrNoServer) && os.Geteuid() != 0 {
			fmt.Fprintf(stderr, "%s: fatal: only root can flush mailtee's queue: %v\n", name, err)
			return exNoPerm
		}
		if errors.Is(err, master.ErrNoServer) {
			fmt.Fprintf(stderr, "%s: fatal: Cannot flush mail queue - mail system is down (%v)\n", name, err)
			return exUnavailable
		}
		if strings.Contains(err.Error(), queue.ErrNotFound.Error()) {
			fmt.Fprintf(stderr, "%s: fatal: Cannot flush queue ID %s: %v\n", name, id, err)
			return exUnavailable
		}
		fmt.Fprintf(stderr, "%s: fatal: %v\n", name, err)
		if errors.Is(err, fs.ErrPermission) {
			return exNoPerm
		}
		return exUnavailable
	}
	return exitOK
}
