package pfimport

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"

	"github.com/mailtee/mailtee/internal/envelope"
	"github.com/mailtee/mailtee/internal/maildrop"
	"github.com/mailtee/mailtee/internal/pfqueue"
	"github.com/mailtee/mailtee/internal/queue"
)

// The Postfix queue of pfqueue's tests, written by Postfix 3.7.11:
// four deferred messages (one with a bounce/ log whose notice is
// pending, one with DSN parameters), one held, two maildrop files.
const fixtures = "../pfqueue/testdata/queue"

type env struct {
	pf, q, data string
	log         []string
}

func setup(t *testing.T) *env {
	t.Helper()
	base := t.TempDir()
	e := &env{pf: filepath.Join(base, "postfix"), q: filepath.Join(base, "mailtee"), data: filepath.Join(base, "data")}
	if out, err := exec.Command("cp", "-a", fixtures, e.pf).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	// What Postfix's tree has and git does not keep: empty queues.
	for _, d := range []string{"active", "incoming", "pid"} {
		os.MkdirAll(filepath.Join(e.pf, d), 0o700)
	}
	return e
}

func (e *env) opts() Options {
	return Options{PostfixDir: e.pf, QueueDir: e.q, DataDir: e.data, Log: func(l string) { e.log = append(e.log, l) }}
}

// meta reads the envelope stored in a mailtee queue file.
func meta(t *testing.T, qdir, id string) envelope.Envelope {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(qdir, "queue", id))
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.LastIndex(b, []byte("\nMETA "))
	j := bytes.LastIndex(b, []byte("\nEND "))
	var m struct{ Env envelope.Envelope }
	if i < 0 || j < i || json.Unmarshal(b[i+6:j], &m) != nil {
		t.Fatalf("%s: no META", id)
	}
	return m.Env
}

func byFrom(t *testing.T, qdir string) map[string][]queue.Info {
	t.Helper()
	list, err := queue.ListDir(qdir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]queue.Info{}
	for _, in := range list {
		out[in.From] = append(out[in.From], in)
	}
	return out
}

func postfixFiles(t *testing.T, dir string) []string {
	var out []string
	for _, q := range []string{"maildrop", "incoming", "active", "deferred", "hold", "bounce", "defer"} {
		filepath.WalkDir(filepath.Join(dir, q), func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				out = append(out, p)
			}
			return nil
		})
	}
	return out
}

