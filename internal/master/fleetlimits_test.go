package master

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/config"
	"github.com/mailtee/mailtee/internal/maillog"
	"github.com/mailtee/mailtee/internal/pace"
	"github.com/mailtee/mailtee/internal/ratelimit"
	"github.com/mailtee/mailtee/internal/testdb"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *syncBuf) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncBuf) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// fleetNode is the part of a Server the shared limits touch: the
// fleet, the pacer (built by pacer, as New does) and the exchange of
// suspensions that savePacing starts.
func fleetNode(t *testing.T, url, name, shared string) (*Server, *syncBuf) {
	t.Helper()
	cfg := config.Parse("/etc/postfix", "/etc/postfix/main.cf",
		[]byte("ledger_database = "+url+"\nfleet_heartbeat_interval = 1s\nfleet_shared_limits = "+shared+
			"\nqueue_directory = "+t.TempDir()+"\n")) // savePacing writes there
	out := &syncBuf{}
	s := &Server{cfg: cfg, host: name, log: maillog.New(out, name)}
	var err error
	if s.fleet, err = s.openFleet(cfg); err != nil || s.fleet == nil {
		t.Fatalf("openFleet: %v, %v", s.fleet, err)
	}
	s.pace = s.pacer(cfg, nil)
	t.Cleanup(s.closeFleet)
	return s, out
}

// In a fleet the pacer takes its limits from the fleet (unless
// fleet_shared_limits = no), and a mailbox one node's pacer suspended
// is held back by the other's within a heartbeat or two.
func TestFleetSharedLimits(t *testing.T) {
	pg := testdb.Postgres(t)
	pg.CreateDB("fleet")
	_, url := pg.PassFile(t.TempDir(), "fleet")
	if s, _ := fleetNode(t, url, "alone.example", "no"); s.limits != nil {
		t.Errorf("fleet_shared_limits = no: the limits are shared")
	}
	a, _ := fleetNode(t, url, "a.example", "yes")
	b, blog := fleetNode(t, url, "b.example", "yes")
	if a.limits == nil || b.limits == nil {
		t.Fatal("fleet_shared_limits = yes: no shared limits")
	}
	stop := make(chan struct{})
	defer close(stop)
	go a.savePacing(stop)
	go b.savePacing(stop)
	box := "smtp:google|anna@example.com"
	until := time.Now().Add(time.Minute)
	a.pace.Load(pace.State{Mailboxes: map[string]ratelimit.Suspension{box: {Until: until, Reason: "450 4.2.1 over its rate"}}}, time.Now())
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, ok := b.pace.Save(time.Now()).Mailboxes[box]; ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node b's pacer does not hold %s back 10s after node a's was told to: %s", box, blog)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(blog.String(), box+": deliveries suspended until "+until.Format(time.TimeOnly)+" by node a.example: 450 4.2.1 over its rate") {
		t.Errorf("node b did not log the suspension it took from a:\n%s", blog)
	}
}
