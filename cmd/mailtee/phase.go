package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/mailtee/mailtee/internal/master"
	"github.com/mailtee/mailtee/internal/migration"
)

func init() {
	commands["phase"] = runPhase
	usages["phase"] = "phase [-c DIR] show | diff PHASE   each copy-map user's migration phase, or what a switch of dual_delivery_phase to PHASE (off, dual, forward) would change"
	usageOrder = append(usageOrder, "phase")
}

// runPhase prints the users of the copy maps and their phases (show), or
// what would change with another dual_delivery_phase (diff: exit 0
// whether or not anything would; 1 for bad input). It changes nothing.
func runPhase(args []string, stdout, stderr io.Writer) int {
	cfg, rest, ok := loadConfigArgs("phase", flag.NewFlagSet("phase", flag.ContinueOnError), args, 2, stderr)
	if !ok {
		return exitBadData
	}
	usage := func() int {
		fmt.Fprintln(stderr, usageOf("phase"))
		return exitBadData
	}
	if len(rest) == 0 {
		return usage()
	}
	target := ""
	switch rest[0] {
	case "show":
		if len(rest) != 1 {
			return usage()
		}
	case "diff":
		if len(rest) != 2 {
			return usage()
		}
		if !migration.ValidPhase(rest[1]) {
			fmt.Fprintf(stderr, "mailtee phase: %q is not a phase: expected off, dual or forward\n", rest[1])
			return usage()
		}
		target = rest[1]
	default:
		return usage()
	}
	changes, skipped, err := master.PhasePlan(context.Background(), cfg, target)
	if err != nil {
		fmt.Fprintf(stderr, "mailtee phase: %v\n", err)
		return exitBadData
	}
	if target == "" {
		migration.WriteShow(stdout, cfg.Get("dual_delivery_phase"), changes, skipped)
		return exitOK
	}
	migration.WriteDiff(stdout, cfg.Get("dual_delivery_phase"), target, changes, skipped)
	return exitOK
}
