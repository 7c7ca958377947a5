package main

import (
	"flag"
	"fmt"
	"io"

	"github.com/mailtee/mailtee/internal/diag"
	"github.com/mailtee/mailtee/internal/master"
	"github.com/mailtee/mailtee/internal/web"
)

// runCheck reports every error and warning in main.cf and in every table
// it names, and exits 0 when there are only warnings.
func runCheck(args []string, stdout, stderr io.Writer) int {
	cfg, ok := loadConfig("check", flag.NewFlagSet("check", flag.ContinueOnError), args, stderr)
	if !ok {
		return exitBadData
	}
	all, opened := master.Check(cfg)
	all = append(all, master.MailboxFindings(cfg)...)
	all = append(all, web.LedgerReach(cfg)...) // check only: serve never waits for the database
	all = append(all, master.ProbeTables(cfg, opened)...)
	infos, sockets := master.LMTPSockets(cfg, opened)
	all = append(all, sockets...)
	for _, d := range all {
		fmt.Fprintf(stdout, "%v\n", d)
	}
	for _, s := range infos {
		fmt.Fprintln(stdout, s)
	}
	errs, warns := 0, 0
	for _, d := range all {
		switch d.Severity {
		case diag.Error:
			errs++
		case diag.Warning:
			warns++
		}
	}
	fmt.Fprintf(stdout, "%s: %d error(s), %d warning(s)\n", cfg.File, errs, warns)
	if errs > 0 {
		return exitBadData
	}
	return exitOK
}
