package reliability

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCorruptQueueFilesAtStartup: mailtee is stopped with messages queued
// (next hop down, long backoff); then one queue file is truncated, one has
// bytes flipped in its body, an empty file and a garbage file are left in
// the queue. On restart the server starts, logs a line naming each damaged
// file, moves each to queue_directory/corrupt/, and delivers the rest once
// the next hop is up (after a flush: the backoff is long).
func TestCorruptQueueFilesAtStartup(t *testing.T) {
	hopPort := freePort(t) // nothing listens there yet: the next hop is down
	in := newInstance(t, fmt.Sprintf(`transport_maps = inline:{ far.example=smtp:[127.0.0.1]:%d }
minimal_backoff_time = 1h
maximal_backoff_time = 2h
`, hopPort), nil)
	in.Start()
	const n = 6
	rcpts := make([]string, n)
	for i := range rcpts {
		rcpts[i] = fmt.Sprintf("c%d@far.example", i)
		if err := send(in.Addr(), "s@test.example", []string{rcpts[i]}, testMessage(rcpts[i])); err != nil {
			t.Fatalf("send %s: %v", rcpts[i], err)
		}
	}
	// Each message tried once and deferred: the queue is quiet from now on.
	waitUntil(t, fmt.Sprintf("%d deferrals", n), 60*time.Second, func() bool {
		return strings.Count(in.Log.String(), "status=deferred") >= n
	})
	in.Stop()

	// Map queue IDs to recipients from the message files themselves.
	idOf := map[string]string{}
	for _, f := range in.queueFiles() {
		if strings.HasSuffix(f, ".st") || strings.HasPrefix(f, ".") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(in.msgDir(), f))
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rcpts {
			if strings.Contains(string(b), r) {
				idOf[r] = f
			}
		}
	}
	if len(idOf) != n {
		t.Fatalf("found %d of %d messages in %s: %v", len(idOf), n, in.msgDir(), in.queueFiles())
	}

	// Damage: truncate one message file, flip bytes in the body of
	// another, leave an empty file and a garbage file.
	truncated, flipped := idOf[rcpts[0]], idOf[rcpts[1]]
	tp := filepath.Join(in.msgDir(), truncated)
	fi, err := os.Stat(tp)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(tp, fi.Size()/2); err != nil {
		t.Fatal(err)
	}
	fp := filepath.Join(in.msgDir(), flipped)
	b, err := os.ReadFile(fp)
	if err != nil {
		t.Fatal(err)
	}
	at := strings.Index(string(b), "Hello.")
	if at < 0 {
		t.Fatalf("body not found in %s", fp)
	}
	for k := 0; k < 3; k++ {
		b[at+k] ^= 0x20 // "Hello." becomes "hELlo."
	}
	if err := os.WriteFile(fp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	const empty, garbage = "0000000000EMPTY", "GARBAGE0000001"
	if err := os.WriteFile(filepath.Join(in.msgDir(), empty), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	junk := []byte("this is not a queue file\x00\xff\xfe garbage\nEND 9999 deadbeef\n")
	if err := os.WriteFile(filepath.Join(in.msgDir(), garbage), junk, 0o600); err != nil {
		t.Fatal(err)
	}
	damaged := []string{truncated, flipped, empty, garbage}

	// `mailtee queue list` on the stopped server copes with them.
	if out, err := in.Run("", "queue", "list"); err != nil {
		t.Errorf("queue list on the stopped server with damaged files: %v\n%s", err, out)
	}

	mark := in.Log.Len()
	in.Start()
	// Open moves damaged files aside before the listener is up, so the
	// log lines are there now; allow a moment for the log to be flushed.
	waitUntil(t, "a log line for each damaged file", 10*time.Second, func() bool {
		l := in.Log.Since(mark)
		for _, id := range damaged {
			if damageLine(l, id) == "" {
				return false
			}
		}
		return true
	})
	logAfter := in.Log.Since(mark)
	for _, id := range damaged {
		t.Logf("%s", damageLine(logAfter, id))
		if _, err := os.Stat(filepath.Join(in.msgDir(), id)); !os.IsNotExist(err) {
			t.Errorf("%s still in the queue directory (err %v)", id, err)
		}
		if _, err := os.Stat(filepath.Join(in.corruptDir(), id)); err != nil {
			t.Errorf("%s not moved to %s: %v", id, in.corruptDir(), err)
		}
	}
	// The sidecars of damaged messages go with them (or away), never stay
	// behind to be applied to something else.
	for _, id := range []string{truncated, flipped} {
		if _, err := os.Stat(filepath.Join(in.msgDir(), id+".st")); err == nil {
			t.Errorf("%s.st left in the queue directory", id)
		}
	}
	// The damaged content is kept intact for inspection.
	if got, _ := os.ReadFile(filepath.Join(in.corruptDir(), garbage)); string(got) != string(junk) {
		t.Errorf("garbage file changed when moved: %q", got)
	}

	// The intact messages are still queued, the damaged ones are not.
	ids, out, err := in.queueList()
	if err != nil {
		t.Fatalf("queue list: %v\n%s", err, out)
	}
	if len(ids) != n-2 {
		t.Errorf("queue list shows %d messages, want %d:\n%s", len(ids), n-2, out)
	}
	for _, id := range damaged {
		if strings.Contains(out, id) {
			t.Errorf("damaged %s listed in the queue:\n%s", id, out)
		}
	}

	// Next hop up; the backoff is long, so flush as an administrator would.
	sk := newSink(t, fmt.Sprintf("127.0.0.1:%d", hopPort), nil)
	if out, err := in.Run("", "queue", "flush"); err != nil {
		t.Fatalf("queue flush: %v\n%s", err, out)
	}
	waitUntil(t, "the intact messages at the next hop", 60*time.Second, func() bool {
		for _, r := range rcpts[2:] {
			if sk.Count(r) == 0 {
				return false
			}
		}
		return true
	})
	waitUntil(t, "an empty queue", 30*time.Second, func() bool { return queueMessages(in) == 0 })
	for _, r := range rcpts[2:] {
		if c := sk.Count(r); c != 1 {
			t.Errorf("%s delivered %d times, want once", r, c)
		}
	}
	for _, r := range rcpts[:2] {
		if c := sk.Count(r); c != 0 {
			t.Errorf("damaged message to %s delivered %d times", r, c)
		}
	}
	in.Stop()
	// A second start with the corrupt/ directory populated is quiet about
	// the files already set aside.
	mark = in.Log.Len()
	in.Start()
	in.Stop()
	for _, id := range damaged {
		if l := damageLine(in.Log.Since(mark), id); l != "" {
			t.Errorf("second start reports %s again: %s", id, l)
		}
	}
	if t.Failed() {
		t.Logf("log:\n%s", in.Log.String())
	}
}

// damageLine returns the first log line that names queue file id and says
// it is damaged or corrupt, or "".
func damageLine(log, id string) string {
	for _, l := range strings.Split(log, "\n") {
		ll := strings.ToLower(l)
		if strings.Contains(l, id) && (strings.Contains(ll, "damaged") || strings.Contains(ll, "corrupt")) {
			return l
		}
	}
	return ""
}
