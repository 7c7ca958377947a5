package master

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/mailtee/mailtee/internal/config"
	"github.com/mailtee/mailtee/internal/diag"
	"github.com/mailtee/mailtee/internal/local"
	"github.com/mailtee/mailtee/internal/maps"
	"github.com/mailtee/mailtee/internal/mbox"
	"github.com/mailtee/mailtee/internal/pfline"
)

// LocalDeliveryFindings tells, for a configuration with local domains
// (mydestination not empty, local_transport = local), how local(8) will
// store a local user's mail, as infos, and refuses what cannot work:
//
//   - mbox in a mail_spool_directory that does not exist (local(8)
//     does not create it; every message would bounce);
//   - a mailbox_command whose program is not there or not executable;
//   - mailbox_size_limit below message_size_limit (local(8) stops with
//     "configuration error", src/local/local.c);
//   - alias entries with |command or /file, there or in an :include:
//     file, that allow_mail_to_commands or allow_mail_to_files do not
//     allow: that mail would bounce with "mail to command is restricted"
//     (src/local/token.c, file.c).
//
// The method is chosen as local(8)'s deliver_mailbox() chooses it
// (src/local/mailbox.c): mailbox_transport, mailbox_command,
// home_mailbox (a trailing / means Maildir), then mail_spool_directory.
func LocalDeliveryFindings(cfg *config.Config) diag.List {
	if len(cfg.List("mydestination")) == 0 {
		return nil
	}
	if t, _, _ := strings.Cut(cfg.Get("local_transport"), ":"); t != "local" {
		return nil
	}
	var out diag.List
	file := cfg.File
	switch {
	case cfg.Get("mailbox_transport") != "":
		out.Infof(file, settingLine(cfg, "mailbox_transport"), "local mail (mydestination) is handed to mailbox_transport = %s after alias and .forward expansion", cfg.Get("mailbox_transport"))
	case cfg.Get("mailbox_command") != "":
		out = append(out, mailboxCommandFindings(cfg)...)
	default:
		out = append(out, mailboxFileFindings(cfg)...)
	}
	// mbox's own rules, for mailboxes and /file destinations alike: an
	// unknown word, or none at all, which local(8) refuses at start-up.
	if err := mbox.CheckLocks(append([]string{}, cfg.List("mailbox_delivery_lock")...)); err != nil {
		out.Errorf(file, settingLine(cfg, "mailbox_delivery_lock"), "%v", err)
	}
	out = append(out, sizeLimitFindings(cfg)...)
	out = append(out, aliasRestrictionFindings(cfg)...)
	return out
}

// mailboxFileFindings describes mbox or Maildir delivery: where, as whom,
// with which locks and limit.
func mailboxFileFindings(cfg *config.Config) diag.List {
	var out diag.List
	file := cfg.File
	if home := cfg.Get("home_mailbox"); home != "" {
		line := settingLine(cfg, "home_mailbox")
		if strings.HasSuffix(home, "/") {
			out.Infof(file, line, "local mail is delivered to the Maildir $HOME/%s of each user, written as the user (owner user:user's group)", home)
			return out
		}
		out.Infof(file, line, "local mail is delivered to the mbox file $HOME/%s of each user, written as the user (owner user:user's group, mode 0600); %s", home, mboxTerms(cfg))
		return out
	}
	spool := spoolDir(cfg)
	line := settingLine(cfg, "mail_spool_directory")
	if strings.HasSuffix(spool, "/") {
		dir := filepath.Clean(spool)
		if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
			out.Infof(file, line, "local mail is delivered to the Maildir %s/USER/ of each user; %s does not exist yet and is created at the first delivery (mode 0755)", dir, dir)
			return out
		}
		out.Infof(file, line, "local mail is delivered to the Maildir %s/USER/ of each user, created by mailtee and handed to the user (%s)", dir, spoolOwner(dir))
		return out
	}
	st, err := os.Stat(spool)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		out.Errorf(file, line, "mail_spool_directory = %s does not exist: local mail is delivered to the mbox file %s/USER, and local(8) does not create the directory, so every local message would bounce (\"cannot update mailbox\"); create it as Debian has it: install -d -o root -g mail -m 2775 %s", spool, spool, spool)
		return out
	case err != nil:
		out.Errorf(file, line, "mail_spool_directory = %s: %v", spool, unwrapPath(err))
		return out
	case !st.IsDir():
		out.Errorf(file, line, "mail_spool_directory = %s is not a directory; every local message would bounce", spool)
		return out
	}
	out.Infof(file, line, "local mail is delivered to the mbox file %s/USER of each user, %s; %s", spool, spoolOwner(spool), mboxTerms(cfg))
	return out
}

