// Package pfimport takes over the mail a stopped Postfix left in its
// queue: every pending recipient of maildrop, incoming, active,
// deferred and hold is queued in mailtee's queue with its sender,
// original recipient, DSN attributes and arrival time, held mail stays
// held, and a recipient in the bounce/ log whose notice Postfix had not
// sent yet is queued as bounced, so that mailtee sends the notice.
//
// Each message is imported once, whatever crashes: it is first staged
// in mailtee's spool (queue.Stage, with a note naming the Postfix file
// and its inode), then the Postfix file is renamed out of Postfix's
// queue into an archive (the commit point), then its logs follow and
// the staged message is committed into the spool. A rerun first
// settles what a crash left staged: committed when the Postfix file is
// gone from its queue, discarded when it is still there (and imported
// again). Postfix must be stopped: the import holds master(8)'s lock,
// pid/master.pid, so that Postfix cannot start meanwhile.
package pfimport

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mailtee/mailtee/internal/envelope"
	"github.com/mailtee/mailtee/internal/maildrop"
	"github.com/mailtee/mailtee/internal/pfqueue"
	"github.com/mailtee/mailtee/internal/queue"
	"github.com/mailtee/mailtee/internal/safeio"
)

// Options configure an import.
type Options struct {
	PostfixDir string // Postfix's queue_directory
	QueueDir   string // mailtee's queue_directory
	// DataDir is mailtee's data_directory: imported files are moved to
	// DataDir/postfix-import when it is on the file system of
	// Postfix's queue, otherwise to PostfixDir/mailtee-imported (a
	// rename is the only move that cannot leave the file in both
	// places).
	DataDir string
	// Log takes one mail log line per imported message, in Postfix's
	// shape ("NEWID: postfix-queue-id=OLDID, from=<...>, nrcpt=N
	// (imported from deferred)"), and warnings ("warning: ...").
	Log func(line string)
	// Queued, when set, is told the ID of each message committed to
	// mailtee's queue: a running server loads it at once (its
	// control socket's "pickup"), not at its next rescan.
	Queued func(id string)
}

// Summary counts what an import did.
type Summary struct {
	Messages   int            // queued in mailtee's queue
	Recipients int            // pending recipients queued
	Bounced    int            // bounced recipients whose notice mailtee will send
	Held       int            // messages queued held
	Maildrop   int            // maildrop files handed to mailtee's pickup
	ByQueue    map[string]int // messages and maildrop files by Postfix queue
	Done       int            // files with nothing left to deliver, moved away
	Recovered  int            // staged messages of an interrupted run, committed
	Skipped    []string       // files left in Postfix's queue, with why
}

// ErrRunning is the error when Postfix's master runs on the queue.
var ErrRunning = errors.New("Postfix is running")

// note is what a staged message remembers of its source.
type note struct {
	Queue   string            // Postfix queue name
	ID      string            // Postfix queue ID
	Path    string            // the file in Postfix's queue
	Dev     uint64            // its identity, so that a file of the same
	Ino     uint64            // name made later is not taken for it
	Archive string            // where it is moved to
	Logs    map[string]string // its logs: path → archive path
	Drop    string            // maildrop: the name in mailtee's maildrop
}

// Import imports Postfix's queue; see the package comment.
func Import(o Options) (*Summary, error) {
	if o.Log == nil {
		o.Log = func(string) {}
	}
	sum := &Summary{ByQueue: map[string]int{}}
	unlock, err := lockPostfix(o.PostfixDir)
	if err != nil {
		return sum, err
	}
	defer unlock()
	if err := os.MkdirAll(o.QueueDir, 0o755); err != nil {
		return sum, err
	}
	archive, err := archiveRoot(o)
	if err != nil {
		return sum, err
	}
	if err := recoverStaged(o, sum); err != nil {
		return sum, err
	}
	files, err := pfqueue.Scan(o.PostfixDir)
	if err != nil {
		return sum, fmt.Errorf("%s: %w", o.PostfixDir, err)
	}
	for _, f := range files {
		if !f.Ready {
			sum.Skipped = append(sum.Skipped, fmt.Sprintf("%s: incomplete (mode %04o: its writer did not finish it; Postfix would not deliver it either)", f.Path, f.Info.Mode().Perm()))
			continue
		}
		if err := importFile(o, archive, f, sum); err != nil {
			var skip skipError
			if errors.As(err, &skip) {
				sum.Skipped = append(sum.Skipped, fmt.Sprintf("%s: %v", f.Path, err))
				o.Log(fmt.Sprintf("warning: %s: %v; left in Postfix's queue", f.Path, err))
				continue
			}
			return sum, fmt.Errorf("%s: %w", f.Path, err)
		}
	}
	if sum.Maildrop > 0 {
		maildrop.Poke(o.QueueDir)
	}
	return sum, nil
}

