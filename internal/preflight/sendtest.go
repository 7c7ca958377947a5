package preflight

import (
	"context"
	"crypto/rand"
	"fmt"
	"strings"
	"time"
)

// sendTest sends one real message to addr by d, and reports the reply to
// its end of DATA: that is where a provider refuses forwarded mail for
// SPF or DMARC, which RCPT probes cannot see.
func (p *prober) sendTest(ctx context.Context, d *Destination, addr string) Row {
	row := Row{Check: "send-test", Dest: d.Name(), Target: addr}
	hosts, err := p.o.Resolver.Hosts(ctx, d.Nexthop, d.MX)
	if err != nil {
		return dnsFailure(row, err, "the next hop "+d.Nexthop)
	}
	s, rows, ok := p.open(ctx, d, hosts, false)
	if !ok {
		r := rows[len(rows)-1]
		row.Status, row.Seen, row.Do = r.Status, "not sent: "+r.Seen, r.Do
		return row
	}
	defer s.quit()
	id := messageID(p.o.Hostname)
	step := func(stage string, r Reply, err error, want int) bool {
		switch {
		case err != nil:
			row.Status, row.Seen = Fail, fmt.Sprintf("%s: %s: %v", s.where(), stage, err)
			row.Do = "run preflight again; if it persists, ask " + d.Host + "'s administrators"
		case r.Code != want:
			row.Status, row.Seen = Fail, fmt.Sprintf("%s refused %s: %s", s.where(), stage, r)
			switch {
			case Classify(r) == SourceRefused:
				row.Do = allowDo(d, s, r)
			case isSPF(r):
				row.Do = "the provider refuses forwarded mail that fails SPF/DMARC: set srs_domain and srs_secret_file (SRS for copies), or configure the provider to trust this host as an inbound gateway"
			case Classify(r) == MissingAccount:
				row.Do = "create the test mailbox " + addr + ", or name another with --send-test"
			default:
				row.Do = "read the reply: copies would meet the same"
			}
		default:
			return true
		}
		return false
	}
	if r, err := s.cmd("MAIL FROM:<" + p.o.Sender + ">"); !step("MAIL FROM", r, err, 250) {
		return row
	}
	if r, err := s.cmd("RCPT TO:<" + addr + ">"); !step("RCPT TO", r, err, 250) {
		return row
	}
	r, err := s.data(testMessage(p.o.Sender, addr, id, p.o.Hostname, s, time.Now()))
	if !step("the message (after DATA)", r, err, 250) {
		return row
	}
	row.Status = OK
	row.Seen = fmt.Sprintf("%s accepted %s: %s", s.where(), id, r)
	row.Do = "check that the message arrived in " + addr + "'s inbox, not in spam, and read its Authentication-Results header"
	return row
}

func messageID(host string) string {
	return fmt.Sprintf("<%s.preflight.%s@%s>", time.Now().UTC().Format("20060102150405"), strings.ToLower(rand.Text()[:12]), cmpOr(host, "localhost"))
}

// testMessage is the test message, with CRLF line ends.
func testMessage(from, to, id, host string, s *session, now time.Time) string {
	lines := []string{
		"From: <" + from + ">",
		"To: <" + to + ">",
		"Subject: mailtee preflight test",
		"Date: " + now.Format(time.RFC1123Z),
		"Message-ID: " + id,
		"MIME-Version: 1.0",
		"Content-Type: text/plain; charset=us-ascii",
		"",
		"This message was sent by `mailtee preflight --send-test` on " + cmpOr(host, "this host") + ",",
		"from " + s.local.String() + " to " + s.where() + ", the way mailbox copies will go.",
		"If it arrived, the provider accepts this host's copies.",
		"",
	}
	return strings.Join(lines, "\r\n")
}
