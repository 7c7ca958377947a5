package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/mailtee/mailtee/internal/config"
	"github.com/mailtee/mailtee/internal/maillog"
	"github.com/mailtee/mailtee/internal/master"
	"github.com/mailtee/mailtee/internal/queue"
	"github.com/mailtee/mailtee/internal/queuelock"
	"github.com/mailtee/mailtee/internal/showq"
)

// superQueues are the queue names postsuper takes as operands, with
// mailtee's meaning (showq.Class); maildrop is Postfix's too, but
// mailtee's maildrop files are not queued messages yet.
var superQueues = []string{"hold", "incoming", "active", "deferred"}

// superAction is one -d, -h or -H of the command line, in order.
type superAction struct {
	op  string // delete, hold, release
	arg string // a queue ID, ALL, or - (IDs from standard input)
}

// runPostsuper is Postfix's postsuper(1) for what mailtee's spool has:
// -d (delete), -h (hold), -H (release), each with a queue ID, ALL, or -
// for IDs on standard input, restricted to the queues named as
// operands, done in command-line order (src/postsuper/postsuper.c).
// With a running server the changes go through its control socket;
// with none, straight to the spool, under the lock a starting server
// takes (superEdit). Messages go to standard error as Postfix's:
// "postsuper: ID: removed", then "postsuper: Deleted: N messages".
func runPostsuper(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	const name = "postsuper"
	fl := flag.NewFlagSet(name, flag.ContinueOnError)
	fl.SetOutput(io.Discard)
	dir := fl.String("c", defaultConfigDir(), "")
	var actions []superAction
	var refused string
	for op, letter := range map[string]string{"delete": "d", "hold": "h", "release": "H"} {
		fl.Func(letter, "", func(v string) error { actions = append(actions, superAction{op, v}); return nil })
	}
	for _, letter := range []string{"e", "f", "r"} {
		fl.Func(letter, "", func(string) error { refused = "-" + letter; return nil })
	}
	for _, letter := range []string{"p", "s", "S", "v"} {
		fl.Bool(letter, false, "") // queue repair and verbosity: mailtee's spool needs none
	}
	queues, err := parseArgs(fl, args)
	if err != nil {
		fmt.Fprintf(stderr, "%s: fatal: usage: postsuper [-c config_dir] [-d queue_id (delete)] [-h queue_id (hold)] [-H queue_id (un-hold)] [-p] [-s] [-S] [-v] [queue...]\n", name)
		return exitBadData
	}
	if refused != "" {
		what := map[string]string{"-e": "-e (expire)", "-f": "-f (expire and release)", "-r": "-r (requeue)"}[refused]
		fmt.Fprintf(stderr, "%s: fatal: %s is not supported by mailtee: use -d, -h or -H, or mailtee queue flush\n", name, what)
		return exitBadData
	}
	for _, q := range queues {
		if q == "maildrop" {
			fmt.Fprintf(stderr, "%s: fatal: queue maildrop: mailtee's maildrop files are not queued yet (the server's pickup queues them); start the server, then name the queue ID\n", name)
			return exitBadData
		}
		if !slices.Contains(superQueues, q) {
			fmt.Fprintf(stderr, "%s: fatal: invalid directory name: %s (use %s)\n", name, q, strings.Join(superQueues, ", "))
			return exitBadData
		}
	}
	if os.Getuid() != 0 {
		fmt.Fprintf(stderr, "%s: fatal: use of this command is reserved for the superuser\n", name)
		return exitBadData
	}
	cfg, err := config.Load(*dir)
	if err != nil {
		fmt.Fprintf(stderr, "%s: fatal: %v\n", name, err)
		return exitBadData
	}
	qdir := master.QueueDir(cfg)
	// The server logs the changes made through it; those made on the
	// spool of a stopped one are logged here, opened at the first.
	var mlog *maillog.Logger
	closeLog := func() {}
	logOffline := func(cfg *config.Config, id, what string) {
		if mlog == nil {
			if mlog, closeLog = commandLog(cfg); mlog == nil {
				return
			}
		}
		mlog.Printf("postsuper", "%s: %s by the administrator", id, what)
	}
	counts := map[string]int{}
	used := map[string]bool{}
	for _, a := range actions {
		used[a.op] = true
		var ids []string // nil: ALL
		switch a.arg {
		case "ALL":
		case "-":
			sc := bufio.NewScanner(stdin)
			for sc.Scan() {
				if id := strings.TrimSpace(sc.Text()); id != "" {
					ids = append(ids, id)
				}
			}
			if ids == nil {
				continue
			}
		default:
			ids = []string{a.arg}
		}
		var valid []string
		for _, id := range ids {
			if queue.ValidID(id) {
				valid = append(valid, id)
			} else {
				fmt.Fprintf(stderr, "%s: warning: invalid mail queue id: %s\n", name, id)
			}
		}
		if ids != nil && valid == nil {
			continue
		}
		n, _, err := superEdit(qdir, a.op, valid, queues, func(id string, offline bool) {
			what := map[string]string{"delete": "removed", "hold": "placed on hold", "release": "released from hold"}[a.op]
			fmt.Fprintf(stderr, "%s: %s: %s\n", name, id, what)
			if offline {
				logOffline(cfg, id, what)
			}
		}, stderr)
		counts[a.op] += n
		if err != nil {
			closeLog()
			fmt.Fprintf(stderr, "%s: fatal: %v\n", name, err)
			return exitRuntime
		}
	}
	closeLog()
	for _, op := range []string{"delete", "hold", "release"} {
		if used[op] {
			s := ""
			if counts[op] != 1 {
				s = "s"
			}
			fmt.Fprintf(stderr, "%s: %s: %d message%s\n", name, map[string]string{"delete": "Deleted", "hold": "Placed on hold", "release": "Released from hold"}[op], counts[op], s)
		}
	}
	return exitOK
}

