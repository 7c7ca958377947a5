package maillog

import (
	"strings"
	"testing"
	"time"
)

// Whatever a client or a remote server sends, each event is exactly one
// line, and its syslog prefix stays intact.
func FuzzOneLine(f *testing.F) {
	f.Add("user@example.com", "host mx[1.2.3.4] said: 550 5.1.1 unknown", "smtpd", "ehlo.example")
	f.Add("a\nb", "x\r\nNov 25 12:00:00 mail mailtee/qmgr[1]: FAKE: removed", "qmgr[1]: x", "\xff\x00")
	f.Fuzz(func(t *testing.T, addr, reason, component, helo string) {
		l, buf := newTest()
		l.Delivery(Delivery{ID: "A1", To: addr, OrigTo: helo, Transport: component, Reason: reason,
			Status: "bounced", Copy: true, Delay: time.Duration(len(reason)) * time.Millisecond})
		l.Printf("smtpd", "NOQUEUE: reject: %s from %s: %s; from=<%s> to=<%s> proto=ESMTP helo=<%s>",
			component, NameAddr(helo, addr), reason, addr, addr, helo)
		l.Slog().Info(reason, "component", component, "k", helo)
		got := lines(t, buf)
		if len(got) != 4 {
			t.Fatalf("%d lines: %q", len(got), got)
		}
		for _, line := range got {
			p := parse(t, line)
			if p.program != "mailtee" || strings.ContainsAny(p.component, "[]: ") {
				t.Fatalf("prefix broken: %q", line)
			}
		}
	})
}
