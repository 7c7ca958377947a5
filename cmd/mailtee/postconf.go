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
	dir := fs.String("c", defaultConfigDir(), "configuration directory")
	onlySet := fs.Bool("n", false, "show only parameters set in main.cf")
	defs := fs.Bool("d", false, "show default values")
	hide := fs.Bool("h", false, "show values only, without \"name = \"")
	expand := fs.Bool("x", false, "expand $name references")
	if err := fs.Parse(splitFlags(args, "ndhx")); err != nil {
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
	names := fs.Args()
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
		if *expand {
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

// splitFlags turns clustered boolean flags such as postconf's "-xh" into
// "-x -h", the way Postfix's getopt reads them; bools lists the letters
// that are boolean flags. Every other flag takes a value in the next
// argument. Arguments after the first non-flag stay as they are.
func splitFlags(args []string, bools string) []string {
	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" || !strings.HasPrefix(a, "-") || len(a) < 2 {
			return append(out, args[i:]...)
		}
		if len(a) == 2 && !strings.Contains(bools, a[1:]) && i+1 < len(args) {
			out = append(out, a, args[i+1])
			i++
			continue
		}
		if len(a) > 2 && a[1] != '-' && strings.Trim(a[1:], bools) == "" {
			for _, c := range a[1:] {
				out = append(out, "-"+string(c))
			}
			continue
		}
		out = append(out, a)
	}
	return out
}
