package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/mailtee/mailtee/internal/config"
	"github.com/mailtee/mailtee/internal/diag"
	"github.com/mailtee/mailtee/internal/maps"
	"github.com/mailtee/mailtee/internal/pflist"
)

func runPostmap(args []string, stdout, stderr io.Writer) int {
	return tableCommand("postmap", maps.Open, args, stdout, stderr)
}

func runPostalias(args []string, stdout, stderr io.Writer) int {
	return tableCommand("postalias", maps.OpenAlias, args, stdout, stderr)
}

// tableCommand implements postmap(1) and postalias(1) as far as a source
// text table goes: no .db is written, since mailtee reads the source. With
// no -q or -s it validates the file, exiting 1 with file and line on
// errors. -q prints the value (exit 1 when absent, as Postfix); "-q -"
// reads keys from standard input and prints "key value" for each found.
func tableCommand(name string, open func(string) (maps.Table, diag.List, error), args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprintln(stderr, usageOf(name)) }
	dir := fs.String("c", defaultConfigDir(), "configuration directory (for default_database_type)")
	query := fs.String("q", "", "look up `key` and print its value")
	seq := fs.Bool("s", false, "print every entry")
	files, err := parseArgs(fs, args)
	if err != nil {
		return exitBadData
	}
	if len(files) == 0 {
		fmt.Fprintln(stderr, usageOf(name))
		return exitBadData
	}
	queried := false
	fs.Visit(func(f *flag.Flag) { queried = queried || f.Name == "q" })
	status := exitOK
	var tables []maps.Table
	for _, spec := range files {
		if !pflist.IsTable(spec) {
			spec = defaultType(*dir) + ":" + spec
		}
		t, diags, err := open(spec)
		if !queried {
			// Validation reports every finding; a query only fails.
			for _, d := range diags {
				fmt.Fprintf(stderr, "mailtee %s: %v\n", name, d)
			}
		}
		if err != nil {
			if queried || len(diags) == 0 {
				fmt.Fprintf(stderr, "mailtee %s: %v\n", name, err)
			}
			status = exitBadData
			continue
		}
		tables = append(tables, t)
		if *seq {
			l, ok := t.(maps.Lister)
			if !ok {
				fmt.Fprintf(stderr, "mailtee %s: %s: sequential access is not supported for this table type\n", name, spec)
				status = exitBadData
				continue
			}
			for _, e := range l.Entries() {
				if name == "postalias" {
					fmt.Fprintf(stdout, "%s:\t%s\n", e.Key, e.Value)
				} else {
					fmt.Fprintf(stdout, "%s\t%s\n", e.Key, e.Value)
				}
			}
		}
	}
	if !queried || status != exitOK {
		return status
	}
	list := maps.List(tables)
	ctx := context.Background()
	if *query == "-" {
		found := false
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			key := strings.TrimSpace(sc.Text())
			if v, ok, err := list.Lookup(ctx, key); err != nil {
				fmt.Fprintf(stderr, "mailtee %s: %s: %v\n", name, key, err)
				return exitRuntime
			} else if ok {
				found = true
				if name == "postalias" {
					fmt.Fprintf(stdout, "%s:\t%s\n", key, v)
				} else {
					fmt.Fprintf(stdout, "%s\t%s\n", key, v)
				}
			}
		}
		if !found {
			return exitBadData
		}
		return exitOK
	}
	v, ok, err := list.Lookup(ctx, *query)
	if err != nil {
		fmt.Fprintf(stderr, "mailtee %s: %v\n", name, err)
		return exitRuntime
	}
	if !ok {
		return exitBadData
	}
	fmt.Fprintln(stdout, v)
	return exitOK
}

// defaultType is default_database_type from the configuration, or hash
// when there is no readable main.cf (postmap works without one).
func defaultType(dir string) string {
	cfg, err := config.Load(dir)
	if err != nil {
		return "hash"
	}
	if t := cfg.Get("default_database_type"); t != "" {
		return t
	}
	return "hash"
}
