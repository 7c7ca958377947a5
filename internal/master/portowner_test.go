package master

import (
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
)

// A port taken by another listener is explained: which process holds it
// (here this test binary), and what to do.
func TestListenErrorNamesHolder(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	addr := l.Addr().String()
	_, err = net.Listen("tcp", addr)
	if err == nil {
		t.Fatal("second listen succeeded")
	}
	msg := listenError(addr, "smtpd_port in main.cf, line 3", err).Error()
	pid := "pid " + strconv.Itoa(os.Getpid())
	for _, want := range []string{addr, "smtpd_port in main.cf, line 3", "address already in use", pid, "postfix stop"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q: %s", want, msg)
		}
	}
}

// The name of the process that holds a port is any user's to choose
// (prctl PR_SET_NAME): the listen error shows it without its control
// characters, so that no escape sequence reaches the administrator's
// terminal or log.
func TestPortOwnerPrintable(t *testing.T) {
	orig, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		t.Skip("no /proc/self/comm")
	}
	if err := os.WriteFile("/proc/self/comm", []byte("\x1b]0;pwn\x07x"), 0); err != nil {
		t.Skipf("cannot set the process name: %v", err)
	}
	defer os.WriteFile("/proc/self/comm", []byte(strings.TrimSpace(string(orig))), 0)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	who := portOwners(port)
	if who == "" {
		t.Fatal("no owner found for the test's own listener")
	}
	if strings.ContainsAny(who, "\x1b\x07") {
		t.Errorf("owner %q carries control characters", who)
	}
}
