package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/mailtee/mailtee/internal/config"
	"github.com/mailtee/mailtee/internal/diag"
	"github.com/mailtee/mailtee/internal/master"
	"github.com/mailtee/mailtee/internal/preflight"
)

// exitCheckFailed is preflight's status when a check failed: 2 is a
// runtime failure (DESIGN.md), which a script must tell apart from "the
// destination is not ready".
const exitCheckFailed = 3

// preflightExtra are checks other features add to preflight, each built
// from main.cf (nil when the feature is off): SRS adds the checks of
// srs_domain this way, from an init of its own file.
var preflightExtra []func(cfg *config.Config) preflight.Check

func init() {
	commands["preflight"] = runPreflight
	usages["preflight"] = "preflight [-c DIR] [--send-test ADDR] [--rate N/INTERVAL] [--format text|json]   before the first copy: accounts, allow-listing, TLS and DNS at each copy destination; exit 0 nothing failed, 1 bad input, 2 runtime failure, 3 a check failed"
	usageOrder = append(usageOrder, "preflight")
}

func runPreflight(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("preflight", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprintln(stderr, usageOf("preflight")) }
	dir := fs.String("c", defaultConfigDir(), "configuration directory")
	sendTest := fs.String("send-test", "", "send one real message to this test mailbox by the copies' route")
	rate := fs.String("rate", "1/s", "at most N RCPT probes per INTERVAL at each destination")
	format := fs.String("format", "text", "text or json")
	rest, err := parseArgs(fs, args)
	if err != nil {
		return exitBadData
	}
	if len(rest) > 0 {
		fmt.Fprintf(stderr, "mailtee preflight: unexpected argument %q\n%s\n", rest[0], usageOf("preflight"))
		return exitBadData
	}
	if *format != "text" && *format != "json" {
		fmt.Fprintf(stderr, "mailtee preflight: --format %q: text or json\n", *format)
		return exitBadData
	}
	interval, err := preflight.ParseRate(*rate)
	if err != nil {
		fmt.Fprintf(stderr, "mailtee preflight: --rate: %v\n", err)
		return exitBadData
	}
	cfg, err := config.Load(*dir)
	if err != nil {
		fmt.Fprintf(stderr, "mailtee preflight: %v\n", err)
		return exitBadData
	}
	all, opened := master.Check(cfg)
	if all.HasErrors() {
		for _, d := range all {
			if d.Severity == diag.Error {
				fmt.Fprintf(stderr, "%v\n", d)
			}
		}
		fmt.Fprintf(stderr, "mailtee preflight: %s has errors (mailtee check -c %s lists them all)\n", cfg.File, cfg.Dir)
		return exitBadData
	}
	router, err := master.Router(cfg, opened)
	if err != nil {
		fmt.Fprintf(stderr, "mailtee preflight: %v\n", err)
		return exitBadData
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	o, err := preflight.FromConfig(ctx, cfg, opened, router, preflight.Settings{SendTest: *sendTest, Interval: interval})
	if err != nil {
		fmt.Fprintf(stderr, "mailtee preflight: %v\n", err)
		return exitBadData
	}
	o.Progress = func(s string) { fmt.Fprintf(stderr, "mailtee %s\n", s) }
	for _, extra := range preflightExtra {
		if c := extra(cfg); c != nil {
			o.Extra = append(o.Extra, c)
		}
	}
	rep := preflight.Run(ctx, o)
	if *format == "json" {
		err = rep.WriteJSON(stdout)
	} else {
		err = rep.WriteText(stdout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "mailtee preflight: %v\n", err)
		return exitRuntime
	}
	if rep.Failed() {
		return exitCheckFailed
	}
	return exitOK
}
