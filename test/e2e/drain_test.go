package e2e

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mailtee/mailtee/internal/testdb"
	"github.com/mailtee/mailtee/test/internal/harness"
)

// TestDrain runs the drain scenarios on one PostgreSQL (starting one
// takes seconds), a database of their own each.
func TestDrain(t *testing.T) {
	pg := testdb.Postgres(t)
	t.Run("ToNode", func(t *testing.T) { testDrainToNode(t, pg, fleetDB(t, pg, "drain1")) })
	t.Run("KilledMidway", func(t *testing.T) { testDrainKilledMidway(t, fleetDB(t, pg, "drain2")) })
}

// Without a fleet, drain says what it needs, and the node goes on.
func TestDrainNeedsFleet(t *testing.T) {
	in := newInstance(t, "", nil)
	in.Start()
	out, err := in.Run("", "drain", "--to", "b.test.example")
	if err == nil || !strings.Contains(out, "drain needs a fleet: ledger_database must be a PostgreSQL URL") || !strings.Contains(out, `ledger_database is "ledger.db" here`) {
		t.Fatalf("drain without a fleet: %v\n%s", err, out)
	}
	if err := harnessSend(in.Addr(), "s@x.example", []string{"someone@test.example"}, idMessage("n1@test", "n")); err != nil {
		t.Fatalf("the node stopped accepting: %v", err)
	}
	in.Stop()
	out, err = in.Run("", "drain")
	if err == nil || !strings.Contains(out, "mailtee is not running") {
		t.Fatalf("drain with no server: %v\n%s", err, out)
	}
}

// fleetDB creates a database and returns the postgres:// URL (with a
// password file) a node's main.cf names.
func fleetDB(t *testing.T, pg *testdb.Server, name string) string {
	pg.CreateDB(name)
	_, url := pg.PassFile(t.TempDir(), name)
	return url
}

// drainNode is a mailtee node of a fleet for the drain tests: its own
// name, port and queue; the rest of main.cf shared.
func drainNode(t *testing.T, name, url, shared string, files map[string]string) *instance {
	t.Helper()
	in := newInstance(t, fmt.Sprintf(`myhostname = %s
ledger_database = %s
fleet_heartbeat_interval = 1s
fleet_node_timeout = 5s
`, name, url)+shared, files)
	in.MarkStarts = true
	return in
}

// msgIDs counts the deliveries a sink saw by Message-ID and recipient.
func msgIDs(s *sink) map[string]int {
	re := regexp.MustCompile(`(?im)^Message-ID:\s*<([^>]+)>`)
	out := map[string]int{}
	for _, m := range s.Messages() {
		id := "?"
		if g := re.FindStringSubmatch(m.Data); g != nil {
			id = g[1]
		}
		for _, r := range m.To {
			out[id+" "+strings.ToLower(r)]++
		}
	}
	return out
}

func idMessage(id, subject string) string {
	return "From: sender@down.example\r\nTo: someone\r\nMessage-ID: <" + id + ">\r\nSubject: " + subject + "\r\n\r\nHello.\r\n"
}

