package master

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/mailtee/mailtee/internal/config"
	"github.com/mailtee/mailtee/internal/diag"
	"github.com/mailtee/mailtee/internal/maps"
)

// postfixQueueDir is postfix_queue_directory, made absolute: where a
// relative LMTP socket such as private/dovecot-lmtp is, as Postfix's
// lmtp(8) finds it under its queue_directory.
func postfixQueueDir(cfg *config.Config) string {
	d := cfg.Get("postfix_queue_directory")
	if abs, err := filepath.Abs(d); err == nil {
		return abs
	}
	return d
}

// LMTPSockets tells, for each LMTP "unix:" socket that check can see
// (the transport parameters and the results of the transport_maps it
// can list), which path serve will connect to when it is relative
// (infos, printed but not counted), and warns when no socket is there:
// mail to it would wait in the queue.
func LMTPSockets(cfg *config.Config, opened map[string]maps.Table) (infos []string, warns diag.List) {
	seen := map[string]bool{}
	check := func(line int, where, nexthop string) {
		for _, el := range config.SplitList(nexthop) {
			p, ok := strings.CutPrefix(el, "unix:")
			if !ok {
				continue
			}
			path := p
			if !filepath.IsAbs(p) {
				path = filepath.Join(postfixQueueDir(cfg), p)
			}
			if seen[path] {
				continue
			}
			seen[path] = true
			if path != p {
				loc := cfg.File
				if line > 0 {
					loc += fmt.Sprintf(", line %d", line)
				}
				infos = append(infos, fmt.Sprintf("info: %s: %s: lmtp socket %s is %s (under postfix_queue_directory)", loc, where, p, path))
			}
			fi, err := os.Stat(path)
			switch {
			case errors.Is(err, fs.ErrNotExist):
				warns.Warnf(cfg.File, line, "%s: lmtp socket %s does not exist; mail to it waits in the queue until it does (is the LMTP server running, and is postfix_queue_directory Postfix's queue_directory?)", where, path)
			case err != nil:
				// Postfix's private/ is open to its owner only.
				warns.Warnf(cfg.File, line, "%s: lmtp socket %s: cannot check it: %v", where, path, unwrapPath(err))
			case fi.Mode()&os.ModeSocket == 0:
				warns.Warnf(cfg.File, line, "%s: lmtp socket %s is not a socket", where, path)
			}
		}
	}
	for _, name := range []string{"mailbox_transport", "local_transport", "relay_transport", "default_transport"} {
		if transport, nexthop, ok := strings.Cut(cfg.Get(name), ":"); ok && transport == "lmtp" {
			check(settingLine(cfg, name), name, nexthop)
		}
	}
	lines := map[string]int{}
	for _, ref := range cfg.TableRefs() {
		lines[ref.Spec] = ref.Line
	}
	for _, spec := range cfg.List("transport_maps") {
		l, ok := opened[spec].(maps.Lister)
		if !ok {
			continue
		}
		for _, e := range l.Entries() {
			if transport, nexthop, ok := strings.Cut(e.Value, ":"); ok && transport == "lmtp" {
				check(lines[spec], fmt.Sprintf("transport_maps: %s: %s", spec, e.Key), nexthop)
			}
		}
	}
	return infos, warns
}

// unwrapPath drops the path that os.Stat's error repeats.
func unwrapPath(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}