// crash is where tests stop an import as a crash would: at "staged"
// (queued in mailtee's staging, Postfix's file untouched) or "moved"
// (the file out of Postfix's queue, the message not committed).
var crash = func(at string) error { return nil }

// skipError marks a file that is left where it is, the import going on.
type skipError struct{ error }

// lockPostfix takes master(8)'s lock, pid/master.pid, as master does
// (flock, non-blocking: myflock with INTERNAL_LOCK on Linux), and holds
// it until unlock: held by a running master, it says Postfix runs (what
// `postfix status` tests with master -t); held by the import, it keeps
// `postfix start` from starting one meanwhile.
func lockPostfix(dir string) (unlock func(), err error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("Postfix queue directory: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("Postfix queue directory %s is not a directory", dir)
	}
	for _, q := range []string{"deferred", "active", "maildrop"} {
		if _, err := os.Stat(filepath.Join(dir, q)); err != nil {
			return nil, fmt.Errorf("%s is not a Postfix queue directory (no %s/): give Postfix's queue_directory, as `postconf -h queue_directory` prints it", dir, q)
		}
	}
	pidDir := filepath.Join(dir, "pid")
	if err := os.MkdirAll(pidDir, 0o755); err != nil {
		return nil, err
	}
	path := filepath.Join(pidDir, "master.pid")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			pid := ""
			if b, err := os.ReadFile(path); err == nil {
				if p := strings.TrimSpace(string(b)); p != "" {
					pid = " (pid " + p + ")"
				}
			}
			return nil, fmt.Errorf("%w%s: its master holds %s; stop it first (`postfix stop`, or `systemctl stop postfix`), then import", ErrRunning, pid, path)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}

// archiveRoot is where imported files go: see Options.DataDir.
func archiveRoot(o Options) (string, error) {
	pf, err := os.Stat(o.PostfixDir)
	if err != nil {
		return "", err
	}
	if o.DataDir != "" {
		if err := os.MkdirAll(o.DataDir, 0o700); err == nil {
			if dd, err := os.Stat(o.DataDir); err == nil && sameDev(pf, dd) {
				dir := filepath.Join(o.DataDir, "postfix-import")
				return dir, os.MkdirAll(dir, 0o700)
			}
		}
	}
	dir := filepath.Join(o.PostfixDir, "mailtee-imported")
	return dir, os.MkdirAll(dir, 0o700)
}

func sameDev(a, b fs.FileInfo) bool {
	sa, ok1 := a.Sys().(*syscall.Stat_t)
	sb, ok2 := b.Sys().(*syscall.Stat_t)
	return ok1 && ok2 && sa.Dev == sb.Dev
}

func identity(fi fs.FileInfo) (dev, ino uint64) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Dev), st.Ino
	}
	return 0, 0
}

// stillThere says whether the file a note names is still in Postfix's
// queue, the same file.
func (n *note) stillThere() bool {
	fi, err := os.Lstat(n.Path)
	if err != nil {
		return false
	}
	dev, ino := identity(fi)
	return dev == n.Dev && ino == n.Ino
}

// recoverStaged settles what an interrupted import left staged.
func recoverStaged(o Options, sum *Summary) error {
	staged, err := queue.ListStaged(o.QueueDir)
	if err != nil {
		return err
	}
	for _, st := range staged {
		var n note
		if st.Note == nil || json.Unmarshal(st.Note, &n) != nil || n.Path == "" {
			if err := queue.Discard(o.QueueDir, st.ID); err != nil {
				return err
			}
			continue
		}
		if err := settle(o, &n, sum, func() error {
			if err := queue.Commit(o.QueueDir, st.ID); err != nil {
				return err
			}
			if o.Queued != nil {
				o.Queued(st.ID)
			}
			return nil
		},
			func() error { return queue.Discard(o.QueueDir, st.ID) }); err != nil {
			return err
		}
	}
	drops, err := listDrops(o.QueueDir)
	if err != nil {
		return err
	}
	for _, d := range drops {
		var n note
		b, err := os.ReadFile(d + ".note")
		if err != nil || json.Unmarshal(b, &n) != nil || n.Drop == "" {
			if err := discardDrop(d); err != nil {
				return err
			}
			continue
		}
		if err := settle(o, &n, sum, func() error { return commitDrop(o.QueueDir, d, n.Drop) },
			func() error { return discardDrop(d) }); err != nil {
			return err
		}
	}
	return nil
}

