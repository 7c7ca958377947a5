package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/mailtee/mailtee/internal/command"
	"github.com/mailtee/mailtee/internal/diag"
	"github.com/mailtee/mailtee/internal/master"
)

// runServe checks main.cf as `mailtee check` does, refuses to start on
// an error, and runs the server until SIGTERM or SIGINT; SIGHUP reloads.
func runServe(args []string, stdout, stderr io.Writer) int {
	cfg, ok := loadConfig("serve", flag.NewFlagSet("serve", flag.ContinueOnError), args, stderr)
	if !ok {
		return exitBadData
	}
	findings, opened := master.Check(cfg)
	for _, d := range findings {
		if d.Severity == diag.Error {
			fmt.Fprintf(stderr, "mailtee serve: %v\n", d)
		}
	}
	if findings.HasErrors() {
		fmt.Fprintf(stderr, "mailtee serve: %s has errors; not starting (mailtee check -c %s lists every finding)\n", cfg.File, cfg.Dir)
		return exitBadData
	}
	sd := newNotifier() // before the environment is trimmed
	// Postfix's master keeps only import_environment's variables: what
	// export_environment hands commands comes from there (LANG=C by
	// default). Go's own settings stay for the runtime's sake.
	if err := command.CleanEnv(append(cfg.List("import_environment"), "GOGC", "GOMEMLIMIT", "GODEBUG", "GOMAXPROCS", "MAILTEE_CPUPROFILE", "MAILTEE_MEMPROFILE")); err != nil {
		fmt.Fprintf(stderr, "mailtee serve: %v\n", err)
		return exitBadData
	}
	// Signals are ours from before the listeners open: a SIGHUP or
	// SIGTERM that arrives as soon as the port answers must not kill the
	// process with Go's default action.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	s, err := master.New(cfg, stderr, opened)
	if err != nil {
		fmt.Fprintf(stderr, "mailtee serve: %v\n", err)
		return exitRuntime
	}
	for _, d := range findings {
		s.Log().Printf("master", "%v", d) // "warning: ..." or "info: ..."
	}
	if err := s.Start(); err != nil {
		fmt.Fprintf(stderr, "mailtee serve: %v\n", err)
		return exitRuntime
	}
	sd.notify("READY=1\nSTATUS=listening; queue " + master.QueueDir(cfg))
	stopProfile := startProfile(stderr)
	defer stopProfile()
	stopGC := make(chan struct{})
	defer close(stopGC)
	go master.GCTuner(stopGC)
	drained := s.Drained() // closed when mailtee drain has emptied the queue
wait:
	for {
		select {
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				sd.notify("RELOADING=1")
				s.Reload(cfg.Dir)
				sd.notify("READY=1")
				continue
			}
			s.Log().Printf("master", "terminating on signal %v", sig)
			break wait
		case <-drained:
			s.Log().Printf("master", "terminating: drained, the queue is empty")
			break wait
		}
	}
	sd.notify("STOPPING=1")
	s.Stop(30 * time.Second)
	return exitOK
}
