package config

import (
	"context"
	"fmt"
	"math/bits"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// mynetworks' default, computed as Postfix computes it when main.cf does
// not set it (src/global/mynetworks.c, own_inet_addr.c, and
// src/util/inet_addr_local.c, inet_addr_host.c, inet_proto.c):
//
//   - inet_protocols chooses the address families (ipv4, ipv6, all; empty
//     means none, and then mynetworks is empty);
//   - inet_interfaces chooses the addresses: "all" is every address of
//     every interface that is up, IPv4 first, then IPv6; "loopback-only"
//     the loopback ones among them; otherwise each listed host or
//     address, resolved, sorted and made unique, and each must be the
//     address of a local interface, whose netmask it takes;
//   - mynetworks_style turns each address into a network: host (/32,
//     /128), subnet (the interface's netmask), class (IPv4's natural
//     class A/B/C/D network; IPv6 has no classes and gets its subnet).
//
// The trust this gives is exactly Postfix's: with inet_interfaces =
// 127.0.0.1 at compatibility_level 2 or later, 127.0.0.1/32 and nothing
// else of 127.0.0.0/8.

// ifaceAddr is an address of a local interface with its netmask.
type ifaceAddr struct {
	addr netip.Addr // without zone
	mask []byte     // 4 or 16 bytes
}

// localAddrs lists the addresses of the interfaces that are up, in
// interface order, as getifaddrs(3) gives them to Postfix. A variable so
// that tests can give a fixed host.
var localAddrs = func() ([]ifaceAddr, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	var out []ifaceAddr
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagUp == 0 {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			return nil, err
		}
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip, ok := netip.AddrFromSlice(ipn.IP)
			if !ok || ip.IsUnspecified() {
				continue
			}
			ip = ip.Unmap()
			mask := []byte(ipn.Mask)
			if ip.Is4() && len(mask) == 16 {
				mask = mask[12:]
			}
			out = append(out, ifaceAddr{addr: ip, mask: mask})
		}
	}
	return out, nil
}

// lookupHost resolves a host named in inet_interfaces (getaddrinfo in
// Postfix: /etc/hosts, then DNS). A variable for tests.
var lookupHost = func(host string) ([]netip.Addr, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
}

// netsKey is the input of one mynetworks computation.
type netsKey struct{ style, interfaces, protocols string }

type netsResult struct {
	value string
	err   error
}

// Mynetworks returns mynetworks as Postfix would use it: the value set in
// main.cf (unexpanded, as Raw), or else the one computed from inet_protocols, inet_interfaces
// and mynetworks_style. The error says why it cannot be computed (Postfix
// stops with a fatal error in the same cases).
func (c *Config) Mynetworks() (string, error) {
	if s, ok := c.set["mynetworks"]; ok {
		return s.Value, nil
	}
	return c.computedNets(netsKey{
		style:      c.getWithout("mynetworks_style", "mynetworks"),
		interfaces: c.getWithout("inet_interfaces", "mynetworks"),
		protocols:  c.getWithout("inet_protocols", "mynetworks"),
	})
}

// defaultNets is mynetworks computed from the defaults alone, as
// `postconf -d mynetworks` shows it (main.cf plays no part there).
func (c *Config) defaultNets() (string, error) {
	e := expander{lookup: func(n string) (string, bool) {
		if n == "mynetworks" {
			return "", false
		}
		return c.Default(n)
	}}
	get := func(name string) string {
		v, _ := e.expand(defaults[name], 0)
		return strings.TrimSpace(v)
	}
	return c.computedNets(netsKey{get("mynetworks_style"), get("inet_interfaces"), get("inet_protocols")})
}

// computedNets computes once per input: listing the interfaces and
// resolving names are system calls.
func (c *Config) computedNets(k netsKey) (string, error) {
	c.netsMu.Lock()
	defer c.netsMu.Unlock()
	if r, ok := c.nets[k]; ok {
		return r.value, r.err
	}
	v, err := computeMynetworks(k.style, k.interfaces, k.protocols)
	if c.nets == nil {
		c.nets = map[netsKey]netsResult{}
	}
	c.nets[k] = netsResult{v, err}
	return v, err
}

