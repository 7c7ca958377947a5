package e2e

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// A restart does not give a busy mailbox a fresh window: two messages
// an hour reached it, mailtee stopped and started, and the third waits
// (mailq says why) while another mailbox's message goes at once. The
// crash case loses at most the last 10 seconds (pacingSaveEvery).
func TestPacingSurvivesRestart(t *testing.T) {
	s := newSink(t, "127.0.0.1:0", nil)
	cf := "relayhost = [127.0.0.1]:" + strconv.Itoa(s.Port()) + "\nsmtp_recipient_rate_limit = 2/1h\nsmtp_destination_profile = none\n"
	in := newInstance(t, cf, nil)
	logOnFailure(t, "mailtee", in)
	in.Start()
	for i := range 2 {
		if err := send(in.Addr(), "sender@test.example", []string{"busy@remote.example"}, testMessage("before "+strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, "two messages for busy@", 20*time.Second, func() bool { return s.Count("busy@remote.example") == 2 })
	in.Stop()

	in.Start()
	if err := send(in.Addr(), "sender@test.example", []string{"busy@remote.example"}, testMessage("after")); err != nil {
		t.Fatal(err)
	}
	if err := send(in.Addr(), "sender@test.example", []string{"other@remote.example"}, testMessage("other")); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "other@'s message", 20*time.Second, func() bool { return s.Count("other@remote.example") == 1 })
	time.Sleep(time.Second)
	if n := s.Count("busy@remote.example"); n != 2 {
		t.Errorf("busy@ got %d messages: the restart gave it a fresh window of 2 an hour", n)
	}
	out, _ := in.Run("", "queue", "list")
	if !strings.Contains(out, "delivery postponed: recipient rate limit") {
		t.Errorf("queue list does not say why busy@ waits:\n%s", out)
	}
}