func TestImport(t *testing.T) {
	e := setup(t)
	sum, err := Import(e.opts())
	if err != nil {
		t.Fatal(err)
	}
	if sum.Messages != 5 || sum.Recipients != 7 || sum.Bounced != 1 || sum.Held != 1 || sum.Maildrop != 2 || len(sum.Skipped) != 0 {
		t.Errorf("summary %+v", sum)
	}
	if left := postfixFiles(t, e.pf); len(left) != 0 {
		t.Errorf("left in Postfix's queue: %v", left)
	}
	got := byFrom(t, e.q)
	// Held stays held.
	if b := got["bob@client.test"]; len(b) != 1 || !b[0].Hold {
		t.Errorf("held message: %+v", b)
	}
	// The bounced recipient is there, bounced (its notice still owed),
	// beside the pending one, from the defer log its last reason.
	var half *queue.Info
	for i, in := range got["carol@client.test"] {
		if len(in.Rcpts) == 2 {
			half = &got["carol@client.test"][i]
		}
	}
	if half == nil {
		t.Fatalf("carol's half-bounced message: %+v", got["carol@client.test"])
	}
	if r := half.Rcpts; r[0].Addr != "c1@defer.example" || r[0].Status != "deferred" || !strings.Contains(r[0].Reason, "Connection refused") ||
		r[1].Addr != "c2@bounce.example" || r[1].Status != "bounced" || r[1].Reason != "no such user" {
		t.Errorf("recipients %+v", r)
	}
	// DSN, arrival, client.
	d := got["dave@client.test"]
	if len(d) != 1 {
		t.Fatalf("dave: %+v", d)
	}
	m := meta(t, e.q, d[0].ID)
	if m.EnvID != "env+42" || m.Ret != "HDRS" || m.ClientAddr != "127.0.0.1" || m.Helo != "client.test" || m.Protocol != "ESMTP" {
		t.Errorf("envelope %+v", m)
	}
	want := []envelope.Rcpt{
		{Addr: "d1@defer.example", Orig: "d1@defer.example", Notify: "SUCCESS,FAILURE", ORcpt: "rfc822;orig-d1@client.test"},
		{Addr: "d2@defer.example", Orig: "d2@defer.example", Notify: "NEVER", ORcpt: "rfc822;d2@defer.example"},
	}
	for i := range want {
		if i >= len(m.Rcpts) || m.Rcpts[i] != want[i] {
			t.Errorf("recipients %+v; want %+v", m.Rcpts, want)
			break
		}
	}
	pb, _ := os.ReadFile(filepath.Join(fixtures, "deferred/2/27EEB98A551"))
	if pm, err := pfqueue.Read(pb); err != nil || !m.Arrival.Equal(pm.Arrival) {
		t.Errorf("arrival %v, not Postfix's (%v)", m.Arrival, err)
	}
	// Maildrop files wait for mailtee's pickup, as its sendmail drops.
	ents, _ := os.ReadDir(filepath.Join(e.q, maildrop.DropDir))
	if len(ents) != 2 {
		t.Fatalf("mailtee maildrop: %v", ents)
	}
	var drops []string
	for _, en := range ents {
		b, _ := os.ReadFile(filepath.Join(e.q, maildrop.DropDir, en.Name()))
		dr, msg, err := maildrop.Decode(b, 0)
		if err != nil {
			t.Fatalf("%s: %v", en.Name(), err)
		}
		drops = append(drops, dr.From+" "+strings.Join(dr.Rcpts, ",")+" "+string(msg))
	}
	sort.Strings(drops)
	if !strings.HasPrefix(drops[0], "erin@client.test m1@defer.example Subject: dropped\r\n") || !strings.HasSuffix(drops[0], "no newline at end\r\n") ||
		!strings.HasPrefix(drops[1], "root t1@defer.example,t2@defer.example Subject: dropped t\r\n") {
		t.Errorf("drops:\n%s", strings.Join(drops, "\n"))
	}
	// Each imported file is archived with its logs.
	for _, p := range []string{"deferred/B260998A3D9", "deferred/B260998A3D9.bounce", "deferred/B260998A3D9.defer", "hold/249B398A541", "maildrop/21DF598A2F3"} {
		if _, err := os.Stat(filepath.Join(e.data, "postfix-import", p)); err != nil {
			t.Error(err)
		}
	}
	if all := strings.Join(e.log, "\n"); len(e.log) != 8 || !strings.Contains(all, ": postfix-queue-id=249B398A541, from=<bob@client.test>, nrcpt=1, held (imported from hold)") ||
		!strings.Contains(all, "warning: maildrop 1F8FE98A2F2: the DSN parameters of sendmail -N/-V") {
		t.Errorf("log:\n%s", strings.Join(e.log, "\n"))
	}

	// Again: nothing.
	e.log = nil
	sum, err = Import(e.opts())
	if err != nil || sum.Messages+sum.Maildrop+sum.Done+sum.Recovered != 0 {
		t.Errorf("second import: %+v %v", sum, err)
	}
	if list, _ := queue.ListDir(e.q); len(list) != 5 {
		t.Errorf("%d messages after a second import", len(list))
	}
}

