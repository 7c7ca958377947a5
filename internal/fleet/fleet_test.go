package fleet

import (
	"strings"
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
