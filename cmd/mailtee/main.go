// Command mailtee is a mail transfer agent for mail migrations: it reads
// Postfix's main.cf and lookup tables and delivers every message to the old
// server and the new provider. This file only dispatches subcommands.
package main

import (
	"fmt"
	"io"
	"os"
)

// Exit codes, as DESIGN.md sets them.
const (
	exitOK      = 0
	exitBadData = 1 // bad input: configuration, table, arguments
	exitRuntime = 2 // runtime failure
)

type command struct {
	run   func(args []string, stdout, stderr io.Writer) int
	usage string
}

var commands = map[string]command{
	"check":     {runCheck, "check [-c DIR]             report every error and warning in main.cf and its tables"},
	"postconf":  {runPostconf, "postconf [-c DIR] [-n|-d] [-h] [-x] [name...]   show parameters as Postfix's postconf"},
	"postmap":   {runPostmap, "postmap [-c DIR] [-q key | -s] [type:]file      validate or query a lookup table"},
	"postalias": {runPostalias, "postalias [-c DIR] [-q key | -s] [type:]file    validate or query an aliases file"},
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "help" || args[0] == "--help" {
		usage(stderr)
		if len(args) == 0 {
			return exitBadData
		}
		return exitOK
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "mailtee: unknown command %q\n", args[0])
		usage(stderr)
		return exitBadData
	}
	return cmd.run(args[1:], stdout, stderr)
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: mailtee COMMAND [options]")
	for _, name := range []string{"check", "postconf", "postmap", "postalias"} {
		fmt.Fprintln(w, "  mailtee", commands[name].usage)
	}
}

// defaultConfigDir is where Postfix keeps its configuration; MAIL_CONFIG
// overrides it as it does for Postfix's commands.
func defaultConfigDir() string {
	if d := os.Getenv("MAIL_CONFIG"); d != "" {
		return d
	}
	return "/etc/postfix"
}