// spoolOwner is Postfix's rule for a mailbox in the spool
// (deliver_mailbox_file in src/local/mailbox.c): in a world-writable
// spool it is created as the user; in a group-writable one (Debian's
// /var/mail, root:mail 2775) as the user with the spool's group; in any
// other, by root and then handed to the user.
func spoolOwner(dir string) string {
	st, err := os.Stat(dir)
	if err != nil {
		return "owned by the user"
	}
	perm := st.Mode().Perm()
	switch {
	case perm&0o002 != 0:
		return fmt.Sprintf("created as the user (owner user:user's group, mode 0600; %s is world-writable, mode %04o)", dir, modeBits(st))
	case perm&0o020 != 0:
		return fmt.Sprintf("created as the user with the spool's group (owner user:%s, mode 0600; %s is group-writable, mode %04o)", groupName(st), dir, modeBits(st))
	}
	return fmt.Sprintf("created by root and handed to the user (owner user:user's group, mode 0600; only root may write in %s, mode %04o)", dir, modeBits(st))
}

// modeBits is the permission bits with setgid and sticky, as ls shows
// them in octal.
func modeBits(st fs.FileInfo) uint32 {
	m := uint32(st.Mode().Perm())
	if st.Mode()&fs.ModeSetgid != 0 {
		m |= 0o2000
	}
	if st.Mode()&fs.ModeSticky != 0 {
		m |= 0o1000
	}
	return m
}

func statGID(st fs.FileInfo) uint32 {
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		return s.Gid
	}
	return 0
}

func groupName(st fs.FileInfo) string {
	gid := strconv.FormatUint(uint64(statGID(st)), 10)
	if g, err := user.LookupGroupId(gid); err == nil {
		return g.Name
	}
	return gid
}

// mboxTerms are the locks and size limit of an mbox delivery.
func mboxTerms(cfg *config.Config) string {
	locks := strings.Join(cfg.List("mailbox_delivery_lock"), ", ")
	return fmt.Sprintf("locked with %s (mailbox_delivery_lock); %s", locks, sizeLimit(cfg))
}

func sizeLimit(cfg *config.Config) string {
	n, err := cfg.Int("mailbox_size_limit")
	if err != nil || n == 0 {
		return "no mailbox size limit (mailbox_size_limit = 0)"
	}
	return fmt.Sprintf("a mailbox grows to at most %d bytes (mailbox_size_limit)", n)
}

// sizeLimitFindings is local(8)'s start-up check: a mailbox that may not
// hold one message of the largest size accepted cannot work.
func sizeLimitFindings(cfg *config.Config) diag.List {
	var out diag.List
	box, err1 := cfg.Int("mailbox_size_limit")
	msg, err2 := cfg.Int("message_size_limit")
	if err1 != nil || err2 != nil || box == 0 {
		return nil // bad numbers are cfg.Check's
	}
	line := settingLine(cfg, "mailbox_size_limit")
	if line == 0 {
		line = settingLine(cfg, "message_size_limit")
	}
	switch {
	case msg == 0:
		out.Errorf(cfg.File, line, "mailbox_size_limit is limited (%d) but message_size_limit is unlimited; Postfix's local(8) refuses this (\"configuration error\"): set mailbox_size_limit = 0 or limit message_size_limit", box)
	case box < msg:
		out.Errorf(cfg.File, line, "mailbox_size_limit (%d) is smaller than message_size_limit (%d): a message that may be accepted could never be delivered, and Postfix's local(8) refuses this (\"configuration error\"); raise mailbox_size_limit or set it to 0", box, msg)
	}
	return out
}

// mailboxCommandFindings checks that mailbox_command's program can run.
// Postfix runs the command through /bin/sh when it has shell
// metacharacters and with execvp otherwise; either way the program is the
// first word, and with Postfix's environment (no PATH, import_environment)
// a bare name is found only in /bin and /usr/bin, execvp's default.
func mailboxCommandFindings(cfg *config.Config) diag.List {
	var out diag.List
	cmd := cfg.Get("mailbox_command")
	line := settingLine(cfg, "mailbox_command")
	prog := strings.Fields(cmd)[0]
	if strings.ContainsAny(prog, "=$`'\"\\;&|<>(){}*?[]~") || shellWords[prog] {
		out.Infof(cfg.File, line, "local mail is delivered by mailbox_command = %s, run as the user through /bin/sh; its program is not checked (its first word is shell syntax)", cmd)
		return out
	}
	if !filepath.IsAbs(prog) {
		for _, d := range []string{"/bin", "/usr/bin"} {
			if p := filepath.Join(d, prog); executable(p) == nil {
				out.Warnf(cfg.File, line, "mailbox_command: %s is not an absolute path; Postfix finds it as %s because it runs commands without PATH, where execvp looks in /bin and /usr/bin; write %s", prog, p, p)
				return out
			}
		}
		out.Errorf(cfg.File, line, "mailbox_command: %s is not an absolute path and is not in /bin or /usr/bin, where a command run without PATH is found: local mail could not be delivered; write the program's absolute path", prog)
		return out
	}
	if err := executable(prog); err != nil {
		out.Errorf(cfg.File, line, "mailbox_command: %v: local mail could not be delivered", err)
		return out
	}
	out.Infof(cfg.File, line, "local mail is delivered by mailbox_command = %s, run as the user (working directory: command_execution_directory, else /)", cmd)
	return out
}

