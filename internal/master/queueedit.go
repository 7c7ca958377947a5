package master

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/mailtee/mailtee/internal/ledger"
	"github.com/mailtee/mailtee/internal/queue"
	"github.com/mailtee/mailtee/internal/queuelock"
	"github.com/mailtee/mailtee/internal/showq"
)

// EditWait is how long EditQueue waits for a server whose lock it
// finds held but whose control socket does not answer yet (a server
// starting: it takes the lock before it opens the socket).
var EditWait = 30 * time.Second

// EditQueue is postsuper's and `mailtee queue`'s edit: it applies op (delete, hold, release) to the messages of the
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
func EditQueue(qdir, op string, ids, queues []string, done func(id string, offline bool), stderr io.Writer) (changed, found int, err error) {
	want := func(m queue.Info) (match, change bool) {
		if ids != nil && !slices.Contains(ids, m.ID) || len(queues) > 0 && !slices.Contains(queues, showq.Class(m)) {
			return false, false
		}
		return true, op == "delete" || op == "hold" && !m.Hold || op == "release" && m.Hold
	}
	deadline := time.Now().Add(EditWait)
	for {
		lock, lockErr := queuelock.TryAcquire(qdir)
		switch {
		case errors.Is(lockErr, queuelock.ErrNoQueue):
			return 0, 0, nil
		case lockErr == nil && !serverAnswers(qdir):
			defer lock.Release()
			return editOffline(qdir, op, want, done, stderr)
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
		changed, found, err = editOnline(qdir, op, want, done)
		if !errors.Is(err, ErrNoServer) {
			return changed, found, err
		}
		if time.Now().After(deadline) {
			return changed, found, fmt.Errorf("%v, and no server answers on %s/control (%v)", lockErr, qdir, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// editOnline asks the running server.
func editOnline(qdir, op string, want func(queue.Info) (bool, bool), done func(string, bool)) (changed, found int, err error) {
	r, err := Control(qdir, "list")
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
		if _, err := Control(qdir, op+" "+m.ID); err != nil {
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

// editOffline edits the spool of a stopped server; the caller holds
// its lock. The queue is opened as a starting server opens it
// (messages left in the intake journal move to files of their own),
// changed with the server's own durable operations, and closed.
func editOffline(qdir, op string, want func(queue.Info) (bool, bool), done func(string, bool), stderr io.Writer) (changed, found int, err error) {
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	o := queue.Options{Dir: qdir, Log: log}
	// The deletions go to the ledger as a server's would.
	if rec := ledger.ForQueue(qdir); rec != nil {
		o.Ledger = rec
		defer rec.Close() // after the queue's Close, deferred below
	}
	q, err := queue.Open(o)
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
