package ledger

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The spill file's lines are read back after a crash, torn or not:
// whatever a line holds, reading it never panics, and a record read
// back is the batch entry it was written from.
func FuzzSpillRecord(f *testing.F) {
	f.Add([]byte(`{"node":"n","id":"Q1","head":{"node":"n","queue_id":"Q1","rcpts":["a@b"],"arrival":"2026-12-07T06:00:00Z","finished":"2026-12-07T06:01:00Z"},"rows":[{"index":0,"rcpt":"a@b","status":"sent","attempts":1}]}`))
	f.Add([]byte(`{"gap":{"node":"n","since":"2026-12-07T06:00:00Z","until":"2026-12-07T06:01:00Z","messages":2,"reason":"x"}}`))
	f.Add([]byte(`{"node":"n","id":"Q2","finished":"2026-12-07T06:01:00Z","rows":[{"index":-1,"status":"bounced"},{"index":-1,"status":"pending"}]}`))
	f.Add([]byte(`{"node":"n","id":"Q`))
	f.Fuzz(func(t *testing.T, line []byte) {
		var rec spillRec
		if json.Unmarshal(line, &rec) != nil || rec.Gap != nil {
			return
		}
		b := newBatch()
		rec.addTo(b)
		rec.addTo(b) // twice: a record replayed again
		e := b.msgs[msgKey{rec.Node, rec.ID}]
		if e == nil || len(b.order) != 1 {
			t.Fatalf("no single entry for %q/%q", rec.Node, rec.ID)
		}
		if len(e.rowOrder) != len(e.rows) {
			t.Fatalf("%d rows in order, %d rows", len(e.rowOrder), len(e.rows))
		}
		// Written again and read back: the same entry.
		out := spillRec{Node: rec.Node, ID: rec.ID, Head: e.head, Finished: e.finished}
		for _, i := range e.rowOrder {
			out.Rows = append(out.Rows, *e.rows[i])
		}
		j, err := json.Marshal(out)
		if err != nil {
			return // a time json cannot write (a year beyond 9999)
		}
		var back spillRec
		if err := json.Unmarshal(j, &back); err != nil {
			t.Fatalf("%s: %v", j, err)
		}
		b2 := newBatch()
		back.addTo(b2)
		e2 := b2.msgs[msgKey{rec.Node, rec.ID}]
		if len(e2.rows) != len(e.rows) || !e2.finished.Equal(e.finished) {
			t.Fatalf("read back %+v, wrote %+v", e2, e)
		}
		for i, d := range e.rows {
			if d2 := e2.rows[i]; d2 == nil || d2.Status != d.Status || d2.Rcpt != d.Rcpt || !d2.At.Equal(d.At) {
				t.Fatalf("row %d read back %+v, wrote %+v", i, d2, d)
			}
		}
	})
}

// A spill file whose last line a crash tore: the next batch starts a
// line of its own, so that the replay skips the torn line only, not the
// record appended after it (whose messages the queue has removed).
func TestSpillAfterTornLine(t *testing.T) {
	dir := t.TempDir()
	r := &Recorder{o: RecorderOptions{Marker: filepath.Join(dir, "ledger.marker")}}
	p := SpillFile(r.o.Marker)
	torn := `{"node":"n","id":"Q1","rows":[{"ind`
	if err := os.WriteFile(p, []byte(torn), 0o600); err != nil {
		t.Fatal(err)
	}
	r.loadSpill() // not shared: nothing noted; spillLocked reads the file
	b := newBatch()
	e := b.entry(msgKey{"n", "Q2"}, time.Now())
	e.finished = time.Date(2026, 12, 7, 6, 1, 0, 0, time.UTC)
	e.row(&Delivery{Index: 0, Rcpt: "a@b", Status: Sent, Attempts: 1})
	if err := r.spillLocked(b); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, line := range bytes.Split(data, []byte("\n")) {
		var rec spillRec
		if json.Unmarshal(line, &rec) == nil && rec.ID == "Q2" {
			found = true
		}
	}
	if !found {
		t.Fatalf("the batch appended after a torn line does not read back:\n%s", data)
	}
}
