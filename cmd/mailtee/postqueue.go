package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/mailtee/mailtee/internal/config"
	"github.com/mailtee/mailtee/internal/master"
	"github.com/mailtee/mailtee/internal/queue"
	"github.com/mailtee/mailtee/internal/showq"
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
			err = showq.PrintJSON(stdout, list)
		} else {
			showq.Print(stdout, list)
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
