package queue

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A staged message is invisible to the queue until Commit; committed,
// it starts held or with its recipients bounced or deferred as staged,
// the bounced one's notice is sent by a running queue and the held one
// is not delivered. Commit again is a no-op: the staged name is gone.
func TestStageCommit(t *testing.T) {
	dir := t.TempDir()
	e := env("ok@one.example", "gone@two.example", "later@three.example")
	e.Arrival = time.Now().Add(-48 * time.Hour)
	id, err := Stage(dir, e, strings.NewReader("Subject: imported\r\n\r\nbody\r\n"), StageOptions{
		Rcpts: []Initial{{}, {Op: "bounced", Reason: "no such user", DSN: "5.1.1"}, {Op: "deferred", Reason: "connection refused", DSN: "4.4.1"}},
		Note:  []byte("from postfix"),
	})
	if err != nil {
		t.Fatal(err)
	}
	held, err := Stage(dir, env("held@one.example"), strings.NewReader("x\r\n"), StageOptions{Hold: true, Note: []byte{}})
	if err != nil {
		t.Fatal(err)
	}
	if list, _ := ListDir(dir); len(list) != 0 {
		t.Fatalf("staged messages visible: %+v", list)
	}
	st, err := ListStaged(dir)
	if err != nil || len(st) != 2 || string(st[0].Note)+string(st[1].Note) != "from postfix" {
		t.Fatalf("ListStaged %+v %v", st, err)
	}
	for _, x := range []string{id, held, id} { // the second Commit of id finds nothing to do
		if err := Commit(dir, x); err != nil {
			t.Fatal(err)
		}
	}
	if st, _ := ListStaged(dir); len(st) != 0 {
		t.Errorf("still staged: %+v", st)
	}
	list, err := ListDir(dir)
	if err != nil || len(list) != 2 {
		t.Fatalf("ListDir %+v %v", list, err)
	}
	for _, in := range list {
		switch in.ID {
		case id:
			if !in.Arrival.Equal(e.Arrival) || in.Hold || len(in.Rcpts) != 3 || in.Rcpts[0].Status != "pending" ||
				in.Rcpts[1].Status != "bounced" || in.Rcpts[1].Reason != "no such user" ||
				in.Rcpts[2].Status != "deferred" || in.Rcpts[2].Reason != "connection refused" {
				t.Errorf("imported message %+v", in)
			}
		case held:
			if !in.Hold {
				t.Errorf("not held: %+v", in)
			}
		}
	}

	f := newFakeNet()
	q := startQueue(t, f.options(dir))
	waitFor(t, "deliveries and the notice", func() bool {
		return f.count("ok@one.example") == 1 && f.count("later@three.example") == 1 && len(f.getBounces()) == 1
	})
	time.Sleep(100 * time.Millisecond)
	if b := f.getBounces(); len(b) != 1 || strings.Join(b[0], ",") != "gone@two.example" {
		t.Errorf("bounces %v", b)
	}
	if f.count("held@one.example") != 0 || f.count("gone@two.example") != 0 {
		t.Error("a held or bounced recipient was delivered")
	}
	if l := q.List(); len(l) != 1 || l[0].ID != held {
		t.Errorf("left: %+v", l)
	}
}

// A staged message is removed whole by Discard, and debris without a
// note is listed as such.
func TestStageDiscard(t *testing.T) {
	dir := t.TempDir()
	id, err := Stage(dir, env("a@one.example"), strings.NewReader("x\r\n"), StageOptions{Hold: true, Note: []byte("n")})
	if err != nil {
		t.Fatal(err)
	}
	if err := Discard(dir, id); err != nil {
		t.Fatal(err)
	}
	if st, _ := ListStaged(dir); len(st) != 0 {
		t.Errorf("left: %+v", st)
	}
	if err := Commit(dir, id); err != nil {
		t.Fatal(err)
	}
	if list, _ := ListDir(dir); len(list) != 0 {
		t.Errorf("a discarded message was committed: %+v", list)
	}
}

// Commit moves the sidecar, then the message file. A queue opened
// between the two (a server starting, an offline postsuper, after a
// crash of the import there) must not take the sidecar already in the
// spool for an orphan and remove it: the message, committed by the
// import's next run, would lose its hold and its bounced recipient
// would be delivered.
func TestStageCommitInterrupted(t *testing.T) {
	dir := t.TempDir()
	id, err := Stage(dir, env("ok@one.example", "gone@two.example"), strings.NewReader("x\r\n"), StageOptions{
		Hold: true, Rcpts: []Initial{{}, {Op: "bounced", Reason: "no such user", DSN: "5.1.1"}}, Note: []byte("n")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ListDir(dir); err != nil { // makes the spool
		t.Fatal(err)
	}
	// Commit's first step, then a crash.
	if err := os.Rename(filepath.Join(dir, StageDir, id+".st"), filepath.Join(dir, "queue", id+".st")); err != nil {
		t.Fatal(err)
	}
	q, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	q.Close(context.Background())
	if err := Commit(dir, id); err != nil {
		t.Fatal(err)
	}
	list, err := ListDir(dir)
	if err != nil || len(list) != 1 {
		t.Fatalf("ListDir %+v %v", list, err)
	}
	if in := list[0]; !in.Hold || len(in.Rcpts) != 2 || in.Rcpts[1].Status != "bounced" {
		t.Errorf("committed after an interrupted commit and a queue start: %+v", in)
	}
}
