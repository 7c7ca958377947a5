package drain

import (
	"bytes"
	"testing"

	"github.com/mailtee/mailtee/internal/envelope"
	"github.com/mailtee/mailtee/internal/queue"
)

func sample() *queue.Exported {
	x := &queue.Exported{ID: "0ABC12345DEF", Size: 9, NEnv: 2, Rcpts: []queue.ExportedRcpt{
		{Rcpt: envelope.Rcpt{Addr: "a@x.example", ORcpt: "rfc822;A@x.example", Notify: "FAILURE"}, Status: "sent", DSN: "2.0.0"},
		{Rcpt: envelope.Rcpt{Addr: "c@y.example", Copy: true, Migration: envelope.MigrationCopy}, Attempts: 2, LastErr: "451 later"},
	}}
	x.Env.From, x.Env.Settings = "s@x.example", "0123456789abcdef"
	return x
}

func TestPayloadRoundTrip(t *testing.T) {
	x := sample()
	p, err := Encode(x, []byte(`{"phase":"dual"}`), []byte("body\r\n.\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	y, settings, body, err := Decode(p)
	if err != nil {
		t.Fatal(err)
	}
	if string(body) != "body\r\n.\r\n" || string(settings) != `{"phase":"dual"}` || y.Rcpts[1].ORcpt != "" || y.Rcpts[0].ORcpt != "rfc822;A@x.example" ||
		!y.Rcpts[1].Copy || y.Rcpts[1].Attempts != 2 || y.Env.Settings != x.Env.Settings {
		t.Fatalf("decoded %+v %q %q", y, settings, body)
	}
	// Damage anywhere is refused.
	for _, bad := range [][]byte{p[:len(p)-1], bytes.Replace(p, []byte("body"), []byte("bodY"), 1), p[1:], bytes.Replace(p, []byte(`"NEnv":2`), []byte(`"NEnv":3`), 1)} {
		if _, _, _, err := Decode(bad); err == nil {
			t.Errorf("damaged payload decoded: %q", bad)
		}
	}
	if _, err := Encode(x, nil, []byte("short")); err == nil {
		t.Error("a body of the wrong size encoded")
	}
}

func TestQueueIDStable(t *testing.T) {
	a, b := QueueID("a.example", "0ABC"), QueueID("a.example", "0ABD")
	if a != QueueID("a.example", "0ABC") || a == b || !queue.ValidID(a) || QueueID("a.exampl", "e0ABC") == a {
		t.Fatalf("%s %s", a, b)
	}
}

// A payload from the database, whatever its bytes: never a panic, and
// a message only when it passes the checks an import relies on.
func FuzzDecode(f *testing.F) {
	p, _ := Encode(sample(), []byte(`{"phase":"dual"}`), []byte("body\r\n.\r\n"))
	f.Add(p)
	p2, _ := Encode(sample(), nil, []byte("body\r\n.\r\n"))
	f.Add(p2)
	f.Add([]byte(magic + "{}\n"))
	f.Add([]byte(magic + `{"msg":{"ID":"ABCDEF","NEnv":1,"Rcpts":[{"Addr":"a"}]},"sum":0}` + "\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		x, _, body, err := Decode(data)
		if err != nil {
			return
		}
		if x.Check() != nil || int64(len(body)) != x.Size {
			t.Fatalf("decoded a message that fails its checks: %+v", x)
		}
		// What decodes encodes again to the same message.
		q, err := Encode(x, nil, body)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, b2, err := Decode(q); err != nil || !bytes.Equal(b2, body) {
			t.Fatalf("re-encoded: %v", err)
		}
	})
}