// settle commits a staged message whose Postfix file was moved, and
// discards one whose file is still in Postfix's queue.
func settle(o Options, n *note, sum *Summary, commit, discard func() error) error {
	if n.stillThere() {
		return discard()
	}
	if _, err := os.Lstat(n.Archive); err != nil {
		// Neither in the queue nor archived: removed by hand
		// (postsuper -d) after the crash. Delivering it now would
		// resurrect what someone deleted.
		o.Log(fmt.Sprintf("warning: %s: staged by an interrupted import, but %s is gone from Postfix's queue and not in %s; not queued", n.ID, n.Path, n.Archive))
		return discard()
	}
	if err := moveLogs(n); err != nil {
		return err
	}
	if err := commit(); err != nil {
		return err
	}
	sum.Recovered++
	o.Log(fmt.Sprintf("postfix-queue-id=%s: queued by an interrupted import, now committed", n.ID))
	return nil
}

// importFile imports one Postfix queue file.
func importFile(o Options, archive string, f pfqueue.File, sum *Summary) error {
	data, err := readQueueFile(f)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	m, err := pfqueue.Read(data)
	if err != nil {
		return skipError{fmt.Errorf("cannot import: %w (postcat shows what is in it)", err)}
	}
	if !m.HasFrom {
		return skipError{errors.New("cannot import: no sender record")}
	}
	if m.Filter != "" && f.Queue != "maildrop" {
		// cleanup recorded content_filter: qmgr would send the message
		// to the filter (amavis, a spam filter) first. Queued as it is,
		// it would go out unfiltered.
		return skipError{fmt.Errorf("waiting for content_filter %s, which mailtee does not run; start Postfix with that filter to let it through, then import again", m.Filter)}
	}
	dev, ino := identity(f.Info)
	n := &note{Queue: f.Queue, ID: f.ID, Path: f.Path, Dev: dev, Ino: ino, Logs: map[string]string{}}
	n.Archive, err = freeName(filepath.Join(archive, f.Queue), f.ID)
	if err != nil {
		return err
	}
	for _, l := range pfqueue.Logs {
		if p := f.Logs[l]; p != "" {
			n.Logs[p] = n.Archive + "." + l
		}
	}
	if f.Queue == "maildrop" {
		return importDrop(o, f, m, data, n, sum)
	}
	env, init, held, err := envelopeOf(f, m)
	if err != nil {
		return err
	}
	pending, bounced := 0, 0
	for _, in := range init {
		if in.Op == "bounced" {
			bounced++
		} else {
			pending++
		}
	}
	if len(env.Rcpts) == 0 {
		// Every recipient done, no notice owed: Postfix would just
		// remove the file.
		if err := moveOut(n); err != nil {
			return err
		}
		sum.Done++
		o.Log(fmt.Sprintf("postfix-queue-id=%s: nothing left to deliver; moved to %s", f.ID, n.Archive))
		return nil
	}
	nb, err := json.Marshal(n)
	if err != nil {
		return err
	}
	body := crlf(m.Content)
	id, err := queue.Stage(o.QueueDir, env, bytes.NewReader(body), queue.StageOptions{Hold: held, Rcpts: init, Note: nb})
	if err != nil {
		return fmt.Errorf("queue in %s: %w", o.QueueDir, err)
	}
	if err := crash("staged"); err != nil {
		return err
	}
	if err := moveOut(n); err != nil {
		queue.Discard(o.QueueDir, id)
		return err
	}
	if err := crash("moved"); err != nil {
		return err
	}
	if err := queue.Commit(o.QueueDir, id); err != nil {
		return err
	}
	if o.Queued != nil {
		o.Queued(id)
	}
	sum.Messages++
	sum.ByQueue[f.Queue]++
	sum.Recipients += pending
	sum.Bounced += bounced
	extra := ""
	if held {
		sum.Held++
		extra = ", held"
	}
	if bounced > 0 {
		extra += fmt.Sprintf(", %d bounced with notice pending", bounced)
	}
	o.Log(fmt.Sprintf("%s: postfix-queue-id=%s, from=<%s>, nrcpt=%d%s (imported from %s)", id, f.ID, env.From, pending, extra, f.Queue))
	return nil
}

