package dashboard

import (
	"fmt"
	"time"

	"github.com/mailtee/mailtee/internal/ledger"
	"github.com/mailtee/mailtee/internal/ledger/memledger"
	"github.com/mailtee/mailtee/internal/queue"
)

const (
	primary = "students.iiit.ac.in"
	relay   = "relay.students.iiit.ac.in"
	google  = "aspmx.l.google.com[142.250.1.27]:25"
)

// scenario is the seed's migration as the two ledgers hold it after n
// messages over the six hours before now: the primary delivers each to
// the user's mailbox and copies it to the relay ("queued as R..."); on
// the relay the copy address is an alias forwarded to the provider
// (Google). The copy to user13 is refused by the provider (550 5.1.1:
// the account was not created); the relay was down for the last 20
// minutes, so those messages' copies are pending on the primary and in
// its queue. One sender and one reply carry HTML, which must stay text.
type scenario struct {
	prim, rel *memledger.Ledger
	queue     []queue.Info
	now       time.Time
	n         int
}

func newScenario(n int, now time.Time) *scenario {
	s := &scenario{prim: memledger.New(), rel: memledger.New(), now: now}
	for i := 0; i < n; i++ {
		at := now.Add(-6 * time.Hour).Add(time.Duration(i) * 6 * time.Hour / time.Duration(n))
		s.add(at)
	}
	return s
}

// add records one more message arriving at at.
func (s *scenario) add(at time.Time) {
	i := s.n
	s.n++
	user := fmt.Sprintf("user%d", i%40+1)
	from := fmt.Sprintf("sender%d@example.org", i%17)
	if i == 7 {
		from = `<img src=x onerror=alert(1)>"@evil.example`
	}
	id := fmt.Sprintf("P%05d", i)
	rid := fmt.Sprintf("R%05d", i)
	down := s.now.Sub(at) < 20*time.Minute
	copyD := ledger.Delivery{Index: 1, Rcpt: user + "@" + relay, Orig: user + "@" + primary, Copy: true, Transport: "smtp", Nexthop: relay}
	if down {
		copyD.Status = ledger.Pending
		copyD.Attempts = 2
		copyD.At = at.Add(5 * time.Minute)
		copyD.Reply = "connect to relay.students.iiit.ac.in[127.0.0.2]:2525: Connection refused"
		s.queue = append(s.queue, queue.Info{ID: id, Arrival: at, From: from, Rcpts: []queue.RcptInfo{
			{Addr: copyD.Rcpt, Status: "deferred", Reason: copyD.Reply}}})
	} else {
		copyD.Status = ledger.Sent
		copyD.Attempts = 1
		copyD.At = at.Add(2 * time.Second)
		copyD.Relay = relay + "[127.0.0.2]:2525"
		copyD.DSN = "2.0.0"
		copyD.Reply = "250 2.0.0 Ok: queued as " + rid
		copyD.RemoteID = rid
	}
	s.prim.Add(ledger.Message{
		Node: primary, ID: id, MessageID: fmt.Sprintf("<m%d@example.org>", i), From: from,
		Rcpts: []string{user + "@" + primary}, Size: int64(2000 + i*37%9000), Arrival: at, Client: "mx.example.org[192.0.2.1]",
		Phase: "dual", Finished: at.Add(3 * time.Second),
		Deliveries: []ledger.Delivery{
			{Index: 0, Rcpt: user + "@" + primary, Status: ledger.Sent, Transport: "local", Relay: "local", DSN: "2.0.0",
				Reply: "delivered to maildir", Attempts: 1, At: at.Add(time.Second)},
			copyD,
		},
	})
	if down {
		return
	}
	provider := ledger.Delivery{Rcpt: user + "@" + primary, Orig: user + "@" + relay, Copy: true, Status: ledger.Sent, Transport: "smtp",
		Relay: google, DSN: "2.0.0", Attempts: 1, At: at.Add(4 * time.Second),
		Reply: fmt.Sprintf("250 2.0.0 OK  %d d2e1a72fcca58-%04xsi1234567a.55 - gsmtp", at.Unix(), i)}
	if i == 12 { // user13: the one account not created at the provider
		provider.Status = ledger.Bounced
		provider.DSN = "5.1.1"
		provider.Reply = "550-5.1.1 The email account that you tried to reach does not exist. <script>alert(2)</script> - gsmtp"
	}
	s.rel.Add(
		ledger.Message{Node: relay, ID: rid, From: from, Rcpts: []string{user + "@" + relay}, Arrival: at.Add(2 * time.Second),
			Client: primary + "[127.0.0.1]", Finished: at.Add(3 * time.Second),
			Deliveries: []ledger.Delivery{{Rcpt: user + "@" + relay, Copy: true, Status: ledger.Sent, Transport: "local", Relay: "local",
				Reply: "forwarded as F" + rid, Attempts: 1, At: at.Add(3 * time.Second)}}},
		ledger.Message{Node: relay, ID: "F" + rid, Parent: rid, From: from, Rcpts: []string{user + "@" + primary},
			Arrival: at.Add(3 * time.Second), Client: "local", Finished: at.Add(4 * time.Second),
			Deliveries: []ledger.Delivery{provider}},
	)
}