// superWait is how long superEdit waits for a server whose lock it
// finds held but whose control socket does not answer yet (a server
// starting: it takes the lock before it opens the socket).
var superWait = 30 * time.Second

// superEdit applies op (delete, hold, release) to the messages of the
// queue in qdir with the given IDs (every message when ids is nil), in
// the given queues (showq.Class; every queue when empty), skipping a
// message the op would not change (hold of a held one). It calls done
// with each ID changed (offline true when it changed the spool itself)
// and returns how many were changed, and how many
// matched ids and queues at all.
//
// When a server runs, it is asked over its control socket, since it
// alone may write the spool. When none runs, the spool is edited
// directly, holding the lock that a starting serve takes before it
// opens the queue (queuelock): a server started meanwhile waits for the
// edit to finish and then loads its result. A spool that was never made
// holds no message, and is not created.
func superEdit(qdir, op string, ids, queues []string, done func(id string, offline bool), stderr io.Writer) (changed, found int, err error) {
	want := func(m queue.Info) (match, change bool) {
		if ids != nil && !slices.Contains(ids, m.ID) || len(queues) > 0 && !slices.Contains(queues, showq.Class(m)) {
			return false, false
		}
		return true, op == "delete" || op == "hold" && !m.Hold || op == "release" && m.Hold
	}
	deadline := time.Now().Add(superWait)
	for {
		lock, lockErr := queuelock.TryAcquire(qdir)
		switch {
		case errors.Is(lockErr, queuelock.ErrNoQueue):
			return 0, 0, nil
		case lockErr == nil && !serverAnswers(qdir):
			defer lock.Release()
			return superOffline(qdir, op, want, done, stderr)
		case lockErr == nil:
			// A server that takes no lock (one started before mailtee
			// had it, still running after an upgrade) owns the spool all
			// the same.
			lock.Release()
			lockErr = errors.New("a server answers on the control socket")
		case !errors.Is(lockErr, queuelock.ErrLocked):
			return 0, 0, lockErr
		}
		// Held: by a server (running, or starting), or by another
		// postsuper for as long as its edit takes.
		changed, found, err = superOnline(qdir, op, want, done)
		if !errors.Is(err, master.ErrNoServer) {
			return changed, found, err
		}
		if time.Now().After(deadline) {
			return changed, found, fmt.Errorf("%v, and no server answers on %s/control (%v)", lockErr, qdir, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// superOnline asks the running server.
func superOnline(qdir, op string, want func(queue.Info) (bool, bool), done func(string, bool)) (changed, found int, err error) {
	r, err := master.Control(qdir, "list")
	if err != nil {
		return 0, 0, err
	}
	for _, m := range r.List {
		match, change := want(m)
		if match {
			found++
		}
		if !change {
			continue
		}
		if _, err := master.Control(qdir, op+" "+m.ID); err != nil {
			if strings.Contains(err.Error(), queue.ErrNotFound.Error()) {
				continue // delivered or removed since the listing
			}
			return changed, found, fmt.Errorf("%s %s: %w", op, m.ID, err)
		}
		changed++
		done(m.ID, false)
	}
	return changed, found, nil
}

// superOffline edits the spool of a stopped server; the caller holds
// its lock. The queue is opened as a starting server opens it
// (messages left in the intake journal move to files of their own),
// changed with the server's own durable operations, and closed.
func superOffline(qdir, op string, want func(queue.Info) (bool, bool), done func(string, bool), stderr io.Writer) (changed, found int, err error) {
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	q, err := queue.Open(queue.Options{Dir: qdir, Log: log})
	if err != nil {
		return 0, 0, err
	}
	defer q.Close(context.Background())
	for _, m := range q.List() {
		match, change := want(m)
		if match {
			found++
		}
		if !change {
			continue
		}
		switch op {
		case "delete":
			err = q.Delete(m.ID)
		case "hold":
			err = q.Hold(m.ID)
		case "release":
			err = q.Release(m.ID)
		}
		if err != nil {
			return changed, found, fmt.Errorf("%s %s: %w", op, m.ID, err)
		}
		changed++
		done(m.ID, true)
	}
	return changed, found, nil
}

// serverAnswers says whether a server listens on qdir's control socket.
func serverAnswers(qdir string) bool {
	c, err := net.DialTimeout("unix", filepath.Join(qdir, "control"), time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}
