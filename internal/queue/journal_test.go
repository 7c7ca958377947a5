package queue

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/envelope"
)

// segments lists the journal's segment files.
func segments(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dir, "journal"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, filepath.Join(dir, "journal", e.Name()))
	}
	return out
}

// Concurrent messages share fdatasyncs, and none gets a file of its own.
func TestJournalGroupCommit(t *testing.T) {
	dir := t.TempDir()
	q, err := Open(newFakeNet().options(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close(context.Background())
	const senders, each = 40, 5
	var wg sync.WaitGroup
	for s := 0; s < senders; s++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				if err := q.Enqueue(context.Background(), q.NewID(), env(fmt.Sprintf("s%d-%d@one.example", s, i)), strings.NewReader(benchBody)); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	n := senders * each
	if got := len(q.List()); got != n {
		t.Fatalf("%d messages queued, want %d", got, n)
	}
	if files := spoolFiles(t, dir); len(files) != 0 {
		t.Errorf("%d messages got a file of their own", len(files))
	}
	syncs := q.st().jn.syncs.Load()
	t.Logf("%d messages, %d fdatasyncs, %d directory syncs", n, syncs, q.st().jn.syncer.Syncs())
	if syncs >= int64(n) {
		t.Errorf("%d fdatasyncs for %d messages: no group commit", syncs, n)
	}
}

// A crash (the queue abandoned without Close) leaves messages in the
// journal: the next start moves them to files of their own, delivers
// each once, skips those with a D record, and deletes the segments.
func TestJournalRecovery(t *testing.T) {
	dir := t.TempDir()
	f := newFakeNet()
	q1, err := Open(f.options(dir)) // never Run: nothing is delivered
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i := 0; i < 3; i++ {
		id := q1.NewID()
		ids = append(ids, id)
		if err := q1.Enqueue(context.Background(), id, env(fmt.Sprintf("r%d@one.example", i)), strings.NewReader(fmt.Sprintf("message %d\r\n", i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := q1.Delete(ids[1]); err != nil { // a D record
		t.Fatal(err)
	}
	if l, err := ListDir(dir); err != nil || len(l) != 2 {
		t.Fatalf("ListDir of a stopped server's journal: %d messages (%v), want 2", len(l), err)
	}
	if len(segments(t, dir)) != 1 {
		t.Fatalf("segments: %v", segments(t, dir))
	}
	old := segments(t, dir)[0]

	q2 := startQueue(t, f.options(dir))
	waitFor(t, "deliveries", func() bool { return f.count("r0@one.example") == 1 && f.count("r2@one.example") == 1 })
	waitFor(t, "an empty queue", func() bool { return drained(t, q2, dir) })
	if n := f.count("r1@one.example"); n != 0 {
		t.Errorf("the deleted message was delivered %d times", n)
	}
	if got := f.body("r2@one.example"); got != "message 2\r\n" {
		t.Errorf("body after recovery %q", got)
	}
	if _, err := os.Stat(old); !os.IsNotExist(err) {
		t.Errorf("segment of the previous run left: %s (%v)", old, err)
	}
}

// A message moved out before a crash that lost its D record is found
// twice: its file wins, and it is delivered once.
func TestJournalMovedTwice(t *testing.T) {
	dir := t.TempDir()
	f := newFakeNet()
	q1, err := Open(f.options(dir))
	if err != nil {
		t.Fatal(err)
	}
	id := q1.NewID()
	q1.Enqueue(context.Background(), id, env("a@one.example"), strings.NewReader("x\r\n"))
	js, err := readJournal(filepath.Join(dir, "journal"))
	if err != nil || len(js.live) != 1 {
		t.Fatalf("journal: %v, %+v", err, js)
	}
	if err := q1.st().moveOut(js.live[0]); err != nil { // the file, not the D record
		t.Fatal(err)
	}
	q2 := startQueue(t, f.options(dir))
	waitFor(t, "delivery", func() bool { return f.count("a@one.example") == 1 })
	waitFor(t, "an empty queue", func() bool { return drained(t, q2, dir) })
	if n := f.count("a@one.example"); n != 1 {
		t.Errorf("delivered %d times", n)
	}
}

// The torn end of a write a crash interrupted is ignored with a note; a
// damaged record in the middle is skipped, the others recovered, and the
// segment kept in corrupt/.
func TestJournalTornAndDamaged(t *testing.T) {
	for _, damage := range []string{"torn", "flipped"} {
		t.Run(damage, func(t *testing.T) {
			dir := t.TempDir()
			f := newFakeNet()
			q1, err := Open(f.options(dir))
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 3; i++ {
				q1.Enqueue(context.Background(), q1.NewID(), env(fmt.Sprintf("r%d@one.example", i)), strings.NewReader(fmt.Sprintf("message %d\r\n", i)))
			}
			seg := segments(t, dir)[0]
			data, err := os.ReadFile(seg)
			if err != nil {
				t.Fatal(err)
			}
			end := len(bytes.TrimRight(data, "\x00"))
			switch damage {
			case "torn":
				// Half of a fourth record, as a crash leaves it.
				rec := make([]byte, recHeader+40)
				copy(rec[recHeader:], "\x0cTORNTORNTORN and the rest of a message")
				seal(rec, recMsg, 0)
				copy(data[end:], rec[:30])
			case "flipped":
				i := bytes.Index(data, []byte("message 1"))
				data[i] ^= 0x20
			}
			if err := os.WriteFile(seg, data, 0o600); err != nil {
				t.Fatal(err)
			}
			var logbuf bytes.Buffer
			o := f.options(dir)
			o.Log = slog.New(slog.NewTextHandler(&logbuf, nil))
			q2 := startQueue(t, o)
			waitFor(t, "deliveries", func() bool { return f.count("r0@one.example") == 1 && f.count("r2@one.example") == 1 })
			waitFor(t, "an empty queue", func() bool { return drained(t, q2, dir) })
			corrupt, _ := os.ReadDir(filepath.Join(dir, "corrupt"))
			switch damage {
			case "torn":
				if f.count("r1@one.example") != 1 {
					t.Errorf("r1 delivered %d times", f.count("r1@one.example"))
				}
				if !strings.Contains(logbuf.String(), "incomplete record") || len(corrupt) != 0 {
					t.Errorf("torn end: log %q, corrupt/ %v", logbuf.String(), corrupt)
				}
			case "flipped":
				if f.count("r1@one.example") != 0 {
					t.Errorf("the damaged message was delivered")
				}
				if !strings.Contains(logbuf.String(), "1 damaged records skipped") || len(corrupt) != 1 || !strings.HasPrefix(corrupt[0].Name(), "journal-") {
					t.Errorf("damage: log %q, corrupt/ %v", logbuf.String(), corrupt)
				}
			}
		})
	}
}

// Where no segment can be made (here: larger than any disk), messages
// get files of their own and are delivered all the same.
func TestJournalFallback(t *testing.T) {
	dir := t.TempDir()
	f := newFakeNet()
	f.set("a@one.example", testErr{false, "later"})
	n0 := segmentSize
	segmentSize = 1 << 62
	q := startQueue(t, f.options(dir)) // the journal takes the size
	segmentSize = n0
	id := q.NewID()
	if err := q.Enqueue(context.Background(), id, env("a@one.example"), strings.NewReader("x\r\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "queue", id)); err != nil {
		t.Errorf("no file of its own: %v", err)
	}
	f.set("a@one.example", nil)
	q.Flush()
	waitFor(t, "delivery", func() bool { return f.count("a@one.example") == 1 })
}

// Segments fill, new ones follow, and those whose messages are all done
// are deleted; a message larger than journalMax gets a file of its own.
func TestJournalSegmentsRoll(t *testing.T) {
	dir := t.TempDir()
	f := newFakeNet()
	n0, r0 := segmentSize, segmentReserve
	segmentSize, segmentReserve = 64<<10, 8<<10
	q := startQueue(t, f.options(dir)) // the journal takes the sizes
	segmentSize, segmentReserve = n0, r0
	const n = 200 // about 2.1 KB each: 7 or 8 segments
	for i := 0; i < n; i++ {
		if err := q.Enqueue(context.Background(), q.NewID(), env(fmt.Sprintf("r%d@one.example", i)), strings.NewReader(benchBody)); err != nil {
			t.Fatal(err)
		}
	}
	big := strings.Repeat("x", journalMax) + "\r\n"
	q.Enqueue(context.Background(), q.NewID(), env("big@one.example"), strings.NewReader(big))
	waitFor(t, "all delivered", func() bool { return drained(t, q, dir) })
	for i := 0; i < n; i++ {
		if c := f.count(fmt.Sprintf("r%d@one.example", i)); c != 1 {
			t.Fatalf("r%d delivered %d times", i, c)
		}
	}
	if f.body("big@one.example") != big {
		t.Errorf("large message's body differs")
	}
	if got := q.st().jn.recs.Load(); got != n {
		t.Errorf("%d messages went to the journal, want %d (not the large one)", got, n)
	}
	// One more message lets the last full segment go if a writer held
	// it when its last message was done.
	q.Enqueue(context.Background(), q.NewID(), env("last@one.example"), strings.NewReader("x\r\n"))
	waitFor(t, "old segments deleted", func() bool { return len(segments(t, dir)) <= 2 })
}

// FuzzReadJournal: whatever a segment holds, reading it neither panics
// nor finds a message whose record does not check out.
func FuzzReadJournal(f *testing.F) {
	rec := make([]byte, recHeader+1+2+4+3)
	rec[recHeader] = 2
	copy(rec[recHeader+1:], "AB\x03\x00\x00\x00abc")
	seal(rec, recMsg, 0)
	f.Add(rec)
	f.Add(append(append([]byte{}, rec...), 'D', 2, 0, 0, 0, 1, 2, 3, 4, 'A', 'B'))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, segName(0)), data, 0o600); err != nil {
			t.Fatal(err)
		}
		js, err := readJournal(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range js.live {
			if m.off < 0 || m.off+m.meta.BodySize > int64(len(data)) {
				t.Fatalf("message %q body at %d+%d outside %d bytes", m.id, m.off, m.meta.BodySize, len(data))
			}
		}
	})
}

// With the disk full, a segment made before still takes messages in its
// preallocated space, then acceptance fails with ENOSPC (the server's
// 452); deliveries meanwhile record their D records in the segment's
// reserve, and nothing is lost or delivered twice. Once space is back,
// messages are accepted again.
func TestJournalDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: mounts a small tmpfs")
	}
	mnt := t.TempDir()
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size=1m,mode=0700"); err != nil {
		t.Skipf("cannot mount a tmpfs (%v)", err)
	}
	t.Cleanup(func() {
		if syscall.Unmount(mnt, 0) != nil {
			syscall.Unmount(mnt, syscall.MNT_DETACH)
		}
	})
	dir := filepath.Join(mnt, "spool")
	f := newFakeNet()
	o := f.options(dir)
	gate := make(chan struct{})
	base := o.Deliver
	o.Deliver = func(ctx context.Context, m *Message, hop envelope.Hop, rcpts []int) []Outcome {
		<-gate
		return base(ctx, m, hop, rcpts)
	}
	n0, r0 := segmentSize, segmentReserve
	segmentSize, segmentReserve = 128<<10, 16<<10
	q := startQueue(t, o) // the journal takes the sizes
	segmentSize, segmentReserve = n0, r0
	t.Cleanup(func() {
		select {
		case <-gate:
		default:
			close(gate)
		}
	})
	send := func(i int) error {
		return q.Enqueue(context.Background(), q.NewID(), env(fmt.Sprintf("r%d@one.example", i)), strings.NewReader(benchBody))
	}
	if err := send(0); err != nil {
		t.Fatal(err)
	}

	// Fill the disk.
	fh, err := os.Create(filepath.Join(mnt, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	chunk := bytes.Repeat([]byte("x"), 4096)
	for {
		if _, err := fh.Write(chunk); err != nil {
			break
		}
	}
	fh.Close()

	accepted := 1
	var last error
	for i := 1; i < 200; i++ {
		if last = send(i); last != nil {
			break
		}
		accepted++
	}
	t.Logf("%d messages accepted, then: %v", accepted, last)
	if !errors.Is(last, syscall.ENOSPC) {
		t.Fatalf("acceptance with the disk full ended with %v, want ENOSPC", last)
	}
	// 112 KB of room in the segment: about 50 messages of 2.1 KB.
	if accepted < 20 {
		t.Errorf("only %d messages went into the preallocated segment", accepted)
	}

	close(gate)
	waitFor(t, "deliveries with the disk full", func() bool { return len(q.List()) == 0 })
	for i := 0; i < accepted; i++ {
		if n := f.count(fmt.Sprintf("r%d@one.example", i)); n != 1 {
			t.Errorf("r%d delivered %d times", i, n)
		}
	}

	os.Remove(filepath.Join(mnt, "filler"))
	if err := send(1000); err != nil {
		t.Errorf("with space back: %v", err)
	}
	waitFor(t, "the last delivery", func() bool { return f.count("r1000@one.example") == 1 })
}

// A message whose first delivery takes long does not keep every newer
// segment on disk: once there are more than journalKeep segments, it is
// moved to a file of its own and the old segments go; it is still
// delivered once, from its file.
func TestJournalCompaction(t *testing.T) {
	dir := t.TempDir()
	f := newFakeNet()
	o := f.options(dir)
	release := make(chan struct{})
	base := o.Deliver
	o.Deliver = func(ctx context.Context, m *Message, hop envelope.Hop, rcpts []int) []Outcome {
		if m.Rcpts[rcpts[0]].Addr == "slow@one.example" {
			<-release
		}
		return base(ctx, m, hop, rcpts)
	}
	n0, r0, k0, c0 := segmentSize, segmentReserve, journalKeep, compactEvery
	segmentSize, segmentReserve, journalKeep, compactEvery = 64<<10, 8<<10, 2, 20*time.Millisecond
	q := startQueue(t, o) // the journal and its loop take the values
	keep := journalKeep
	segmentSize, segmentReserve, journalKeep, compactEvery = n0, r0, k0, c0
	defer close(release)

	slow := q.NewID()
	body := "Subject: slow\r\n\r\n" + benchBody
	if err := q.Enqueue(context.Background(), slow, env("slow@one.example"), strings.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 200; i++ { // about 7 segments
		if err := q.Enqueue(context.Background(), q.NewID(), env(fmt.Sprintf("r%d@one.example", i)), strings.NewReader(benchBody)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the others delivered", func() bool { return len(q.List()) == 1 })
	waitFor(t, "the slow message in a file of its own", func() bool {
		_, err := os.Stat(filepath.Join(dir, "queue", slow))
		return err == nil
	})
	waitFor(t, "old segments deleted", func() bool { return len(segments(t, dir)) <= keep+1 })
	m, err := q.st().load(slow)
	if err != nil {
		t.Fatalf("the moved message's file: %v", err)
	}
	rc, err := m.Open()
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if string(got) != body {
		t.Errorf("the moved message's file holds %d bytes of body, want %d", len(got), len(body))
	}
	release <- struct{}{}
	waitFor(t, "the slow message delivered", func() bool { return f.count("slow@one.example") == 1 })
	waitFor(t, "an empty queue", func() bool { return drained(t, q, dir) })
	if got := f.body("slow@one.example"); got != body {
		t.Errorf("body after the move: %d bytes, want %d", len(got), len(body))
	}
}
