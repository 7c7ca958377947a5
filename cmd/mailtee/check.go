package main

import (
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/mailtee/mailtee/internal/config"
	"github.com/mailtee/mailtee/internal/diag"
	"github.com/mailtee/mailtee/internal/maps"
)

// runCheck reports every error and warning in main.cf and in every table
// it names, and exits 0 when there are only warnings.
func runCheck(args []string, stdout, stderr io.Writer) int {
	cfg, ok := loadConfig("check", flag.NewFlagSet("check", flag.ContinueOnError), args, stderr)
	if !ok {
		return exitBadData
	}
	all, opened := checkAll(cfg)
	all = append(all, mailboxFindings(cfg)...)
	infos, sockets := lmtpSockets(cfg, opened)
	all = append(all, sockets...)
	for _, d := range all {
		fmt.Fprintf(stdout, "%v\n", d)
	}
	for _, s := range infos {
		fmt.Fprintln(stdout, s)
	}
	errs, warns := 0, 0
	for _, d := range all {
		if d.Severity == diag.Error {
			errs++
		} else {
			warns++
		}
	}
	fmt.Fprintf(stdout, "%s: %d error(s), %d warning(s)\n", cfg.File, errs, warns)
	if errs > 0 {
		return exitBadData
	}
	return exitOK
}

// checkAll is main.cf's findings followed by those of each table, opened
// once even when several parameters name it. The tables that opened are
// returned too, so that serve need not read a large table twice.
func checkAll(cfg *config.Config) (diag.List, map[string]maps.Table) {
	all := cfg.Check()
	all = append(all, privsFindings(cfg)...)
	opened := map[string]maps.Table{}
	seen := map[string]bool{}
	for _, ref := range cfg.TableRefs() {
		if seen[ref.Spec] {
			continue
		}
		seen[ref.Spec] = true
		open := maps.Open
		if ref.Alias {
			open = maps.OpenAlias
		}
		t, diags, err := open(ref.Spec)
		if err == nil {
			opened[ref.Spec] = t
		}
		all = append(all, diags...)
		if err != nil && !diags.HasErrors() {
			all = append(all, diag.Diag{File: cfg.File, Line: ref.Line, Severity: diag.Error,
				Msg: fmt.Sprintf("%s: %s", ref.Param, strings.TrimPrefix(err.Error(), ref.Spec+": "))})
		}
	}
	return all, opened
}
