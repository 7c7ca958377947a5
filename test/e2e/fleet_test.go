package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/ratelimit"
	"github.com/mailtee/mailtee/internal/report"
	"github.com/mailtee/mailtee/internal/standin"
)

// Issue 19's fleet test: two mailtee relays on loopback share one
// PostgreSQL (ledger_database, with a password file) and relay the
// provider's domain to one stand-in, under one per-mailbox rate limit
// (smtp_recipient_rate_limit = 20/10s: a short window keeps the test
// short). Several clients spread mail over both nodes, three windows'
// worth for each mailbox; one node is killed with -9 during the first
// window's deliveries and restarted; in the second window, with mail
// still waiting on both nodes, the database is stopped for longer than
// a window while more mail arrives, and started again. After that:
//
//   - `mailtee report --format json` on either node accounts for every
//     message: each once, on the node that took it, its one required
//     delivery delivered, nothing else;
//   - the stand-in got each (Message-ID, recipient) once: twice only
//     for a delivery in flight when the node was killed (DESIGN.md: a
//     crash may repeat only those);
//   - no mailbox ever got more than 20 in any 10 s, both nodes together;
//   - while the database was down mail kept flowing from both nodes,
//     each within half the limit (the limit divided by the nodes last
//     seen alive), and each node said so in its log.
//
// FLEET_SHARED_LIMITS=no runs it with fleet_shared_limits = no, to see
// it fail: each node then sends the whole limit on its own.

const (
	fleetLimit   = 20
	fleetPer     = 10 * time.Second
	fleetRate    = "20/10s"
	fleetBoxes   = 6
	fleetPerBox1 = 60 // per mailbox, at the start
	fleetPerBox2 = 10 // per mailbox, while it is down
	fleetOutage  = 12 * time.Second
)

