package maildrop

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/envelope"
)

// sink is a Submit that keeps what it is given.
type sink struct {
	mu   sync.Mutex
	envs []*envelope.Envelope
	uids []int
	msgs []string
	err  error // returned instead of taking the message
	log  []string
}

func (s *sink) submit(ctx context.Context, uid int, env *envelope.Envelope, body io.Reader) (string, error) {
	b, _ := io.ReadAll(body)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return "", s.err
	}
	s.envs = append(s.envs, env)
	s.uids = append(s.uids, uid)
	s.msgs = append(s.msgs, string(b))
	return "QID" + string(rune('A'+len(s.envs)-1)), nil
}

func (s *sink) logf(line string) {
	s.mu.Lock()
	s.log = append(s.log, line)
	s.mu.Unlock()
}

func (s *sink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.envs)
}

func (s *sink) logText() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.log, "\n")
}

func startPickup(t *testing.T, qdir string, s *sink, maxMsg int64) *Pickup {
	t.Helper()
	p, err := Start(Options{QueueDir: qdir, MaxMessage: maxMsg, Origin: "example.org", Submit: s.submit, Log: s.logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	// After Start's own scan: Scan waits for it.
	p.Scan(context.Background())
	return p
}

func dropped(t *testing.T, qdir string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(qdir, DropDir))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// With the server stopped, sendmail's files wait in maildrop; the next
// start submits them, completed, and empties maildrop.
func TestPickupStoppedThenStarted(t *testing.T) {
	qdir := t.TempDir()
	d, _ := sample()
	for _, msg := range []string{"Subject: one\r\n\r\nbody\r\n", "no header at all\r\n"} {
		_, running, err := Post(qdir, d, []byte(msg))
		if err != nil || running {
			t.Fatalf("Post with no server: running %v, %v", running, err)
		}
	}
	if n := len(dropped(t, qdir)); n != 2 {
		t.Fatalf("%d files in maildrop, want 2", n)
	}
	s := &sink{}
	startPickup(t, qdir, s, 0)
	if s.count() != 2 {
		t.Fatalf("%d submitted, want 2; log:\n%s", s.count(), s.logText())
	}
	if left := dropped(t, qdir); len(left) != 0 {
		t.Errorf("left in maildrop: %v", left)
	}
	env := s.envs[0]
	if env.From != "alice@example.org" || env.ClientAddr != "" || env.Protocol != "local" || !env.Arrival.Equal(d.Arrival) {
		t.Errorf("envelope %+v", env)
	}
	want := []envelope.Rcpt{{Addr: "bob@example.org", Orig: "bob@example.org"}, {Addr: `"a b"@example.org`, Orig: `"a b"@example.org`}, {Addr: "carol@example.org", Orig: "carol"}}
	for i, r := range env.Rcpts {
		if i >= len(want) || r != want[i] {
			t.Errorf("recipients %+v, want %+v", env.Rcpts, want)
			break
		}
	}
	// cleanup completes the header; pickup passes on the checked uid.
	for i, uid := range s.uids {
		if uid != 1000 {
			t.Errorf("submission %d: uid %d, want 1000", i, uid)
		}
	}
	if !strings.Contains(s.msgs[0], "Subject: one\r\n") || s.msgs[1] != "\r\nno header at all\r\n" {
		t.Errorf("messages:\n%q", s.msgs)
	}
	if log := s.logText(); !strings.Contains(log, "QIDA: uid=1000 from=<alice>") || !strings.Contains(log, "QIDB: uid=1000 from=<alice>") {
		t.Errorf("log lacks pickup's lines:\n%s", log)
	}
}

// A running pickup takes a file at sendmail's poke, without waiting for
// a rescan (Interval is 0 here).
func TestPickupPoke(t *testing.T) {
	qdir := t.TempDir()
	s := &sink{}
	startPickup(t, qdir, s, 0)
	d, msg := sample()
	_, running, err := Post(qdir, d, msg)
	if err != nil || !running {
		t.Fatalf("Post: running %v, %v", running, err)
	}
	waitFor(t, "the poked pickup", func() bool { return s.count() == 1 })
	fi, err := os.Stat(filepath.Join(qdir, PickupFIFO))
	if err != nil || fi.Mode()&os.ModeNamedPipe == 0 || fi.Mode().Perm() != 0o622 {
		t.Errorf("FIFO: %v %v", fi.Mode(), err)
	}
	if fi, _ := os.Stat(filepath.Join(qdir, DropDir)); fi.Mode()&os.ModeSticky == 0 || fi.Mode().Perm() != 0o730 {
		t.Errorf("maildrop mode %v, want 1730", fi.Mode())
	}
}

// Every file in maildrop is hostile: links, FIFOs, directories, files
// too big, truncated, garbage or claiming another uid are removed or set
// aside with a warning naming them, pickup neither hangs nor follows a
// link nor touches what a link points to, and the good file among them
// is submitted.
func TestPickupHostileFiles(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to give files other owners")
	}
	qdir := t.TempDir()
	md := filepath.Join(qdir, DropDir)
	if err := ensureDropDir(qdir); err != nil {
		t.Fatal(err)
	}
	d, msg := sample()
	good := encode(t, d, msg)
	name := func(i int) string { return fmt.Sprintf("%024X", i+1) }
	write := func(n string, data []byte, uid int) string {
		t.Helper()
		p := filepath.Join(md, n)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, uid, -1); err != nil {
			t.Fatal(err)
		}
		return n
	}
	outside := filepath.Join(t.TempDir(), "victim")
	os.WriteFile(outside, good, 0o600)
	os.Chown(outside, 1000, -1)
	bad := map[string]string{} // name: what the warning must say
	bad[write(name(0), good[:len(good)-3], 1000)] = "truncated"
	bad[write(name(1), []byte("\x7fELF garbage"), 1000)] = "not a maildrop file"
	bad[write(name(2), good, 4242)] = "records uid 1000 but is owned by uid 4242"
	big := *d
	bad[write(name(3), encode(t, &big, bytes.Repeat([]byte("x"), 5000)), 1000)] = "larger than the limit"
	bad[write("not-a-drop-name", good, 1000)] = "not a name sendmail gives"
	os.Symlink(outside, filepath.Join(md, name(4)))
	bad[name(4)] = "not a regular file"
	syscall.Mkfifo(filepath.Join(md, name(5)), 0o600)
	bad[name(5)] = "not a regular file"
	os.Mkdir(filepath.Join(md, name(6)), 0o700)
	bad[name(6)] = "a directory"
	os.Link(outside, filepath.Join(md, name(7)))
	bad[name(7)] = "2 hard links"
	stale := write(tmpPrefix+"stale", good[:10], 1000)
	old := time.Now().Add(-2 * staleTemp)
	os.Chtimes(filepath.Join(md, stale), old, old)
	bad[stale] = "unfinished submission"
	fresh := write(tmpPrefix+"fresh", good[:10], 1000)
	ok := write(name(8), good, 1000)
	rootOK := write(name(9), good, 0) // root may submit in a user's name

	s := &sink{}
	done := make(chan struct{})
	go func() {
		startPickup(t, qdir, s, 1000)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("pickup hangs on the hostile files")
	}
	if s.count() != 2 {
		t.Errorf("%d submitted, want 2 (%s and %s); log:\n%s", s.count(), ok, rootOK, s.logText())
	}
	log := s.logText()
	for n, why := range bad {
		if !strings.Contains(log, "warning: maildrop/"+n+": ") || !strings.Contains(log, why) {
			t.Errorf("no warning for %s (%s) in:\n%s", n, why, log)
		}
	}
	left := dropped(t, qdir)
	if len(left) != 1 || left[0] != fresh {
		t.Errorf("left in maildrop: %v, want only %s", left, fresh)
	}
	if b, err := os.ReadFile(outside); err != nil || !bytes.Equal(b, good) {
		t.Errorf("the file a link pointed to: %v", err)
	}
	for _, n := range []string{name(0), name(1), name(2), name(3), name(6), name(7)} {
		if _, err := os.Lstat(filepath.Join(qdir, CorruptDir, "maildrop-"+n)); err != nil {
			t.Errorf("%s not set aside: %v", n, err)
		}
	}
}

// A temporary failure of Submit leaves the file for the next scan; a
// refusal sets it aside.
func TestPickupSubmitFails(t *testing.T) {
	qdir := t.TempDir()
	d, msg := sample()
	if _, _, err := Post(qdir, d, msg); err != nil {
		t.Fatal(err)
	}
	s := &sink{err: errors.New("disk full")}
	p := startPickup(t, qdir, s, 0)
	if n := len(dropped(t, qdir)); n != 1 {
		t.Fatalf("%d files in maildrop after a temporary failure, want 1", n)
	}
	s.mu.Lock()
	s.err = refused{}
	s.mu.Unlock()
	p.Scan(context.Background())
	if n := len(dropped(t, qdir)); n != 0 {
		t.Fatalf("%d files in maildrop after a refusal, want 0", n)
	}
	if !strings.Contains(s.logText(), "refused: 554 too many hops") {
		t.Errorf("log:\n%s", s.logText())
	}
	s.mu.Lock()
	s.err = nil
	s.mu.Unlock()
	p.Scan(context.Background())
	if s.count() != 0 {
		t.Error("a refused file was submitted later")
	}
}

type refused struct{}

func (refused) Error() string   { return "554 too many hops" }
func (refused) Temporary() bool { return false }
