package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"syscall"

	"github.com/mailtee/mailtee/internal/config"
)

// builtinConfigDir is the configuration directory when neither -c nor
// MAIL_CONFIG names one, and the one whose main.cf lists the
// alternate_config_directories a setgid sendmail honours. Tests set it
// with go build -ldflags "-X main.builtinConfigDir=DIR".
var builtinConfigDir = "/etc/postfix"

// postdropGid is the group of a setgid mailtee (setgid_group, postdrop
// by convention), kept as the saved group ID for sendmail's write into
// maildrop; -1 when mailtee does not run setgid.
var postdropGid = -1

// dropPrivileges runs first in main. An installed setgid copy of mailtee
// lends its group to sendmail's drop into maildrop and to nothing else:
// every other command loses it for good before it parses an argument,
// and sendmail holds it only as the saved group ID until it writes.
// mailtee is never meant to run setuid: that is dropped for all.
func dropPrivileges(args []string) error {
	if uid := os.Getuid(); os.Geteuid() != uid {
		if err := syscall.Setresuid(uid, uid, uid); err != nil {
			return fmt.Errorf("dropping setuid privileges: %w", err)
		}
	}
	gid, egid := os.Getgid(), os.Getegid()
	if egid == gid {
		return nil
	}
	if len(args) > 0 && args[0] == "sendmail" {
		if err := syscall.Setresgid(-1, gid, egid); err != nil {
			return fmt.Errorf("dropping setgid privileges: %w", err)
		}
		postdropGid = egid
		return nil
	}
	if err := syscall.Setresgid(gid, gid, gid); err != nil {
		return fmt.Errorf("dropping setgid privileges: %w", err)
	}
	return nil
}

// withPostdrop runs f with the setgid group effective, when there is one.
func withPostdrop(f func() error) error {
	if postdropGid < 0 {
		return f()
	}
	if err := syscall.Setresgid(-1, postdropGid, -1); err != nil {
		return err
	}
	err := f()
	gid := os.Getgid()
	if derr := syscall.Setresgid(gid, gid, gid); derr != nil && err == nil {
		err = derr
	}
	postdropGid = -1
	return err
}

// configDirAllowed is Postfix's rule for a setgid postdrop: a caller
// other than root may name another configuration directory (-c or
// MAIL_CONFIG) only if the built-in one's main.cf lists it in
// alternate_config_directories; otherwise a user's own main.cf could
// point the setgid write anywhere the group may write.
func configDirAllowed(dir string) error {
	if postdropGid < 0 || os.Getuid() == 0 || filepath.Clean(dir) == filepath.Clean(builtinConfigDir) {
		return nil
	}
	cfg, err := config.Load(builtinConfigDir)
	if err != nil {
		return fmt.Errorf("-c %s: checking alternate_config_directories: %w", dir, err)
	}
	var listed []string
	for _, d := range cfg.List("alternate_config_directories") {
		listed = append(listed, filepath.Clean(d))
	}
	if !slices.Contains(listed, filepath.Clean(dir)) {
		return fmt.Errorf("-c %s: not allowed for an unprivileged user: not listed in alternate_config_directories of %s", dir, cfg.File)
	}
	return nil
}
