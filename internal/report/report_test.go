package report

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/ledger"
	"github.com/mailtee/mailtee/internal/ledger/memledger"
	"github.com/mailtee/mailtee/internal/queue"
)

var t0 = time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)

const (
	primary = "students.iiit.ac.in"
	relay   = "relay.students.iiit.ac.in"
)

func seed() (prim, rel *memledger.Ledger) { return memledger.Seed(t0) }

func build(t *testing.T, src Sources, f ledger.Filter) *Report {
	t.Helper()
	r, err := Build(context.Background(), src, f, t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestChainAcrossHosts(t *testing.T) {
	prim, rel := seed()
	r := build(t, Sources{Local: prim, Peers: []Peer{{URL: "http://127.0.0.2:9100", Reader: rel}}}, ledger.Filter{})
	rc := r.Reconciliation
	if rc.Required != 4 || rc.Delivered != 3 || !rc.Complete {
		t.Fatalf("reconciliation %+v, want 3 of 4, complete", rc)
	}
	if len(r.Misses) != 1 {
		t.Fatalf("misses %+v, want one", r.Misses)
	}
	m := r.Misses[0]
	if m.Rcpt != "user2@"+relay || m.State != Failed || !strings.HasPrefix(m.Reply, "550 5.1.1") || !m.Copy {
		t.Errorf("miss %+v, want user2's copy failed with the provider's 550", m)
	}
	// accepted → relay → alias on the relay → the provider's reply
	var nodes []string
	for _, h := range m.Chain {
		nodes = append(nodes, h.Node+":"+h.QueueID+":"+h.Rcpt)
	}
	want := "students.iiit.ac.in:P1:user2@relay.students.iiit.ac.in relay.students.iiit.ac.in:R1:user2@relay.students.iiit.ac.in relay.students.iiit.ac.in:F1:user2@students.iiit.ac.in"
	if got := strings.Join(nodes, " "); got != want {
		t.Errorf("chain\n got %s\nwant %s", got, want)
	}
	if r.Summary.Accepted != 1 || r.Summary.Messages.Failed != 1 || r.Summary.Copies.Failed != 1 || r.Summary.Copies.Delivered != 1 {
		t.Errorf("summary %+v", r.Summary)
	}
	if r.Peers[0].Followed != 2 {
		t.Errorf("peer %+v, want 2 followed", r.Peers[0])
	}
}

func TestWriteText(t *testing.T) {
	prim, rel := seed()
	r := build(t, Sources{Local: prim, Peers: []Peer{{URL: "http://127.0.0.2:9100", Reader: rel}}}, ledger.Filter{})
	var b strings.Builder
	if err := WriteText(&b, r); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"reconciliation:       75.00% (3 of 4", "misses (1):", "bounced (550 5.1.1 The email account",
		"path: students.iiit.ac.in P1 user2@relay.students.iiit.ac.in > relay.students.iiit.ac.in R1",
		"notice N1: to=<postmaster@relay.students.iiit.ac.in>", "P1: to=<user1@students.iiit.ac.in>, relay=local, status=sent"} {
		if !strings.Contains(out, want) {
			t.Errorf("text lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "not followed") {
		t.Errorf("the provider's queue ID is the end of the path, not a miss:\n%s", out)
	}
}

// A local alias forwarded to two remote addresses: the alias is
// replaced by its targets, one of which is still pending; the bounce
// notice is listed, not counted.
func TestForwardsFoldedNoticesExcluded(t *testing.T) {
	l := memledger.New(
		ledger.Message{Node: "h", ID: "A", From: "x@example.org", Rcpts: []string{"team@h"}, Arrival: t0,
			Deliveries: []ledger.Delivery{{Rcpt: "team@h", Status: ledger.Sent, Transport: "local", Reply: "forwarded as B"}}},
		ledger.Message{Node: "h", ID: "B", Parent: "A", Arrival: t0.Add(time.Second), Rcpts: []string{"a@far", "b@far"},
			Deliveries: []ledger.Delivery{
				{Rcpt: "a@far", Orig: "team@h", Status: ledger.Sent, Transport: "smtp", Reply: "250 ok"},
				{Rcpt: "b@far", Orig: "team@h", Status: ledger.Pending, Transport: "smtp", Reply: "451 4.7.1 try later", Attempts: 3},
			}},
		ledger.Message{Node: "h", ID: "C", Parent: "B", Notice: true, Arrival: t0.Add(time.Hour), Rcpts: []string{"x@example.org"},
			Deliveries: []ledger.Delivery{{Rcpt: "x@example.org", Status: ledger.Sent}}},
		// A message of another node with the same parent ID is not a child.
		ledger.Message{Node: "other", ID: "Z", Parent: "A", Arrival: t0, Deliveries: []ledger.Delivery{{Rcpt: "z@z", Status: ledger.Bounced}}},
	)
	r := build(t, Sources{Local: l}, ledger.Filter{})
	if r.Summary.Accepted != 1 || len(r.Messages) != 1 {
		t.Fatalf("accepted %d, messages %+v; want only A", r.Summary.Accepted, r.Messages)
	}
	m := r.Messages[0]
	if len(m.Required) != 2 || m.Required[0].Rcpt != "a@far" || m.Required[1].Rcpt != "b@far" || m.Required[1].Via != "team@h" || m.Required[1].Forward != "B" {
		t.Fatalf("required %+v, want the alias's two targets", m.Required)
	}
	if m.State != Pending || r.Reconciliation.Required != 2 || r.Reconciliation.Delivered != 1 {
		t.Errorf("state %s, reconciliation %+v", m.State, r.Reconciliation)
	}
	if len(m.Notices) != 1 || m.Notices[0].QueueID != "C" || r.Summary.Notices != 1 {
		t.Errorf("notices %+v", m.Notices)
	}
	if len(r.Misses) != 1 || r.Misses[0].Reply != "451 4.7.1 try later" || r.Misses[0].Age != 3600 {
		t.Errorf("misses %+v, want b@far pending an hour with its reason", r.Misses)
	}
	if len(r.Deferrals) != 1 || r.Deferrals[0].Destination != "far" || r.Deferrals[0].Count != 1 {
		t.Errorf("deferrals %+v", r.Deferrals)
	}
	if r.Summary.OldestPendingAge != 3600 {
		t.Errorf("oldest pending %v", r.Summary.OldestPendingAge)
	}
	var far *Destination
	for i := range r.Dests {
		if r.Dests[i].Name == "far" {
			far = &r.Dests[i]
		}
	}
	if far == nil || far.All != (Counts{Delivered: 1, Pending: 1}) || far.OldestPendingAge != 3600 {
		t.Errorf("destination far: %+v", far)
	}
}

// An alias whose delivery failed is the failure; its forward (made
// before it failed) does not replace it.
func TestFailedAliasCounts(t *testing.T) {
	l := memledger.New(
		ledger.Message{Node: "h", ID: "A", Rcpts: []string{"team@h"}, Arrival: t0,
			Deliveries: []ledger.Delivery{{Rcpt: "team@h", Status: ledger.Bounced, Transport: "local", Reply: "mailbox full"}}},
		ledger.Message{Node: "h", ID: "B", Parent: "A", Arrival: t0,
			Deliveries: []ledger.Delivery{{Rcpt: "a@far", Orig: "team@h", Status: ledger.Sent}}},
	)
	r := build(t, Sources{Local: l}, ledger.Filter{})
	if r.Reconciliation.Required != 1 || r.Summary.Deliveries.Failed != 1 {
		t.Errorf("%+v", r.Summary)
	}
}

func TestGapsMakeItIncomplete(t *testing.T) {
	prim, rel := seed()
	prim.AddGap(ledger.Gap{Node: primary, Since: t0.Add(-time.Hour), Until: t0.Add(-time.Minute), Reason: "disk full", Messages: 3})
	rel.AddGap(ledger.Gap{Node: relay, Since: t0, Until: t0.Add(time.Minute), Reason: "ledger file lost"})
	r := build(t, Sources{Local: prim, Peers: []Peer{{URL: "http://relay:1", Reader: rel}}}, ledger.Filter{})
	if r.Reconciliation.Complete || len(r.Gaps) != 2 || len(r.Reconciliation.Incomplete) != 2 {
		t.Fatalf("reconciliation %+v, gaps %+v", r.Reconciliation, r.Gaps)
	}
	var b strings.Builder
	WriteText(&b, r)
	if !strings.Contains(b.String(), "INCOMPLETE") || !strings.Contains(b.String(), "disk full") {
		t.Errorf("text does not say the figure is incomplete:\n%s", b.String())
	}
}

func TestPeerDownAndUnknownID(t *testing.T) {
	prim, rel := seed()
	rel.Err = errors.New("connection refused")
	r := build(t, Sources{Local: prim, Peers: []Peer{{URL: "http://relay:1", Reader: rel}}}, ledger.Filter{})
	// Counted by the local state: both copies were taken by the relay.
	if r.Reconciliation.Delivered != 4 || r.Reconciliation.Complete {
		t.Errorf("peer down: %+v", r.Reconciliation)
	}
	for _, q := range r.Messages[0].Required {
		if q.Copy && !strings.Contains(q.Note, "not followed: queue ID R1: connection refused") {
			t.Errorf("copy note %q", q.Note)
		}
	}
	if r.Peers[0].Errors == 0 {
		t.Errorf("peer status %+v", r.Peers[0])
	}

	empty := memledger.New()
	r = build(t, Sources{Local: prim, Peers: []Peer{{URL: "http://relay:1", Reader: empty}}}, ledger.Filter{})
	if r.Reconciliation.Delivered != 4 || !r.Reconciliation.Complete {
		t.Errorf("unknown ID: %+v", r.Reconciliation)
	}
	if n := r.Messages[0].Required[1].Note; n != "not followed: no peer has queue ID R1" {
		t.Errorf("note %q", n)
	}

	// Without peers nothing is followed and nothing is said.
	r = build(t, Sources{Local: prim}, ledger.Filter{})
	if r.Reconciliation.Delivered != 4 || r.Messages[0].Required[1].Note != "" {
		t.Errorf("no peers: %+v %+v", r.Reconciliation, r.Messages[0].Required[1])
	}
}

// The relay hint: the peer whose host the delivery went to is asked
// first, and a peer that does not have the ID is passed over.
func TestPeerOrder(t *testing.T) {
	prim, rel := seed()
	other := memledger.New()
	r := build(t, Sources{Local: prim, Peers: []Peer{{URL: "http://10.0.0.9:9100", Reader: other}, {URL: "https://127.0.0.2:9100", Reader: rel}}}, ledger.Filter{})
	if r.Reconciliation.Delivered != 3 || r.Peers[1].Followed != 2 || r.Peers[0].Followed != 0 {
		t.Errorf("%+v %+v", r.Reconciliation, r.Peers)
	}
	b := &builder{src: Sources{Peers: []Peer{{URL: "http://a:1"}, {URL: "http://relay.example:1"}, {URL: "http://127.0.0.5:2"}}}}
	if got := b.order("relay.example[127.0.0.5]:25"); !slices.Equal(got, []int{1, 2, 0}) {
		t.Errorf("order %v", got)
	}
}

func TestFilters(t *testing.T) {
	prim, rel := seed()
	prim.Add(ledger.Message{Node: primary, ID: "P2", From: "bob@example.org", Rcpts: []string{"user3@" + primary}, Arrival: t0.Add(2 * time.Hour),
		Deliveries: []ledger.Delivery{{Rcpt: "user3@" + primary, Status: ledger.Pending, Reply: "mailbox locked"}}})
	src := Sources{Local: prim, Peers: []Peer{{URL: "http://relay:1", Reader: rel}}}
	ids := func(f ledger.Filter) string {
		var s []string
		for _, m := range build(t, src, f).Messages {
			s = append(s, m.ID)
		}
		return strings.Join(s, ",")
	}
	for _, tc := range []struct {
		f    ledger.Filter
		want string
	}{
		{ledger.Filter{}, "P1,P2"},
		{ledger.Filter{Since: t0.Add(time.Hour)}, "P2"},
		{ledger.Filter{Until: t0.Add(time.Hour)}, "P1"},
		{ledger.Filter{Since: t0, Until: t0}, ""},
		{ledger.Filter{User: "bob@example.org"}, "P2"},
		{ledger.Filter{User: "USER2"}, "P1"},
		{ledger.Filter{User: "user2@" + relay}, "P1"},
		{ledger.Filter{User: "nobody"}, ""},
	} {
		if got := ids(tc.f); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.f, got, tc.want)
		}
	}
	// Through the peers: an address only the relay's ledger knows.
	rel.Add(ledger.Message{Node: relay, ID: "F1", Parent: "R1", Arrival: t0, Deliveries: []ledger.Delivery{
		{Rcpt: "u1@provider.example", Orig: "user1@" + relay, Status: ledger.Sent},
		{Rcpt: "u2@provider.example", Orig: "user2@" + relay, Status: ledger.Sent}}})
	if got := ids(ledger.Filter{User: "u2@provider.example"}); got != "P1" {
		t.Errorf("user through peers: %q", got)
	}
}

func TestSeries(t *testing.T) {
	l := memledger.New()
	for i := range 6 {
		st := ledger.Sent
		if i == 5 {
			st = ledger.Pending
		}
		l.Add(ledger.Message{Node: "h", ID: fmt.Sprint("M", i), Arrival: t0.Add(time.Duration(i) * 20 * time.Minute),
			Deliveries: []ledger.Delivery{{Rcpt: "a@x", Status: st}, {Rcpt: "b@y", Status: ledger.Bounced}}})
	}
	r := build(t, Sources{Local: l}, ledger.Filter{})
	// 6 arrivals over 1h40m, reported at t0+1h: 5-minute buckets.
	if r.Series.Bucket != 300 || len(r.Series.Points) != 12 {
		t.Fatalf("series %+v", r.Series)
	}
	var tot Counts
	for _, p := range r.Series.Points {
		tot.Delivered += p.Delivered
		tot.Pending += p.Pending
		tot.Failed += p.Failed
	}
	if tot != (Counts{Delivered: 5, Pending: 1, Failed: 6}) {
		t.Errorf("series totals %+v", tot)
	}
}

func TestLocalLedgerError(t *testing.T) {
	l := memledger.New()
	l.Err = errors.New("database disk image is malformed")
	if _, err := Build(context.Background(), Sources{Local: l}, ledger.Filter{}, t0); err == nil || !strings.Contains(err.Error(), "malformed") {
		t.Errorf("err %v", err)
	}
}

// A loop between two peers' ledgers (each names the other's queue ID)
// ends.
func TestPeerLoopEnds(t *testing.T) {
	a := memledger.New(ledger.Message{Node: "a", ID: "A1", Arrival: t0, Deliveries: []ledger.Delivery{
		{Rcpt: "x@y", Status: ledger.Sent, Transport: "smtp", Reply: "250 queued as B1"}}})
	b := memledger.New(ledger.Message{Node: "b", ID: "B1", Arrival: t0, Deliveries: []ledger.Delivery{
		{Rcpt: "x@y", Status: ledger.Sent, Transport: "smtp", Reply: "250 queued as A1"}}})
	r := build(t, Sources{Local: a, Peers: []Peer{{URL: "http://a:1", Reader: a}, {URL: "http://b:1", Reader: b}}}, ledger.Filter{})
	if r.Reconciliation.Required != 1 || len(r.Messages[0].Required[0].Chain) > 2*MaxDepth+2 {
		t.Errorf("%+v", r.Messages[0].Required)
	}
}

func TestBuildStatusQueue(t *testing.T) {
	now := t0.Add(2 * 24 * time.Hour)
	list := []queue.Info{
		{ID: "Q1", Arrival: now.Add(-2 * time.Minute), Rcpts: []queue.RcptInfo{{Addr: "a@x", Status: "pending"}, {Addr: "b@y", Status: "sent"}}},
		{ID: "Q2", Arrival: now.Add(-3 * time.Hour), Hold: true, Rcpts: []queue.RcptInfo{{Addr: "c@x", Status: "deferred", Reason: "421 4.7.0 try again later"}}},
		{ID: "Q3", Arrival: now.Add(-30 * time.Hour), Rcpts: []queue.RcptInfo{{Addr: "d@X", Status: "deferred", Reason: "connection refused"}}},
	}
	s, err := BuildStatus(context.Background(), list, nil, now)
	if err != nil {
		t.Fatal(err)
	}
	if s.Messages != 3 || s.Rcpts != 3 || s.Held != 1 || len(s.QueueDests) != 1 {
		t.Fatalf("%+v", s)
	}
	x := s.QueueDests[0]
	if x.Name != "x" || x.Rcpts != 3 || x.Deferred != 2 || x.Ages != [4]int{1, 0, 1, 1} || x.Reason != "connection refused" || !x.Oldest.Equal(now.Add(-30*time.Hour)) {
		t.Errorf("x: %+v", x)
	}
	var b strings.Builder
	WriteStatus(&b, s)
	if !strings.Contains(b.String(), "no ledger") || !strings.Contains(b.String(), "connection refused") {
		t.Errorf("%s", b.String())
	}
}

// counting counts a peer's requests.
type counting struct {
	ledger.Reader
	n int
}

func (c *counting) Message(ctx context.Context, node, id string) (ledger.Message, bool, error) {
	c.n++
	return c.Reader.Message(ctx, node, id)
}

func (c *counting) Children(ctx context.Context, node, id string) ([]ledger.Message, error) {
	c.n++
	return c.Reader.Children(ctx, node, id)
}

// Two copies in one relay transaction cost one lookup of the relay's
// message and of each of its messages' children, not one per copy.
func TestPeerAnswersCached(t *testing.T) {
	prim, rel := seed()
	c := &counting{Reader: rel}
	r := build(t, Sources{Local: prim, Peers: []Peer{{URL: "http://relay:1", Reader: c}}}, ledger.Filter{})
	if r.Reconciliation.Delivered != 3 || c.n != 4 {
		t.Errorf("%d requests (want R1, children of R1 and of F1, the provider's ID), %+v", c.n, r.Reconciliation)
	}
}

// The limit counts the messages the user matches, newest first.
func TestLimitAfterUser(t *testing.T) {
	l := memledger.New()
	for i := range 5 {
		u := "other@x"
		if i%2 == 0 {
			u = "me@x"
		}
		l.Add(ledger.Message{Node: "h", ID: fmt.Sprint("M", i), Arrival: t0.Add(time.Duration(i) * time.Minute),
			Deliveries: []ledger.Delivery{{Rcpt: u, Status: ledger.Sent}}})
	}
	r := build(t, Sources{Local: l}, ledger.Filter{User: "me@x", Limit: 2})
	if len(r.Messages) != 2 || r.Messages[0].ID != "M4" || r.Messages[1].ID != "M2" {
		t.Errorf("%+v", r.Messages)
	}
	r = build(t, Sources{Local: l}, ledger.Filter{Limit: 2})
	if len(r.Messages) != 2 || r.Messages[0].ID != "M4" {
		t.Errorf("%+v", r.Messages)
	}
}

// An alias that delivered to a mailbox here and forwarded elsewhere is
// two required deliveries: the mailbox (the alias's own) and the target.
func TestAliasMailboxAndForward(t *testing.T) {
	l := memledger.New(
		ledger.Message{Node: "h", ID: "A", Rcpts: []string{"fwd@h"}, Arrival: t0,
			Deliveries: []ledger.Delivery{{Rcpt: "fwd@h", Orig: "fwd@h", Status: ledger.Sent, Transport: "local", Relay: "local",
				Reply: "delivered to maildir of admin@h; forwarded to someone@far"}}},
		ledger.Message{Node: "h", ID: "B", Parent: "A", Arrival: t0,
			Deliveries: []ledger.Delivery{{Rcpt: "someone@far", Orig: "fwd@h", Status: ledger.Bounced, Reply: "550 no"}}},
	)
	r := build(t, Sources{Local: l}, ledger.Filter{})
	if r.Reconciliation.Required != 2 || r.Reconciliation.Delivered != 1 || len(r.Misses) != 1 || r.Misses[0].Rcpt != "someone@far" {
		t.Errorf("%+v %+v", r.Reconciliation, r.Misses)
	}
	if !deliveredHere("forwarded to a@b; delivered to mailbox") || deliveredHere("forwarded to a@b, c@d") || deliveredHere("forwarded as 4Zx") {
		t.Error("deliveredHere")
	}
}

// A peer asked in vain shows its gaps (the ID may be in one); a peer
// never asked does not.
func TestGapsOfPeersAsked(t *testing.T) {
	prim, _ := seed()
	empty := memledger.New()
	empty.AddGap(ledger.Gap{Node: relay, Since: t0, Until: t0.Add(time.Minute), Reason: "ledger file lost"})
	r := build(t, Sources{Local: prim, Peers: []Peer{{URL: "http://relay:1", Reader: empty}}}, ledger.Filter{})
	if len(r.Gaps) != 1 || r.Reconciliation.Complete {
		t.Errorf("asked: gaps %+v", r.Gaps)
	}
	local := memledger.New(ledger.Message{Node: "h", ID: "L", Arrival: t0, Deliveries: []ledger.Delivery{{Rcpt: "a@h", Status: ledger.Sent, Transport: "local"}}})
	r = build(t, Sources{Local: local, Peers: []Peer{{URL: "http://relay:1", Reader: empty}}}, ledger.Filter{})
	if len(r.Gaps) != 0 || !r.Reconciliation.Complete {
		t.Errorf("not asked: gaps %+v", r.Gaps)
	}
}

// A forward that arrived after --until is still folded in (asked for by
// its parent's ID), and the list-indexed way agrees with the asking one.
func TestChildrenBothWays(t *testing.T) {
	l := memledger.New(
		ledger.Message{Node: "h", ID: "A", Rcpts: []string{"team@h"}, Arrival: t0,
			Deliveries: []ledger.Delivery{{Rcpt: "team@h", Status: ledger.Sent, Transport: "local", Reply: "forwarded to a@far"}}},
		ledger.Message{Node: "h", ID: "B", Parent: "A", Arrival: t0.Add(time.Hour),
			Deliveries: []ledger.Delivery{{Rcpt: "a@far", Orig: "team@h", Status: ledger.Bounced, Reply: "550 no"}}},
	)
	for _, f := range []ledger.Filter{{}, {Until: t0.Add(time.Minute)}, {Since: t0}, {Limit: 5}} {
		r := build(t, Sources{Local: l}, f)
		if len(r.Messages) != 1 || r.Reconciliation.Required != 1 || r.Summary.Deliveries.Failed != 1 {
			t.Errorf("%+v: %+v", f, r.Summary)
		}
	}
}

// A peer's message with the same queue ID from another day is not the
// one the copy became.
func TestReusedQueueID(t *testing.T) {
	prim, rel := seed()
	m, _, _ := rel.Message(context.Background(), "", "R1")
	m.Arrival = t0.Add(-30 * 24 * time.Hour)
	rel.Add(m)
	r := build(t, Sources{Local: prim, Peers: []Peer{{URL: "http://relay:1", Reader: rel}}}, ledger.Filter{})
	q := r.Messages[0].Required[1]
	if q.Rcpt != "user1@"+relay || q.Note != "not followed: no peer has queue ID R1" {
		t.Errorf("%+v", q)
	}
}

// Every mailbox an alias or a list reaches is a required delivery of
// its own (the issue: "each local mailbox"), as local(8)'s reply names
// them; the copies each mailbox makes are recipients of their own.
func TestListCountsEachMailbox(t *testing.T) {
	l := memledger.New(
		ledger.Message{Node: "h", ID: "A", Rcpts: []string{"staff@h"}, Arrival: t0,
			Deliveries: []ledger.Delivery{
				{Index: 0, Rcpt: "staff@h", Status: ledger.Sent, Transport: "local", Relay: "local",
					Reply: "delivered to maildir of u1@h; delivered to maildir of u2@h; mailbox copy to u1@relay, u2@relay"},
				{Index: 1, Rcpt: "u1@relay", Copy: true, Status: ledger.Sent, Transport: "smtp", Relay: "relay[127.0.0.2]:25", Reply: "250 ok"},
				{Index: 2, Rcpt: "u2@relay", Copy: true, Status: ledger.Bounced, Transport: "smtp", Relay: "relay[127.0.0.2]:25", Reply: "550 no"},
			}},
		ledger.Message{Node: "h", ID: "B", Rcpts: []string{"u3@h"}, Arrival: t0,
			Deliveries: []ledger.Delivery{{Index: 0, Rcpt: "u3@h", Status: ledger.Sent, Transport: "local", Relay: "local", Reply: "delivered to maildir"}}},
		ledger.Message{Node: "h", ID: "C", Rcpts: []string{"team@h"}, Arrival: t0,
			Deliveries: []ledger.Delivery{{Index: 0, Rcpt: "team@h", Status: ledger.Sent, Transport: "lmtp", Relay: "local", Reply: "delivered over LMTP for a@h, b@h, c@h"}}},
	)
	r := build(t, Sources{Local: l}, ledger.Filter{})
	if rc := r.Reconciliation; rc.Required != 2+2+1+3 || rc.Delivered != 7 {
		t.Errorf("reconciliation %+v, want 7 of 8 (u1, u2, their copies, u3, a, b, c)", rc)
	}
	var got []string
	for _, m := range r.Messages {
		for _, q := range m.Required {
			got = append(got, q.Rcpt+"<"+q.Via)
		}
	}
	want := []string{"u1@h<staff@h", "u2@h<staff@h", "u1@relay<", "u2@relay<", "u3@h<", "a@h<team@h", "b@h<team@h", "c@h<team@h"}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("required deliveries\n got %v\nwant %v", got, want)
	}
}

