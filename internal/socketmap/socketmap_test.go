package socketmap_test

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/maps"
	"github.com/mailtee/mailtee/internal/socketmap"
	"github.com/mailtee/mailtee/internal/socketmap/smtest"
)

// outcome is a lookup's result in a form both clients can give.
type outcome struct {
	value string
	found bool
	err   bool
}

func (o outcome) String() string {
	switch {
	case o.err:
		return "error"
	case o.found:
		return "OK " + o.value
	}
	return "not found"
}

// matrix is the agreement matrix: each key makes the test server reply
// as named, and want is what Postfix's dict_sockmap.c makes of it.
var matrix = []struct {
	key   string
	reply smtest.Reply
	want  outcome
}{
	{"alice@example.org", smtest.OK("alice@mail.example.org"), outcome{"alice@mail.example.org", true, false}},
	{"spaces@example.org", smtest.OK("smtp:[relay.example.org]:2525  two  spaces "), outcome{"smtp:[relay.example.org]:2525  two  spaces ", true, false}},
	{"jürgen@exämple.org", smtest.OK("ünïcødé ✓ value"), outcome{"ünïcødé ✓ value", true, false}},
	{"empty@example.org", smtest.OK(""), outcome{"", true, false}},
	{"nobody@example.org", smtest.NotFound(), outcome{}},
	{"temp@example.org", smtest.Status("TEMP", "database is down"), outcome{err: true}},
	{"timeout@example.org", smtest.Status("TIMEOUT", "backend slow"), outcome{err: true}},
	{"perm@example.org", smtest.Status("PERM", "no such map"), outcome{err: true}},
	{"what@example.org", smtest.Status("MAYBE", "a word Postfix does not know"), outcome{err: true}},
	{"badterm@example.org", smtest.Reply{Raw: []byte("4:OK x;")}, outcome{err: true}},
	{"badlen@example.org", smtest.Reply{Raw: []byte("4x:OK x,")}, outcome{err: true}},
	{"short@example.org", smtest.Reply{Raw: []byte("40:OK x,")}, outcome{err: true}}, // then the server waits: a time-out
	{"huge@example.org", smtest.OK(strings.Repeat("x", 100001)), outcome{err: true}},
	{"closes@example.org", smtest.Reply{Close: true}, outcome{err: true}},
	{"hangs@example.org", smtest.Reply{Hang: true}, outcome{err: true}},
}

func handler(name, key string) smtest.Reply {
	if name != "virtual" {
		return smtest.Status("PERM", "unknown map "+name)
	}
	for _, c := range matrix {
		if c.key == key {
			return c.reply
		}
	}
	if strings.HasPrefix(key, "echo:") {
		return smtest.OK(key)
	}
	return smtest.NotFound()
}

func mailteeLookup(t *testing.T, spec, key string) outcome {
	t.Helper()
	tab, _, err := maps.Open(spec)
	if err != nil {
		t.Error(err) // not Fatal: called from goroutines
		return outcome{err: true}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	v, ok, err := tab.Lookup(ctx, key)
	if err != nil {
		var te interface{ Temporary() bool }
		if !errors.As(err, &te) || !te.Temporary() {
			t.Errorf("%s: error %v is not temporary", key, err)
		}
		return outcome{err: true}
	}
	return outcome{v, ok, false}
}

// postmapLookup asks Postfix's postmap -q. Postfix waits 100 s for a
// server that does not answer (dict_sockmap.c's fixed time limit): a
// postmap still waiting after 2 s has given no answer, which counts as an
// error here (it ends in "time limit exceeded").
func postmapLookup(t *testing.T, spec, key string) outcome {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "postmap", "-q", key, spec)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		return outcome{err: true}
	}
	if err == nil {
		return outcome{strings.TrimSuffix(stdout.String(), "\n"), true, false}
	}
	if strings.Contains(stderr.String(), "fatal:") {
		return outcome{err: true}
	}
	return outcome{}
}

func TestMatrix(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		srv := smtest.New(t, network, handler)
		for _, c := range matrix {
			if got := mailteeLookup(t, srv.Spec("virtual"), c.key); got != c.want {
				t.Errorf("%s %s: mailtee %v, want %v", network, c.key, got, c.want)
			}
		}
	}
}

