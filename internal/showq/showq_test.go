package showq

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
	Print(&b, []queue.Info{{
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

// mailtee's 19-character IDs, with a held mark, stay under the header's
// columns; postqueue -j names the queue as Postfix would and lists only
// pending recipients.
func TestColumnsAndJSON(t *testing.T) {
	list := []queue.Info{{
		ID: "661FD9A4209C2356001", Hold: true, Size: 2048, Arrival: time.Unix(0, 0).UTC(), From: "s@example.org",
		Rcpts: []queue.RcptInfo{{Addr: "done@example.org", Status: "sent"}, {Addr: "r@example.org", Status: "deferred", Reason: "connect refused"}},
	}}
	var b strings.Builder
	Print(&b, list)
	lines := strings.Split(b.String(), "\n")
	col := strings.Index(lines[0], "--Sender/Recipient")
	if col < 0 || strings.Index(lines[1], "s@example.org") != col || strings.Index(lines[3], "r@example.org") != col ||
		!strings.HasPrefix(lines[1], "661FD9A4209C2356001!") || strings.Contains(b.String(), "done@example.org") {
		t.Errorf("columns out of line, or a delivered recipient shown:\n%s", b.String())
	}
	b.Reset()
	if err := PrintJSON(&b, list); err != nil {
		t.Fatal(err)
	}
	if want := `{"queue_name":"hold","queue_id":"661FD9A4209C2356001","arrival_time":0,"message_size":2048,"forced_expire":false,"sender":"s@example.org","recipients":[{"orig_address":"","address":"r@example.org","delay_reason":"connect refused"}]}` + "\n"; b.String() != want {
		t.Errorf("postqueue -j:\n%s\nwant:\n%s", b.String(), want)
	}
}
