package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/mailtee/mailtee/internal/config"
	"github.com/mailtee/mailtee/internal/ledger"
	"github.com/mailtee/mailtee/internal/master"
	"github.com/mailtee/mailtee/internal/pflog"
	"github.com/mailtee/mailtee/internal/queue"
	"github.com/mailtee/mailtee/internal/report"
)

// Exit codes of report, as grep's: 0 all delivered, 1 misses, 2 errors.
const (
	reportOK     = 0
	reportMisses = 1
	reportError  = 2
)

func init() {
	commands["report"] = runReport
	commands["status"] = runStatus
	usages["report"] = "report [-c DIR] [--since T] [--until T] [--user ADDR] [--format text|json|csv] [--postfix-log FILE --postfix-config DIR]   reconcile every required delivery, across the ledger_peers"
	usages["status"] = "status [-c DIR]            the queue by destination and age, throughput, copies, the reconciliation figure"
	usageOrder = append(usageOrder, "report", "status")
}

// openLedger opens this host's ledger for reading; tests replace it.
var openLedger = func(path string) (ledger.Reader, io.Closer, error) {
	st, err := ledger.OpenReader(path)
	if err != nil {
		return nil, nil, err
	}
	return st, st, nil
}

// loadPostfixLog reads a Postfix primary's log and main.cf into a
// ledger.Reader (internal/pflog); tests replace it.
var loadPostfixLog = func(logFile, configDir string) (ledger.Reader, error) {
	return pflog.Load(logFile, configDir, pflog.Options{})
}

