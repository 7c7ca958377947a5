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
	"github.com/mailtee/mailtee/internal/migrate"
)

func init() {
	commands["migrate"] = runMigrate
	usages["migrate"] = "migrate [-c DIR] --copy-to PATTERN [--postfix] [--min-uid N] [--domain D]   write the copy map of the real mailboxes (PATTERN: %u@relay.example.com)"
	usageOrder = append(usageOrder, "migrate")
	helps["migrate"] = `usage: mailtee migrate [-c DIR] --copy-to PATTERN [--postfix] [--min-uid N] [--domain D]

Writes the copy map of a migration on standard output: one entry per
real mailbox of the server that DIR/main.cf describes, never one for an
alias or a list (their members get theirs). Mailboxes are the accounts
of the name service (getent passwd) when local_recipient_maps is empty
or names unix:passwd.byname (its default), the keys of its other
tables, and the keys of virtual_mailbox_maps; minus system accounts (uid
below --min-uid, default 1000; nobody; a shell that is nologin, false or
not in /etc/shells) and accounts that alias_maps or virtual_alias_maps
send elsewhere. What has no entry, and why, goes to standard error.

  --copy-to PATTERN  the copy address: %u the user, %d the domain, %% a %;
                     for example %u@relay.students.iiit.ac.in
  --postfix          aliases(5) entries "user1: \user1, COPY" for a Postfix
                     primary's alias_maps, instead of a mailbox_bcc_maps table
  --min-uid N        lowest uid of a person's account (1000)
  --domain D         the accounts' domain (default $myorigin when it is local)

Exit status: 0 ok, 1 bad main.cf, table or argument, 2 the name service failed.
`
}

// migrateAccounts lists the name service's accounts; tests replace it.
var migrateAccounts = migrate.NSSAccounts

// runMigrate implements `mailtee migrate`: flags and output only; what a
// mailbox is, is internal/migrate's.
func runMigrate(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprintln(stderr, usageOf("migrate")) }
	dir := fs.String("c", defaultConfigDir(), "configuration directory")
	copyTo := fs.String("copy-to", "", "the copy address of each mailbox: %u user, %d domain, %% a %")
	postfix := fs.Bool("postfix", false, "write aliases(5) entries for a Postfix primary instead of a mailbox_bcc_maps table")
	minUID := fs.Uint("min-uid", 1000, "lowest uid of a person's account")
	domain := fs.String("domain", "", "local domain of the accounts' addresses (default $myorigin when local)")
	rest, err := parseArgs(fs, args)
	if err != nil {
		return exitBadData
	}
	if len(rest) > 0 {
		fmt.Fprintf(stderr, "mailtee migrate: unexpected argument %q\n%s\n", rest[0], usageOf("migrate"))
		return exitBadData
	}
	if *copyTo == "" {
		fmt.Fprintf(stderr, "mailtee migrate: --copy-to PATTERN is required, for example --copy-to '%%u@relay.example.com'\n%s\n", usageOf("migrate"))
		return exitBadData
	}
	pat, err := migrate.ParsePattern(*copyTo)
	if err != nil {
		fmt.Fprintf(stderr, "mailtee migrate: %v\n", err)
		return exitBadData
	}
	if *minUID > 1<<32-1 {
		fmt.Fprintf(stderr, "mailtee migrate: --min-uid %d is not a uid\n", *minUID)
		return exitBadData
	}
	cfg, err := config.Load(*dir)
	if err != nil {
		fmt.Fprintf(stderr, "mailtee migrate: %v\n", err)
		return exitBadData
	}
	o := migrate.Options{CopyTo: pat, Postfix: *postfix, MinUID: uint32(*minUID), Domain: strings.ToLower(*domain), Accounts: migrateAccounts}
	warnings, err := migrate.FromConfig(cfg, &o)
	for _, w := range warnings {
		fmt.Fprintf(stderr, "mailtee migrate: %s\n", w)
	}
	if err != nil {
		fmt.Fprintf(stderr, "mailtee migrate: %v\n", err)
		return exitBadData
	}
	if o.Shells, err = migrate.LoginShells(migrate.ShellsFile); err != nil {
		fmt.Fprintf(stderr, "mailtee migrate: %v\n", err)
		return exitRuntime
	}
	res, err := migrate.Build(context.Background(), o)
	if err != nil {
		fmt.Fprintf(stderr, "mailtee migrate: %v\n", err)
		var ce *migrate.ConfigError
		if errors.As(err, &ce) {
			return exitBadData
		}
		return exitRuntime
	}
	h := migrate.Header{Command: migrateCommand(*dir, *copyTo, *postfix, *minUID, *domain), Time: time.Now(), Sources: o.Sources(),
		AliasMaps: cfg.Get("alias_maps"), AliasDatabase: cfg.Get("alias_database")}
	write := migrate.WriteTable
	if *postfix {
		write = migrate.WriteAliases
	}
	if err := write(stdout, h, res.Mailboxes); err != nil {
		fmt.Fprintf(stderr, "mailtee migrate: writing the output: %v\n", err)
		return exitRuntime
	}
	migrate.Summary(stderr, "mailtee migrate", res, *postfix)
	if *postfix {
		fmt.Fprintln(stderr, "mailtee migrate: to use these entries on the Postfix primary:")
		for _, l := range migrate.PostfixAdvice(h) {
			fmt.Fprintln(stderr, "  "+l)
		}
	}
	return exitOK
}

// migrateCommand is the command line for the output's header.
func migrateCommand(dir, copyTo string, postfix bool, minUID uint, domain string) string {
	s := fmt.Sprintf("mailtee migrate -c %s --copy-to %s", dir, copyTo)
	if postfix {
		s += " --postfix"
	}
	if minUID != 1000 {
		s += fmt.Sprintf(" --min-uid %d", minUID)
	}
	if domain != "" {
		s += " --domain " + domain
	}
	return s
}
