package rewrite

import (
	"context"
	"fmt"
	"strings"

	"github.com/mailtee/mailtee/internal/address"
	"github.com/mailtee/mailtee/internal/maps"
)

// lookup searches t for a in Postfix's address order. Tables are keyed by
// the internal (unquoted) form; the quoted form is tried too when it
// differs, as Postfix's legacy lookups try both.
func (r *Rewriter) lookup(ctx context.Context, t maps.Table, a address.Address) (maps.Match, bool, error) {
	m, ok, err := maps.LookupAddress(ctx, t, a.Internal(), r.ao)
	if ok || err != nil {
		return m, ok, err
	}
	if ext := a.String(); ext != a.Internal() {
		return maps.LookupAddress(ctx, t, ext, r.ao)
	}
	return m, false, nil
}

// mapAddr is mail_addr_map(3): look a up and turn the result into
// addresses. A result "@otherdomain" is the same user in otherdomain;
// addresses without a domain get @$myorigin; with propagate, an address
// extension that the matching key did not contain is appended to the
// local part of each result.
func (r *Rewriter) mapAddr(ctx context.Context, t maps.Table, name string, a address.Address, propagate bool) ([]address.Address, bool, error) {
	m, ok, err := r.lookup(ctx, t, a)
	if err != nil {
		return nil, false, &Error{Status: "4.3.0", Msg: fmt.Sprintf("%s: lookup of %s failed", name, a), Err: err}
	}
	if !ok {
		return nil, false, nil
	}
	// The table saw the address folded to lower case; the extension
	// keeps the case it had, as in Postfix.
	ext := ""
	if m.Ext != "" {
		_, ext = address.SplitExt(a.Local, r.o.Delimiter)
		if !strings.EqualFold(ext, m.Ext) {
			ext = m.Ext
		}
	}
	val := strings.TrimSpace(m.Value)
	if strings.HasPrefix(val, "@") {
		val = address.QuoteLocal(strings.TrimSuffix(a.Local, ext)) + val
	}
	list, err := r.crunch(val)
	if err != nil {
		return nil, false, &Error{Status: "4.3.0", Msg: fmt.Sprintf("%s: lookup of %s: %v", name, a, err)}
	}
	if propagate && ext != "" {
		for i := range list {
			list[i].Local += ext
		}
	}
	return list, true, nil
}

// map11 is cleanup_map11_internal: one-to-one mapping, repeated on the
// result ("the address mapping is recursive", canonical(5)) until an
// address maps to itself or to nothing, at most 10 times.
func (r *Rewriter) map11(ctx context.Context, t maps.Table, name string, a address.Address) (address.Address, error) {
	for count := 0; count < canonicalRecursion; count++ {
		list, ok, err := r.mapAddr(ctx, t, name, a, r.propCanon)
		if err != nil || !ok {
			return a, err
		}
		if len(list) > 1 {
			r.warnf("multi-valued %s entry for %s", name, a)
		}
		b := list[0]
		self := strings.EqualFold(b.Internal(), a.Internal())
		a = b
		if self {
			return a, nil
		}
	}
	r.warnf("unreasonable %s map nesting for %s", name, a)
	return a, nil
}

// virtual is cleanup_map1n_internal: one-to-many virtual alias expansion.
// Each address of the expansion is looked up again until it maps to
// nothing or has expanded into itself (it is then kept); the expansion
// of one recipient is limited in depth (recursion) and size (expansion).
func (r *Rewriter) virtual(ctx context.Context, a address.Address) ([]address.Address, error) {
	one := []address.Address{a}
	if r.o.VirtualAliases == nil || a.IsNull() {
		return one, nil
	}
	const name = "virtual_alias_maps"
	fail := func(what string) error {
		return &Error{Status: "4.6.0", Msg: fmt.Sprintf("alias expansion error: unreasonable %s %s for %s", name, what, a)}
	}
	list := one
	var self map[string]bool // addresses that expanded into themselves
	for i := 0; i < len(list); i++ {
		if len(list) > r.expansion {
			return nil, fail("map expansion size")
		}
		for count := 0; ; count++ {
			lhs := strings.ToLower(list[i].Internal())
			if self[lhs] {
				break
			}
			if count >= r.recursion {
				return nil, fail("map nesting")
			}
			res, ok, err := r.mapAddr(ctx, r.o.VirtualAliases, name, list[i], r.propVirt)
			if err != nil {
				return nil, err
			}
			if !ok {
				break
			}
			for j, x := range res {
				if len(x.String()) > virtualAddrLenLimit {
					return nil, fail("result length")
				}
				if j == 0 {
					list[i] = x
				} else {
					list = append(list, x)
				}
				if strings.ToLower(x.Internal()) == lhs {
					if self == nil {
						self = map[string]bool{}
					}
					self[lhs] = true
				}
			}
		}
	}
	return list, nil
}

