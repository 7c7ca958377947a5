package fleet

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/testdb"
)

func TestCheckURL(t *testing.T) {
	for _, c := range []struct {
		url string
		bad bool
	}{
		{"postgres://mailtee@db.example/mail?passfile=/etc/mailtee/pgpass", false},
		{"postgresql:///mail?service=mailtee", false},
		{"postgres://mailtee:secret@db.example/mail", true},
		{"postgres://mailtee@db.example/mail?password=secret", true},
	} {
		err := CheckURL(c.url)
		if (err != nil) != c.bad {
			t.Errorf("CheckURL(%q) = %v", c.url, err)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("CheckURL(%q) shows the password: %v", c.url, err)
		}
	}
}

// Two nodes see each other alive; a stopped one is not counted; with
// the database gone a node keeps the count it last saw and says so.
func TestHeartbeat(t *testing.T) {
	pg := testdb.Postgres(t)
	pg.CreateDB("fleet")
	_, url := pg.PassFile(t.TempDir(), "fleet")
	var logs []string
	a, err := Open(Options{URL: url, Node: "a", Heartbeat: 100 * time.Millisecond, Log: func(f string, args ...any) { logs = append(logs, f) }})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := Open(Options{URL: url, Node: "b", Heartbeat: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if n, down := a.Alive(); n != 2 || down {
		t.Fatalf("a sees %d alive (down %v), want 2", n, down)
	}
	b.Close()
	time.Sleep(300 * time.Millisecond)
	if n, _ := a.Alive(); n != 1 {
		t.Fatalf("after b stopped, a sees %d alive, want 1", n)
	}
	b, _ = Open(Options{URL: url, Node: "b", Heartbeat: 100 * time.Millisecond})
	defer b.Close()
	time.Sleep(300 * time.Millisecond)
	pg.Stop()
	time.Sleep(400 * time.Millisecond)
	if n, down := a.Alive(); n != 2 || !down {
		t.Fatalf("database down: a sees %d alive (down %v), want 2 and down", n, down)
	}
	if len(logs) == 0 || !strings.Contains(logs[len(logs)-1], "unreachable") {
		t.Fatalf("no warning logged: %q", logs)
	}
	pg.Start()
	time.Sleep(500 * time.Millisecond)
	if n, down := a.Alive(); n != 2 || down {
		t.Fatalf("database back: a sees %d alive (down %v)", n, down)
	}
}

// A node that starts with the database down divides by the count it saw
// before its restart.
func TestAliveRemembered(t *testing.T) {
	pg := testdb.Postgres(t)
	pg.CreateDB("fleet")
	_, url := pg.PassFile(t.TempDir(), "fleet")
	state := t.TempDir() + "/fleet.state"
	o := Options{URL: url, Node: "a", Heartbeat: 100 * time.Millisecond, StateFile: state}
	a, _ := Open(o)
	b, _ := Open(Options{URL: url, Node: "b", Heartbeat: 100 * time.Millisecond})
	defer b.Close()
	time.Sleep(300 * time.Millisecond)
	a.Close()
	pg.Stop()
	a, _ = Open(o)
	defer a.Close()
	if n, down := a.Alive(); n != 2 || !down {
		t.Fatalf("restarted with the database down: %d alive (down %v), want 2 from %s", n, down, state)
	}
}

// Two processes under one name (a main.cf that sets myhostname, copied
// to two hosts) are reported by both, at each heartbeat; a node that
// stops and starts again under its name is not.
func TestTwinNodes(t *testing.T) {
	pg := testdb.Postgres(t)
	pg.CreateDB("fleet")
	_, url := pg.PassFile(t.TempDir(), "fleet")
	var mu sync.Mutex
	logs := map[string][]string{}
	open := func(who, node string) *Fleet {
		f, err := Open(Options{URL: url, Node: node, Heartbeat: 100 * time.Millisecond, Log: func(f string, args ...any) {
			mu.Lock()
			logs[who] = append(logs[who], fmt.Sprintf(f, args...))
			mu.Unlock()
		}})
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	twinned := func(who string) bool {
		mu.Lock()
		defer mu.Unlock()
		for _, l := range logs[who] {
			if strings.Contains(l, "another mailtee process beats under this name") {
				return true
			}
		}
		return false
	}

	c := open("c1", "c")
	time.Sleep(250 * time.Millisecond)
	c.Close()
	c = open("c2", "c")
	time.Sleep(350 * time.Millisecond)
	c.Close()
	if twinned("c1") || twinned("c2") {
		t.Fatalf("a restart was taken for a second process: %q", logs)
	}

	a1, a2 := open("a1", "a"), open("a2", "a")
	defer a1.Close()
	defer a2.Close()
	for i := 0; !(twinned("a1") && twinned("a2")); i++ {
		if i == 100 {
			t.Fatalf("two processes named a, not reported by both: %q", logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
