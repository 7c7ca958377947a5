// Package route decides where a recipient's mail goes, as Postfix's
// trivial-rewrite(8) resolver does. Finding the hosts behind an SMTP next
// hop, as smtp(8) does, is package dnsresolve's.
//
// Routing follows resolve.c and transport.c of Postfix 3.x. The
// recipient's address class picks a transport and a next hop:
//
//	domain in mydestination     local_transport (default "local:$myhostname")
//	domain in virtual_mailbox_domains
//	                            virtual_transport (default "virtual")
//	domain in relay_domains     relay_transport (default "relay")
//	anything else               default_transport (default "smtp")
//
// The next hop starts as the recipient domain; for the relay and default
// classes a relayhost replaces it; a transport written "transport:nexthop"
// in main.cf replaces both. Then transport_maps(5) may override transport,
// next hop or both, searched in this order:
//
//	user+ext@domain   (every table, regexp and pcre included)
//	user@domain       (fixed-string tables only, as all partial keys)
//	domain
//	.parent.domain, .domain  (parent_domain_matches_subdomains does not
//	                  name transport_maps by default, so ".example.com"
//	                  matches subdomains and "example.com" only itself)
//	*
//
// A table result is "transport:nexthop". An empty transport keeps the
// class transport (":[gw.example]" changes only the next hop, ":" changes
// nothing); a transport with an empty next hop resets the next hop to the
// recipient domain ("smtp:" undoes a relayhost), or, for the error
// transport, to "Address is undeliverable".
//
// Next-hop syntax is Postfix's and is passed on as written: "[host]" or
// "[host]:port" suppress the MX lookup, "host" and "host:port" use it,
// "unix:/path" and "inet:host:port" are lmtp(8) forms.
package route

import (
	"cmp"
	"context"
	"fmt"
	"strings"

	"github.com/mailtee/mailtee/internal/address"
	"github.com/mailtee/mailtee/internal/envelope"
	"github.com/mailtee/mailtee/internal/maps"
)

// Router resolves recipients to next hops. Its fields are main.cf
// parameters, with $name already expanded; a Router is safe for concurrent
// use as long as its tables are.
type Router struct {
	TransportMaps maps.Table       // transport_maps; nil for none
	Local         *maps.DomainList // mydestination; Postfix also counts "[ip]" of inet_interfaces as local: list those here to get that
	Relay         *maps.DomainList // relay_domains; nil for none
	// VirtualMailbox is virtual_mailbox_domains (nil for none), whose
	// mail goes to VirtualTransport (virtual_transport).
	VirtualMailbox   *maps.DomainList
	VirtualTransport string

	// LocalTransport, RelayTransport and DefaultTransport are
	// local_transport, relay_transport and default_transport, each
	// "transport" or "transport:nexthop". Empty means Postfix's default:
	// "local", "relay", "smtp".
	LocalTransport, RelayTransport, DefaultTransport string

	// Relayhost is relayhost: "" or a next hop such as
	// "[smtp.example.com]:587". It applies to the relay and default
	// classes, unless their transport names its own next hop.
	Relayhost string

	// Delimiter is recipient_delimiter (a set of characters).
	Delimiter string

	// ParentMatch says parent_domain_matches_subdomains lists
	// transport_maps, so that a key "example.com" also matches its
	// subdomains. Postfix's default is no.
	ParentMatch bool

	// CopyTransport is copy_transport: "transport:nexthop" for every
	// recipient of the migration layer (CopyRoute); "" routes them as
	// any address.
	CopyTransport string
	// Here says whether a transport delivers on this host (a master.cf
	// service running local or virtual); nil: the transports named
	// local and virtual.
	Here func(transport string) bool
}

// Route returns the transport and next hop for rcpt, an address in
// internal form (user@domain). An error means a table or domain list could
// not be read; Postfix defers the recipient then.
func (r *Router) Route(ctx context.Context, rcpt string) (envelope.Hop, error) {
	hop, _, err := r.route(ctx, rcpt)
	return hop, err
}

// route is Route, and says whether the hop is mydestination's local
// delivery (the local class, its transport not changed by
// transport_maps), which a copy must never take (CopyRoute).
func (r *Router) route(ctx context.Context, rcpt string) (envelope.Hop, bool, error) {
	local, domain := rcpt, ""
	if at := strings.LastIndexByte(rcpt, '@'); at >= 0 {
		local, domain = rcpt[:at], address.NormalizeDomain(rcpt[at+1:])
	}

	class, err := r.class(ctx, domain)
	if err != nil {
		return envelope.Hop{}, false, err
	}

	var channel string
	hop := envelope.Hop{Nexthop: domain}
	switch class {
	case "local":
		channel = cmp.Or(r.LocalTransport, "local")
	case "virtual":
		channel = cmp.Or(r.VirtualTransport, "virtual")
	case "relay":
		channel = cmp.Or(r.RelayTransport, "relay")
	default:
		channel = cmp.Or(r.DefaultTransport, "smtp")
	}
	if (class == "relay" || class == "default") && r.Relayhost != "" {
		hop.Nexthop = r.Relayhost
	}
	// "An explicit main.cf transport:nexthop setting overrides the
	// nexthop" (resolve.c).
	hop.Transport, hop.Nexthop = splitResult(channel, hop.Nexthop)
	if hop.Transport == "" {
		return envelope.Hop{}, false, fmt.Errorf("%s_transport: null transport is not allowed", class)
	}

	if r.TransportMaps != nil {
		if err := r.transport(ctx, rcpt, local, domain, &hop); err != nil {
			return envelope.Hop{}, false, err
		}
	}
	return hop, class == "local" && hop.Transport == r.localClassTransport(), nil
}

