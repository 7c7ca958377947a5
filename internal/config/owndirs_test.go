package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailtee/mailtee/internal/diag"
)

// infos returns the Info findings whose message contains sub.
func infos(l diag.List, sub string) diag.List {
	var out diag.List
	for _, d := range diagsMatching(l, sub) {
		if d.Severity == diag.Info {
			out = append(out, d)
		}
	}
	return out
}

// Issue 14: RHEL's stock main.cf sets queue_directory and data_directory
// to Postfix's own. mailtee keeps its queue and data in its own
// directories, takes the named queue as postfix_queue_directory, and
// check says so at the lines that name them.
func TestPostfixDirectoriesAreNotMailtees(t *testing.T) {
	c := parse(t, "queue_directory = /var/spool/postfix\ndata_directory = /var/lib/postfix\n")
	if got := c.QueueDirectory(); got != "/var/spool/mailtee" {
		t.Errorf("QueueDirectory = %q, want /var/spool/mailtee", got)
	}
	if got := c.DataDirectory(); got != "/var/lib/mailtee" {
		t.Errorf("DataDirectory = %q, want /var/lib/mailtee", got)
	}
	if got := c.Get("postfix_queue_directory"); got != "/var/spool/postfix" {
		t.Errorf("postfix_queue_directory = %q, want Postfix's queue, /var/spool/postfix", got)
	}
	all := c.Check()
	q := infos(all, "queue_directory = /var/spool/postfix is Postfix's queue; mailtee keeps its queue in /var/spool/mailtee")
	if len(q) != 1 || q[0].Line != 1 || q[0].File != "/cfg/main.cf" {
		t.Errorf("want one info at line 1 about the queue, got %v", all)
	}
	d := infos(all, "data_directory = /var/lib/postfix is Postfix's data directory; mailtee keeps its data in /var/lib/mailtee")
	if len(d) != 1 || d[0].Line != 2 {
		t.Errorf("want one info at line 2 about the data directory, got %v", all)
	}
	if all.HasErrors() {
		t.Errorf("errors: %v", all.Err())
	}
	if !strings.HasPrefix(q[0].String(), "info: /cfg/main.cf, line 1: ") {
		t.Errorf("info reads %q", q[0].String())
	}
}

// Without a setting, and with directories of mailtee's own (as every
// test sets queue_directory to a temporary directory), nothing changes.
func TestOwnDirectoriesKept(t *testing.T) {
	c := parse(t, "")
	if c.QueueDirectory() != "/var/spool/mailtee" || c.DataDirectory() != "/var/lib/mailtee" {
		t.Errorf("defaults: queue %q, data %q", c.QueueDirectory(), c.DataDirectory())
	}
	dir := t.TempDir()
	// mailtee's own queue has maildrop/ and public/ too.
	for _, sub := range []string{"maildrop", "public", "queue", "journal", "corrupt"} {
		os.Mkdir(filepath.Join(dir, sub), 0o755)
	}
	c = parse(t, "queue_directory = "+dir+"\ndata_directory = "+dir+"/data\n")
	if c.QueueDirectory() != dir || c.DataDirectory() != dir+"/data" {
		t.Errorf("own directories: queue %q, data %q", c.QueueDirectory(), c.DataDirectory())
	}
	if n := len(infos(c.Check(), "_directory")); n != 0 {
		t.Errorf("infos about own directories: %v", c.Check())
	}
}

// A directory laid out as a Postfix queue is Postfix's wherever it is
// (a second Postfix instance, a moved spool); so is the directory that
// main.cf also names as postfix_queue_directory, and a data directory
// with Postfix's master.lock.
func TestPostfixLayoutRefused(t *testing.T) {
	pq := t.TempDir()
	for _, sub := range []string{"active", "deferred", "maildrop", "pid"} {
		if err := os.Mkdir(filepath.Join(pq, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	c := parse(t, "myhostname = h.example\nqueue_directory = "+pq+"\n")
	if got := c.QueueDirectory(); got != "/var/spool/mailtee" {
		t.Errorf("Postfix-shaped %s taken as mailtee's queue (%q)", pq, got)
	}
	if got := c.Get("postfix_queue_directory"); got != pq {
		t.Errorf("postfix_queue_directory = %q, want %q", got, pq)
	}
	if l := infos(c.Check(), "queue_directory = "+pq+" is laid out as Postfix's queue"); len(l) != 1 || l[0].Line != 2 {
		t.Errorf("want the info at line 2: %v", c.Check())
	}
	// One of the four missing: not Postfix's.
	os.Remove(filepath.Join(pq, "pid"))
	if c := parse(t, "queue_directory = "+pq+"\n"); c.QueueDirectory() != pq {
		t.Errorf("without pid/, %s is not Postfix's queue, got %q", pq, c.QueueDirectory())
	}

	own := t.TempDir()
	c = parse(t, "queue_directory = "+own+"\npostfix_queue_directory = "+own+"/\n")
	if got := c.QueueDirectory(); got != "/var/spool/mailtee" {
		t.Errorf("queue_directory = postfix_queue_directory taken as mailtee's (%q)", got)
	}
	if l := infos(c.Check(), "is postfix_queue_directory"); len(l) != 1 {
		t.Errorf("want the info: %v", c.Check())
	}

	data := t.TempDir()
	os.WriteFile(filepath.Join(data, "master.lock"), []byte("        1234\n"), 0o600)
	c = parse(t, "data_directory = "+data+"\n")
	if got := c.DataDirectory(); got != "/var/lib/mailtee" {
		t.Errorf("a data directory with master.lock taken as mailtee's (%q)", got)
	}
	if l := infos(c.Check(), "holds Postfix's master.lock"); len(l) != 1 {
		t.Errorf("want the info: %v", c.Check())
	}
}