// A mailbox in the forward phase (mailbox_bcc_maps) is not written:
// local(8) sends its mail on to the copy's address, a recipient of the
// same message, and only that delivery is required; a list whose other
// member is in dual still counts that member's mailbox and copy.
func TestForwardPhaseMailboxNotRequired(t *testing.T) {
	l := memledger.New(
		ledger.Message{Node: "h", ID: "A", Rcpts: []string{"u1@h"}, Arrival: t0,
			Deliveries: []ledger.Delivery{
				{Index: 0, Rcpt: "u1@h", Status: ledger.Sent, Transport: "local", Relay: "local", Reply: "forward phase: sent on to u1@relay"},
				{Index: 1, Rcpt: "u1@relay", Orig: "u1@h", Status: ledger.Sent, Transport: "smtp", Relay: "relay[127.0.0.2]:25", Reply: "250 ok"},
			}},
		ledger.Message{Node: "h", ID: "B", Rcpts: []string{"list@h"}, Arrival: t0,
			Deliveries: []ledger.Delivery{
				{Index: 0, Rcpt: "list@h", Status: ledger.Sent, Transport: "local", Relay: "local",
					Reply: "delivered over LMTP for u3@h; mailbox copy to u3@relay; forward phase: sent on to u1@relay"},
				{Index: 1, Rcpt: "u3@relay", Orig: "u3@h", Copy: true, Status: ledger.Sent, Transport: "smtp", Relay: "relay[127.0.0.2]:25", Reply: "250 ok"},
				{Index: 2, Rcpt: "u1@relay", Orig: "u1@h", Status: ledger.Pending, Transport: "smtp", Relay: "none", Reply: "connection refused"},
			}},
	)
	r := build(t, Sources{Local: l}, ledger.Filter{})
	if rc := r.Reconciliation; rc.Required != 1+3 || rc.Delivered != 3 {
		t.Errorf("reconciliation %+v, want 3 of 4 (u1's forward; u3, its copy, u1's pending forward)", rc)
	}
	var got []string
	for _, m := range r.Messages {
		for _, q := range m.Required {
			got = append(got, q.Rcpt)
		}
	}
	want := []string{"u1@relay", "u3@h", "u3@relay", "u1@relay"}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("required deliveries\n got %v\nwant %v", got, want)
	}
}

