package smtpd

import (
	"context"
	"errors"
	"net/netip"

	"github.com/emersion/go-smtp"

	"github.com/mailtee/mailtee/internal/address"
	"github.com/mailtee/mailtee/internal/maps"
)

// class is the address class of a recipient domain, as Postfix's
// trivial-rewrite resolves it.
type class int

const (
	classNone    class = iota // somewhere else: relaying
	classLocal                // mydestination
	classVirtual              // virtual_alias_domains
	classMailbox              // virtual_mailbox_domains
	classRelay                // relay_domains
)

// checkRcpt applies smtpd_relay_restrictions and
// smtpd_recipient_restrictions (restrict.go; Postfix's defaults,
// permit_mynetworks, reject_unauth_destination, when unset) and then
// smtpd_reject_unlisted_recipient to one recipient from client. It
// returns nil to accept it.
//
// From smtpd_check.c, permit_auth_destination: "Skip source-routed
// non-local or virtual mail (uncertain destination)" and permit when the
// domain is a final destination (mydestination, virtual_alias_domains) or
// matches relay_domains; reject_unauth_destination: "<%s>: Relay access
// denied". check_rcpt_maps: a recipient found in virtual_alias_maps is
// accepted whatever its class; in a local domain it must be in
// local_recipient_maps ("User unknown in local recipient table"), except
// postmaster, mailer-daemon and the double-bounce address; in a virtual
// alias domain it resolves to the error transport ("User unknown in
// virtual alias table"); in a virtual mailbox domain it must be in
// virtual_mailbox_maps when that is set ("User unknown in virtual mailbox
// table"); in a relay domain it must be in
// relay_recipient_maps when that is set ("User unknown in relay recipient
// table"), so that mail for nobody is refused at RCPT rather than bounced
// to a forged sender when the next hop refuses it.
func (p *Policy) checkRcpt(ctx context.Context, client netip.Addr, a address.Address) *smtp.SMTPError {
	ext := a.String()
	tempfail := func() *smtp.SMTPError {
		return reply(451, "4.3.0", "<%s>: Temporary lookup failure", ext)
	}
	mynet := false
	if p.Mynetworks != nil && client.IsValid() {
		var err error
		if mynet, err = p.Mynetworks.Match(ctx, client); err != nil {
			return tempfail()
		}
	}
	domain := address.NormalizeDomain(a.Domain)
	if p.SRS != nil {
		if mine, err := p.SRS(ctx, a.Local, domain); mine {
			var temp interface{ Temporary() bool }
			if errors.As(err, &temp) && temp.Temporary() {
				return tempfail() // a table did not answer: not a refusal
			}
			if err != nil {
				return reply(550, "5.1.1", "<%s>: Recipient address rejected: %v", ext, err)
			}
			return nil
		}
	}
	cls, err := p.classify(ctx, domain)
	if err != nil {
		return tempfail()
	}
	routed := a.HasRouting()
	if rej := p.restrict(mynet, !routed && cls != classNone, ext); rej != nil {
		return rej
	}
	if routed || cls == classNone {
		// A routed address from mynetworks goes where its local part
		// says, not to this domain; other domains are not ours to list.
		return nil
	}
	if cls == classRelay && p.RelayRecipients == nil || cls == classMailbox && p.VirtualMailboxes == nil {
		return nil // relay_recipient_maps (virtual_mailbox_maps) empty: any user, as in Postfix
	}

	key := a.Local + "@" + domain
	if p.VirtualAliases != nil {
		opts := maps.AddressOptions{Delimiters: p.Delimiter}
		if cls == classLocal {
			// mail_addr_find tries bare local parts for local domains.
			opts.IsLocal = func(string) bool { return true }
		}
		_, ok, err := maps.LookupAddress(ctx, p.VirtualAliases, key, opts)
		if err != nil {
			return tempfail()
		}
		if ok {
			return nil
		}
	}
	switch cls {
	case classVirtual:
		return reply(550, "5.1.1", "<%s>: Recipient address rejected: User unknown in virtual alias table", ext)
	case classRelay, classMailbox:
		// Neither is local: user@domain and @domain forms (with the
		// extension dropped), as mail_addr_find looks them up.
		table, code, name := p.RelayRecipients, p.UnknownRelayCode, "relay recipient table"
		if cls == classMailbox {
			table, code, name = p.VirtualMailboxes, p.UnknownVirtualCode, "virtual mailbox table"
		}
		_, ok, err := maps.LookupAddress(ctx, table, key, maps.AddressOptions{Delimiters: p.Delimiter})
		if err != nil {
			return tempfail()
		}
		if ok {
			return nil
		}
		return unknownUser(code, ext, name)
	}

	if p.LocalRecipients == nil || isAbsorbed(a.Local) {
		return nil
	}
	_, ok, err := maps.LookupAddress(ctx, p.LocalRecipients, key,
		maps.AddressOptions{Delimiters: p.Delimiter, IsLocal: func(string) bool { return true }})
	if err != nil {
		return tempfail()
	}
	if ok {
		return nil
	}
	return unknownUser(p.UnknownLocalCode, ext, "local recipient table")
}

// unknownUser is Postfix's reply for a recipient missing from table, with
// the configured code (unknown_local_recipient_reject_code,
// unknown_relay_recipient_reject_code; 0 or out of range means 550), the
// enhanced code following its class as smtpd_check_reject makes it.
func unknownUser(code int, ext, table string) *smtp.SMTPError {
	if code < 400 || code > 599 {
		code = 550
	}
	enh := "5.1.1"
	if code < 500 {
		enh = "4.1.1"
	}
	return reply(code, enh, "<%s>: Recipient address rejected: User unknown in %s", ext, table)
}

// classify finds the class of domain, in trivial-rewrite's order: local,
// then virtual alias, virtual mailbox, relay.
func (p *Policy) classify(ctx context.Context, domain string) (class, error) {
	for _, l := range []struct {
		list *maps.DomainList
		cls  class
	}{{p.Local, classLocal}, {p.Virtual, classVirtual}, {p.VirtualMailbox, classMailbox}, {p.Relay, classRelay}} {
		if l.list == nil {
			continue
		}
		ok, err := l.list.Match(ctx, domain)
		if err != nil {
			return classNone, err
		}
		if ok {
			return l.cls, nil
		}
	}
	return classNone, nil
}

// isAbsorbed reports the local parts that Postfix accepts in a local
// domain without a local_recipient_maps entry, because Postfix itself
// handles them: postmaster, mailer-daemon, double-bounce.
func isAbsorbed(local string) bool {
	for _, s := range []string{"postmaster", "mailer-daemon", "double-bounce"} {
		if address.EqualFoldASCII(local, s) {
			return true
		}
	}
	return false
}