func TestFleetTwoNodes(t *testing.T) {
	w, err := ratelimit.ParseWindows(fleetRate)
	if err != nil || len(w) != 1 || w[0].N != fleetLimit || w[0].Per != fleetPer {
		t.Fatalf("%s: %v %v", fleetRate, w, err)
	}
	f := newFleet(t, fleetOptions{nodes: 2, rate: fleetRate, shared: os.Getenv("FLEET_SHARED_LIMITS")})
	const victim = 0
	batch1 := fleetBatch("b1", fleetBoxes, fleetPerBox1, 2)
	batch2 := fleetBatch("b2", fleetBoxes, fleetPerBox2, 2)
	all := append(append([]fleetMsg(nil), batch1...), batch2...)

	var tl fleetTimeline
	tl.t0 = time.Now()
	since := func(at time.Time) time.Duration { return at.Sub(tl.t0).Round(time.Millisecond) }
	if err := f.send(batch1, 3); err != nil {
		t.Fatalf("sending: %v", err)
	}
	t.Logf("%d messages accepted by the two nodes in %v", len(batch1), since(time.Now()))

	// Mid-run: the first window's deliveries under way, the rest queued
	// on both nodes and held back by the limit.
	waitUntil(t, "the first deliveries", 30*time.Second, func() bool { return f.accepted(batch1) >= len(batch1)/8 })
	tl.kill = time.Now()
	f.nodes[victim].in.Kill()
	atKill := f.accepted(all)
	time.Sleep(time.Second)
	tl.restart = time.Now()
	f.nodes[victim].in.Start()
	t.Logf("%s killed with -9 at +%v (%d of %d at the provider), restarted at +%v",
		f.nodes[victim].name, since(tl.kill), atKill, len(all), since(tl.restart))

	// In the second window, its deliveries done and mail waiting, the
	// database goes away for longer than a window, while more mail
	// comes in: acceptance never needs it.
	time.Sleep(time.Until(tl.t0.Add(fleetPer + 2*time.Second)))
	tl.stop = time.Now()
	f.pg.Stop()
	atStop := f.accepted(all)
	if err := f.send(batch2, 3); err != nil {
		t.Errorf("sending with the database down: %v", err)
	}
	for _, n := range f.nodes {
		n.in.WaitLogFor("unreachable", fleetOutage)
	}
	time.Sleep(time.Until(tl.stop.Add(fleetOutage)))
	tl.start = time.Now()
	atStart := f.accepted(all)
	f.pg.Start()
	t.Logf("the database down from +%v to +%v: %d delivered before, %d after",
		since(tl.stop), since(tl.start), atStop, atStart)

	// Everything delivered: at the limit, fleetPerBox1+fleetPerBox2
	// per mailbox take about 3.5 windows; the outage does not slow the
	// total down.
	waitUntil(t, "every message at the provider", 60*time.Second, func() bool { return f.accepted(all) == len(all) })
	doneAt := time.Now()
	waitUntil(t, "both queues empty", 30*time.Second, f.queuesEmpty)
	settle() // a repeat would show now
	t.Logf("all %d delivered at +%v (the limit allows %d per mailbox per %v: at best +%v)",
		len(all), since(doneAt), fleetLimit, fleetPer, earliest(w, fleetPerBox1+fleetPerBox2))

	recs := f.prov.Accepted()
	fleetSenders(t, f, recs, all)
	fleetOnce(t, recs, all, victim, tl.kill)
	fleetWithinLimit(t, f, recs, tl)
	fleetOutageLimits(t, f, recs, tl.stop, tl.start)
	for _, r := range f.prov.Refused() {
		t.Errorf("the stand-in refused %s: %s", r.Rcpt, r.Reply)
	}
	for _, n := range f.nodes {
		log := n.in.Log.String()
		if !strings.Contains(log, "1/2 of each") {
			t.Errorf("%s did not say it went on with 1/2 of each limit while the database was down", n.name)
		}
		if !strings.Contains(log, "fleet database reachable again") {
			t.Errorf("%s did not say the database was back", n.name)
		}
		if strings.Contains(log, "status=bounced") {
			t.Errorf("%s bounced mail", n.name)
		}
	}

	// Both nodes in the fleet's table, serving.
	rows, err := f.pg.DB("mailtee").Query(`SELECT name, state FROM fleet_nodes ORDER BY name`)
	if err != nil {
		t.Fatalf("fleet_nodes: %v", err)
	}
	var nodes []string
	for rows.Next() {
		var name, state string
		rows.Scan(&name, &state)
		nodes = append(nodes, name+" "+state)
	}
	rows.Close()
	if want := []string{f.nodes[0].name + " serving", f.nodes[1].name + " serving"}; !slices.Equal(nodes, want) {
		t.Errorf("fleet_nodes: %q, want %q", nodes, want)
	}

	// The report, on either node, once the ledger has caught up.
	for _, n := range f.nodes {
		r := fleetReport(t, n, len(all))
		fleetCheckReport(t, f, n, r, all)
	}
}

