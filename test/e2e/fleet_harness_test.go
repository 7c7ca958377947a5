package e2e

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mailtee/mailtee/internal/standin"
	"github.com/mailtee/mailtee/internal/testdb"
	"github.com/mailtee/mailtee/test/internal/harness"
)

// A fleet on loopback (issue 19): N mailtee relays with one main.cf
// but for the lines that make a node itself (its name, its listening
// and source address), each with its own configuration directory and
// queue, all naming one PostgreSQL (testdb) in ledger_database with a
// password file, and all relaying the provider's domain to one
// provider stand-in (internal/standin), which records when it accepted
// each (Message-ID, recipient).

// fleetProvDomain is the provider's domain, routed to the stand-in.
const fleetProvDomain = "prov.example"

// fleetIPs are the nodes' addresses: each listens on its own and sends
// from it, as real nodes each have their own allow-listed source
// address.
var fleetIPs = []string{"127.0.0.21", "127.0.0.22", "127.0.0.23"}

// fleetOptions shape a fleet.
type fleetOptions struct {
	nodes int
	// rate is smtp_recipient_rate_limit ("" for none).
	rate string
	// shared is fleet_shared_limits ("" leaves the default, yes).
	shared string
	// sqlite keeps each node's ledger in its own SQLite file, the
	// default: without a PostgreSQL ledger_database there is no fleet,
	// only independent nodes (a baseline).
	sqlite bool
}

// fleetNet is a running fleet.
type fleetNet struct {
	t     testing.TB
	pg    *testdb.Server
	url   string // ledger_database
	prov  *standin.Server
	port  int // every node's SMTP port
	nodes []*fleetNode
}

// fleetNode is one node.
type fleetNode struct {
	name string // myhostname
	ip   string
	in   *instance
}

// fleetMainCf is the main.cf every node shares; the node's own lines
// follow it (fleetNodeCf).
func (f *fleetNet) mainCf(o fleetOptions) string {
	ledger := "ledger_database = " + f.url + "\n"
	if o.sqlite {
		ledger = "# ledger_database: each node's own SQLite file (the default)\n"
	}
	s := fmt.Sprintf(`# The fleet's main.cf: the same on every node.
mydomain = fleet.example
myorigin = $mydomain
mydestination =
alias_maps =
mynetworks = 127.0.0.0/8
relay_domains = %s
relay_recipient_maps = inline:{ @%s=ok }
transport_maps = inline:{ %s=smtp:[127.0.0.1]:%d }
dual_delivery_relay = yes
queue_directory = $config_directory/queue
data_directory = $config_directory/data
%sfleet_heartbeat_interval = 1s
fleet_node_timeout = 5s
smtp_destination_profile = none
minimal_backoff_time = 1s
maximal_backoff_time = 2s
queue_run_delay = 1s
smtp_connect_timeout = 2s
`, fleetProvDomain, fleetProvDomain, fleetProvDomain, portOf(f.prov.Addr()), ledger)
	if o.rate != "" {
		s += "smtp_recipient_rate_limit = " + o.rate + "\n"
	}
	if o.shared != "" {
		s += "fleet_shared_limits = " + o.shared + "\n"
	}
	return s
}

// nodeCf is what makes a node itself.
func (f *fleetNet) nodeCf(n *fleetNode) string {
	return fmt.Sprintf(`# This node.
myhostname = %s
inet_interfaces = %s
smtpd_port = %d
smtp_bind_address = %s
`, n.name, n.ip, f.port, n.ip)
}

func portOf(addr string) int {
	var p int
	fmt.Sscanf(addr[strings.LastIndexByte(addr, ':')+1:], "%d", &p)
	return p
}

// newFleet starts the database, the stand-in and o.nodes nodes.
func newFleet(t testing.TB, o fleetOptions) *fleetNet {
	t.Helper()
	if o.nodes > len(fleetIPs) {
		t.Fatalf("at most %d nodes", len(fleetIPs))
	}
	f := &fleetNet{t: t}
	f.pg = testdb.Postgres(t)
	f.pg.CreateDB("mailtee")
	_, f.url = f.pg.PassFile(harness.TempDir(t), "mailtee")
	var err error
	// No limit at the stand-in: it records what it got, and the test
	// holds that against the limit (a stand-in that refused would hide
	// an excess behind mailtee's retries).
	if f.prov, err = standin.Start(standin.Options{Flavor: standin.Google}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.prov.Close() })
	f.port = freePortOn(t, fleetIPs[:o.nodes]...)
	common := f.mainCf(o)
	for i := 0; i < o.nodes; i++ {
		n := &fleetNode{name: fmt.Sprintf("mx%d.fleet.example", i+1), ip: fleetIPs[i]}
		dir := harness.TempDir(t)
		if err := os.WriteFile(filepath.Join(dir, "main.cf"), []byte(common+f.nodeCf(n)), 0o644); err != nil {
			t.Fatal(err)
		}
		n.in = &instance{T: t, Dir: dir, Port: f.port, Host: n.ip, Log: &syncBuffer{}, MarkStarts: true, AwaitReady: true}
		f.nodes = append(f.nodes, n)
	}
	t.Cleanup(func() {
		// FLEET_LOG_DIR keeps each node's whole log, for a failure
		// the tail does not explain.
		if dir := os.Getenv("FLEET_LOG_DIR"); dir != "" {
			for _, n := range f.nodes {
				os.WriteFile(filepath.Join(dir, n.name+".log"), []byte(n.in.Log.String()), 0o644)
			}
		}
		if t.Failed() {
			for _, n := range f.nodes {
				t.Logf("%s's log (the last 150 lines):\n%s", n.name, tail(n.in.Log.String(), 150))
			}
			t.Logf("PostgreSQL's log:\n%s", tail(f.pg.Log(), 40))
		}
	})
	for _, n := range f.nodes {
		if out, err := n.in.Run("", "check"); err != nil {
			t.Fatalf("%s: mailtee check: %v\n%s", n.name, err, out)
		}
		n.in.Start()
	}
	return f
}

