package main

import (
	"fmt"
	"io"
	"os"
	goruntime "runtime"
	"runtime/pprof"
	"strconv"
	"strings"
)

// startProfile writes a CPU profile of the running server to the file
// named by MAILTEE_CPUPROFILE, and a heap profile to MAILTEE_MEMPROFILE
// when it stops: how bench/compare.sh's figures are explained. The
// returned function ends both; without the variables it does nothing.
// "%p" in a name stands for the process ID, for runs of several servers
// (compare.sh's seed flow).
func startProfile(stderr io.Writer) func() {
	pid := strconv.Itoa(os.Getpid())
	cpu := strings.ReplaceAll(os.Getenv("MAILTEE_CPUPROFILE"), "%p", pid)
	mem := strings.ReplaceAll(os.Getenv("MAILTEE_MEMPROFILE"), "%p", pid)
	var f *os.File
	if cpu != "" {
		var err error
		if f, err = os.Create(cpu); err != nil {
			fmt.Fprintf(stderr, "mailtee serve: MAILTEE_CPUPROFILE: %v\n", err)
		} else if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintf(stderr, "mailtee serve: MAILTEE_CPUPROFILE: %v\n", err)
			f.Close()
			f = nil
		}
	}
	return func() {
		if f != nil {
			pprof.StopCPUProfile()
			f.Close()
		}
		if mem == "" {
			return
		}
		goruntime.GC()
		mf, err := os.Create(mem)
		if err != nil {
			fmt.Fprintf(stderr, "mailtee serve: MAILTEE_MEMPROFILE: %v\n", err)
			return
		}
		defer mf.Close()
		if err := pprof.Lookup("allocs").WriteTo(mf, 0); err != nil {
			fmt.Fprintf(stderr, "mailtee serve: MAILTEE_MEMPROFILE: %v\n", err)
		}
	}
}
