package asuser

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/deliver"
)

// The test binary is its own helper: started with this first argument, it
// runs Main instead of the tests.
const helperArg = "asuser-test-helper"

func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == helperArg {
		os.Exit(Main(os.Args[2:]))
	}
	os.Exit(m.Run())
}

// nobody is the unprivileged identity the tests deliver as.
func nobody(t *testing.T) Cred {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: helpers change their uid")
	}
	u, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody")
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return Cred{UID: uint32(uid), GID: uint32(gid)}
}

func testPool(t *testing.T, o Options) *Pool {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	o.Path, o.Args = exe, []string{helperArg}
	// Helpers' warnings come from their own goroutines.
	var (
		mu    sync.Mutex
		warns bytes.Buffer
	)
	if o.Warn == nil {
		o.Warn = func(m string) {
			mu.Lock()
			defer mu.Unlock()
			warns.WriteString(m + "\n")
		}
	}
	p := NewPool(o)
	t.Cleanup(func() {
		p.Close()
		mu.Lock()
		defer mu.Unlock()
		if warns.Len() > 0 {
			t.Logf("helper warnings:\n%s", warns.String())
		}
	})
	return p
}

// spoolFor makes a directory that c owns, below directories anyone may
// pass through.
func spoolFor(t *testing.T, c Cred) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		os.Chmod(d, 0o755)
	}
	box := filepath.Join(dir, "box")
	if err := os.Mkdir(box, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(box, int(c.UID), int(c.GID)); err != nil {
		t.Fatal(err)
	}
	return box
}

func message(id, body string) *deliver.Message {
	return &deliver.Message{ID: id, From: "sender@example.com", Size: int64(len(body)),
		Open: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(body)), nil }}
}

func newFiles(t *testing.T, box string) []string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(box, "new", "*"))
	return m
}

func TestMaildirWrittenAsUser(t *testing.T) {
	c := nobody(t)
	p := testPool(t, Options{})
	box := spoolFor(t, c)
	body := "Subject: x\r\n\r\n" + strings.Repeat("line of the body\r\n", 10000) // several pipe buffers
	for i := range 3 {
		if err := p.Maildir(context.Background(), c, box+"/", message("Q"+strconv.Itoa(i), body), "rcpt@example.com"); err != nil {
			t.Fatalf("delivery %d: %v", i, err)
		}
	}
	files := newFiles(t, box)
	if len(files) != 3 {
		t.Fatalf("%d files in new/, want 3", len(files))
	}
	for _, f := range append(files, filepath.Join(box, "new"), filepath.Join(box, "tmp")) {
		st, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		sys := st.Sys().(*syscall.Stat_t)
		if sys.Uid != c.UID || sys.Gid != c.GID {
			t.Errorf("%s is owned by %d:%d, want %d:%d", f, sys.Uid, sys.Gid, c.UID, c.GID)
		}
	}
	got, _ := os.ReadFile(files[0])
	want := "Return-Path: <sender@example.com>\nDelivered-To: rcpt@example.com\n" + strings.ReplaceAll(body, "\r\n", "\n")
	if string(got) != want {
		t.Errorf("message as delivered differs: %d bytes, want %d", len(got), len(want))
	}
	if n := p.Helpers(); n != 1 {
		t.Errorf("%d helpers for one identity, want 1", n)
	}
}

// A helper cannot write where its user cannot: the attack of a link from
// the user's Maildir into a directory only root may write.
func TestHelperCannotFollowIntoRootDirectory(t *testing.T) {
	c := nobody(t)
	p := testPool(t, Options{})
	box := spoolFor(t, c)
	target := filepath.Join(filepath.Dir(box), "root-only")
	if err := os.Mkdir(target, 0o700); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(box, "tmp"), 0o700)
	os.Chown(filepath.Join(box, "tmp"), int(c.UID), int(c.GID))
	if err := os.Symlink(target, filepath.Join(box, "new")); err != nil {
		t.Fatal(err)
	}
	err := p.Maildir(context.Background(), c, box+"/", message("Q1", "Subject: x\r\n\r\nhi\r\n"), "rcpt@example.com")
	var de *deliver.Error
	if !errors.As(err, &de) || de.Permanent || !strings.Contains(de.Text, "ermission denied") {
		t.Errorf("delivery through a link into a root directory: %v; want a temporary permission error", err)
	}
	if ents, _ := os.ReadDir(target); len(ents) > 0 {
		t.Errorf("the root-only directory got %d entries", len(ents))
	}
}