// envelopeOf is the mailtee envelope of a queue file cleanup wrote,
// with the initial state of each recipient: pending, deferred with
// the reason the defer log gives, or bounced (in the bounce log, its
// notice not sent: bounce_log.c's entries are what bounce(8) would have
// reported).
func envelopeOf(f pfqueue.File, m *pfqueue.Message) (*envelope.Envelope, []queue.Initial, bool, error) {
	env := &envelope.Envelope{
		From:       m.Sender,
		Arrival:    m.Arrival,
		ClientName: m.Attrs["log_client_name"],
		ClientAddr: m.Attrs["log_client_address"],
		Helo:       m.Attrs["log_helo_name"],
		Protocol:   m.Attrs["log_protocol_name"],
		SMTPUTF8:   m.SendOpts&1 != 0, // SMTPUTF8_FLAG_REQUESTED
		EnvID:      m.EnvID,
		Ret:        pfqueue.RetString(m.Ret),
	}
	if env.Arrival.IsZero() {
		env.Arrival = f.Info.ModTime()
	}
	switch strings.ToLower(m.Attrs["encoding"]) {
	case "8bit":
		env.BodyType = "8BITMIME"
	case "7bit":
		env.BodyType = "7BIT"
	}
	if env.ClientAddr == "" && env.Protocol == "" {
		env.Protocol = "local"
	}
	deferLog, err := readLog(f.Logs["defer"])
	if err != nil {
		return nil, nil, false, err
	}
	bounceLog, err := readLog(f.Logs["bounce"])
	if err != nil {
		return nil, nil, false, err
	}
	var init []queue.Initial
	add := func(r pfqueue.Rcpt, in queue.Initial) {
		orig := r.Orig
		if orig == "" {
			orig = r.Addr
		}
		env.Rcpts = append(env.Rcpts, envelope.Rcpt{Addr: r.Addr, Orig: orig,
			Notify: pfqueue.NotifyString(r.Notify), ORcpt: r.DSNOrcpt})
		init = append(init, in)
	}
	redirected := false
	for _, r := range m.Rcpts {
		if r.Done {
			continue
		}
		if m.Redirect != "" {
			// An access table's REDIRECT: the message goes once, to
			// that address, instead of to its recipients
			// (qmgr_message_resolve).
			if redirected {
				continue
			}
			redirected = true
			if r.Orig == "" {
				r.Orig = r.Addr
			}
			r.Addr = m.Redirect
		}
		in := queue.Initial{}
		if e := findEntry(deferLog, r); e != nil {
			in = queue.Initial{Op: "deferred", Reason: e.Reason, DSN: e.Status}
		}
		add(r, in)
	}
	seen := map[string]bool{}
	for i := range bounceLog {
		e := &bounceLog[i]
		// The recipient as the file has it (its ORCPT, NOTIFY), or as
		// the log has it when the file does not.
		r := pfqueue.Rcpt{Addr: pfqueue.UnquoteLogAddr(e.Recipient), Orig: pfqueue.UnquoteLogAddr(e.Orig), DSNOrcpt: e.DSNOrcpt, Notify: e.Notify, Done: true}
		for _, fr := range m.Rcpts {
			if e.Offset > 0 && fr.Off == e.Offset || e.Offset == 0 && fr.Addr == r.Addr {
				r = fr
				break
			}
		}
		if !r.Done {
			// Logged, but not marked done before Postfix stopped: it
			// is pending above, and Postfix too would try it again.
			continue
		}
		key := strconv.FormatInt(r.Off, 10) + "\x00" + r.Addr
		if seen[key] {
			continue
		}
		seen[key] = true
		status := e.Status
		if status == "" {
			status = "5.0.0"
		}
		add(r, queue.Initial{Op: "bounced", Reason: e.Reason, DSN: status})
	}
	return env, init, f.Queue == "hold", nil
}

