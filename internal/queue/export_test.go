package queue

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/envelope"
)

// A message moved from one queue to another keeps everything: the
// recipient already delivered is not delivered again, the one deferred
// is, the added copy is, the arrival time, the settings and the DSN
// fields go along, and the indexes stay. A second import stores
// nothing; the message is gone from the first queue, which never saw
// it finish.
func TestExportImport(t *testing.T) {
	f1 := newFakeNet()
	f1.set("b@down.example", testErr{false, "451 not now"})
	f1.set("copy@down.example", testErr{false, "451 not now"})
	dir1 := t.TempDir()
	o1 := withAdds(f1.options(dir1), map[string][]envelope.Rcpt{"a@up.example": {copyOf("copy@down.example", "a@up.example")}})
	o1.MinBackoff, o1.MaxBackoff = time.Hour, time.Hour
	finals := 0
	o1.Ledger = countLedger{&finals}
	q1 := startQueue(t, o1)
	e := env("a@up.example", "b@down.example")
	e.Arrival = time.Now().Add(-3 * time.Hour).Truncate(time.Second)
	e.Settings = "0123456789abcdef"
	e.Rcpts[1].Notify, e.Rcpts[1].ORcpt = "FAILURE", "rfc822;B@down.example"
	id := q1.NewID()
	if err := q1.Enqueue(context.Background(), id, e, strings.NewReader("Subject: x\r\n\r\nbody\r\n")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the copy deferred", func() bool {
		l := q1.List()
		return len(l) == 1 && len(l[0].Rcpts) == 3 && l[0].Rcpts[2].Status == "deferred" && l[0].Rcpts[1].Status == "deferred"
	})
	if err := q1.Park(id); err != nil {
		t.Fatal(err)
	}
	x, err := q1.Export(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if x.NEnv != 2 || len(x.Rcpts) != 3 || x.Rcpts[0].Status != "sent" || x.Rcpts[1].Attempts != 1 || !x.Rcpts[2].Copy {
		t.Fatalf("exported %+v", x)
	}
	body, _ := q1.Body(id)
	b, _ := io.ReadAll(body)
	body.Close()

	f2 := newFakeNet()
	dir2 := t.TempDir()
	q2 := startQueue(t, f2.options(dir2))
	if err := q2.Import("ABCDEF0123456789", x, strings.NewReader(string(b)), true); err != nil {
		t.Fatal(err)
	}
	if err := q2.Import("ABCDEF0123456789", x, strings.NewReader(string(b)), false); !errors.Is(err, ErrExists) {
		t.Fatalf("second import: %v, want ErrExists", err)
	}
	time.Sleep(100 * time.Millisecond)
	if f2.calls1() != 0 {
		t.Fatal("a parked import was delivered")
	}
	if err := q1.HandedOff(id); err != nil {
		t.Fatal(err)
	}
	if !drained(t, q1, dir1) || finals != 0 {
		t.Fatalf("first queue: %d messages left, %d finals (want 0, 0)", len(q1.List()), finals)
	}
	l := q2.List()
	if len(l) != 1 || !l[0].Arrival.Equal(e.Arrival) || l[0].Settings != e.Settings || l[0].Rcpts[0].Status != "sent" {
		t.Fatalf("imported: %+v", l)
	}
	q2.Unpark("ABCDEF0123456789")
	waitFor(t, "delivery on the second queue", func() bool { return drained(t, q2, dir2) })
	for rcpt, want := range map[string]int{"a@up.example": 0, "b@down.example": 1, "copy@down.example": 1} {
		if n := f2.count(rcpt); n != want {
			t.Errorf("%s delivered %d times by the second queue, want %d", rcpt, n, want)
		}
	}
	if got := f2.body("b@down.example"); !strings.Contains(got, "body") {
		t.Errorf("body delivered: %q", got)
	}
}

// Reopened, an imported message is still there with its state: the
// import was durable.
func TestImportDurable(t *testing.T) {
	f := newFakeNet()
	dir := t.TempDir()
	o := f.options(dir)
	q, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	x := &Exported{ID: "00AA11BB22CC", Size: 3, NEnv: 2, Rcpts: []ExportedRcpt{
		{Rcpt: envelope.Rcpt{Addr: "a@x.example"}, Status: "sent", LastErr: "250 ok", DSN: "2.0.0"},
		{Rcpt: envelope.Rcpt{Addr: "b@x.example", Copy: true}, Attempts: 4, LastErr: "451 later"},
		{Rcpt: envelope.Rcpt{Addr: "lost@x.example"}, Lost: true, Status: "sent"},
		{Rcpt: envelope.Rcpt{Addr: "c@x.example", Copy: true, Migration: envelope.MigrationCopy}},
	}}
	x.Env.From = "s@x.example"
	if err := q.Import("FEED0000BEEF", x, strings.NewReader("x\r\n"), false); err != nil {
		t.Fatal(err)
	}
	q.Close(context.Background())
	q2, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	defer q2.Close(context.Background())
	if err := q2.Park("FEED0000BEEF"); err != nil {
		t.Fatal(err)
	}
	y, err := q2.Export(context.Background(), "FEED0000BEEF")
	if err != nil {
		t.Fatal(err)
	}
	if len(y.Rcpts) != 4 || y.Rcpts[0].Status != "sent" || y.Rcpts[1].Attempts != 4 || !y.Rcpts[2].Lost ||
		y.Rcpts[3].Addr != "c@x.example" || y.Rcpts[3].Migration != envelope.MigrationCopy || y.Rcpts[3].Status != "" {
		t.Fatalf("reloaded: %+v", y.Rcpts)
	}
}

func TestExportedCheck(t *testing.T) {
	ok := Exported{ID: "ABCDEF", NEnv: 1, Rcpts: []ExportedRcpt{{Rcpt: envelope.Rcpt{Addr: "a@x"}}}}
	if err := ok.Check(); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []Exported{
		{ID: "../x", NEnv: 1, Rcpts: ok.Rcpts},
		{ID: "ABCDEF", NEnv: 0, Rcpts: ok.Rcpts},
		{ID: "ABCDEF", NEnv: 2, Rcpts: ok.Rcpts},
		{ID: "ABCDEF", NEnv: 1, Rcpts: []ExportedRcpt{{Status: "maybe"}}},
		{ID: "ABCDEF", NEnv: 1, Rcpts: []ExportedRcpt{{Lost: true}}},
	} {
		if bad.Check() == nil {
			t.Errorf("%+v passes", bad)
		}
	}
}

type countLedger struct{ finals *int }

func (countLedger) Accepted(*Message) {}
func (countLedger) Delivery(*Message, int, envelope.Hop, Outcome, string, time.Time) {
}
func (l countLedger) Final(m *Message, deleted bool, done func()) {
	*l.finals++
	if done != nil {
		done()
	}
}