// A message that the server cannot read to its end is not delivered in
// part.
func TestTruncatedMessageIsNotDelivered(t *testing.T) {
	c := nobody(t)
	p := testPool(t, Options{})
	box := spoolFor(t, c)
	msg := &deliver.Message{ID: "Q1", From: "s@example.com", Open: func() (io.ReadCloser, error) {
		return io.NopCloser(io.MultiReader(strings.NewReader("Subject: half\r\n\r\n"+strings.Repeat("x", 100000)), errReader{})), nil
	}}
	err := p.Maildir(context.Background(), c, box+"/", msg, "rcpt@example.com")
	if err == nil {
		t.Fatal("a message that could not be read to its end was delivered")
	}
	if files := newFiles(t, box); len(files) != 0 {
		t.Errorf("%d files in new/ after a failed read", len(files))
	}
	// The helper is still good for the next message.
	if err := p.Maildir(context.Background(), c, box+"/", message("Q2", "Subject: x\r\n\r\nok\r\n"), "rcpt@example.com"); err != nil {
		t.Fatal(err)
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("disk read error") }

// A helper that dies (its user may kill it: it runs with her uid) fails
// only what it had; the next delivery starts a new one.
func TestHelperKilled(t *testing.T) {
	c := nobody(t)
	p := testPool(t, Options{})
	box := spoolFor(t, c)
	if err := p.Maildir(context.Background(), c, box+"/", message("Q1", "Subject: x\r\n\r\nhi\r\n"), "r@example.com"); err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	h := p.helpers[c]
	p.mu.Unlock()
	pid := h.cmd.Process.Pid
	assertNotDumpable(t, pid, c)
	syscall.Kill(pid, syscall.SIGKILL)
	deadline := time.Now().Add(10 * time.Second)
	for !h.isDead() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if err := p.Maildir(context.Background(), c, box+"/", message("Q2", "Subject: x\r\n\r\nhi\r\n"), "r@example.com"); err != nil {
		t.Fatalf("delivery after the helper was killed: %v", err)
	}
	if n := len(newFiles(t, box)); n != 2 {
		t.Errorf("%d messages delivered, want 2", n)
	}
}

// assertNotDumpable checks that the helper runs as c and that its user
// could not attach to it: /proc/PID/mem of a non-dumpable process belongs
// to root.
func assertNotDumpable(t *testing.T, pid int, c Cred) {
	t.Helper()
	status, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	want := "Uid:\t" + strconv.Itoa(int(c.UID)) + "\t" + strconv.Itoa(int(c.UID)) + "\t" + strconv.Itoa(int(c.UID))
	if !strings.Contains(string(status), want) {
		t.Errorf("helper's uids are not all %d:\n%s", c.UID, status)
	}
	if strings.Contains(string(status), "Groups:\t0") {
		t.Errorf("helper kept root's group:\n%s", status)
	}
	st, err := os.Stat("/proc/" + strconv.Itoa(pid) + "/mem")
	if err != nil {
		t.Fatal(err)
	}
	if uid := st.Sys().(*syscall.Stat_t).Uid; uid != 0 {
		t.Errorf("/proc/%d/mem belongs to uid %d: the helper is dumpable, its user could attach to it", pid, uid)
	}
}

func TestIdleHelpersStop(t *testing.T) {
	c := nobody(t)
	p := testPool(t, Options{Idle: 200 * time.Millisecond})
	box := spoolFor(t, c)
	if err := p.Maildir(context.Background(), c, box+"/", message("Q1", "Subject: x\r\n\r\nhi\r\n"), "r@example.com"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for p.Helpers() > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := p.Helpers(); n != 0 {
		t.Errorf("%d helpers still running after being idle", n)
	}
}

func TestRootRefused(t *testing.T) {
	nobody(t)
	p := testPool(t, Options{})
	err := p.Maildir(context.Background(), Cred{UID: 0, GID: 0}, t.TempDir()+"/", message("Q1", "x\r\n"), "r@example.com")
	if err == nil || !strings.Contains(err.Error(), "root") {
		t.Errorf("a helper as root: %v, want a refusal", err)
	}
	if code := Main([]string{"0", "0"}); code == 0 {
		t.Error("Main as uid 0 did not refuse")
	}
}

func TestFramedReader(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
		ok   bool
	}{
		{"empty message", trailer(""), true},
		{"message", trailer("hello, world"), true},
		{"no trailer", []byte("hello, world"), false},
		{"short trailer", trailer("hello")[:9], false},
		{"wrong count", append([]byte("hello"), trailer("hell")[4:]...), false},
	} {
		got, err := io.ReadAll(&framed{r: iotestHalf(tc.in)})
		if tc.ok != (err == nil) {
			t.Errorf("%s: err %v", tc.name, err)
		}
		if tc.ok && string(got) != string(tc.in[:len(tc.in)-8]) {
			t.Errorf("%s: got %q", tc.name, got)
		}
	}
}

func trailer(s string) []byte {
	b := []byte(s)
	n := uint64(len(s))
	for i := 7; i >= 0; i-- {
		b = append(b, byte(n>>(8*i)))
	}
	return b
}

// iotestHalf returns a reader that gives at most 3 bytes per Read, so
// the trailer straddles reads.
func iotestHalf(b []byte) io.Reader { return &small{b: b} }

type small struct{ b []byte }

func (s *small) Read(p []byte) (int, error) {
	if len(s.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), 3)], s.b)
	s.b = s.b[n:]
	return n, nil
}