// A crash at any point between staging and commit leaves, after the
// next run, each message queued exactly once.
func TestImportCrash(t *testing.T) {
	for _, c := range []struct {
		at  string
		nth int // files are imported in order: 2 maildrop, 4 deferred, 1 hold
	}{{"staged", 2}, {"moved", 2}, {"staged", 4}, {"moved", 4}, {"moved", 7}} {
		at := c.at
		t.Run(fmt.Sprintf("%s-%d", at, c.nth), func(t *testing.T) {
			e := setup(t)
			n := 0
			crash = func(point string) error {
				if point == at {
					if n++; n == c.nth {
						return errors.New("crash")
					}
				}
				return nil
			}
			_, err := Import(e.opts())
			crash = func(string) error { return nil }
			if err == nil {
				t.Fatal("no crash")
			}
			sum, err := Import(e.opts())
			if err != nil {
				t.Fatal(err)
			}
			if at == "moved" && sum.Recovered != 1 {
				t.Errorf("recovered %d", sum.Recovered)
			}
			list, _ := queue.ListDir(e.q)
			ents, _ := os.ReadDir(filepath.Join(e.q, maildrop.DropDir))
			if len(list) != 5 || len(ents) != 2 {
				t.Errorf("after the crash at %s and a rerun: %d messages, %d drops; want 5 and 2", at, len(list), len(ents))
			}
			if staged, _ := queue.ListStaged(e.q); len(staged) != 0 {
				t.Errorf("left staged: %+v", staged)
			}
			if left := postfixFiles(t, e.pf); len(left) != 0 {
				t.Errorf("left in Postfix's queue: %v", left)
			}
		})
	}
}

