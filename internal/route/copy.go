package route

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/mailtee/mailtee/internal/address"
	"github.com/mailtee/mailtee/internal/diag"
	"github.com/mailtee/mailtee/internal/envelope"
	"github.com/mailtee/mailtee/internal/maps"
)

// CopyRoute routes a recipient the migration layer made (rcpt.Migration
// set: a mailbox's copy, or its mail in the forward phase); ok is false
// for any other recipient, which Route routes.
//
// With CopyTransport set, every such recipient leaves by it, whatever
// its domain: user1 -> user1@students.iiit.ac.in is a copy for the
// provider even though mydestination lists the domain (one box). The
// value is a transport_maps result, "transport:nexthop"; an empty next
// hop is the recipient's domain, as transport(5) says of a result with
// a null nexthop.
//
// Without it the recipient is routed like any address (the seed's two
// servers: the copy's address is the relay's domain), except that a copy
// is never delivered here: were it, the mailbox would get the message
// twice and the provider never. Such a recipient is deferred (a
// *CopyError) with what to set, so nothing is lost while the
// administrator fixes main.cf.
func (r *Router) CopyRoute(ctx context.Context, rcpt envelope.Rcpt) (envelope.Hop, bool, error) {
	if rcpt.Migration == "" {
		return envelope.Hop{}, false, nil
	}
	if r.CopyTransport != "" {
		hop := envelope.Hop{}
		hop.Transport, hop.Nexthop = splitResult(r.CopyTransport, domainOf(rcpt.Addr))
		if hop.Transport == "" {
			return envelope.Hop{}, true, &CopyError{Rcpt: rcpt, Msg: fmt.Sprintf("copy_transport = %s: null transport is not allowed; write transport:nexthop, such as smtp:[aspmx.l.google.com]", r.CopyTransport)}
		}
		if r.copyHere(hop) {
			return envelope.Hop{}, true, &CopyError{Rcpt: rcpt, Msg: fmt.Sprintf("copy_transport = %s delivers on this host, and a %s is never delivered here; name a transport that sends it to the provider, such as smtp:[aspmx.l.google.com]", r.CopyTransport, kindOf(rcpt))}
		}
		return hop, true, nil
	}
	hop, here, err := r.route(ctx, rcpt.Addr)
	if err != nil {
		return envelope.Hop{}, true, err
	}
	if here || r.deliversHere(hop.Transport) {
		return envelope.Hop{}, true, &CopyError{Rcpt: rcpt, Msg: fmt.Sprintf("%s is routed to local delivery (%s:%s), and a %s is never delivered here: set copy_transport (such as smtp:[aspmx.l.google.com]) so that it goes to the provider, or route its address elsewhere in transport_maps; it waits in the queue meanwhile", rcpt.Addr, hop.Transport, hop.Nexthop, kindOf(rcpt))}
	}
	return hop, true, nil
}

// CopyError defers a recipient of the migration layer whose route would
// deliver it on this host. It is temporary: the message waits for a
// configuration that sends it away.
type CopyError struct {
	Rcpt envelope.Rcpt
	Msg  string
}

func (e *CopyError) Error() string { return e.Msg }

// EnhancedCode is RFC 3463's "mail system configuration error", as
// Postfix's qmgr says for a transport it cannot use.
func (e *CopyError) EnhancedCode() string { return "4.3.5" }

// IsPermanent: a configuration error is fixed by the administrator, and
// the mail waits for it.
func (e *CopyError) IsPermanent() bool { return false }

func kindOf(r envelope.Rcpt) string {
	if r.Migration == envelope.MigrationForward {
		return "mailbox's forwarded mail (dual_delivery_phase = forward)"
	}
	return "mailbox's copy (recipient_bcc_maps, mailbox_bcc_maps)"
}

// deliversHere says whether transport delivers on this host: local(8)
// and virtual(8), by name or as the program of a master.cf service
// (Here).
func (r *Router) deliversHere(transport string) bool {
	if r.Here != nil {
		return r.Here(transport)
	}
	return transport == "local" || transport == "virtual"
}

// copyHere says whether copy_transport's hop delivers on this host: a
// transport that does (deliversHere), local_transport's own
// transport:nexthop (Dovecot's LMTP, the mailbox store), or an LMTP unix
// socket, which can only be on this host.
func (r *Router) copyHere(hop envelope.Hop) bool {
	if r.deliversHere(hop.Transport) || strings.HasPrefix(hop.Nexthop, "unix:") {
		return true
	}
	lt, ln := splitResult(cmp.Or(r.LocalTransport, "local"), "")
	return ln != "" && lt == hop.Transport && strings.EqualFold(ln, hop.Nexthop)
}

