package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/mailtee/mailtee/internal/maillog"
	"github.com/mailtee/mailtee/internal/master"
	"github.com/mailtee/mailtee/internal/pfimport"
)

// Registered here rather than in main.go's tables, whose alignment
// would make every helper's addition conflict with every other's.
func init() {
	commands["import-postfix-queue"] = runImportPostfixQueue
	usages["import-postfix-queue"] = "import-postfix-queue [-c DIR] [POSTFIX_QUEUE_DIR]   queue a stopped Postfix's mail in mailtee's queue"
}

// runImportPostfixQueue implements `mailtee import-postfix-queue [-c DIR]
// [POSTFIX_QUEUE_DIR]`: Postfix's queue (by default its queue_directory
// as Postfix reads main.cf, never mailtee's own) into mailtee's.
func runImportPostfixQueue(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("import-postfix-queue", flag.ContinueOnError)
	cfg, rest, ok := loadConfigArgs("import-postfix-queue", fs, args, 1, stderr)
	if !ok {
		return exitBadData
	}
	pfdir := cfg.Get("postfix_queue_directory")
	if len(rest) == 1 {
		pfdir = rest[0]
	}
	qdir := master.QueueDir(cfg)
	if same(pfdir, qdir) {
		fmt.Fprintf(stderr, "mailtee import-postfix-queue: %s is mailtee's own queue_directory; give Postfix's queue directory\n", pfdir)
		return exitBadData
	}
	logw, flush := io.Writer(stderr), func() error { return nil }
	if f := cfg.Get("maillog_file"); f != "" {
		lf, err := os.OpenFile(f, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
		if err != nil {
			fmt.Fprintf(stderr, "mailtee import-postfix-queue: maillog_file: %v\n", err)
			return exitRuntime
		}
		defer lf.Close()
		logw = lf
	} else {
		var warning string
		var fl func() error
		logw, fl, warning = maillog.DefaultLog(stderr, maillog.SyslogOptions{Facility: cfg.Get("syslog_facility")})
		if fl != nil {
			flush = fl
		}
		if warning != "" {
			fmt.Fprintf(stderr, "mailtee import-postfix-queue: %s\n", warning)
		}
	}
	defer flush()
	var program string
	if _, set := cfg.Set("syslog_name"); set {
		program = cfg.Get("syslog_name")
	}
	log := maillog.NewWithHandler(maillog.NewHandler(logw, &maillog.Options{Host: cfg.Get("myhostname"), Program: program}))
	sum, err := pfimport.Import(pfimport.Options{
		PostfixDir: pfdir,
		QueueDir:   qdir,
		DataDir:    cfg.DataDirectory(),
		// A running server is told of each message; a stopped one
		// finds them at its start.
		Queued: func(id string) { master.Control(qdir, "pickup "+id) },
		Log: func(line string) {
			if w, ok := strings.CutPrefix(line, "warning: "); ok {
				log.Warnf("import", "%s", w)
			} else {
				log.Printf("import", "%s", line)
			}
		},
	})
	if errors.Is(err, pfimport.ErrRunning) {
		fmt.Fprintf(stderr, "mailtee import-postfix-queue: %v\n", err)
		return exitBadData
	}
	// What was imported before a failure is in mailtee's queue: said
	// either way.
	printSummary(stdout, pfdir, qdir, sum)
	if err != nil {
		fmt.Fprintf(stderr, "mailtee import-postfix-queue: %v\n", err)
		return exitRuntime
	}
	return exitOK
}

func same(a, b string) bool {
	fa, err1 := os.Stat(a)
	fb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(fa, fb)
}

func printSummary(w io.Writer, pfdir, qdir string, s *pfimport.Summary) {
	if s == nil {
		return
	}
	var qs []string
	for q, n := range s.ByQueue {
		qs = append(qs, fmt.Sprintf("%s %d", q, n))
	}
	sort.Strings(qs)
	from := ""
	if len(qs) > 0 {
		from = " (" + strings.Join(qs, ", ") + ")"
	}
	fmt.Fprintf(w, "imported from %s into %s: %d messages, %d pending recipients, %d bounce notices owed, %d held, %d maildrop files for pickup%s\n",
		pfdir, qdir, s.Messages, s.Recipients, s.Bounced, s.Held, s.Maildrop, from)
	if s.Recovered > 0 {
		fmt.Fprintf(w, "%d messages staged by an interrupted import committed\n", s.Recovered)
	}
	if s.Done > 0 {
		fmt.Fprintf(w, "%d files with nothing left to deliver moved away\n", s.Done)
	}
	for _, sk := range s.Skipped {
		fmt.Fprintf(w, "left in Postfix's queue: %s\n", sk)
	}
}