// A running Postfix (its master holds pid/master.pid) is refused, and
// nothing is touched.
func TestImportRefusesRunningPostfix(t *testing.T) {
	e := setup(t)
	f, err := os.OpenFile(filepath.Join(e.pf, "pid", "master.pid"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.WriteString("        4242\n")
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	_, err = Import(e.opts())
	if !errors.Is(err, ErrRunning) || !strings.Contains(err.Error(), "pid 4242") {
		t.Errorf("err = %v", err)
	}
	if left := postfixFiles(t, e.pf); len(left) != 12 {
		t.Errorf("%d files left in Postfix's queue, want all 12", len(left))
	}
}

// A damaged file stays in Postfix's queue, with a warning; the others
// are imported.
func TestImportDamaged(t *testing.T) {
	e := setup(t)
	p := filepath.Join(e.pf, "hold", "249B398A541")
	b, _ := os.ReadFile(p)
	if err := os.WriteFile(p, b[:len(b)/2], 0o700); err != nil {
		t.Fatal(err)
	}
	sum, err := Import(e.opts())
	if err != nil {
		t.Fatal(err)
	}
	if sum.Messages != 4 || len(sum.Skipped) != 1 || !strings.Contains(sum.Skipped[0], "249B398A541") {
		t.Errorf("%+v", sum)
	}
	if _, err := os.Stat(p); err != nil {
		t.Errorf("damaged file not left in place: %v", err)
	}
}

// Written by Postfix 3.7.11 too: a message an access table redirected
// (REDIRECT red@defer.example: it goes once, to that address), and one
// waiting for a content_filter mailtee does not run (left in Postfix's
// queue, unfiltered mail never goes out).
func TestImportRedirectAndFilter(t *testing.T) {
	e := setup(t)
	os.RemoveAll(e.pf)
	if out, err := exec.Command("cp", "-a", "../pfqueue/testdata/special", e.pf).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	for _, d := range []string{"active", "incoming", "maildrop", "hold", "pid"} {
		os.MkdirAll(filepath.Join(e.pf, d), 0o700)
	}
	sum, err := Import(e.opts())
	if err != nil {
		t.Fatal(err)
	}
	if sum.Messages != 1 || len(sum.Skipped) != 1 || !strings.Contains(sum.Skipped[0], "C6B3298A0B2: waiting for content_filter smtp:[127.0.0.1]:3") {
		t.Errorf("%+v", sum)
	}
	r := byFrom(t, e.q)["redir@client.test"]
	if len(r) != 1 || len(r[0].Rcpts) != 1 || r[0].Rcpts[0].Addr != "red@defer.example" {
		t.Fatalf("redirected: %+v", r)
	}
	if m := meta(t, e.q, r[0].ID); m.Rcpts[0].Orig != "r1@defer.example" {
		t.Errorf("original recipient %+v", m.Rcpts[0])
	}
	if _, err := os.Stat(filepath.Join(e.pf, "deferred/C/C6B3298A0B2")); err != nil {
		t.Errorf("the filtered message left Postfix's queue: %v", err)
	}
}

// A maildrop file becomes mail in the name of its owner, as Postfix's
// pickup takes it; pickup's safe_open refuses a file with more than one
// link or a symbolic link, and so does the import: a hard link to a
// file someone else wrote is left in Postfix's queue, with a warning,
// and so is a file replaced by a link after the scan.
func TestImportRefusesLinks(t *testing.T) {
	e := setup(t)
	md := filepath.Join(e.pf, "maildrop", "21DF598A2F3")
	if err := os.Link(md, filepath.Join(t.TempDir(), "other")); err != nil {
		t.Fatal(err)
	}
	sum, err := Import(e.opts())
	if err != nil {
		t.Fatal(err)
	}
	if sum.Maildrop != 1 || len(sum.Skipped) != 1 || !strings.Contains(sum.Skipped[0], "2 hard links") {
		t.Errorf("summary %+v", sum)
	}
	if _, err := os.Lstat(md); err != nil {
		t.Errorf("the linked file was not left in place: %v", err)
	}

	// Replaced by a symbolic link between the scan and the read.
	e = setup(t)
	files, err := pfqueue.Scan(e.pf)
	if err != nil {
		t.Fatal(err)
	}
	var f pfqueue.File
	for _, x := range files {
		if x.Queue == "deferred" {
			f = x
			break
		}
	}
	data, _ := os.ReadFile(f.Path)
	// Another file of the same name (made while the first exists, so
	// that it cannot reuse its inode).
	os.WriteFile(f.Path+".new", data, 0o700)
	if err := os.Rename(f.Path+".new", f.Path); err != nil {
		t.Fatal(err)
	}
	var skip skipError
	if _, err := readQueueFile(f); !errors.As(err, &skip) {
		t.Errorf("another file put in place of %s: %v, want it refused", f.Path, err)
	}
	secret := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(secret, data, 0o600)
	os.Remove(f.Path)
	if err := os.Symlink(secret, f.Path); err != nil {
		t.Fatal(err)
	}
	if _, err := readQueueFile(f); !errors.As(err, &skip) {
		t.Errorf("a symbolic link put in place of %s: %v, want it refused", f.Path, err)
	}
}

// A message's defer or bounce log is not read through a symbolic link
// either (its reasons go into mailq and notices to the sender): the
// message stays in Postfix's queue with a warning.
func TestImportRefusesLinkedLog(t *testing.T) {
	e := setup(t)
	log := filepath.Join(e.pf, "defer", "2", "218DB98A531")
	data, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(secret, data, 0o600)
	os.Remove(log)
	if err := os.Symlink(secret, log); err != nil {
		t.Fatal(err)
	}
	// Scan lists only regular files: the link is put in place as if
	// after it, by giving the file its log by hand.
	files, err := pfqueue.Scan(e.pf)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if f.ID == "218DB98A531" {
			f.Logs = map[string]string{"defer": log}
			m, err := pfqueue.Read(mustRead(t, f.Path))
			if err != nil {
				t.Fatal(err)
			}
			var skip skipError
			if _, _, _, err := envelopeOf(f, m); !errors.As(err, &skip) {
				t.Errorf("a defer log that is a symbolic link: %v, want it refused", err)
			}
			return
		}
	}
	t.Fatal("218DB98A531 not found")
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