// masquerade is cleanup_masquerade_external: strip the subdomain part of
// the domain when a parent domain is in masquerade_domains. The list is
// read left to right and the first element that is the domain or a parent
// of it decides; "!name" leaves the domain alone.
func (r *Rewriter) masquerade(a address.Address) address.Address {
	if len(r.masqDoms) == 0 || a.Domain == "" {
		return a
	}
	if len(r.masqExcept) > 0 {
		name := strings.ToLower(address.QuoteLocal(a.Local))
		for _, e := range r.masqExcept {
			if e.name == name {
				if !e.neg {
					return a
				}
				break
			}
		}
	}
	domain := address.NormalizeDomain(a.Domain)
	for _, m := range r.masqDoms {
		switch {
		case len(m.name) == len(domain):
			if m.name == domain {
				return a
			}
		case len(m.name) < len(domain):
			if strings.HasSuffix(domain, m.name) && domain[len(domain)-len(m.name)-1] == '.' {
				if m.truncate {
					a.Domain = m.name
				}
				return a
			}
		}
	}
	return a
}

// crunch is mail_addr_crunch(3): the addresses in a table result or an
// always_bcc value, each with @$myorigin appended when it has no domain.
// Addresses are separated by commas, as in virtual(5) ("address, address,
// ..."), or by whitespace; "Name <addr>" gives addr.
func (r *Rewriter) crunch(val string) ([]address.Address, error) {
	toks, _, err := lex(val, 0)
	if err != nil {
		return nil, fmt.Errorf("non-address result %q: %v", val, err)
	}
	var out []address.Address
	add := func(s string) error {
		a, err := address.Parse(s)
		if err != nil {
			return fmt.Errorf("non-address result %q: %v", val, err)
		}
		if a.IsNull() {
			return fmt.Errorf("non-address result %q: null address", val)
		}
		a.Routed = false
		out = append(out, r.qualify(a))
		return nil
	}
	for _, item := range splitItems(toks) {
		if hasAngle(item) {
			sp, ok, err := angleAddr(item)
			if err != nil {
				return nil, fmt.Errorf("non-address result %q: %v", val, err)
			}
			if !ok {
				return nil, fmt.Errorf("non-address result %q: empty <> or source route", val)
			}
			if err := add(val[sp.start:sp.end]); err != nil {
				return nil, err
			}
			continue
		}
		// Each run of tokens between blanks and comments is one address.
		start := -1
		for i := 0; i <= len(item); i++ {
			if i < len(item) && item[i].kind != tSpace && item[i].kind != tComment {
				if start < 0 {
					start = i
				}
				continue
			}
			if start < 0 {
				continue
			}
			sp, _, err := bareAddr(item[start:i])
			if err != nil {
				return nil, fmt.Errorf("non-address result %q: %v", val, err)
			}
			if err := add(val[sp.start:sp.end]); err != nil {
				return nil, err
			}
			start = -1
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("non-address result %q", val)
	}
	return out, nil
}

// splitItems splits tokens at commas outside angle brackets.
func splitItems(toks []token) [][]token {
	var items [][]token
	start := 0
	for _, i := range topCommas(toks) {
		items = append(items, toks[start:i])
		start = i + 1
	}
	return append(items, toks[start:])
}

// topCommas returns the indexes of the comma tokens outside angle
// brackets: the separators of an address list.
func topCommas(toks []token) []int {
	var out []int
	angle := false
	for i, t := range toks {
		if t.kind != tSpecial {
			continue
		}
		switch t.c {
		case '<':
			angle = true
		case '>':
			angle = false
		case ',':
			if !angle {
				out = append(out, i)
			}
		}
	}
	return out
}
