// Command mailtee is a mail transfer agent for mail migrations: it reads
// Postfix's main.cf and lookup tables and delivers every message to the old
// server and the new provider. This file only dispatches subcommands.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/mailtee/mailtee/internal/asuser"
	"github.com/mailtee/mailtee/internal/config"
	"github.com/mailtee/mailtee/internal/master"
)

// Exit codes, as DESIGN.md sets them.
const (
	exitOK      = 0
	exitBadData = 1 // bad input: configuration, table, arguments
	exitRuntime = 2 // runtime failure
)

var commands = map[string]func(args []string, stdout, stderr io.Writer) int{
	"check":     runCheck,
	"postconf":  runPostconf,
	"postmap":   runPostmap,
	"postalias": runPostalias,
	"serve":     runServe,
	"queue":     runQueue,
	"reload":    runReload,
	"sendmail":  func(args []string, stdout, stderr io.Writer) int { return runSendmail(args, os.Stdin, stdout, stderr) },
}

// usages is kept apart from commands: a command that prints its own
// usage would otherwise refer to commands from within it, an
// initialization cycle.
var usages = map[string]string{
	"check":     "check [-c DIR]             report every error and warning in main.cf and its tables",
	"postconf":  "postconf [-c DIR] [-n|-d] [-h] [-x] [name...]   show parameters as Postfix's postconf",
	"postmap":   "postmap [-c DIR] [-q key | -s] [type:]file      validate or query a lookup table",
	"postalias": "postalias [-c DIR] [-q key | -s] [type:]file    validate or query an aliases file",
	"serve":     "serve [-c DIR]             run the MTA: SMTP server, queue, deliveries",
	"queue":     "queue [-c DIR] list | flush | delete ID | hold ID | release ID",
	"reload":    "reload [-c DIR]            check main.cf and tell a running server",
	"sendmail":  "sendmail [-c DIR] [-f sender] [-t] [-i] [rcpt ...]   queue the message on standard input",
}

func main() {
	if err := dropPrivileges(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "mailtee: %v\n", err)
		os.Exit(exitRuntime)
	}
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
	if args[0] == asuser.Command {
		return asuser.Main(args[1:]) // started by serve, not listed
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "mailtee: unknown command %q\n", args[0])
		usage(stderr)
		return exitBadData
	}
	return cmd(args[1:], stdout, stderr)
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: mailtee COMMAND [options]")
	for _, name := range []string{"serve", "check", "postconf", "postmap", "postalias", "queue", "sendmail", "reload", "import-postfix-queue"} {
		fmt.Fprintln(w, "  mailtee", usages[name])
	}
}

// defaultConfigDir is where Postfix keeps its configuration; MAIL_CONFIG
// overrides it as it does for Postfix's commands.
func defaultConfigDir() string {
	if d := os.Getenv("MAIL_CONFIG"); d != "" {
		return d
	}
	return builtinConfigDir
}

// runReload asks a running server to re-read its configuration; one with
// errors is refused and the running configuration kept.
func runReload(args []string, stdout, stderr io.Writer) int {
	cfg, ok := loadConfig("reload", flag.NewFlagSet("reload", flag.ContinueOnError), args, stderr)
	if !ok {
		return exitBadData
	}
	if _, err := master.Control(master.QueueDir(cfg), "reload"); err != nil {
		fmt.Fprintf(stderr, "mailtee reload: %v\n", err)
		if errors.Is(err, master.ErrNoServer) {
			return exitRuntime
		}
		return exitBadData
	}
	return exitOK
}

// loadConfig parses the flags of a subcommand that takes no operand (at
// least -c DIR) and loads DIR/main.cf, reporting failures as "mailtee
// NAME: ...". ok is false when the command should exit with exitBadData.
func loadConfig(name string, fs *flag.FlagSet, args []string, stderr io.Writer) (cfg *config.Config, ok bool) {
	cfg, _, ok = loadConfigArgs(name, fs, args, 0, stderr)
	return cfg, ok
}

// loadConfigArgs is loadConfig for a subcommand with up to max operands,
// which it returns; flags may come before, between and after them
// (parseArgs).
func loadConfigArgs(name string, fs *flag.FlagSet, args []string, max int, stderr io.Writer) (cfg *config.Config, operands []string, ok bool) {
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprintln(stderr, usageOf(name)) }
	dir := fs.String("c", defaultConfigDir(), "configuration directory")
	operands, err := parseArgs(fs, args)
	if err != nil {
		return nil, nil, false
	}
	if len(operands) > max {
		fmt.Fprintf(stderr, "mailtee %s: unexpected argument %q\n%s\n", name, operands[max], usageOf(name))
		return nil, nil, false
	}
	cfg, err = config.Load(*dir)
	if err != nil {
		fmt.Fprintf(stderr, "mailtee %s: %v\n", name, err)
		return nil, nil, false
	}
	return cfg, operands, true
}
