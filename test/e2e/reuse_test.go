package e2e

import (
	"fmt"
	"testing"
	"time"
)

// perConnection is how many messages each connection to s carried, in
// the order the connections were first used (a sink tells connections
// apart by the client's source address and port).
func perConnection(s *sink) []int {
	var order []string
	n := map[string]int{}
	for _, m := range s.Messages() {
		if n[m.Local] == 0 {
			order = append(order, m.Local)
		}
		n[m.Local]++
	}
	out := make([]int, len(order))
	for i, l := range order {
		out[i] = n[l]
	}
	return out
}

// smtp_connection_reuse_count_limit as a real Postfix applies it: with a
// limit of 2, one next hop and one delivery at a time, 7 messages go over
// connections that carry 3, 3 and 1 (postconf(5): "a connection is used
// up to N+1 times"). mailtee, given the same main.cf lines, must do the
// same.
func TestConnectionReuseCountAsPostfix(t *testing.T) {
	const limits = "smtp_connection_reuse_count_limit = 2\nsmtp_destination_concurrency_limit = 1\ndefault_destination_concurrency_limit = 1\n"
	const want = "[3 3 1]"
	send7 := func(t *testing.T, addr string) {
		for i := range 7 {
			if err := send(addr, "sender@test.example", []string{fmt.Sprintf("u%d@remote.example", i)}, testMessage(fmt.Sprint("reuse ", i))); err != nil {
				t.Fatalf("sending message %d: %v", i, err)
			}
		}
	}

	t.Run("postfix", func(t *testing.T) {
		s := newSink(t, "127.0.0.1:0", nil)
		pf := newPostfix(t, "127.0.0.1", freePort(t))
		// Postfix caches connections on demand, when a destination has a
		// backlog; the test's messages arrive one by one, so caching is
		// turned on for the sink's next hop (the forms Postfix may
		// match it under), as a backlog would.
		pf.start(fmt.Sprintf(`%s
myhostname = pf.test.example
mydestination =
transport_maps = hash:$config_directory/transport
smtp_connection_cache_destinations = 127.0.0.1, [127.0.0.1], [127.0.0.1]:%[2]d
`, limits, s.Port()), map[string]string{"transport": fmt.Sprintf("remote.example smtp:[127.0.0.1]:%d\n", s.Port())})
		send7(t, pf.addr())
		waitUntil(t, "7 messages at the sink", 30*time.Second, func() bool { return s.Total() >= 7 })
		if got := fmt.Sprint(perConnection(s)); got != want {
			t.Errorf("Postfix: messages per connection %s, want %s", got, want)
		}
	})

	t.Run("mailtee", func(t *testing.T) {
		s := newSink(t, "127.0.0.1:0", nil)
		in := newInstance(t, limits+fmt.Sprintf("relayhost = [127.0.0.1]:%d\n", s.Port()), nil)
		logOnFailure(t, "mailtee", in)
		in.Start()
		send7(t, in.Addr())
		waitUntil(t, "7 messages at the sink", 30*time.Second, func() bool { return s.Total() >= 7 })
		if got := fmt.Sprint(perConnection(s)); got != want {
			t.Errorf("mailtee: messages per connection %s, want %s", got, want)
		}
	})
}
