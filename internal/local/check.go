package local

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// Finding is one problem CheckMailboxes found, for `mailtee check`: the
// parameter it concerns and what to do.
type Finding struct {
	Param string
	Msg   string
}

// CheckMailboxes looks for what stops mailboxes from being written with
// their recipient's privileges:
//
//   - Maildirs that an older mailtee, which wrote every mailbox as root,
//     left owned by root while their recipient is someone else (a passwd
//     user, or default_privs for a name with none): mailtee no longer
//     writes into them, and their users could not read them anyway;
//   - a mail spool below a directory that other users cannot pass
//     through, so that no recipient's helper can reach its mailbox;
//   - a world-writable spool without the sticky bit, where users can
//     swap each other's mailboxes.
//
// It reads only; o.DefaultPrivs must be resolved.
func CheckMailboxes(o Options, pw *Passwd) []Finding {
	var out []Finding
	rootOwned := func(param, dir string, owner User) {
		st, err := os.Lstat(dir)
		if err != nil || !st.IsDir() {
			return
		}
		if s := st.Sys().(*syscall.Stat_t); s.Uid != 0 || owner.UID == 0 {
			return
		}
		out = append(out, Finding{param, fmt.Sprintf("maildir %s is owned by root, but mailtee writes mailboxes as their recipient, %s (uid %d), and defers its mail until it is handed back: chown -R %d:%d %s",
			dir, owner.Name, owner.UID, owner.UID, owner.GID, dir)})
	}
	switch {
	case strings.HasSuffix(o.HomeMailbox, "/"):
		for _, u := range pw.All() {
			if u.Home != "" && u.Home != "/" {
				rootOwned("home_mailbox", filepath.Join(u.Home, o.HomeMailbox), u)
			}
		}
	case strings.HasSuffix(o.SpoolDir, "/"):
		spool := filepath.Clean(o.SpoolDir)
		if f := unpassable(spool); f != "" {
			out = append(out, Finding{"mail_spool_directory", fmt.Sprintf("%s cannot be passed through by other users (mode %s); mailtee run as root writes mailboxes as their recipient, who must reach %s: chmod o+x %s", f, modeOf(f), spool, f)})
		}
		if st, err := os.Stat(spool); err == nil && st.Mode().Perm()&0o002 != 0 && st.Mode()&os.ModeSticky == 0 {
			out = append(out, Finding{"mail_spool_directory", fmt.Sprintf("%s is writable by every user and has no sticky bit, so any user can move another's mailbox away and put her own in its place: chmod 2775 %s with group mail (Debian's), or at least chmod +t %s", spool, spool, spool)})
		}
		ents, _ := os.ReadDir(spool)
		for _, e := range ents {
			dir := filepath.Join(spool, e.Name())
			if _, err := os.Stat(filepath.Join(dir, "new")); err != nil {
				continue // not a Maildir
			}
			owner, ok := pw.Lookup(e.Name())
			if !ok {
				owner = o.DefaultPrivs
			}
			rootOwned("mail_spool_directory", dir, owner)
		}
	}
	return out
}

// unpassable is the first directory on the way to dir (dir included)
// that others may not search, or "".
func unpassable(dir string) string {
	var path []string
	for d := dir; ; d = filepath.Dir(d) {
		path = append(path, d)
		if d == filepath.Dir(d) {
			break
		}
	}
	for i := len(path) - 1; i >= 0; i-- {
		st, err := os.Stat(path[i])
		if err != nil {
			return "" // not there yet: made passable when created
		}
		if st.Mode().Perm()&0o001 == 0 {
			return path[i]
		}
	}
	return ""
}

func modeOf(path string) string {
	st, err := os.Stat(path)
	if err != nil {
		return "?"
	}
	return fmt.Sprintf("%04o", st.Mode().Perm())
}
