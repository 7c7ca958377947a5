package mastercf

import (
	"bufio"
	"errors"
	"net/netip"
	"os"
	"strings"
)

// SplitEndpoint splits an inet service's name as host_port.c does with no
// default host: "port" (host ""), "host:port" (at the last colon),
// "[host]:port" and "[ipv6:addr]:port". A port that starts with a digit
// must be all digits.
func SplitEndpoint(name string) (host, port string, err error) {
	if strings.HasPrefix(name, "[") {
		inner, rest, ok := strings.Cut(name[1:], "]")
		if !ok {
			return "", "", errors.New(`missing "]"`)
		}
		if rest != "" && rest[0] != ':' {
			return "", "", errors.New(`garbage after "]"`)
		}
		host, port = inner, strings.TrimPrefix(rest, ":")
		if v6, ok := cutPrefixFold(host, "ipv6:"); ok {
			host = v6
			if a, err := netip.ParseAddr(host); err != nil || !a.Is6() {
				return "", "", errors.New("malformed IPv6 address")
			}
		}
	} else if i := strings.LastIndexByte(name, ':'); i >= 0 {
		host, port = name[:i], name[i+1:]
	} else {
		port = name
	}
	if port == "" {
		return "", "", errors.New("missing service information")
	}
	if host != "" && !validHost(host) {
		return "", "", errors.New("valid hostname or network address required")
	}
	if port[0] >= '0' && port[0] <= '9' && !allDigits(port) {
		return "", "", errors.New("garbage after numerical service")
	}
	return host, port, nil
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
		return s[len(prefix):], true
	}
	return s, false
}

// validHost accepts an address or a host name (letters, digits, '-',
// '.', '_'), as valid_hostaddr and valid_hostname do for the ASCII case.
func validHost(h string) bool {
	if _, err := netip.ParseAddr(h); err == nil {
		return true
	}
	if len(h) > 255 {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(h, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c >= 0x80) {
				return false
			}
		}
	}
	return true
}

// ServicesFile is the services database that ServicePort reads.
var ServicesFile = "/etc/services"

// builtinPorts answer for the services a mail host needs when the
// services database lacks them (a minimal container has no
// /etc/services): the numbers IANA assigns.
var builtinPorts = map[string]string{"smtp": "25", "submission": "587", "smtps": "465", "submissions": "465", "lmtp": "24"}

// ServicePort resolves a TCP port written as a number or a service name,
// as getservbyname(3) does for master(8): the services database first
// (a name or an alias of a "/tcp" entry), then mailtee's built-in few.
func ServicePort(port string) (string, bool) {
	if allDigits(port) {
		return port, true
	}
	if p, ok := lookupServices(ServicesFile, port); ok {
		return p, true
	}
	p, ok := builtinPorts[port]
	return p, ok
}

// lookupServices reads services(5): "name port/protocol aliases... #
// comment".
func lookupServices(file, name string) (string, bool) {
	f, err := os.Open(file)
	if err != nil {
		return "", false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		fs := strings.Fields(line)
		if len(fs) < 2 {
			continue
		}
		port, proto, ok := strings.Cut(fs[1], "/")
		if !ok || proto != "tcp" || !allDigits(port) {
			continue
		}
		if fs[0] == name || contains(fs[2:], name) {
			return port, true
		}
	}
	return "", false
}