// computeMynetworks is mynetworks.c's mynetworks_core over own_inet_addr.c's
// address list.
func computeMynetworks(style, interfaces, protocols string) (string, error) {
	v4, v6, err := families(protocols)
	if err != nil {
		return "", err
	}
	if !v4 && !v6 {
		return "", nil // all protocols disabled: Postfix skips mynetworks
	}
	switch style {
	case "host", "subnet", "class":
	default:
		return "", fmt.Errorf("bad mynetworks_style value: %q; specify exactly one of host, subnet, class", style)
	}
	own, err := ownAddrs(interfaces, v4, v6)
	if err != nil {
		return "", err
	}
	var out []string
	seen := map[string]bool{}
	for _, a := range own {
		n, err := network(a, style)
		if err != nil {
			return "", err
		}
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	return strings.Join(out, " "), nil
}

// families reads inet_protocols as Postfix's inet_proto_init does.
func families(protocols string) (v4, v6 bool, err error) {
	for _, p := range SplitList(protocols) {
		switch p {
		case "all":
			v4, v6 = true, true
		case "ipv4":
			v4 = true
		case "ipv6":
			v6 = true
		default:
			return false, false, fmt.Errorf("inet_protocols: unknown protocol %q; specify ipv4, ipv6 or all", p)
		}
	}
	return v4, v6, nil
}

// ownAddrs is own_inet_addr.c's list: the addresses inet_interfaces
// names, each with its interface's netmask.
func ownAddrs(interfaces string, v4, v6 bool) ([]ifaceAddr, error) {
	local, err := localAddrs()
	if err != nil {
		return nil, fmt.Errorf("cannot list the network interfaces: %w", err)
	}
	// inet_addr_local asks for IPv4 first, then IPv6.
	var all []ifaceAddr
	for _, want4 := range []bool{true, false} {
		if want4 && !v4 || !want4 && !v6 {
			continue
		}
		for _, a := range local {
			if a.addr.Is4() == want4 {
				all = append(all, a)
			}
		}
	}
	if len(all) == 0 {
		return nil, fmt.Errorf("could not find any active network interfaces")
	}
	switch strings.TrimSpace(interfaces) {
	case "all":
		return all, nil
	case "loopback-only":
		var out []ifaceAddr
		for _, a := range all {
			if a.addr.IsLoopback() {
				out = append(out, a)
			}
		}
		return out, nil
	}
	var addrs []netip.Addr
	for _, host := range SplitList(interfaces) {
		found, err := resolveInterface(host, v4, v6)
		if err != nil {
			return nil, err
		}
		addrs = append(addrs, found...)
	}
	// inet_addr_list_uniq: sorted by family (IPv4 first), then address.
	slices.SortFunc(addrs, func(a, b netip.Addr) int { return a.Compare(b) })
	addrs = slices.Compact(addrs)
	out := make([]ifaceAddr, 0, len(addrs))
	for _, a := range addrs {
		i := slices.IndexFunc(all, func(l ifaceAddr) bool { return l.addr == a })
		if i < 0 {
			return nil, fmt.Errorf("parameter inet_interfaces: no local interface found for %s", a)
		}
		out = append(out, all[i])
	}
	return out, nil
}

// resolveInterface is inet_addr_host: "[addr]", an address or a host
// name, keeping the addresses of the enabled families.
func resolveInterface(host string, v4, v6 bool) ([]netip.Addr, error) {
	name := host
	if strings.HasPrefix(name, "[") && strings.HasSuffix(name, "]") {
		name = name[1 : len(name)-1]
	}
	var found []netip.Addr
	if a, err := netip.ParseAddr(name); err == nil {
		found = []netip.Addr{a}
	} else if found, err = lookupHost(name); err != nil {
		found = nil
	}
	var out []netip.Addr
	for _, a := range found {
		a = a.Unmap().WithZone("")
		if a.Is4() && v4 || a.Is6() && v6 {
			out = append(out, a)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("config variable inet_interfaces: host not found: %s", host)
	}
	return out, nil
}

// network is one mynetworks element for an address, as mynetworks_core
// prints it: "a.b.c.d/n" or "[v6addr]/n", host bits cleared.
func network(a ifaceAddr, style string) (string, error) {
	n := a.addr.BitLen()
	switch style {
	case "subnet":
		n = maskBits(a)
	case "class":
		if !a.addr.Is4() {
			n = maskBits(a) // "There are no classes for IPv6."
			break
		}
		switch b := a.addr.As4()[0]; {
		case b < 128:
			n = 8
		case b < 192:
			n = 16
		case b < 224:
			n = 24
		case b < 240:
			n = 4 // class D
		default:
			return "", fmt.Errorf("mynetworks_style = class: unknown address class: %s", a.addr)
		}
	}
	p := netip.PrefixFrom(a.addr, n).Masked()
	if a.addr.Is6() {
		return "[" + p.Addr().String() + "]/" + strconv.Itoa(n), nil
	}
	return p.String(), nil
}

// maskBits is the prefix length of an interface's netmask, counted as
// mynetworks_core does: IPv4 up to the lowest set bit, IPv6 the leading
// ones.
func maskBits(a ifaceAddr) int {
	if a.addr.Is4() {
		if len(a.mask) != 4 {
			return 32
		}
		m := uint32(a.mask[0])<<24 | uint32(a.mask[1])<<16 | uint32(a.mask[2])<<8 | uint32(a.mask[3])
		if m == 0 {
			return 0
		}
		return 32 - bits.TrailingZeros32(m)
	}
	n := 0
	for _, b := range a.mask {
		if b == 0xff {
			n += 8
			continue
		}
		n += bits.LeadingZeros8(^b)
		break
	}
	return n
}