// fleetMsg is one message: the node it is sent to, its one recipient
// and its Message-ID (without <>).
type fleetMsg struct {
	node     int
	rcpt, id string
}

// fleetBatch makes perBox messages for each of boxes mailboxes,
// alternating between nodes, mailboxes interleaved, so that every node
// has mail for every mailbox.
func fleetBatch(name string, boxes, perBox, nodes int) []fleetMsg {
	var msgs []fleetMsg
	for k := 0; k < perBox; k++ {
		for b := 0; b < boxes; b++ {
			node := (k + b) % nodes
			msgs = append(msgs, fleetMsg{node: node, rcpt: fmt.Sprintf("box%02d@%s", b, fleetProvDomain),
				id: fmt.Sprintf("%s-%02d-%03d-n%d@client.example", name, b, k, node+1)})
		}
	}
	return msgs
}

// send submits msgs to their nodes over clients SMTP sessions per node
// at once, and returns the refusals (joined), if any. Safe from any
// goroutine.
func (f *fleetNet) send(msgs []fleetMsg, clients int) error {
	var errs []error
	var mu sync.Mutex
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}
	var wg sync.WaitGroup
	for i, n := range f.nodes {
		ch := make(chan fleetMsg)
		for c := 0; c < clients; c++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var cl *smtp.Client
				defer func() {
					if cl != nil {
						cl.Quit()
					}
				}()
				for m := range ch {
					if cl == nil {
						var err error
						if cl, err = smtp.Dial(n.in.Addr()); err != nil {
							fail(fmt.Errorf("%s: %w", n.name, err))
							continue
						}
						if err := cl.Hello("client.example"); err != nil {
							fail(fmt.Errorf("%s: %w", n.name, err))
						}
					}
					if err := sendOn(cl, "sender@client.example", provMsg{m.rcpt, m.id}); err != nil {
						fail(fmt.Errorf("%s: %s to %s: %w", n.name, m.id, m.rcpt, err))
						cl.Close()
						cl = nil
					}
				}
			}()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, m := range msgs {
				if m.node == i {
					ch <- m
				}
			}
			close(ch)
		}()
	}
	wg.Wait()
	if len(errs) > 3 {
		errs = append(errs[:3], fmt.Errorf("and %d more", len(errs)-3))
	}
	return errors.Join(errs...)
}

// accepted counts the stand-in's acceptances of msgs: distinct
// (Message-ID, recipient) pairs.
func (f *fleetNet) accepted(msgs []fleetMsg) int {
	want := map[string]bool{}
	for _, m := range msgs {
		want["<"+m.id+"> "+m.rcpt] = true
	}
	seen := map[string]bool{}
	for _, r := range f.prov.Accepted() {
		k := r.MessageID + " " + r.Rcpt
		if want[k] {
			seen[k] = true
		}
	}
	return len(seen)
}

// queuesEmpty says whether every node's queue is empty.
func (f *fleetNet) queuesEmpty() bool {
	for _, n := range f.nodes {
		if !queueEmpty(n.in) {
			return false
		}
	}
	return true
}

// sender is the index of the node that delivered r (by its source
// address), -1 for none of them.
func (f *fleetNet) sender(r standin.Record) int {
	host, _, _ := net.SplitHostPort(r.Remote)
	for i, n := range f.nodes {
		if n.ip == host {
			return i
		}
	}
	return -1
}

// acceptedDuring returns, per node that delivered them and mailbox,
// the stand-in's acceptance times in [from, to).
func (f *fleetNet) acceptedDuring(recs []standin.Record, from, to time.Time) map[int]map[string][]time.Time {
	out := map[int]map[string][]time.Time{}
	for _, r := range recs {
		if r.Time.Before(from) || !r.Time.Before(to) {
			continue
		}
		n := f.sender(r)
		if out[n] == nil {
			out[n] = map[string][]time.Time{}
		}
		out[n][r.Rcpt] = append(out[n][r.Rcpt], r.Time)
	}
	return out
}
