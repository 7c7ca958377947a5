package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// version is mailtee's version. A release build sets it with
// go build -ldflags "-X main.version=1.2.3" (dist/install.sh does);
// otherwise it comes from the build information: the module's version
// when built with go install, else the VCS revision go build records.
var version = ""

// versionString returns mailtee's version, "devel" when nothing says which.
func versionString() string {
	if version != "" {
		return version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = "-dirty"
			}
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev != "" {
		return "devel-" + rev + modified
	}
	return "devel"
}

// runVersion prints "mailtee VERSION (go1.x)".
func runVersion(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		fmt.Fprintf(stderr, "mailtee version: unexpected argument %q\n%s\n", args[0], usageOf("version"))
		return exitBadData
	}
	fmt.Fprintf(stdout, "mailtee %s (%s)\n", versionString(), runtime.Version())
	return exitOK
}