// readQueueFile reads the file Scan found, as Postfix's pickup opens a
// maildrop file (safe_open in pickup.c): never through a symbolic link,
// only the very file Scan saw, and in maildrop, where the submitting
// user owns the file and it becomes mail in that user's name, only one
// with a single link: a hard link to someone else's file is not their
// submission. A refused file is left in Postfix's queue with a warning.
func readQueueFile(f pfqueue.File) ([]byte, error) {
	fd, err := os.OpenFile(f.Path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if errors.Is(err, syscall.ELOOP) {
		return nil, skipError{errors.New("cannot import: a symbolic link (Postfix's pickup refuses it too)")}
	}
	if err != nil {
		return nil, err
	}
	defer fd.Close()
	fi, err := fd.Stat()
	if err != nil {
		return nil, err
	}
	st, _ := fi.Sys().(*syscall.Stat_t)
	dev, ino := identity(fi)
	wdev, wino := identity(f.Info)
	switch {
	case !fi.Mode().IsRegular() || dev != wdev || ino != wino:
		return nil, skipError{errors.New("cannot import: replaced while the import read the queue")}
	case f.Queue == "maildrop" && st != nil && st.Nlink != 1:
		return nil, skipError{fmt.Errorf("cannot import: %d hard links (Postfix's pickup refuses it too)", st.Nlink)}
	}
	return io.ReadAll(fd)
}

func readLog(path string) ([]pfqueue.LogEntry, error) {
	if path == "" {
		return nil, nil
	}
	// Not through a symbolic link: what the log holds goes into
	// notices to the sender and mailq (see readQueueFile).
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if errors.Is(err, syscall.ELOOP) {
		return nil, skipError{fmt.Errorf("cannot import: its log %s is a symbolic link", path)}
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil, skipError{fmt.Errorf("cannot import: its log %s is not a regular file", path)}
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, err
	}
	return pfqueue.ReadLog(b), nil
}

// findEntry finds a recipient's entry in a log: by the offset of its
// record, which is what Postfix itself goes by, else by address.
func findEntry(log []pfqueue.LogEntry, r pfqueue.Rcpt) *pfqueue.LogEntry {
	var byAddr *pfqueue.LogEntry
	for i := range log {
		e := &log[i]
		if e.Offset > 0 && e.Offset == r.Off {
			return e
		}
		if e.Offset == 0 && pfqueue.UnquoteLogAddr(e.Recipient) == r.Addr {
			byAddr = e
		}
	}
	return byAddr
}

// crlf turns the content's LF line ends into the CRLF mailtee's queue
// keeps (as received over SMTP).
func crlf(b []byte) []byte {
	out := make([]byte, 0, len(b)+bytes.Count(b, []byte("\n")))
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			out = append(out, b...)
			break
		}
		line := b[:i]
		out = append(out, bytes.TrimSuffix(line, []byte("\r"))...)
		out = append(out, '\r', '\n')
		b = b[i+1:]
	}
	return out
}

// freeName is dir/id, or dir/id.N when an earlier import archived a
// file of the same ID there (Postfix reuses IDs over time).
func freeName(dir, id string) (string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	p := filepath.Join(dir, id)
	for k := 1; ; k++ {
		if _, err := os.Lstat(p); errors.Is(err, fs.ErrNotExist) {
			return p, nil
		}
		p = filepath.Join(dir, id+"."+strconv.Itoa(k))
	}
}

// moveOut moves the queue file out of Postfix's queue (the commit
// point of the import), then its logs.
func moveOut(n *note) error {
	if err := safeio.RenameNoReplace(n.Path, n.Archive); err != nil {
		return fmt.Errorf("move out of Postfix's queue: %w", err)
	}
	for _, d := range []string{filepath.Dir(n.Path), filepath.Dir(n.Archive)} {
		if err := safeio.SyncDir(d); err != nil {
			return err
		}
	}
	return moveLogs(n)
}

// moveLogs moves the logs a note names, those still in Postfix's queue.
func moveLogs(n *note) error {
	paths := make([]string, 0, len(n.Logs))
	for p := range n.Logs {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		err := safeio.RenameNoReplace(p, n.Logs[p])
		if errors.Is(err, fs.ErrNotExist) {
			continue // moved before a crash
		}
		if err != nil {
			return fmt.Errorf("move log out of Postfix's queue: %w", err)
		}
		if err := safeio.SyncDir(filepath.Dir(p)); err != nil {
			return err
		}
	}
	return nil
}

// Maildrop files postdrop wrote have not been through cleanup: they go
// to mailtee's pickup, as `mailtee sendmail` would have dropped them,
// in the name of the user who owns the file (root may submit in any
// user's name). They are staged in queue_directory/import-maildrop,
// then renamed into maildrop once the Postfix file is moved.
const dropStage = "import-maildrop"

