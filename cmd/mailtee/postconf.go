package main

import (
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/mailtee/mailtee/internal/config"
)

// runPostconf prints parameters in postconf(1)'s format: "name = value",
// or just the value with -h; -n shows only what main.cf sets, -d the
// defaults, -x expands $name references.
func runPostconf(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("postconf", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprintln(stderr, usageOf("postconf")) }
	dir := fs.String("c", defaultConfigDir(), "configuration directory")
	onlySet := fs.Bool("n", false, "show only parameters set in main.cf")
	defs := fs.Bool("d", false, "show default values")
	hide := fs.Bool("h", false, "show values only, without \"name = \"")
	expand := fs.Bool("x", false, "expand $name references")
	names, err := parseArgs(fs, args)
	if err != nil {
		return exitBadData
	}
	cfg, err := config.Load(*dir)
	if err != nil {
		fmt.Fprintf(stderr, "mailtee postconf: %v\n", err)
		return exitBadData
	}
	for _, d := range cfg.Diags {
		fmt.Fprintf(stderr, "mailtee postconf: %v\n", d)
	}
	if *onlySet && len(names) > 0 {
		// postconf -n NAME...: only those of the names that main.cf sets.
		var set []string
		for _, n := range names {
			if _, ok := cfg.Set(n); ok {
				set = append(set, n)
			}
		}
		names = set
	} else if len(names) == 0 {
		if *onlySet {
			for _, s := range cfg.Settings() {
				names = append(names, s.Name)
			}
		} else {
			names = cfg.Names()
		}
	}
	status := exitOK
	for _, name := range names {
		var (
			v  string
			ok bool
		)
		if *defs {
			v, ok = cfg.Default(name)
		} else {
			v, ok = cfg.Raw(name)
		}
		if name == "mynetworks" && !*defs {
			// Postfix's postconf stops when it cannot compute it.
			if _, err := cfg.Mynetworks(); err != nil {
				fmt.Fprintf(stderr, "mailtee postconf: fatal: %v\n", err)
				return exitBadData
			}
		}
		if !ok {
			fmt.Fprintf(stderr, "mailtee postconf: warning: %s: unknown parameter", name)
			if near := config.Suggest(name); near != "" {
				fmt.Fprintf(stderr, "; did you mean %s?", near)
			}
			fmt.Fprintln(stderr)
			continue
		}
		if *expand && !config.IsRaw(name) {
			// As Postfix's postconf: $user in mailbox_command or
			// $rbl_code in default_rbl_reply is for local(8) or smtpd(8)
			// to expand at run time.
			if v, err = cfg.Expand(v); err != nil {
				fmt.Fprintf(stderr, "mailtee postconf: %s: %v\n", name, err)
				status = exitBadData
				continue
			}
		}
		// postconf prints a value with each run of blanks as one space.
		v = strings.Join(strings.Fields(v), " ")
		if *hide {
			fmt.Fprintln(stdout, v)
		} else if v == "" {
			fmt.Fprintf(stdout, "%s =\n", name)
		} else {
			fmt.Fprintf(stdout, "%s = %s\n", name, v)
		}
	}
	return status
}