// fleetOnce checks that the stand-in accepted every message once for
// its recipient and nothing else; a second acceptance is allowed only
// for a message of the killed node (index victim) whose first one came
// at most 2 s before the kill (a delivery in flight, which the node
// could not record).
func fleetOnce(t *testing.T, recs []standin.Record, msgs []fleetMsg, victim int, killAt time.Time) {
	t.Helper()
	want := map[string]fleetMsg{}
	for _, m := range msgs {
		want["<"+m.id+">"] = m
	}
	first := map[string]time.Time{}
	count := map[string]int{}
	for _, r := range recs {
		m, ok := want[r.MessageID]
		if !ok || m.rcpt != r.Rcpt {
			t.Errorf("the stand-in accepted %s for %s: not a message sent to it", r.MessageID, r.Rcpt)
			continue
		}
		if count[r.MessageID]++; count[r.MessageID] == 1 {
			first[r.MessageID] = r.Time
		}
	}
	missing, inFlight := 0, 0
	for id, m := range want {
		switch n := count[id]; {
		case n == 0:
			missing++
		case n == 2 && m.node == victim &&
			!first[id].Before(killAt.Add(-2*time.Second)) && !first[id].After(killAt.Add(time.Second)):
			inFlight++
			t.Logf("%s to %s twice: first at kill%+v, in flight at the kill", id, m.rcpt, first[id].Sub(killAt).Round(time.Millisecond))
		case n > 1:
			t.Errorf("%s to %s accepted %d times (first at kill%+v)", id, m.rcpt, n, first[id].Sub(killAt).Round(time.Millisecond))
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d messages never reached the provider", missing, len(want))
	}
	t.Logf("the provider got %d acceptances for %d messages; %d repeated deliveries in flight at the kill", len(recs), len(want), inFlight)
}

// fleetSenders checks that each message left from the source address
// of the node it was sent to: each node delivers its own queue, from
// its own address.
func fleetSenders(t *testing.T, f *fleetNet, recs []standin.Record, msgs []fleetMsg) {
	t.Helper()
	node := map[string]int{}
	for _, m := range msgs {
		node["<"+m.id+">"] = m.node
	}
	bad := 0
	for _, r := range recs {
		if want, ok := node[r.MessageID]; ok && f.sender(r) != want {
			if bad++; bad <= 5 {
				t.Errorf("%s, sent to %s, was delivered from %s, want %s", r.MessageID, f.nodes[want].name, r.Remote, f.nodes[want].ip)
			}
		}
	}
	if bad > 5 {
		t.Errorf("%d messages in all delivered from the wrong address", bad)
	}
}

// fleetTimeline is when the run's events happened, to say which phase
// an acceptance fell in.
type fleetTimeline struct {
	t0, kill, restart, stop, start time.Time
}

// phase names the part of the run at t.
func (tl fleetTimeline) phase(t time.Time) string {
	switch {
	case t.Before(tl.kill):
		return "before the kill"
	case t.Before(tl.restart):
		return "killed"
	case t.Before(tl.stop):
		return "restarted"
	case t.Before(tl.start):
		return "database down"
	}
	return "database back"
}

// fleetWithinLimit checks that no mailbox got more than the limit in
// any window, from both nodes together, with one exception: a window
// that spans the database's stop may hold what the fleet sent before
// it plus each node's share (a node that falls back counts only its own
// deliveries: shlimit's documented limit). It logs the fullest windows
// of each kind and, over a bound, says what the window held: by node
// and phase.
func fleetWithinLimit(t *testing.T, f *fleetNet, recs []standin.Record, tl fleetTimeline) {
	t.Helper()
	byBox := map[string][]standin.Record{}
	for _, r := range recs {
		byBox[r.Rcpt] = append(byBox[r.Rcpt], r)
	}
	// Each node's own figure, to tell a node that forgot its windows
	// (a restart) from two nodes that did not share them.
	for i, n := range f.nodes {
		most := 0
		for _, ts := range f.acceptedDuring(recs, time.Time{}, time.Now().Add(time.Hour))[i] {
			most = max(most, standin.MaxInSpan(ts, fleetPer))
		}
		t.Logf("%s alone: at most %d to one mailbox in any %v", n.name, most, fleetPer)
	}
	share := fleetLimit / len(f.nodes)
	atStop := fleetLimit + len(f.nodes)*share
	var fullest, fullestAtStop []string
	for _, box := range sortedKeys(byBox) {
		rs := byBox[box]
		sort.Slice(rs, func(i, j int) bool { return rs[i].Time.Before(rs[j].Time) })
		// Every half-open span [rs[lo], rs[lo]+Per) that starts at an
		// acceptance: the fullest spans are among them (MaxInSpan).
		best, bestStop := 0, 0
		hi := 0
		for lo := range rs {
			for hi < len(rs) && rs[hi].Time.Sub(rs[lo].Time) < fleetPer {
				hi++
			}
			n, from := hi-lo, rs[lo].Time
			spansStop := !tl.stop.Before(from) && tl.stop.Before(from.Add(fleetPer))
			bound := fleetLimit
			if spansStop {
				bestStop = max(bestStop, n)
				bound = atStop
			} else {
				best = max(best, n)
			}
			if n > bound {
				t.Errorf("%s got %d messages within %v from the two nodes together, from +%v: the bound is %d%s; they came %s",
					box, n, fleetPer, from.Sub(tl.t0).Round(time.Millisecond), bound,
					map[bool]string{true: " (the window spans the database's stop)", false: ""}[spansStop],
					f.describe(rs[lo:hi], tl))
				break // one window per mailbox says enough
			}
		}
		name := strings.TrimSuffix(box, "@"+fleetProvDomain)
		fullest = append(fullest, fmt.Sprintf("%s %d", name, best))
		fullestAtStop = append(fullestAtStop, fmt.Sprintf("%s %d", name, bestStop))
	}
	t.Logf("most in any %v per mailbox, both nodes (limit %d): %s", fleetPer, fleetLimit, strings.Join(fullest, ", "))
	t.Logf("most in a %v window spanning the database's stop (bound %d: the limit, plus each node's share of %d as it falls back): %s",
		fleetPer, atStop, share, strings.Join(fullestAtStop, ", "))
}

// describe says where rs came from: how many from each node in each
// phase of the run.
func (f *fleetNet) describe(rs []standin.Record, tl fleetTimeline) string {
	parts := map[string]int{}
	for _, r := range rs {
		who := r.Remote
		if i := f.sender(r); i >= 0 {
			who = f.nodes[i].name
		}
		parts[fmt.Sprintf("%s %s", who, tl.phase(r.Time))]++
	}
	var held []string
	for _, k := range sortedKeys(parts) {
		held = append(held, fmt.Sprintf("%d from %s", parts[k], k))
	}
	return strings.Join(held, ", ")
}

// fleetOutageLimits checks the fallback: while the database was down,
// each node sent each mailbox at most half the limit in any window (two
// nodes were alive when it went), and each node delivered.
func fleetOutageLimits(t *testing.T, f *fleetNet, recs []standin.Record, stopAt, startAt time.Time) {
	t.Helper()
	during := f.acceptedDuring(recs, stopAt, startAt)
	for i, n := range f.nodes {
		total := 0
		var fullest []string
		for _, box := range sortedKeys(during[i]) {
			ts := during[i][box]
			total += len(ts)
			c := standin.MaxInSpan(ts, fleetPer)
			fullest = append(fullest, fmt.Sprintf("%s %d", strings.TrimSuffix(box, "@"+fleetProvDomain), c))
			if c > fleetLimit/2 {
				t.Errorf("with the database down, %s sent %s %d messages within %v: its share is %d (the limit %d over 2 nodes)",
					n.name, box, c, fleetPer, fleetLimit/2, fleetLimit)
			}
		}
		t.Logf("with the database down (%v), %s delivered %d; most in any %v per mailbox: %s",
			startAt.Sub(stopAt).Round(time.Millisecond), n.name, total, fleetPer, strings.Join(fullest, ", "))
		if total == 0 {
			t.Errorf("with the database down, %s delivered nothing: mail must keep flowing", n.name)
		}
	}
}

// fleetReport runs `mailtee report --format json` on n until it counts
// want delivered required deliveries (the ledger catches up after the
// database returns), for up to 30 s, and returns the last report.
func fleetReport(t *testing.T, n *fleetNode, want int) *report.Report {
	t.Helper()
	var r *report.Report
	var last string
	deadline := time.Now().Add(30 * time.Second)
	for {
		// stdout alone: a warning on stderr is not JSON.
		out, errOut, code := runBin(t, "report", "-c", n.in.Dir, "--format", "json")
		err := fmt.Errorf("exit %d: %s", code, strings.TrimSpace(errOut))
		var got report.Report
		if jerr := json.NewDecoder(strings.NewReader(out)).Decode(&got); jerr == nil {
			r = &got
			if got.Reconciliation.Delivered >= want && got.Reconciliation.Complete {
				return r
			}
			last = fmt.Sprintf("reconciliation %+v (%v)", got.Reconciliation, err)
		} else {
			last = fmt.Sprintf("%v; %v", err, jerr)
		}
		if time.Now().After(deadline) {
			t.Errorf("%s: mailtee report --format json never counted %d delivered: %s", n.name, want, last)
			if r == nil {
				t.FailNow()
			}
			return r
		}
		time.Sleep(time.Second)
	}
}

// fleetCheckReport holds n's report against what was sent: every
// message once, on the node it was sent to, its one required delivery
// (a copy: dual_delivery_relay) delivered; nothing else.
func fleetCheckReport(t *testing.T, f *fleetNet, n *fleetNode, r *report.Report, msgs []fleetMsg) {
	t.Helper()
	want := map[string]fleetMsg{}
	for _, m := range msgs {
		want["<"+m.id+">"] = m
	}
	seen := map[string]int{}
	var bad []string
	badf := func(format string, args ...any) {
		if len(bad) < 10 {
			bad = append(bad, fmt.Sprintf(format, args...))
		}
	}
	for _, rm := range r.Messages {
		m, ok := want[rm.MessageID]
		if !ok {
			badf("message %s %s (queue ID %s on %s) was not sent by the test", rm.MessageID, rm.Rcpts, rm.ID, rm.Node)
			continue
		}
		seen[rm.MessageID]++
		if node := f.nodes[m.node].name; rm.Node != node {
			badf("%s: node %q, want %q (the node it was sent to)", rm.MessageID, rm.Node, node)
		}
		if rm.State != report.Delivered {
			badf("%s on %s: state %s", rm.MessageID, rm.Node, rm.State)
		}
		if len(rm.Required) != 1 {
			badf("%s on %s: %d required deliveries, want 1 (to %s)", rm.MessageID, rm.Node, len(rm.Required), m.rcpt)
			continue
		}
		q := rm.Required[0]
		if !strings.EqualFold(q.Rcpt, m.rcpt) || q.State != report.Delivered || !q.Copy {
			badf("%s on %s: required delivery to %s, state %s, copy %v; want %s, delivered, a copy", rm.MessageID, rm.Node, q.Rcpt, q.State, q.Copy, m.rcpt)
		}
	}
	missing, twice := 0, 0
	for id := range want {
		switch seen[id] {
		case 0:
			missing++
		case 1:
		default:
			twice++
		}
	}
	if missing > 0 || twice > 0 || len(bad) > 0 {
		t.Errorf("report on %s: of %d messages, %d missing and %d listed more than once; %d listed in all\n%s",
			n.name, len(want), missing, twice, len(r.Messages), strings.Join(bad, "\n"))
	}
	rc := r.Reconciliation
	if rc.Required != len(msgs) || rc.Delivered != len(msgs) || !rc.Complete {
		t.Errorf("report on %s: reconciliation %d of %d delivered (complete %v: %v), want %d of %d, complete",
			n.name, rc.Delivered, rc.Required, rc.Complete, rc.Incomplete, len(msgs), len(msgs))
	}
	if r.Summary.Accepted != len(msgs) {
		t.Errorf("report on %s: %d accepted, want %d", n.name, r.Summary.Accepted, len(msgs))
	}
	byNode := map[string]int{}
	for _, rm := range r.Messages {
		byNode[rm.Node]++
	}
	t.Logf("report on %s: %d messages (%v), reconciliation %d/%d, complete %v", n.name, len(r.Messages), byNode, rc.Delivered, rc.Required, rc.Complete)
}

func sortedKeys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
