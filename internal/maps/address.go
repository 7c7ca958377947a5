package maps

import (
	"context"
	"strings"

	"github.com/mailtee/mailtee/internal/address"
)

// List is a list of tables searched in order, as Postfix searches the
// tables named by one parameter ("alias_maps = hash:a, hash:b"): the first
// table with an answer wins.
type List []Table

// Lookup asks each table in turn.
func (l List) Lookup(ctx context.Context, key string) (string, bool, error) {
	return l.find(ctx, key, key, false)
}

// find asks each table; with fixedOnly, pattern tables are skipped, as
// Postfix does for the partial keys of an address lookup (maps_find with
// DICT_FLAG_FIXED). Tables that take keys as given (KeyAsGiven) are
// asked with orig, key before folding.
func (l List) find(ctx context.Context, key, orig string, fixedOnly bool) (string, bool, error) {
	for _, t := range l {
		if fixedOnly && !isFixed(t) {
			continue
		}
		if ft, ok := t.(*fixedTable); ok && !ft.mayHave(shapeOf(key)) {
			continue
		}
		k := key
		if _, ok := t.(KeyAsGiven); ok {
			k = orig
		}
		if v, ok, err := t.Lookup(ctx, k); err != nil || ok {
			return v, ok, err
		}
	}
	return "", false, nil
}

func isFixed(t Table) bool {
	switch t := t.(type) {
	case Fixed:
		return true
	case List:
		for _, x := range t {
			if !isFixed(x) {
				return false
			}
		}
		return true
	}
	return false
}

// AddressOptions say how an address is taken apart for lookups.
type AddressOptions struct {
	// Delimiters is recipient_delimiter: the characters that start an
	// address extension ("+" for user+ext@domain).
	Delimiters string
	// IsLocal reports whether a domain is one for which bare local-part
	// keys apply: $myorigin, $mydestination, $inet_interfaces or
	// $proxy_interfaces. Nil means none is.
	IsLocal func(domain string) bool
	// IsLocalErr, when set, is asked instead of IsLocal: the same test
	// for a domain list that names a table, which can fail. A failure
	// fails the lookup, as Postfix's mail_addr_find fails when
	// resolve_local cannot tell; taking the domain for remote would skip
	// the bare "user" keys and rewrite the address wrongly for good.
	IsLocalErr func(domain string) (bool, error)
}

// isLocal is IsLocalErr, else IsLocal.
func (o AddressOptions) isLocal(domain string) (bool, error) {
	if o.IsLocalErr != nil {
		return o.IsLocalErr(domain)
	}
	return o.IsLocal != nil && o.IsLocal(domain), nil
}

// Match is the result of an address lookup.
type Match struct {
	Value string
	Key   string // the key form that matched
	// Ext is the address extension (with its delimiter) that the matching
	// key did not contain, for propagate_unmatched_extensions.
	Ext string
}

// LookupAddress searches tables for addr in Postfix's order
// (mail_addr_find(3), as used by canonical(5), virtual(5) and the BCC
// maps):
//
//  1. user+ext@domain
//  2. user@domain
//  3. user+ext, then user: only when domain is local (IsLocal) or absent
//  4. @domain
//
// Pattern tables (regexp, pcre, cidr) are asked only with the full
// address, as Postfix does.
func LookupAddress(ctx context.Context, t Table, addr string, o AddressOptions) (Match, bool, error) {
	l, ok := t.(List)
	if !ok {
		one := [1]Table{t}
		l = one[:]
	}
	// Fold once, so that every key form below is a substring of addr and
	// the lookups allocate nothing (but user@domain when there is an
	// extension).
	orig := addr
	addr = foldKey(addr)
	if v, ok, err := l.find(ctx, addr, orig, false); ok || err != nil {
		return Match{Value: v, Key: addr}, ok, err
	}
	at := strings.LastIndexByte(addr, '@')
	local, atDomain := addr, ""
	if at >= 0 {
		local, atDomain = addr[:at], addr[at:]
	}
	user, ext := address.SplitExt(local, o.Delimiters)
	try := func(key, ext string) (Match, bool, error) {
		v, ok, err := l.find(ctx, key, key, true)
		return Match{Value: v, Key: key, Ext: ext}, ok, err
	}
	if at >= 0 && ext != "" {
		if m, ok, err := try(user+atDomain, ext); ok || err != nil {
			return m, ok, err
		}
	}
	// Asked only now, as mail_addr_find asks resolve_local: a domain
	// list that cannot answer fails only lookups that need it.
	bare := at < 0
	if !bare {
		var err error
		if bare, err = o.isLocal(atDomain[1:]); err != nil {
			return Match{}, false, err
		}
	}
	if bare {
		if at >= 0 {
			if m, ok, err := try(local, ""); ok || err != nil {
				return m, ok, err
			}
		}
		if ext != "" {
			if m, ok, err := try(user, ext); ok || err != nil {
				return m, ok, err
			}
		}
	}
	if at >= 0 {
		if m, ok, err := try(atDomain, ""); ok || err != nil {
			return m, ok, err
		}
	}
	return Match{}, false, nil
}
