package report

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/mailtee/mailtee/internal/ledger"
	"github.com/mailtee/mailtee/internal/ledger/memledger"
)

// A remote server's reply reaches the administrator's terminal through
// the text report and status: its ESC and C1 controls must not (an OSC
// sets the terminal's title or clipboard, a CSI clears the screen or
// forges lines), as they do not in the mail log.
func TestTextIsTerminalSafe(t *testing.T) {
	hostile := "550 5.1.1 \x1b]0;owned\x07\x1b[2J\x1b[31mno such user \u009b31m\rforged\x7f"
	l := memledger.New(ledger.Message{Node: "h", ID: "A", From: "a@h", Rcpts: []string{"v\x1b[8m@remote.example"}, Arrival: t0,
		MessageID: "<\x1b]52;c;Y3VybA==\x07@x>",
		Deliveries: []ledger.Delivery{{Index: 0, Rcpt: "v\x1b[8m@remote.example", Status: ledger.Bounced, Transport: "smtp",
			Relay: "mx.remote.example[192.0.2.1]:25", Reply: hostile, At: t0}}})
	r := build(t, Sources{Local: l}, ledger.Filter{})
	var b bytes.Buffer
	if err := WriteText(&b, r); err != nil {
		t.Fatal(err)
	}
	st, err := BuildStatus(context.Background(), nil, l, t0.Add(StatusWindow/2))
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteStatus(&b, st); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	if !strings.Contains(out, "no such user") {
		t.Fatalf("the reply is not in the output:\n%s", out)
	}
	for _, bad := range []string{"\x1b", "\x07", "\r", "\x7f", "\u009b"} {
		if strings.Contains(out, bad) {
			t.Errorf("the output holds %q:\n%q", bad, out)
		}
	}
	if !strings.Contains(out, "\n") || !strings.Contains(out, "?]0;owned??[2J") {
		t.Errorf("control characters should read as '?' and line breaks stay:\n%q", out)
	}
}