// class is the address class of domain: "local", "virtual" (a virtual
// mailbox domain), "relay" or "default", in resolve.c's order.
// Postfix completes a bare local part with @$myhostname, which
// mydestination lists by default: local.
func (r *Router) class(ctx context.Context, domain string) (string, error) {
	if domain == "" {
		return "local", nil
	}
	if r.Local != nil {
		ok, err := r.Local.Match(ctx, domain)
		if err != nil {
			return "", fmt.Errorf("mydestination lookup of %q: %w", domain, err)
		}
		if ok {
			return "local", nil
		}
	}
	if r.VirtualMailbox != nil {
		ok, err := r.VirtualMailbox.Match(ctx, domain)
		if err != nil {
			return "", fmt.Errorf("virtual_mailbox_domains lookup of %q: %w", domain, err)
		}
		if ok {
			return "virtual", nil
		}
	}
	if r.Relay != nil {
		ok, err := r.Relay.Match(ctx, domain)
		if err != nil {
			return "", fmt.Errorf("relay_domains lookup of %q: %w", domain, err)
		}
		if ok {
			return "relay", nil
		}
	}
	return "default", nil
}

// splitResult splits "transport:nexthop" at the first colon; an empty
// next hop keeps def.
func splitResult(v, def string) (transport, nexthop string) {
	t, n, _ := strings.Cut(v, ":")
	if n == "" {
		n = def
	}
	return t, n
}

// transport applies transport_maps in transport.c's order.
func (r *Router) transport(ctx context.Context, rcpt, local, domain string, hop *envelope.Hop) error {
	try := func(key string, fixedOnly bool) (bool, error) {
		v, ok, err := find(ctx, r.TransportMaps, key, fixedOnly)
		if err != nil {
			return false, fmt.Errorf("transport_maps lookup of %q: %w", key, err)
		}
		if ok {
			update(hop, strings.TrimSpace(v), domain)
		}
		return ok, nil
	}
	if ok, err := try(rcpt, false); ok || err != nil {
		return err
	}
	if domain != "" {
		if user, ext := address.SplitExt(local, r.Delimiter); ext != "" {
			if ok, err := try(user+"@"+domain, true); ok || err != nil {
				return err
			}
		}
		for name := domain; ; {
			if ok, err := try(name, true); ok || err != nil {
				return err
			}
			// "After checking the full domain name, check for
			// .upper.domain" (transport.c): the key keeps its dot
			// unless transport_maps is in parent_domain_matches_subdomains.
			i := strings.IndexByte(name[1:], '.')
			if i < 0 {
				break
			}
			name = name[i+1:]
			if r.ParentMatch {
				name = name[1:]
			}
		}
	}
	// The wild-card is asked of every table, as Postfix does.
	_, err := try("*", false)
	return err
}

// update is transport.c's update_entry: apply one table result.
func update(hop *envelope.Hop, value, domain string) {
	t, n, _ := strings.Cut(value, ":")
	switch {
	case t == "":
		// ":[nexthop]" keeps the transport; ":" alone is a no-op.
		if n != "" {
			hop.Nexthop = n
		}
	case n != "":
		hop.Transport, hop.Nexthop = t, n
	case t == "error":
		hop.Transport, hop.Nexthop = t, "Address is undeliverable"
	default:
		// "A non-null transport field with a null nexthop field resets
		// the nexthop information to the recipient domain" (transport(5)).
		hop.Transport, hop.Nexthop = t, domain
	}
}

// find looks key up in t. With fixedOnly, pattern tables (regexp, pcre,
// cidr) are skipped, as Postfix skips them for partial keys
// (DICT_FLAG_FIXED).
func find(ctx context.Context, t maps.Table, key string, fixedOnly bool) (string, bool, error) {
	if l, ok := t.(maps.List); ok {
		for _, x := range l {
			if v, ok, err := find(ctx, x, key, fixedOnly); ok || err != nil {
				return v, ok, err
			}
		}
		return "", false, nil
	}
	if _, fixed := t.(maps.Fixed); fixedOnly && !fixed {
		return "", false, nil
	}
	return t.Lookup(ctx, key)
}
