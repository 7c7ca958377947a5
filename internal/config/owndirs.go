package config

import (
	"os"
	"path/filepath"

	"github.com/mailtee/mailtee/internal/diag"
)

// Postfix's own directories, as Postfix's postfix-files and every
// distribution's package create them. A main.cf that names them is
// Postfix's (RHEL's stock file sets both explicitly): mailtee reads the
// file, but never keeps its queue or its data where a Postfix on the same
// host, running or not, keeps its own. Two queue managers in one spool
// would take each other's files, and Postfix's maildrop would look like
// mailtee's to sendmail.
const (
	postfixQueueDir = "/var/spool/postfix"
	postfixDataDir  = "/var/lib/postfix"
)

// postfixQueueSubdirs are directories every Postfix queue has and
// mailtee's never does (mailtee's has maildrop and public, but not
// active, deferred or pid): a directory with all of them is Postfix's
// queue, wherever it is.
var postfixQueueSubdirs = []string{"active", "deferred", "maildrop", "pid"}

// QueueDirectory is mailtee's own queue: queue_directory, unless that
// names Postfix's queue (see postfixQueue), in which case mailtee keeps
// its queue in its own default, /var/spool/mailtee, and the named
// directory serves only as postfix_queue_directory (where relative LMTP
// sockets such as private/dovecot-lmtp are found).
func (c *Config) QueueDirectory() string {
	d := c.Get("queue_directory")
	if c.postfixQueue(d) != "" {
		return mailteeDefaults["queue_directory"]
	}
	return d
}

// DataDirectory is mailtee's own data directory (the ledger's, by
// default): data_directory, unless that names Postfix's, in which case
// /var/lib/mailtee.
func (c *Config) DataDirectory() string {
	d := c.Get("data_directory")
	if postfixData(d) != "" {
		return mailteeDefaults["data_directory"]
	}
	return d
}

// postfixQueue says why dir is Postfix's queue, or "" when it is not:
// it is Postfix's default path, or postfix_queue_directory as main.cf
// sets it, or it is laid out as a Postfix queue.
func (c *Config) postfixQueue(dir string) string {
	if dir == "" {
		return ""
	}
	clean := filepath.Clean(dir)
	if clean == postfixQueueDir {
		return "is Postfix's queue"
	}
	if s, set := c.set["postfix_queue_directory"]; set && s.Value != "" {
		if pq := c.Get("postfix_queue_directory"); pq != "" && filepath.Clean(pq) == clean {
			return "is postfix_queue_directory, Postfix's queue"
		}
	}
	for _, sub := range postfixQueueSubdirs {
		if st, err := os.Stat(filepath.Join(clean, sub)); err != nil || !st.IsDir() {
			return ""
		}
	}
	return "is laid out as Postfix's queue (it has active/, deferred/, maildrop/ and pid/)"
}

// postfixData says why dir is Postfix's data directory, or "": it is
// Postfix's default path, or it holds master.lock, which Postfix's
// master(8) keeps there.
func postfixData(dir string) string {
	if dir == "" {
		return ""
	}
	clean := filepath.Clean(dir)
	if clean == postfixDataDir {
		return "is Postfix's data directory"
	}
	if _, err := os.Lstat(filepath.Join(clean, "master.lock")); err == nil {
		return "holds Postfix's master.lock: it is Postfix's data directory"
	}
	return ""
}

// checkOwnDirs tells, as an info, what mailtee does instead when
// queue_directory or data_directory name Postfix's.
func (c *Config) checkOwnDirs(out *diag.List) {
	if s, set := c.set["queue_directory"]; set {
		d := c.Get("queue_directory")
		if why := c.postfixQueue(d); why != "" {
			out.Infof(c.File, s.Line, "queue_directory = %s %s; mailtee keeps its queue in %s and never uses Postfix's, and looks under %s only for Postfix's sockets (postfix_queue_directory = %s); set queue_directory to a directory of mailtee's own to move its queue",
				d, why, c.QueueDirectory(), d, c.Get("postfix_queue_directory"))
		}
	}
	if s, set := c.set["data_directory"]; set {
		d := c.Get("data_directory")
		if why := postfixData(d); why != "" {
			out.Infof(c.File, s.Line, "data_directory = %s %s; mailtee keeps its data in %s and never uses Postfix's; set data_directory to a directory of mailtee's own to move it",
				d, why, c.DataDirectory())
		}
	}
}
