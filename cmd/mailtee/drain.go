package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/mailtee/mailtee/internal/drain"
	"github.com/mailtee/mailtee/internal/master"
)

func init() {
	commands["drain"] = runDrain
	usages["drain"] = "drain [-c DIR] [--to NODE] [--wait DURATION]   retire this node: stop accepting, deliver what it can, hand the rest to another fleet node, exit"
	usageOrder = append(usageOrder, "drain")
}

// runDrain asks the running serve to drain and prints its progress:
// exit 0 once the queue is empty (serve exits), 1 when the request is
// refused (no fleet, no node to take the mail), 2 when the drain fails
// or no server runs.
func runDrain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("drain", flag.ContinueOnError)
	to := fs.String("to", "", "the fleet node to hand the mail to (default: any serving node)")
	wait := fs.Duration("wait", drain.DefaultWait, "how long deliveries may try before the rest is handed over")
	cfg, _, ok := loadConfigArgs("drain", fs, args, 0, stderr)
	if !ok {
		return exitBadData
	}
	var last string
	st, err := master.Drain(master.QueueDir(cfg), drain.Request{To: *to, Wait: *wait}, func(s drain.Status) {
		if line := progressLine(s); line != last {
			fmt.Fprintf(stdout, "mailtee drain: %s\n", line)
			last = line
		}
	})
	switch {
	case errors.Is(err, master.ErrDrainRefused):
		fmt.Fprintf(stderr, "mailtee drain: %v\n", strings.TrimPrefix(err.Error(), master.ErrDrainRefused.Error()+": "))
		return exitBadData
	case err != nil:
		fmt.Fprintf(stderr, "mailtee drain: %v\n", err)
		return exitRuntime
	case st.State != "done":
		fmt.Fprintf(stderr, "mailtee drain: %s\n", st.Error)
		return exitRuntime
	}
	return exitOK
}

// progressLine is one status as the command prints it.
func progressLine(s drain.Status) string {
	to := s.To
	if to == "" {
		to = "any serving node"
	}
	switch s.State {
	case "stopping":
		return fmt.Sprintf("%s: closing the SMTP listeners and pickup; %d messages queued", s.Node, s.Queued)
	case "delivering":
		return fmt.Sprintf("delivering: %d messages left, %d not tried yet since the drain began", s.Left, s.Unattempted)
	case "handing off":
		return fmt.Sprintf("handing off to %s: %d handed over, %d left", to, s.HandedOff, s.Left)
	case "done":
		return fmt.Sprintf("done: the queue is empty; %d of %d messages handed to %s, the rest delivered here (%s); mailtee serve exits",
			s.HandedOff, s.Queued, to, time.Since(s.Since).Round(time.Second))
	case "failed":
		return "failed: " + s.Error
	}
	return s.State
}
