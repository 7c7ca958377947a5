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

// withPostdrop runs f with the setgid group effective, when there is
// one, and makes it the saved group ID alone again afterwards: sendmail
// -bs drops one file per message of its session. dropPostdrop lets it
// go for good.
func withPostdrop(f func() error) error {
	if postdropGid < 0 {
		return f()
	}
	if err := syscall.Setresgid(-1, postdropGid, -1); err != nil {
		return err
	}
	err := f()
	if derr := syscall.Setresgid(-1, os.Getgid(), -1); derr != nil {
		// Cannot give the group back up: give it up for good, or fail.
		if derr = dropPostdrop(); derr != nil {
			panic("mailtee: cannot drop the setgid group: " + derr.Error())
		}
	}
	return err
}

// dropPostdrop gives up the setgid group for good: real, effective and
// saved group IDs become the caller's.
func dropPostdrop() error {
	if postdropGid < 0 {
		return nil
	}
	gid := os.Getgid()
	if err := syscall.Setresgid(gid, gid, gid); err != nil {
		return fmt.Errorf("dropping setgid privileges: %w", err)
	}
	postdropGid = -1
	return nil
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
