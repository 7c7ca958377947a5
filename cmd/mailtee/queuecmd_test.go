package main

import (
	"strings"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/queue"
)

// A next hop's reply, and the addresses, are shown as the log shows
// them: an escape sequence in a reply (window title, screen clear,
// colours), a NUL or a CR must not reach the administrator's terminal.
func TestPrintQueueEscapes(t *testing.T) {
	hostile := "\x1b]0;owned\x07\x1b[2J\x1b[31mred\x00nul\rcr\u009b2J"
	var b strings.Builder
	printQueue(&b, []queue.Info{{
		ID: "4QABCDEF", Size: 10, Arrival: time.Unix(0, 0), From: "s\x1b[2J@example.org",
		Rcpts: []queue.RcptInfo{{Addr: "r\x1b[2J@example.org", Status: "deferred", Reason: "451 4.0.0 " + hostile}},
	}})
	out := b.String()
	for i, r := range out {
		if r < ' ' && r != '\n' || r == 0x7f || r >= 0x80 && r < 0xa0 {
			t.Fatalf("control character %U at %d in:\n%q", r, i, out)
		}
	}
	if !strings.Contains(out, "(451 4.0.0 ?]0;owned??[2J?[31mred?nul?cr?2J)") {
		t.Errorf("reason not shown, masked:\n%s", out)
	}
}