// localClassTransport is the transport local_transport gives
// mydestination's domains.
func (r *Router) localClassTransport() string {
	t, _ := splitResult(cmp.Or(r.LocalTransport, "local"), "")
	return t
}

func domainOf(addr string) string {
	if at := strings.LastIndexByte(addr, '@'); at >= 0 {
		return address.NormalizeDomain(addr[at+1:])
	}
	return ""
}

// CopyMap is an opened copy map (recipient_bcc_maps, mailbox_bcc_maps)
// and the line of main.cf that names it.
type CopyMap struct {
	Param, Spec string
	Line        int
	Table       maps.Table
}

// CheckCopies is what `check` says about the routes of copies: a
// copy_transport (written at line of file) that is null, unknown (known
// are the transports mailtee delivers with) or delivers here is an
// error; without one, each address a listable copy map names that would
// be delivered here is a warning at its table's line, since such a copy
// waits in the queue until copy_transport is set. complete turns a bare
// local part into the address cleanup would make of it (@$myorigin).
func (r *Router) CheckCopies(ctx context.Context, file string, line int, known []string, tables []CopyMap, complete func(string) string) diag.List {
	var out diag.List
	if r.CopyTransport != "" {
		t, n, _ := strings.Cut(r.CopyTransport, ":")
		switch {
		case t == "":
			out.Errorf(file, line, "copy_transport: %q: null transport is not allowed; write transport:nexthop, such as smtp:[aspmx.l.google.com]", r.CopyTransport)
		case !slices.Contains(known, t):
			out.Errorf(file, line, "copy_transport: %s", unknownTransport(known, r.CopyTransport, t))
		case r.copyHere(envelope.Hop{Transport: t, Nexthop: n}):
			out.Errorf(file, line, "copy_transport: %q delivers on this host, and a mailbox's copy is never delivered here (it would wait in the queue); name a transport to the provider, such as smtp:[aspmx.l.google.com]", r.CopyTransport)
		case n == "":
			// An empty next hop is the copy's own domain: its MX. For a
			// copy in a domain delivered here, that is this host while
			// the MX still points at it, and the copy would come back.
			if d := r.localCopyDomain(ctx, tables, complete); d != "" {
				out.Warnf(file, line, "copy_transport: %q has no next hop, so a copy goes to its domain's MX; copies to %s, delivered here, would go to %s's MX, which is this host while the migration lasts, and come back: name the provider's host, such as %s:[aspmx.l.google.com]", r.CopyTransport, d, d, t)
			}
		}
		return out
	}
	r.localCopies(ctx, tables, complete, func(m CopyMap, e maps.SourceEntry, a string, hop envelope.Hop) {
		where, wline := e.File, e.Line
		if where == "" {
			where, wline = file, m.Line
		}
		key := e.Key
		if key == "" {
			key = "a key"
		}
		out.Warnf(where, wline, "%s (%s): %s -> %s: the copy's address is delivered here (%s:%s) and copy_transport is empty, so the copy waits in the queue until copy_transport is set and reloaded; set copy_transport (such as smtp:[aspmx.l.google.com]), or copy to an address routed away, as the seed's two servers do (user@relay.students.iiit.ac.in)",
			m.Param, m.Spec, key, a, hop.Transport, hop.Nexthop)
	})
	return out
}

// localCopies calls each for every copy address the listable copy maps
// name whose ordinary route delivers it here, with the entry that names
// it and that route. complete turns a bare local part into an address.
func (r *Router) localCopies(ctx context.Context, tables []CopyMap, complete func(string) string, each func(m CopyMap, e maps.SourceEntry, addr string, hop envelope.Hop)) {
	for _, m := range tables {
		s, ok := m.Table.(maps.Sourced)
		if !ok {
			continue
		}
		s.Source(func(e maps.SourceEntry) {
			if e.Partial {
				return // the address comes from the lookup key
			}
			for _, a := range strings.FieldsFunc(e.Value, func(c rune) bool { return c == ',' || c == ' ' || c == '\t' }) {
				a = strings.Trim(a, "<>")
				if a == "" {
					continue
				}
				if !strings.Contains(a, "@") && complete != nil {
					a = complete(a)
				}
				if hop, here, err := r.route(ctx, a); err == nil && (here || r.deliversHere(hop.Transport)) {
					each(m, e, a, hop)
				}
			}
		})
	}
}

// localCopyDomain returns a domain delivered here that a listed copy
// address is in, or "".
func (r *Router) localCopyDomain(ctx context.Context, tables []CopyMap, complete func(string) string) string {
	found := ""
	r.localCopies(ctx, tables, complete, func(_ CopyMap, _ maps.SourceEntry, a string, _ envelope.Hop) {
		if _, d, ok := strings.Cut(a, "@"); ok && d != "" && found == "" {
			found = d
		}
	})
	return found
}