// TestAgreesWithPostmap asks Postfix's own socketmap client the same
// questions: the answers must be the same.
func TestAgreesWithPostmap(t *testing.T) {
	if _, err := exec.LookPath("postmap"); err != nil {
		t.Skip("postmap (Debian's postfix package) is not installed")
	}
	if testing.Short() {
		t.Skip("runs postmap")
	}
	for _, network := range []string{"tcp", "unix"} {
		srv := smtest.New(t, network, handler)
		spec := srv.Spec("virtual")
		keys := []string{"echo:Mixed.Case@Example.ORG"}
		for _, c := range matrix {
			keys = append(keys, c.key)
		}
		// In parallel: postmap takes a while to start, and two cases
		// wait for a time-out.
		var wg sync.WaitGroup
		for _, key := range keys {
			wg.Add(1)
			go func() {
				defer wg.Done()
				pf := postmapLookup(t, spec, key)
				mt := mailteeLookup(t, spec, key)
				if pf != mt {
					t.Errorf("%s %q: postmap says %v, mailtee %v", network, key, pf, mt)
				}
			}()
		}
		wg.Wait()
		// Both send the key as given, in its own case.
		if n := strings.Count(strings.Join(srv.Keys(), "\n"), "echo:Mixed.Case@Example.ORG"); n != 2 {
			t.Errorf("%s: server saw %q", network, srv.Keys())
		}
	}
}

func TestReusesConnection(t *testing.T) {
	srv := smtest.New(t, "tcp", handler)
	tab, err := socketmap.Open(strings.TrimPrefix(srv.Spec("virtual"), "socketmap:"))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		if _, ok, err := tab.Lookup(context.Background(), "alice@example.org"); !ok || err != nil {
			t.Fatalf("lookup %d: %v %v", i, ok, err)
		}
	}
	if n := srv.Accepted(); n != 1 {
		t.Errorf("5 lookups took %d connections, want 1", n)
	}
}

