package config

import (
	_ "embed"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// postfixDefaults is `postconf -d` of Postfix 3.7 as Debian 12 ships it:
// the name of every Postfix parameter and its default value, so that a
// stock /etc/postfix/main.cf loads and unknown names can be told apart from
// Postfix parameters that mailtee does not implement. Machine-dependent
// values in it (myhostname, mynetworks, process_id, ...) are computed at run
// time instead, see machineDefaults.
//
//go:embed postfix-3.7-defaults.txt
var postfixDefaultsText string

// mailteeParams are the parameters mailtee adds to Postfix's, with their
// defaults. Documented in README.md.
var mailteeParams = map[string]string{
	// Listening port for every inet_interfaces address. Postfix takes it
	// from master.cf, which mailtee does not read.
	"smtpd_port": "25",
	// Resolvers for MX/A lookups as host:port, separated like any list.
	// Empty means /etc/resolv.conf.
	"dns_servers": "",
	// Tables looked up with each final local mailbox address, after
	// alias expansion: every address in the value gets an automatic
	// copy. Unlike recipient_bcc_maps, it sees list members.
	"mailbox_bcc_maps": "",
	// yes: every message this server accepts is an automatic copy (a
	// dual-delivery relay): delivery failures are reported to
	// postmaster, never to the original sender.
	"dual_delivery_relay": "no",
}

// mailteeDefaults are Postfix parameters whose default differs in mailtee,
// each for a stated reason.
var mailteeDefaults = map[string]string{
	// A separate spool: mailtee must never share one with a Postfix
	// running on the same host.
	"queue_directory": "/var/spool/mailtee",
	// NIS is gone from practice; Postfix's default would make every
	// start-up fail on an unsupported table type.
	"alias_maps": "hash:/etc/aliases",
}

// defaults is the table of all known parameters and their raw default values.
var defaults = func() map[string]string {
	m := make(map[string]string, 1100)
	for _, line := range strings.Split(postfixDefaultsText, "\n") {
		name, value, ok := strings.Cut(line, " = ")
		if !ok {
			name, ok = strings.CutSuffix(line, " =")
			if !ok {
				continue
			}
		}
		m[name] = value
	}
	for k, v := range mailteeParams {
		m[k] = v
	}
	for k, v := range mailteeDefaults {
		m[k] = v
	}
	return m
}()

// machineDefaults computes the defaults that Postfix derives from the host.
func machineDefaults(configDir string) map[string]string {
	host := "localhost"
	if h, err := os.Hostname(); err == nil && h != "" {
		host = strings.ToLower(h)
	}
	// Postfix: "if the hostname is not fully qualified, append .localdomain".
	if !strings.Contains(host, ".") {
		host += ".localdomain"
	}
	return map[string]string{
		"myhostname":       host,
		"config_directory": configDir,
		"process_id":       strconv.Itoa(os.Getpid()),
		"process_name":     "mailtee",
	}
}

// domainOf strips the first label, as Postfix derives mydomain.
func domainOf(host string) string {
	if _, d, ok := strings.Cut(host, "."); ok && d != "" {
		return d
	}
	return "localdomain"
}

// defaultMynetworks computes mynetworks from mynetworks_style as Postfix
// does: "host" lists the machine's own addresses, "subnet" their subnets,
// "class" their class A/B/C networks. Loopback is always included.
func defaultMynetworks(style string) string {
	nets := []string{"127.0.0.0/8"}
	seen := map[string]bool{"127.0.0.0/8": true}
	add := func(p netip.Prefix) {
		s := p.Masked().String()
		if p.Addr().Is6() {
			s = "[" + p.Masked().Addr().String() + "]/" + strconv.Itoa(p.Bits())
		}
		if !seen[s] {
			seen[s] = true
			nets = append(nets, s)
		}
	}
	addrs, _ := net.InterfaceAddrs()
	var v6 []netip.Prefix
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		addr, ok := netip.AddrFromSlice(ipn.IP)
		if !ok {
			continue
		}
		addr = addr.Unmap()
		ones, _ := ipn.Mask.Size()
		if addr.Is4() && addr.IsLoopback() {
			continue
		}
		switch style {
		case "host":
			ones = addr.BitLen()
		case "class":
			if addr.Is4() {
				switch b := addr.As4()[0]; {
				case b < 128:
					ones = 8
				case b < 192:
					ones = 16
				default:
					ones = 24
				}
			}
		}
		p := netip.PrefixFrom(addr, ones)
		if addr.Is6() {
			v6 = append(v6, p)
			continue
		}
		add(p)
	}
	// Postfix lists IPv6 after IPv4, and ::1 first among them.
	add(netip.MustParsePrefix("::1/128"))
	for _, p := range v6 {
		add(p)
	}
	return strings.Join(nets, " ")
}