// A node with deferred mail is drained to another: the one recipient
// delivered before is not delivered again, every other (message,
// recipient) exactly once by the other node once the next hop is back;
// a copy's failure goes to postmaster there, never to the sender; a
// forward-phase message keeps its marking and its settings record; the
// drained node exits, and the report shows each message once.
func testDrainToNode(t *testing.T, pg *testdb.Server, url string) {
	up := newSink(t, "", nil)
	downPort := freePort(t)
	shared := `transport_maps = hash:transport
recipient_bcc_maps = hash:bcc
dual_delivery_phase = dual
dual_delivery_phase_maps = hash:phases
maximal_queue_lifetime = 1d
`
	files := map[string]string{
		"transport": fmt.Sprintf("up.example smtp:[127.0.0.1]:%d\ndown.example smtp:[127.0.0.1]:%d\n", up.Port(), downPort),
		"bcc":       "user@up.example copy@down.example\nfwd@test.example fwd@down.example\n",
		"phases":    "fwd@test.example forward\n",
	}
	a := drainNode(t, "a.test.example", url, shared, files)
	b := drainNode(t, "b.test.example", url, shared, files)
	for _, in := range []*instance{a, b} {
		cf := filepath.Join(in.Dir, "main.cf")
		c, _ := os.ReadFile(cf)
		os.WriteFile(cf, regexp.MustCompile(`hash:([a-z])`).ReplaceAll(c, []byte("hash:"+in.Dir+"/$1")), 0o644)
	}
	a.Start()
	b.Start()

	// Refused: to a node that does not exist, or to itself.
	out, err := a.Run("", "drain", "--to", "c.test.example")
	if err == nil || !strings.Contains(out, "b.test.example (serving)") || !strings.Contains(out, "a.test.example (this node, serving)") {
		t.Fatalf("drain to an unknown node: %v\n%s", err, out)
	}

	send := func(id string, to ...string) {
		t.Helper()
		if err := harnessSend(a.Addr(), "sender@down.example", to, idMessage(id, id)); err != nil {
			t.Fatal(err)
		}
	}
	send("m1@test", "one@up.example", "two@down.example")
	send("m2@test", "user@up.example")
	send("m3@test", "fwd@test.example")
	waitUntil(t, "the first deliveries and deferrals on a", 20*time.Second, func() bool {
		return up.Total() == 2 && strings.Count(a.Log.String(), "status=deferred") >= 3
	})
	list, _ := a.Run("", "queue", "list")
	arrivals := regexp.MustCompile(`(?m)^([0-9A-F]+)[*!]?\s`).FindAllStringSubmatch(list, -1)
	if len(arrivals) != 3 {
		t.Fatalf("a's queue:\n%s", list)
	}
	settingsA, _ := filepath.Glob(filepath.Join(a.Dir, "queue", "settings", "*.json"))

	out, err = a.Run("", "drain", "--to", "b.test.example", "--wait", "3s")
	if err != nil {
		t.Fatalf("drain: %v\n%s\nlog of a:\n%s", err, out, a.Log.String())
	}
	for _, want := range []string{"closing the SMTP listeners", "handing off to b.test.example", "done: the queue is empty; 3 of 3 messages handed to b.test.example"} {
		if !strings.Contains(out, want) {
			t.Errorf("drain's output lacks %q:\n%s", want, out)
		}
	}
	if err := a.WaitExit(20 * time.Second); err != nil {
		t.Fatalf("a did not exit after the drain: %v\n%s", err, a.Log.String())
	}
	if err := harnessSend(a.Addr(), "x@down.example", []string{"one@up.example"}, idMessage("late@test", "late")); err == nil {
		t.Error("a drained node accepted mail")
	}
	var state string
	pg.DB(dbName(url)).QueryRow(`SELECT state FROM fleet_nodes WHERE name = 'a.test.example'`).Scan(&state)
	if state != "stopped" {
		t.Errorf("a's state in fleet_nodes: %q, want stopped", state)
	}
	waitUntil(t, "b to take the three messages", 20*time.Second, func() bool {
		return strings.Count(b.Log.String(), "from fleet node a.test.example") == 3
	})
	// b finishes them under a's settings: the record is there too.
	for _, p := range settingsA {
		if _, err := os.Stat(filepath.Join(b.Dir, "queue", "settings", filepath.Base(p))); err != nil {
			t.Errorf("a's settings record %s not stored on b: %v", filepath.Base(p), err)
		}
	}
	blist, _ := b.Run("", "queue", "list")
	for _, want := range []string{"two@down.example", "copy@down.example", "fwd@down.example"} {
		if !strings.Contains(blist, want) {
			t.Errorf("b's queue lacks %s:\n%s", want, blist)
		}
	}

	// The next hop comes back; it refuses the copy for good.
	down := newSink(t, fmt.Sprintf("127.0.0.1:%d", downPort), nil)
	down.SetRcptErr("copy@down.example", &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"})
	b.Run("", "queue", "flush")
	waitUntil(t, "b to deliver the rest", 30*time.Second, func() bool {
		l, _ := b.Run("", "queue", "list")
		return !strings.Contains(l, "@") && len(b.MaildirMessages("admin")) > 0
	})
	got := msgIDs(down)
	for k, v := range msgIDs(up) {
		got[k] += v
	}
	want := map[string]int{"m1@test one@up.example": 1, "m1@test two@down.example": 1, "m2@test user@up.example": 1, "m3@test fwd@down.example": 1}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("%s delivered %d times, want %d", k, got[k], n)
		}
	}
	for k, n := range got {
		if want[k] == 0 {
			t.Errorf("unexpected delivery %s (%d)", k, n)
		}
	}
	if n := len(b.MaildirMessages("fwd")); n != 0 {
		t.Errorf("the forward-phase message was delivered to b's mailbox too (%d)", n)
	}
	pm := b.MaildirMessages("admin")
	if len(pm) != 1 || !strings.Contains(pm[0], "copy@down.example") {
		t.Errorf("postmaster's notices on b: %q", pm)
	}
	if n := down.Count("sender@down.example"); n != 0 {
		t.Errorf("the sender got %d notices about a copy", n)
	}

	// Each message once in the report, with the deliveries of both
	// nodes: a's m1 to one@up.example and b's to two@down.example.
	if !ledgerInPostgres(t, pg, url) {
		t.Log("the ledger is not kept in PostgreSQL on this tree (pgledger not merged): report check skipped")
		return
	}
	// (exit 1: the copy's failure is a miss)
	rep, _ := b.Run("", "report")
	if !regexp.MustCompile(`messages accepted: +3 `).MatchString(rep) {
		t.Errorf("the report does not count 3 messages:\n%s", rep)
	}
	for _, id := range arrivals {
		if n := strings.Count(rep, id[1]+": from="); n != 1 {
			t.Errorf("a's %s appears %d times in the report:\n%s", id[1], n, rep)
		}
	}
	for _, r := range []string{"to=<one@up.example>", "to=<two@down.example>", "to=<fwd@down.example>", "to=<copy@down.example> [copy], bounced"} {
		if strings.Count(rep, r) != 1 {
			t.Errorf("the report does not show %s once:\n%s", r, rep)
		}
	}
}

