package maps

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strings"

	"github.com/mailtee/mailtee/internal/pflist"
)

// DomainList is a Postfix domain match list (match_list(3)), as in
// mydestination, relay_domains or virtual_alias_domains: domain names,
// "!name" exclusions, /file/name (more names, read from the file) and
// type:table (the domain is a key). The first element that matches
// decides.
type DomainList struct {
	elems  []domainElem
	parent bool // parent_domain_matches_subdomains names this list
}

type domainElem struct {
	neg   bool
	name  string // folded; "" when table is set
	table Table
}

// NewDomainList builds a list from a parameter's elements. parent says
// whether "example.com" also matches its subdomains, which Postfix decides
// by parent_domain_matches_subdomains; otherwise ".example.com" must be
// written for them.
func NewDomainList(elems []string, parent bool) (*DomainList, error) {
	d := &DomainList{parent: parent}
	err := expandList(elems, func(neg bool, el string) error {
		if pflist.IsTable(el) {
			t, _, err := Open(el)
			if err != nil {
				return err
			}
			d.elems = append(d.elems, domainElem{neg: neg, table: t})
			return nil
		}
		d.elems = append(d.elems, domainElem{neg: neg, name: strings.TrimSuffix(foldKey(el), ".")})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return d, nil
}

// expandList walks a match list's elements as match_list(3) reads them:
// "!" negates, and a /file/name element stands for the patterns in the
// file (whitespace or comma separated, "#" comments; a file may not name
// another file). add gets every other element.
func expandList(elems []string, add func(neg bool, el string) error) error {
	var walk func(el string, depth int) error
	walk = func(el string, depth int) error {
		neg := false
		for strings.HasPrefix(el, "!") {
			neg, el = !neg, el[1:]
		}
		switch {
		case el == "":
			return nil
		case strings.HasPrefix(el, "/"):
			if depth > 0 {
				return fmt.Errorf("%s: a file may not name another file", el)
			}
			data, err := os.ReadFile(el)
			if err != nil {
				return err
			}
			for _, line := range strings.Split(string(data), "\n") {
				if i := strings.IndexByte(line, '#'); i >= 0 {
					line = line[:i]
				}
				for _, f := range strings.FieldsFunc(line, isListSep) {
					if err := walk(f, depth+1); err != nil {
						return err
					}
				}
			}
			return nil
		}
		return add(neg, el)
	}
	for _, el := range elems {
		if err := walk(el, 0); err != nil {
			return err
		}
	}
	return nil
}

// Match reports whether domain is in the list.
func (d *DomainList) Match(ctx context.Context, domain string) (bool, error) {
	domain = strings.TrimSuffix(foldKey(domain), ".")
	for _, e := range d.elems {
		ok, err := e.match(ctx, domain, d.parent)
		if err != nil {
			return false, err
		}
		if ok {
			return !e.neg, nil
		}
	}
	return false, nil
}

func (e domainElem) match(ctx context.Context, domain string, parent bool) (bool, error) {
	if e.table == nil {
		switch {
		case e.name == domain:
			return true, nil
		case strings.HasPrefix(e.name, "."):
			return strings.HasSuffix(domain, e.name), nil
		case parent:
			return strings.HasSuffix(domain, "."+e.name), nil
		}
		return false, nil
	}
	if _, ok, err := e.table.Lookup(ctx, domain); ok || err != nil {
		return ok, err
	}
	// Parent domains: "example.com" in parent mode, ".example.com" always;
	// from fixed-string tables only, as match_ops.c's match_hostname
	// asks a pattern table (regexp, socketmap) only with the name itself.
	if !isFixed(e.table) {
		return false, nil
	}
	for d := domain; ; {
		i := strings.IndexByte(d, '.')
		if i < 0 {
			return false, nil
		}
		d = d[i+1:]
		key := "." + d
		if parent {
			key = d
		}
		if _, ok, err := e.table.Lookup(ctx, key); ok || err != nil {
			return ok, err
		}
	}
}

// NetList is a Postfix network match list, as in mynetworks: addresses,
// network/prefix (IPv6 in brackets), "!" exclusions, /file/name and
// type:table (the address is the key, as for a cidr table).
type NetList struct {
	elems []netElem
}

type netElem struct {
	neg    bool
	prefix netip.Prefix
	table  Table
}

// NewNetList builds a list from mynetworks' elements.
func NewNetList(elems []string) (*NetList, error) {
	n := &NetList{}
	err := expandList(elems, func(neg bool, el string) error {
		if pflist.IsTable(el) {
			t, _, err := Open(el)
			if err != nil {
				return err
			}
			n.elems = append(n.elems, netElem{neg: neg, table: t})
			return nil
		}
		p, err := pflist.ParseNetwork(el)
		if err != nil {
			return err
		}
		n.elems = append(n.elems, netElem{neg: neg, prefix: p})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return n, nil
}

// Match reports whether ip is in the list.
func (n *NetList) Match(ctx context.Context, ip netip.Addr) (bool, error) {
	ip = ip.Unmap()
	for _, e := range n.elems {
		var ok bool
		if e.table != nil {
			var err error
			if _, ok, err = e.table.Lookup(ctx, ip.String()); err != nil {
				return false, err
			}
		} else {
			p := e.prefix
			if p.Addr().Is4In6() { // [::ffff:127.0.0.0]/104 and the like
				if ip.Is4() && p.Bits() >= 96 {
					p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
				}
			}
			ok = p.Contains(ip)
		}
		if ok {
			return !e.neg, nil
		}
	}
	return false, nil
}

func isListSep(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\r' }