func importDrop(o Options, f pfqueue.File, m *pfqueue.Message, data []byte, n *note, sum *Summary) error {
	st, _ := f.Info.Sys().(*syscall.Stat_t)
	uid := uint32(0)
	if st != nil {
		uid = st.Uid
	}
	name := strconv.FormatUint(uint64(uid), 10)
	if u, err := user.LookupId(name); err == nil {
		name = u.Username
	}
	d := &maildrop.Drop{UID: uid, User: name, Arrival: m.Arrival, From: m.Sender}
	if d.Arrival.IsZero() {
		d.Arrival = f.Info.ModTime()
	}
	msg := crlf(m.Content)
	extracted, dsn := false, m.EnvID != "" || m.Ret != 0
	for _, r := range m.Rcpts {
		if !r.Done {
			d.Rcpts = append(d.Rcpts, r.Addr)
			extracted = extracted || r.Extracted
			dsn = dsn || r.Notify != 0 || r.DSNOrcpt != ""
		}
	}
	if dsn {
		// mailtee's sendmail has no -N/-V: its drop format has no place
		// for them. Said, not silently dropped.
		o.Log(fmt.Sprintf("warning: maildrop %s: the DSN parameters of sendmail -N/-V (NOTIFY, ENVID, RET) are not carried: mailtee's pickup takes none", f.ID))
	}
	if extracted {
		// sendmail -t: Postfix's cleanup would drop Bcc: from the
		// header, as mailtee's sendmail does before its drop.
		hdr, rest := maildrop.SplitHeader(msg)
		if _, kept, err := maildrop.ExtractRecipients(hdr); err == nil {
			msg = append(append([]byte{}, kept...), rest...)
		}
	}
	if len(d.Rcpts) == 0 {
		return skipError{errors.New("maildrop file without recipients")}
	}
	var buf bytes.Buffer
	if err := maildrop.Encode(&buf, d, msg); err != nil {
		return skipError{fmt.Errorf("cannot hand it to mailtee's pickup: %w", err)}
	}
	n.Drop = dropName(d.Arrival)
	sdir := filepath.Join(o.QueueDir, dropStage)
	if err := os.MkdirAll(sdir, 0o700); err != nil {
		return err
	}
	staged := filepath.Join(sdir, n.Drop)
	if err := safeio.WriteFile(staged, buf.Bytes(), 0o600); err != nil {
		return err
	}
	nb, err := json.Marshal(n)
	if err != nil {
		return err
	}
	if err := safeio.WriteFile(staged+".note", nb, 0o600); err != nil {
		return err
	}
	if err := crash("staged"); err != nil {
		return err
	}
	if err := moveOut(n); err != nil {
		discardDrop(staged)
		return err
	}
	if err := crash("moved"); err != nil {
		return err
	}
	if err := commitDrop(o.QueueDir, staged, n.Drop); err != nil {
		return err
	}
	sum.Maildrop++
	sum.ByQueue[f.Queue]++
	o.Log(fmt.Sprintf("maildrop/%s: postfix-queue-id=%s, uid=%d, from=<%s>, nrcpt=%d (imported from maildrop, for mailtee's pickup)", n.Drop, f.ID, uid, m.Sender, len(d.Rcpts)))
	return nil
}

// dropName has the shape of mailtee's maildrop names (maildrop's
// randomName): arrival in microseconds, then random bits, hex.
func dropName(t time.Time) string {
	var b [8]byte
	rand.Read(b[:])
	return fmt.Sprintf("%014X%010X", t.UnixMicro(), binary.BigEndian.Uint64(b[:])&(1<<40-1))
}

func listDrops(qdir string) ([]string, error) {
	sdir := filepath.Join(qdir, dropStage)
	ents, err := os.ReadDir(sdir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if strings.Contains(e.Name(), ".") {
			continue
		}
		out = append(out, filepath.Join(sdir, e.Name()))
	}
	return out, nil
}

// commitDrop renames a staged drop into mailtee's maildrop (made as
// mailtee's sendmail makes it when the server never ran).
func commitDrop(qdir, staged, name string) error {
	dir := filepath.Join(qdir, maildrop.DropDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := os.Chmod(dir, 0o730|os.ModeSticky); err != nil {
		return err
	}
	err := safeio.RenameNoReplace(staged, filepath.Join(dir, name))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := safeio.SyncDir(dir); err != nil {
		return err
	}
	if err := os.Remove(staged + ".note"); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return safeio.SyncDir(filepath.Dir(staged))
}

func discardDrop(staged string) error {
	for _, p := range []string{staged + ".note", staged} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return safeio.SyncDir(filepath.Dir(staged))
}
