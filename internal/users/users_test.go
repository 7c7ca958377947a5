package users_test

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/users"
	"github.com/mailtee/mailtee/internal/users/userstest"
)

// uniqueName is a login name no other run uses.
func uniqueName(prefix string) string {
	return fmt.Sprintf("%s%d", prefix, time.Now().UnixNano()%1e9)
}

func TestLookupRoot(t *testing.T) {
	u, ok, err := users.Lookup("root")
	if err != nil || !ok {
		t.Fatalf("Lookup(root) = %v, %v, %v", u, ok, err)
	}
	if u.UID != 0 || u.Home == "" || u.Shell == "" {
		t.Errorf("root = %+v", u)
	}
}

func TestLookupUnknown(t *testing.T) {
	for _, name := range []string{"no-such-user-mailtee", "", "a:b", "a\nb", "-x", "0", "a/b", "a\x00b"} {
		u, ok, err := users.Lookup(name)
		if ok || err != nil {
			t.Errorf("Lookup(%q) = %+v, %v, %v; want not found", name, u, ok, err)
		}
	}
}

// TestLookupNSSOnly is the promise: a user that only the name
// service knows (not /etc/passwd) is found with uid, home and shell, and a
// user added while the process runs is found within NotFoundTTL.
func TestLookupNSSOnly(t *testing.T) {
	name := uniqueName("mtnss")
	userstest.AddNSSUser(t, name, 61234, 61235, "/home/"+name)
	if b, _ := os.ReadFile("/etc/passwd"); strings.Contains(string(b), name+":") {
		t.Fatalf("%s is in /etc/passwd", name)
	}
	u, ok, err := users.Lookup(name)
	if err != nil || !ok {
		t.Fatalf("Lookup(%s) via %s = %+v, %v, %v", name, users.Backend, u, ok, err)
	}
	want := users.User{Name: name, UID: 61234, GID: 61235, Home: "/home/" + name, Shell: "/bin/sh"}
	if u != want {
		t.Errorf("Lookup = %+v, want %+v", u, want)
	}

	// Asked before it exists, then created: found without a restart,
	// within seconds.
	late := uniqueName("mtlate")
	if _, ok, err := users.Lookup(late); ok || err != nil {
		t.Fatalf("Lookup(%s) before it exists = %v, %v", late, ok, err)
	}
	userstest.AddNSSUser(t, late, 61236, 61236, "/home/"+late)
	start := time.Now()
	for {
		_, ok, err := users.Lookup(late)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			break
		}
		if time.Since(start) > users.NotFoundTTL+3*time.Second {
			t.Fatalf("%s not found %v after it was added", late, time.Since(start))
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("new user found after %v (%s)", time.Since(start).Round(time.Millisecond), users.Backend)
}

func TestLookupErrorType(t *testing.T) {
	var le *users.LookupError
	err := error(&users.LookupError{Name: "x", Err: errors.New("boom")})
	if !errors.As(err, &le) || !strings.Contains(err.Error(), "nsswitch.conf") {
		t.Errorf("%v", err)
	}
}

func TestLookupID(t *testing.T) {
	u, ok, err := users.LookupID(0)
	if err != nil || !ok || u.Name != "root" || u.Home == "" {
		t.Fatalf("uid 0: %+v %v %v", u, ok, err)
	}
	// An unused uid is not found; glibc may report it as an error of a
	// module (systemd's ENOENT), which defers as Postfix's mypwuid_err.
	if u, ok, _ := users.LookupID(4000000000); ok {
		t.Errorf("an unused uid found: %+v", u)
	}
}