// FuzzPerMailbox: local(8)'s reply names the mailboxes a local delivery
// reached; whatever its text, perMailbox returns none for a reply that
// names only forward-phase deliveries, else at least one required
// delivery, each in the delivery's state and with a part of the reply.
func FuzzPerMailbox(f *testing.F) {
	for _, s := range []string{
		"delivered to maildir",
		"delivered to maildir of u1@h; delivered to maildir of u2@h; mailbox copy to u1@relay, u2@relay",
		"delivered over LMTP for a@h, b@h",
		"forward phase: sent on to u1@relay",
		"delivered over LMTP for u3@h; mailbox copy to u3@relay; forward phase: sent on to u1@relay",
		"duplicate of u1@h, delivered once",
		"forward phase: sent on to a@r; ",
	} {
		f.Add("u1@h", s)
	}
	f.Fuzz(func(t *testing.T, rcpt, reply string) {
		d := ledger.Delivery{Rcpt: rcpt, Status: ledger.Sent, Transport: "local", Relay: "local", Reply: reply}
		q := Required{Rcpt: rcpt, State: Delivered, Status: ledger.Sent, Reply: reply}
		out := perMailbox(q, d)
		if forwardPhaseOnly(reply) {
			if len(out) != 0 {
				t.Fatalf("%q: %d required deliveries for forward-phase deliveries alone", reply, len(out))
			}
			return
		}
		if len(out) == 0 {
			t.Fatalf("%q: no required delivery", reply)
		}
		for _, r := range out {
			if r.State != q.State || r.Reply != "delivered over LMTP" && !strings.Contains(reply, r.Reply) {
				t.Fatalf("%q: %+v", reply, r)
			}
		}
	})
}
