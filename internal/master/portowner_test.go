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