func runReport(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprintln(stderr, usageOf("report")) }
	dir := fs.String("c", defaultConfigDir(), "configuration directory")
	since := fs.String("since", "", "arrivals from T: RFC 3339, a date (2026-12-07) or an age (24h, 7d)")
	until := fs.String("until", "", "arrivals before T")
	user := fs.String("user", "", "messages from, to or delivered to ADDR (a local part matches any domain)")
	format := fs.String("format", "text", "text, json or csv")
	pfLog := fs.String("postfix-log", "", "read a Postfix primary's log instead of this host's ledger")
	pfConfig := fs.String("postfix-config", "", "the Postfix primary's configuration directory (with --postfix-log)")
	rest, err := parseArgs(fs, args)
	if err != nil {
		return reportError
	}
	if len(rest) > 0 {
		fmt.Fprintf(stderr, "mailtee report: unexpected argument %q\n%s\n", rest[0], usageOf("report"))
		return reportError
	}
	cSet := false
	fs.Visit(func(f *flag.Flag) { cSet = cSet || f.Name == "c" })
	now := time.Now()
	var f ledger.Filter
	for _, t := range []struct {
		name, val string
		to        *time.Time
	}{{"since", *since, &f.Since}, {"until", *until, &f.Until}} {
		if t.val == "" {
			continue
		}
		v, err := report.ParseTime(t.val, now, time.Local)
		if err != nil {
			fmt.Fprintf(stderr, "mailtee report: --%s %v\n", t.name, err)
			return reportError
		}
		*t.to = v
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Until.After(f.Since) {
		// An empty window reconciles nothing: "100%, exit 0" would
		// read as all delivered.
		fmt.Fprintf(stderr, "mailtee report: --until %s is not after --since %s: the window is empty; swap them?\n",
			f.Until.Format(time.RFC3339), f.Since.Format(time.RFC3339))
		return reportError
	}
	f.User = strings.TrimSpace(*user)
	switch *format {
	case "text", "json", "csv":
	default:
		fmt.Fprintf(stderr, "mailtee report: --format %q: want text, json or csv\n", *format)
		return reportError
	}
	if (*pfLog == "") != (*pfConfig == "") {
		fmt.Fprintln(stderr, "mailtee report: --postfix-log FILE and --postfix-config DIR go together")
		return reportError
	}

	var src report.Sources
	cfg, cfgErr := config.Load(*dir)
	if *pfLog != "" {
		// A Postfix primary: its log is the local side; this host's
		// ledger (the relay's) and its peers are where copies went.
		r, err := loadPostfixLog(*pfLog, *pfConfig)
		if err != nil {
			fmt.Fprintf(stderr, "mailtee report: %v\n", err)
			return reportError
		}
		src.Local = r
		if l, ok := r.(*pflog.Log); ok {
			st := l.Stats()
			fmt.Fprintf(stderr, "mailtee report: %s: %d lines, %d skipped (not syslog lines), %d messages, %d seen without their start, %d never queued\n",
				*pfLog, st.Lines, st.Skipped, st.Messages, len(st.Partial), st.NotQueued)
		}
		if cfgErr != nil && cSet {
			fmt.Fprintf(stderr, "mailtee report: %v\n", cfgErr)
			return reportError
		}
		if cfgErr == nil {
			if l, c, err := report.OpenLocal(cfg, openLedger); err == nil {
				defer c.Close()
				src.Peers = append(src.Peers, report.Peer{URL: "local:" + ledger.Describe(report.LocalPath(cfg)), Reader: l})
			} else if cSet {
				fmt.Fprintf(stderr, "mailtee report: warning: %v\n", err)
			}
		}
	} else {
		if cfgErr != nil {
			fmt.Fprintf(stderr, "mailtee report: %v\n", cfgErr)
			return reportError
		}
		l, c, err := report.OpenLocal(cfg, openLedger)
		if err != nil {
			fmt.Fprintf(stderr, "mailtee report: %v\n", err)
			return reportError
		}
		defer c.Close()
		src.Local = l
	}
	if cfgErr == nil {
		peers, err := report.PeersOf(cfg)
		if err != nil {
			fmt.Fprintf(stderr, "mailtee report: %v\n", err)
			return reportError
		}
		src.Peers = append(src.Peers, peers...)
	}

	r, err := report.Build(context.Background(), src, f, now)
	if err != nil {
		fmt.Fprintf(stderr, "mailtee report: %v\n", err)
		return reportError
	}
	switch *format {
	case "json":
		err = report.WriteJSON(stdout, r)
	case "csv":
		err = report.WriteCSV(stdout, r)
	default:
		err = report.WriteText(stdout, r)
	}
	if err != nil {
		fmt.Fprintf(stderr, "mailtee report: %v\n", err)
		return reportError
	}
	code := reportOK
	if len(r.Misses) > 0 {
		code = reportMisses
	}
	for _, p := range r.Peers {
		if p.Errors > 0 {
			fmt.Fprintf(stderr, "mailtee report: peer %s: %s (the deliveries it holds are counted by this host's state)\n", p.URL, p.Error)
			code = reportError
		}
	}
	return code
}

// runStatus prints one screen: the queue (from the running server, or
// the spool of a stopped one), and the ledger's last day.
func runStatus(args []string, stdout, stderr io.Writer) int {
	cfg, ok := loadConfig("status", flag.NewFlagSet("status", flag.ContinueOnError), args, stderr)
	if !ok {
		return exitBadData
	}
	qdir := master.QueueDir(cfg)
	var list []queue.Info
	rep, err := master.Control(qdir, "list")
	running := err == nil
	switch {
	case running:
		list = rep.List
	case errors.Is(err, master.ErrNoServer):
		list, err = listQueue(qdir) // the spool of a stopped server
	}
	if err != nil {
		fmt.Fprintf(stderr, "mailtee status: %v\n", err)
		return exitRuntime
	}
	var l ledger.Reader
	if report.LocalPath(cfg) != "" {
		r, c, err := report.OpenLocal(cfg, openLedger)
		if err != nil {
			fmt.Fprintf(stderr, "mailtee status: %v\n", err)
			return exitRuntime
		}
		defer c.Close()
		l = r
	}
	s, err := report.BuildStatus(context.Background(), list, l, time.Now())
	if err != nil {
		fmt.Fprintf(stderr, "mailtee status: %v\n", err)
		return exitRuntime
	}
	s.Running = running
	if err := report.WriteStatus(stdout, s); err != nil {
		fmt.Fprintf(stderr, "mailtee status: %v\n", err)
		return exitRuntime
	}
	return exitOK
}