// harnessSend sends with a short dial timeout: a drained node refuses.
func harnessSend(addr, from string, to []string, body string) error {
	return harness.Client{DialTimeout: 3 * time.Second, Deadline: 30 * time.Second}.Send(addr, from, to, body)
}

// ledgerInPostgres says whether the nodes' ledger went to PostgreSQL.
func ledgerInPostgres(t *testing.T, pg *testdb.Server, url string) bool {
	db := pg.DB(dbName(url))
	var n int
	if err := db.QueryRow(`SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'public' AND table_name NOT LIKE 'fleet_%'`).Scan(&n); err != nil {
		t.Logf("ledger tables: %v", err)
		return false
	}
	return n > 0
}

func dbName(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return ""
	}
	return strings.TrimPrefix(p.Path, "/")
}

// A node killed with -9 in the middle of its hand-off, restarted and
// drained again: every message reaches its recipient exactly once.
func testDrainKilledMidway(t *testing.T, url string) {
	downPort := freePort(t)
	shared := "transport_maps = hash:transport\nmaximal_queue_lifetime = 1d\n"
	a := drainNode(t, "a.test.example", url, shared, nil)
	b := drainNode(t, "b.test.example", url, shared, nil)
	for _, in := range []*instance{a, b} {
		in.WriteFile("transport", fmt.Sprintf("down.example smtp:[127.0.0.1]:%d\n", downPort))
		cf := filepath.Join(in.Dir, "main.cf")
		c, _ := os.ReadFile(cf)
		os.WriteFile(cf, []byte(strings.ReplaceAll(string(c), "hash:transport", "hash:"+in.Dir+"/transport")), 0o644)
	}
	a.Start()
	b.Start()
	const n = 120
	for i := range n {
		if err := harnessSend(a.Addr(), "s@down.example", []string{fmt.Sprintf("r%d@down.example", i%7)}, idMessage(fmt.Sprintf("k%d@test", i), "k")); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, "a's deferrals", 30*time.Second, func() bool {
		return strings.Count(a.Log.String(), "status=deferred") >= n
	})
	done := make(chan string, 1)
	go func() {
		out, _ := a.Run("", "drain", "--to", "b.test.example", "--wait", "1s")
		done <- out
	}()
	waitUntil(t, "the hand-off to begin", 30*time.Second, func() bool {
		return strings.Count(a.Log.String(), "handed to b.test.example") >= 10
	})
	a.Kill()
	<-done
	handed := strings.Count(a.Log.String(), "handed to b.test.example")
	t.Logf("a killed after %d hand-offs logged", handed)

	a.Start()
	out, err := a.Run("", "drain", "--to", "b.test.example", "--wait", "1s")
	if err != nil {
		t.Fatalf("second drain: %v\n%s\n%s", err, out, a.Log.String())
	}
	if err := a.WaitExit(20 * time.Second); err != nil {
		t.Fatal(err)
	}
	down := newSink(t, fmt.Sprintf("127.0.0.1:%d", downPort), nil)
	waitUntil(t, "b to deliver everything", 60*time.Second, func() bool {
		b.Run("", "queue", "flush")
		return len(msgIDs(down)) >= n && !strings.Contains(must2(b.Run("", "queue", "list")), "@")
	})
	time.Sleep(time.Second)
	got := msgIDs(down)
	for i := range n {
		k := fmt.Sprintf("k%d@test r%d@down.example", i, i%7)
		if got[k] != 1 {
			t.Errorf("%s delivered %d times, want 1", k, got[k])
		}
	}
	if len(got) != n {
		t.Errorf("%d (message, recipient) delivered, want %d", len(got), n)
	}
}

func must2(s string, _ error) string { return s }
