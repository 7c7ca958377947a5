package dashboard

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/queue"
)

// FuzzAdvice: any reply (they come from remote servers) gets an answer
// without a panic, and the same one each time.
func FuzzAdvice(f *testing.F) {
	for _, s := range []string{"550 5.1.1 user unknown", "421 4.7.28 rate", "530 5.7.0 Must issue a STARTTLS command first", "connect to x: Connection refused", "", "\xff\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, reply string) {
		if Advice(reply) != Advice(reply) {
			t.Fatal("not deterministic")
		}
	})
}

// FuzzReportJSON: the overview and the user view rewrite the report's
// JSON; whatever it holds, they give valid JSON back when given valid
// JSON, keep at most the limit of messages, and never panic.
func FuzzReportJSON(f *testing.F) {
	f.Add([]byte(`{"messages":[{"arrival":"2026-12-07T10:00:00Z"},{"arrival":"2026-12-07T11:00:00Z"},{}],"misses":[{"reply":"550 5.1.1 x"}]}`), 2)
	f.Add([]byte(`{"messages":null}`), 0)
	f.Add([]byte(`[]`), 1)
	f.Add([]byte(`{"messages":[1,2,3]}`), 1)
	f.Fuzz(func(t *testing.T, raw []byte, n int) {
		if n < 0 || n > 1000 {
			return
		}
		valid := json.Valid(raw)
		out := withoutMessages(raw)
		if valid && !json.Valid(out) {
			t.Fatalf("withoutMessages(%q) = %q: not JSON", raw, out)
		}
		lim, truncated := limitMessages(raw, n)
		if valid && !json.Valid(lim) {
			t.Fatalf("limitMessages(%q) = %q: not JSON", raw, lim)
		}
		if truncated {
			var m struct{ Messages []json.RawMessage }
			if err := json.Unmarshal(lim, &m); err != nil || len(m.Messages) != n {
				t.Fatalf("limitMessages(%q, %d) kept %d (%v)", raw, n, len(m.Messages), err)
			}
		}
		adviceFor(raw)
	})
}

// FuzzQueueByDestination: any recipient address (the queue holds what
// clients sent) is grouped without a panic, and every undelivered
// recipient is counted once.
func FuzzQueueByDestination(f *testing.F) {
	f.Add("u@relay.example", "x@", "@")
	f.Add("root", "a@b@c", "\xff@\x00")
	f.Fuzz(func(t *testing.T, a, b, c string) {
		now := time.Unix(1e9, 0)
		list := []queue.Info{{Arrival: now, Rcpts: []queue.RcptInfo{{Addr: a, Status: "pending"}, {Addr: b, Status: "deferred"}, {Addr: c, Status: "sent"}}}}
		n := 0
		for _, q := range QueueByDestination(list, now) {
			n += q.Recipients
		}
		if n != 2 {
			t.Fatalf("%d recipients counted, want 2", n)
		}
	})
}
