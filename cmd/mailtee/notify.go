package main

import (
	"net"
	"os"
	"strings"
)

// notifier tells systemd about serve's state with sd_notify's protocol
// (sd_notify(3)): one datagram per state change to the unix socket
// named by NOTIFY_SOCKET ("@..." is in the abstract namespace), so that
// the unit can be Type=notify: started means listening, and a reload
// or a stop is seen as one. Without NOTIFY_SOCKET it does nothing.
type notifier struct {
	addr string
}

// newNotifier reads NOTIFY_SOCKET, which serve must do before it trims
// its environment to import_environment; the variable is unset then,
// as sd_notify's unset_environment does, so no command inherits it.
func newNotifier() *notifier {
	addr := os.Getenv("NOTIFY_SOCKET")
	os.Unsetenv("NOTIFY_SOCKET")
	if addr == "" || !strings.HasPrefix(addr, "/") && !strings.HasPrefix(addr, "@") {
		return &notifier{}
	}
	if addr[0] == '@' {
		addr = "\x00" + addr[1:]
	}
	return &notifier{addr: addr}
}

// notify sends state ("READY=1", "RELOADING=1", "STOPPING=1", ...).
// A failure is ignored, as by sd_notify's callers: the service runs on.
func (n *notifier) notify(state string) {
	if n == nil || n.addr == "" {
		return
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: n.addr, Net: "unixgram"})
	if err != nil {
		return
	}
	defer c.Close()
	c.Write([]byte(state))
}
