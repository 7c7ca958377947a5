package master

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/mailtee/mailtee/internal/config"
	"github.com/mailtee/mailtee/internal/maillog"
	"github.com/mailtee/mailtee/internal/mastercf"
)

// listenError explains a listener that cannot be opened: where its port
// comes from, and, when the address is taken, which process holds it (a
// Postfix still running is the usual one during a switch).
func listenError(addr, source string, err error) error {
	msg := fmt.Sprintf("listen on %s (%s): %v", addr, source, err)
	if errors.Is(err, syscall.EADDRINUSE) {
		_, port, _ := net.SplitHostPort(addr)
		if who := portOwners(port); who != "" {
			msg += "; it is held by " + who
		}
		msg += "; stop that server (for Postfix: postfix stop), or choose another port"
	}
	if errors.Is(err, syscall.EACCES) {
		msg += "; ports below 1024 need root (or CAP_NET_BIND_SERVICE)"
	}
	return errors.New(msg)
}

// portSource says where smtpd_port's value comes from.
func portSource(cfg *config.Config) string {
	if st, ok := cfg.Set("smtpd_port"); ok {
		return fmt.Sprintf("smtpd_port = %s, %s, line %d", st.Value, cfg.File, st.Line)
	}
	return "smtpd_port's default, " + cfg.Get("smtpd_port")
}

// portOwners names the processes listening on TCP port (decimal), as
// "master (pid 812)", from /proc: the sockets in LISTEN state with that
// local port, then the processes holding them. Empty when unknown (not
// Linux, or another user's process while not root).
func portOwners(port string) string {
	p, err := strconv.Atoi(port)
	if err != nil {
		return ""
	}
	inodes := map[string]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		listeningInodes(f, p, inodes)
	}
	if len(inodes) == 0 {
		return ""
	}
	procs, _ := filepath.Glob("/proc/[0-9]*")
	var who []string
	seen := map[string]bool{}
	for _, dir := range procs {
		fds, err := os.ReadDir(filepath.Join(dir, "fd"))
		if err != nil {
			continue
		}
		for _, fd := range fds {
			target, err := os.Readlink(filepath.Join(dir, "fd", fd.Name()))
			if err != nil || !strings.HasPrefix(target, "socket:[") {
				continue
			}
			if !inodes[strings.TrimSuffix(strings.TrimPrefix(target, "socket:["), "]")] {
				continue
			}
			comm, _ := os.ReadFile(filepath.Join(dir, "comm"))
			pid := filepath.Base(dir)
			// comm is any user's to set (prctl): no escape sequence of
			// theirs reaches the administrator's terminal or log.
			if s := fmt.Sprintf("%s (pid %s)", maillog.Printable(strings.TrimSpace(string(comm))), pid); !seen[s] {
				seen[s] = true
				who = append(who, s)
			}
			break
		}
	}
	return strings.Join(who, ", ")
}

// listeningInodes adds the inodes of the sockets of a /proc/net/tcp file
// that listen (state 0A) on port.
func listeningInodes(file string, port int, into map[string]bool) {
	f, err := os.Open(file)
	if err != nil {
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 || fields[3] != "0A" {
			continue
		}
		_, hexPort, ok := strings.Cut(fields[1], ":")
		if !ok {
			continue
		}
		if n, err := strconv.ParseUint(hexPort, 16, 16); err == nil && int(n) == port {
			into[fields[9]] = true
		}
	}
}

// portSource says where a listener's address comes from, for errors.
func (svc *smtpService) portSource() string {
	if svc.line == 0 {
		return portSource(svc.cfg)
	}
	src := fmt.Sprintf("master.cf service %s, line %d", svc.name, svc.line)
	if _, port, _ := mastercf.SplitEndpoint(svc.name); port == "smtp" {
		if _, set := svc.cfg.Set("smtpd_port"); set {
			src += ", its port from " + portSource(svc.cfg)
		}
	}
	return src
}
