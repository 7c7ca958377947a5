package users_test

import (
	"errors"
	"os"
	"os/exec"
	"testing"

	"github.com/mailtee/mailtee/internal/users"
	"github.com/mailtee/mailtee/internal/users/userstest"
)

// Both ways to the name service agree, whichever one this build uses.
func TestBackendsAgree(t *testing.T) {
	if _, err := exec.LookPath("getent"); err != nil {
		t.Skip("no getent")
	}
	name := uniqueName("mtboth")
	userstest.AddNSSUser(t, name, 61240, 61241, "/srv/"+name)
	for _, n := range []string{"root", "nobody", name, "no-such-user-mailtee"} {
		u1, ok1, err1 := users.SysLookup(n)
		u2, ok2, err2 := users.GetentLookup(n)
		if u1 != u2 || ok1 != ok2 || err1 != nil || err2 != nil {
			t.Errorf("%s: %s %+v %v %v; getent %+v %v %v", n, users.Backend, u1, ok1, err1, u2, ok2, err2)
		}
	}
	// getent takes digits for a uid; getpwnam does not.
	if _, ok, err := users.GetentLookup("0"); ok || err != nil {
		t.Errorf(`getent lookup of "0" = %v, %v; want not found`, ok, err)
	}
}

// A name service that fails is an error, not "no such user", so that
// local delivery defers instead of bouncing (Postfix's mypwnam_err). Only
// getpwnam_r can tell: getent exits 2 for both.
func TestLookupFailure(t *testing.T) {
	if users.Backend != "getpwnam_r" {
		t.Skip("getent cannot tell a failed lookup from a missing user")
	}
	// While it runs, every lookup of an unknown name on the machine
	// fails: tests of other packages, run at the same time by go test,
	// would see their unknown users deferred. So it runs on demand.
	if os.Getenv("MAILTEE_TEST_NSS_FAIL") == "" {
		t.Skip("set MAILTEE_TEST_NSS_FAIL=1 to break the machine's NSS for a moment and test that")
	}
	userstest.FailingNSS(t)
	name := uniqueName("mtfail")
	_, ok, err := users.Lookup(name)
	var le *users.LookupError
	if ok || !errors.As(err, &le) {
		t.Fatalf("Lookup(%s) with a failing backend = %v, %v; want a *LookupError", name, ok, err)
	}
	t.Logf("%v", err)
	if u, ok, err := users.Lookup("root"); !ok || err != nil || u.UID != 0 {
		t.Errorf("root with a failing extra backend = %+v %v %v", u, ok, err)
	}
	// The error was not remembered: the same name asked again is asked
	// again.
	if _, _, err := users.Lookup(name); err == nil {
		t.Errorf("second lookup: no error")
	}
}

func BenchmarkLookup(b *testing.B) {
	for _, bc := range []struct {
		name string
		f    func(string) (users.User, bool, error)
	}{
		{users.Backend, users.SysLookup},
		{"getent", users.GetentLookup},
		{"cached", users.Lookup},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				if _, ok, err := bc.f("root"); !ok || err != nil {
					b.Fatal(ok, err)
				}
			}
		})
	}
}
