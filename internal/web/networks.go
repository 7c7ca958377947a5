package web

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/mailtee/mailtee/internal/pflist"
)

// Networks is metrics_networks: who may reach the listener at all.
type Networks struct {
	elems []netElem
}

type netElem struct {
	prefix netip.Prefix
	neg    bool
}

// ParseNetworks reads a metrics_networks value in mynetworks' syntax
// (postconf(5)): addresses and network/prefix elements separated by
// commas or blanks, IPv6 in brackets ("[::1]/128"), and "!" before an
// element to exclude it. As in Postfix's match lists the first element
// that matches decides, so "!10.0.0.9, 10.0.0.0/8" admits the network
// but that address. /file/name and type:table elements, which
// mynetworks also takes, are refused: a list of who may read the
// ledger belongs in main.cf, where check shows it.
func ParseNetworks(v string) (Networks, error) {
	var n Networks
	for _, el := range pflist.Split(v) {
		neg := false
		rest := el
		for strings.HasPrefix(rest, "!") {
			neg = !neg
			rest = rest[1:]
		}
		if pflist.IsTable(rest) || strings.HasPrefix(rest, "/") {
			return Networks{}, fmt.Errorf("%q: metrics_networks takes addresses and networks only, not files or tables; list them in main.cf", el)
		}
		if strings.ContainsAny(rest, "[]") {
			addr, _, _ := strings.Cut(rest, "/")
			if !strings.HasPrefix(addr, "[") || strings.Index(addr, "]") != len(addr)-1 || strings.Count(rest, "[") != 1 {
				return Networks{}, fmt.Errorf("%q: an IPv6 address goes in brackets before the prefix, as [2001:db8::]/32", el)
			}
		}
		p, err := pflist.ParseNetwork(rest)
		if err != nil {
			return Networks{}, err
		}
		n.elems = append(n.elems, netElem{p, neg})
	}
	return n, nil
}

// MustParseNetworks is ParseNetworks for constants in tests and
// defaults; it panics on a bad value.
func MustParseNetworks(v string) Networks {
	n, err := ParseNetworks(v)
	if err != nil {
		panic(err)
	}
	return n
}

// Contains reports whether a is admitted: the first element that
// matches decides, and no match refuses.
func (n Networks) Contains(a netip.Addr) bool {
	a = a.Unmap()
	for _, e := range n.elems {
		if e.prefix.Contains(a) {
			return !e.neg
		}
	}
	return false
}

// Empty reports whether the list admits no one for lack of elements.
func (n Networks) Empty() bool { return len(n.elems) == 0 }

// String gives the list back in Postfix's syntax.
func (n Networks) String() string {
	var b strings.Builder
	for i, e := range n.elems {
		if i > 0 {
			b.WriteString(", ")
		}
		if e.neg {
			b.WriteByte('!')
		}
		if e.prefix.Addr().Is6() {
			fmt.Fprintf(&b, "[%s]/%d", e.prefix.Addr(), e.prefix.Bits())
		} else {
			b.WriteString(e.prefix.String())
		}
	}
	return b.String()
}