// TestServerRestart: a kept connection that the server closed is
// replaced within the lookup, so a restart is never an error.
func TestServerRestart(t *testing.T) {
	srv := smtest.New(t, "unix", handler)
	tab, err := socketmap.Open(strings.TrimPrefix(srv.Spec("virtual"), "socketmap:"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, ok, err := tab.Lookup(ctx, "alice@example.org"); !ok || err != nil {
		t.Fatalf("first lookup: %v %v", ok, err)
	}
	srv.Stop()
	if _, _, err := tab.Lookup(ctx, "alice@example.org"); err == nil {
		t.Fatal("lookup with the server down: no error")
	} else if !strings.Contains(err.Error(), "lookup error") {
		t.Errorf("error %q", err)
	}
	if err := tab.Probe(ctx); err == nil {
		t.Error("Probe with the server down: no error")
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	if err := tab.Probe(ctx); err != nil {
		t.Errorf("Probe with the server up: %v", err)
	}
	srv.Stop()
	srv.Start() // the probe's kept connection is now closed by the server
	if v, ok, err := tab.Lookup(ctx, "alice@example.org"); !ok || err != nil || v != "alice@mail.example.org" {
		t.Fatalf("after a restart: %q %v %v", v, ok, err)
	}
}

func TestIdleClose(t *testing.T) {
	defer socketmap.SetTimes(0, 10*time.Second, 0)
	socketmap.SetTimes(0, 100*time.Millisecond, 0)
	closed := make(chan bool, 1)
	srv := smtest.New(t, "tcp", handler)
	tab, _ := socketmap.Open(strings.TrimPrefix(srv.Spec("virtual"), "socketmap:"))
	if _, ok, err := tab.Lookup(context.Background(), "alice@example.org"); !ok || err != nil {
		t.Fatal(ok, err)
	}
	go func() {
		// The server's connection count drops to zero when the client
		// closes its idle connection.
		for i := 0; i < 100; i++ {
			time.Sleep(50 * time.Millisecond)
			if srv.Open() == 0 {
				closed <- true
				return
			}
		}
		closed <- false
	}()
	if !<-closed {
		t.Error("an idle connection stayed open")
	}
}

func TestDeadline(t *testing.T) {
	srv := smtest.New(t, "tcp", handler)
	tab, _ := socketmap.Open(strings.TrimPrefix(srv.Spec("virtual"), "socketmap:"))
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, _, err := tab.Lookup(ctx, "hangs@example.org")
	if err == nil || !strings.Contains(err.Error(), "time limit exceeded") {
		t.Errorf("err = %v", err)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("a 200ms deadline took %v", d)
	}
}

func TestOpenErrors(t *testing.T) {
	for _, name := range []string{
		"inet:127.0.0.1:9000", // the map name is "9000", the port missing
		"inet:127.0.0.1:9000:",
		"unix:relative/sock:name",
		"tcp:127.0.0.1:9000:name",
		"novalue",
		"inet:::1:9000:name",
	} {
		if _, err := socketmap.Open(name); err == nil {
			t.Errorf("Open(%q): no error", name)
		}
	}
	for _, name := range []string{"inet:127.0.0.1:9000:name", "inet:[::1]:9000:name", "unix:/run/x.sock:name", "local:/run/x:name"} {
		if _, err := socketmap.Open(name); err != nil {
			t.Errorf("Open(%q): %v", name, err)
		}
	}
}

// TestAddressLookup: in an address lookup the server is asked once, with
// the full address as written, as Postfix asks a pattern table.
func TestAddressLookup(t *testing.T) {
	srv := smtest.New(t, "tcp", handler)
	tab, _, err := maps.Open(srv.Spec("virtual"))
	if err != nil {
		t.Fatal(err)
	}
	_, ok, err := maps.LookupAddress(context.Background(), maps.List{tab}, "User+Ext@Example.ORG",
		maps.AddressOptions{Delimiters: "+", IsLocal: func(string) bool { return true }})
	if ok || err != nil {
		t.Fatal(ok, err)
	}
	if got := srv.Keys(); len(got) != 1 || got[0] != "User+Ext@Example.ORG" {
		t.Errorf("server was asked %q", got)
	}
}

func TestProbe(t *testing.T) {
	srv := smtest.New(t, "tcp", func(string, string) smtest.Reply { return smtest.Status("PERM", "no") })
	tab, _ := socketmap.Open(strings.TrimPrefix(srv.Spec("virtual"), "socketmap:"))
	var p maps.Prober = tab
	if err := p.Probe(context.Background()); err != nil {
		t.Errorf("a server that answers PERM is there: %v", err)
	}
}

// TestDomainList: in a domain list (mydestination, relay_domains) the
// server is asked with the domain itself, never its parents, as
// match_hostname asks a pattern table.
func TestDomainList(t *testing.T) {
	srv := smtest.New(t, "tcp", handler)
	l, err := maps.NewDomainList([]string{srv.Spec("virtual")}, true)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := l.Match(context.Background(), "a.b.example"); ok || err != nil {
		t.Fatal(ok, err)
	}
	if got := srv.Keys(); len(got) != 1 || got[0] != "a.b.example" {
		t.Errorf("server was asked %q", got)
	}
}

// TestLimits: socketmap_max_reply_size fails a longer reply;
// socketmap_max_query_size makes a longer key "not found" unasked.
func TestLimits(t *testing.T) {
	defer socketmap.SetLimits(100000, 10000)
	socketmap.SetLimits(20, 30)
	srv := smtest.New(t, "tcp", handler)
	tab, _ := socketmap.Open(strings.TrimPrefix(srv.Spec("virtual"), "socketmap:"))
	ctx := context.Background()
	if _, _, err := tab.Lookup(ctx, "alice@example.org"); err == nil || !strings.Contains(err.Error(), "input exceeds size limit") {
		t.Errorf("a 25-byte reply over a 20-byte limit: %v", err)
	}
	if _, ok, err := tab.Lookup(ctx, "echo:"+strings.Repeat("x", 26)); ok || err != nil {
		t.Errorf("a 31-byte key over a 30-byte limit: %v %v", ok, err)
	}
	if v, ok, err := tab.Lookup(ctx, "echo:"+strings.Repeat("x", 8)); !ok || err != nil {
		t.Errorf("a key and reply within the limits: %q %v %v", v, ok, err)
	}
	if n := len(srv.Keys()); n != 2 {
		t.Errorf("the server was asked %d times, want 2", n)
	}
}