// shellWords are the shell's own words that begin a command line
// ("exec /usr/bin/procmail", "umask 077 && ..."): such a command runs
// through /bin/sh, and its first word is no program to look for.
var shellWords = map[string]bool{
	"exec": true, "umask": true, "cd": true, "export": true, "set": true, "test": true, "[": true,
	"if": true, "for": true, "while": true, "until": true, "case": true, "command": true, ".": true, "eval": true,
}

// executable says why path is not a program that can be run.
func executable(path string) error {
	st, err := os.Stat(path)
	switch {
	case err != nil:
		return fmt.Errorf("%s: %v", path, unwrapPath(err))
	case !st.Mode().IsRegular():
		return fmt.Errorf("%s is not a regular file", path)
	case st.Mode().Perm()&0o111 == 0:
		return fmt.Errorf("%s is not executable (mode %04o)", path, st.Mode().Perm())
	}
	return nil
}

// aliasRestrictionFindings reports each alias entry that delivers to a
// command or a file where allow_mail_to_commands or allow_mail_to_files
// forbid it: in the alias files of alias_maps (class "alias") and in the
// :include: files they name (class "include"). local(8) bounces such mail
// (src/local/token.c: "mail to command is restricted"; file.c: "mail to
// file is restricted").
func aliasRestrictionFindings(cfg *config.Config) diag.List {
	var out diag.List
	cmds := cfg.List("allow_mail_to_commands")
	files := cfg.List("allow_mail_to_files")
	// Words that are not allowed are config's findings; the rest count.
	allowCmd, _ := local.ParseExpansion(cmds)
	allowFile, _ := local.ParseExpansion(files)
	// restricted says what is wrong with one destination found in cls,
	// or "": local.ParseDestination reads it as delivery does.
	restricted := func(el string, cls local.Expansion) string {
		switch kind, v := local.ParseDestination(el); {
		case kind == local.DestCommand && allowCmd&cls == 0:
			return fmt.Sprintf("|%s: mail to command is restricted: allow_mail_to_commands (%s) does not include %q, so local(8) bounces this mail; add %s to allow_mail_to_commands or remove the entry", v, strings.Join(cmds, ", "), cls, cls)
		case kind == local.DestFile && allowFile&cls == 0:
			return fmt.Sprintf("%s: mail to file is restricted: allow_mail_to_files (%s) does not include %q, so local(8) bounces this mail; add %s to allow_mail_to_files or remove the entry", v, strings.Join(files, ", "), cls, cls)
		}
		return ""
	}
	seenInclude := map[string]bool{}
	for _, spec := range cfg.List("alias_maps") {
		t, _, err := maps.OpenAlias(spec)
		if err != nil {
			continue // cfg's tables are reported by Check
		}
		s, ok := t.(maps.Sourced)
		if !ok {
			continue
		}
		_, name, _ := strings.Cut(spec, ":")
		lines := aliasLines(name)
		s.Source(func(e maps.SourceEntry) {
			file, line := e.File, e.Line
			if file == "" {
				file, line = name, lines[e.Key]
			}
			for _, el := range maps.SplitAliasValue(e.Value) {
				if msg := restricted(el, local.FromAlias); msg != "" {
					out.Errorf(file, line, "alias %s: %s", e.Key, msg)
				}
				kind, inc := local.ParseDestination(el)
				if kind != local.DestInclude || seenInclude[inc] {
					continue
				}
				seenInclude[inc] = true
				data, err := os.ReadFile(inc)
				if err != nil {
					continue // the delivery's problem, and not one of policy
				}
				pfline.Each(inc, string(data), new(diag.List), func(l pfline.Line) {
					for _, el := range maps.SplitAliasValue(l.Text) {
						if msg := restricted(el, local.FromInclude); msg != "" {
							out.Errorf(inc, l.Num, ":include: file of alias %s: %s", e.Key, msg)
						}
					}
				})
			}
		})
	}
	return out
}

// aliasLines maps each alias name in an aliases(5) file to its line,
// for findings about the entries that the table lists without one. The
// last definition wins, as in the table.
func aliasLines(file string) map[string]int {
	out := map[string]int{}
	data, err := os.ReadFile(file)
	if err != nil {
		return out
	}
	pfline.Each(file, string(data), new(diag.List), func(l pfline.Line) {
		name, _, ok := strings.Cut(l.Text, ":")
		if !ok {
			name, _, _ = strings.Cut(l.Text, " ")
		}
		name = strings.ToLower(strings.Trim(strings.TrimSpace(name), "\""))
		if name != "" {
			out[name] = l.Num
		}
	})
	return out
}
