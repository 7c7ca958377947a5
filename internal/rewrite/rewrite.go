// Package rewrite implements the address rewriting that Postfix's
// cleanup(8) daemon does once, before a message is queued: canonical
// mapping, address masquerading, automatic BCC recipients, virtual alias
// expansion and duplicate recipient elimination.
//
// The functions are pure: they see the envelope (or the header section)
// and the lookup tables, and do no other I/O. The order is Postfix's, from
// src/cleanup/cleanup_addr.c and cleanup_out_recipient.c:
//
//	sender:    append @$myorigin, MAILER-DAEMON@$myorigin -> <>,
//	           sender_canonical_maps, canonical_maps, masquerading,
//	           then sender_bcc_maps looked up with the result
//	recipient: append @$myorigin, recipient_canonical_maps, canonical_maps,
//	           masquerading (only with envelope_recipient in
//	           masquerade_classes), then recipient_bcc_maps looked up with
//	           the result, and virtual_alias_maps expansion of the result
//	always_bcc once, when there is at least one recipient
//	BCC address: as a recipient (canonical, masquerading, virtual), but no
//	           BCC lookups of its own
//	duplicate elimination over everything
//
// What mailtee does differently (see Rewriter.Envelope): a BCC result may
// name several addresses; each BCC recipient is marked
// envelope.Rcpt.Copy; the result lists the real recipients first and the
// copies after them (Postfix's queue file has the sender's BCC first and
// each recipient's BCC after it); and duplicates are found by address
// alone, a copy never displacing a real recipient (Postfix, with
// enable_original_recipient = yes, keeps one recipient per original and
// rewritten address pair).
package rewrite

import (
	"context"
	"fmt"
	"strings"

	"github.com/mailtee/mailtee/internal/address"
	"github.com/mailtee/mailtee/internal/envelope"
	"github.com/mailtee/mailtee/internal/maps"
	"github.com/mailtee/mailtee/internal/pflist"
)

// The address classes of canonical_classes and masquerade_classes.
const (
	EnvelopeSender    = "envelope_sender"
	EnvelopeRecipient = "envelope_recipient"
	HeaderSender      = "header_sender"
	HeaderRecipient   = "header_recipient"
)

const (
	classEnvFrom = 1 << iota
	classEnvRcpt
	classHdrFrom
	classHdrRcpt
)

var classNames = []struct {
	name string
	bit  int
}{
	{EnvelopeSender, classEnvFrom},
	{EnvelopeRecipient, classEnvRcpt},
	{HeaderSender, classHdrFrom},
	{HeaderRecipient, classHdrRcpt},
}

// Postfix's limits: virtual_alias_recursion_limit,
// virtual_alias_expansion_limit and virtual_alias_address_length_limit
// (all 1000), and the nesting limit of canonical mapping, which is not a
// parameter (MAX_RECURSION in cleanup_map11.c).
const (
	defaultVirtualLimit = 1000
	virtualAddrLenLimit = 1000
	canonicalRecursion  = 10
	// header_address_token_limit's default (tok822_parse_limit).
	defaultHeaderTokenLimit = 10240
)

// Options are the main.cf settings that rewriting depends on, already
// parsed. For the class lists and PropagateUnmatchedExtensions, nil means
// the Postfix default and an empty non-nil slice means none, as an empty
// parameter value does in main.cf.
type Options struct {
	// IsLocal reports whether a domain is $myorigin, in $mydestination,
	// $inet_interfaces or $proxy_interfaces: bare "user" keys apply to its
	// addresses (maps.AddressOptions.IsLocal). $myorigin is always local.
	IsLocal func(domain string) bool
	// IsLocalErr, when set, is asked instead of IsLocal: the same test
	// where it can fail (mydestination names a table that is down); the
	// rewriting then fails, and the message waits for the table
	// (maps.AddressOptions.IsLocalErr).
	IsLocalErr func(domain string) (bool, error)
	// Delimiter is recipient_delimiter.
	Delimiter string
	// Myorigin is appended to addresses without a domain
	// (append_at_myorigin, which Postfix says must not be turned off).
	// Empty leaves such addresses alone.
	Myorigin string

	// canonical_maps, sender_canonical_maps, recipient_canonical_maps;
	// nil means none.
	Canonical, SenderCanonical, RecipientCanonical maps.Table
	// canonical_classes (default all four), sender_canonical_classes
	// (default envelope_sender, header_sender) and
	// recipient_canonical_classes (default envelope_recipient,
	// header_recipient).
	CanonicalClasses, SenderCanonicalClasses, RecipientCanonicalClasses []string

	// MasqueradeDomains is masquerade_domains: processed left to right,
	// the first match decides; "!name" means do not masquerade name or its
	// subdomains.
	MasqueradeDomains []string
	// MasqueradeClasses is masquerade_classes; default envelope_sender,
	// header_sender, header_recipient (not envelope_recipient).
	MasqueradeClasses []string
	// MasqueradeExceptions is masquerade_exceptions: local parts that are
	// never masqueraded; "!name" excludes a name from the list. /file/name
	// and type:table elements must be expanded by the caller (Check
	// reports them).
	MasqueradeExceptions []string

	// VirtualAliases is virtual_alias_maps; nil means none.
	VirtualAliases maps.Table
	// virtual_alias_recursion_limit and virtual_alias_expansion_limit;
	// 0 means Postfix's default, 1000.
	VirtualRecursionLimit, VirtualExpansionLimit int

	// recipient_bcc_maps, sender_bcc_maps (nil means none) and always_bcc.
	RecipientBCC, SenderBCC maps.Table
	AlwaysBCC               string
	// Phase, when set, is the migration phase (internal/migration) of a
	// recipient that recipient_bcc_maps gives a copy, asked with the
	// address the table was: "off" makes no copy, "forward" sends the
	// recipient's mail only to the copy's address, as a real delivery;
	// anything else (dual) adds the copy. recipient_bcc_maps copies are
	// marked envelope.MigrationCopy; those of sender_bcc_maps and
	// always_bcc are not the migration's.
	Phase func(ctx context.Context, addr string) (string, error)
	// ApartDomain, when set, says whether an address in domain is
	// delivered here (a local, a virtual or a relay_domains domain). A
	// mailbox's copy (or forward) to such an address is never delivered
	// here: it leaves by copy_transport (one box: user1 ->
	// user1@students.iiit.ac.in), or waits in the queue for one. So it
	// is kept apart from the recipient with its address, not dropped as
	// its duplicate. A copy to an address delivered elsewhere would take
	// the recipient's route, or reach the same mailbox at the provider
	// by copy_transport: there it is a duplicate. nil: never apart.
	ApartDomain func(domain string) bool

	// PropagateUnmatchedExtensions is propagate_unmatched_extensions;
	// default canonical, virtual. Only those two matter here.
	PropagateUnmatchedExtensions []string

	// HeaderTokenLimit is header_address_token_limit: how many tokens of
	// an address header Header parses; 0 means Postfix's default, 10240.
	HeaderTokenLimit int

	// Warnf, when set, receives the warnings Postfix logs without
	// refusing the message (a multi-valued canonical entry, canonical
	// mapping nested too deep).
	Warnf func(format string, args ...any)
}

// Error is a rewriting failure. Like cleanup(8), mailtee must then not
// accept the message, and answer with a temporary error: Status is the
// enhanced status code ("4.6.0" for an alias expansion error, "4.3.0" for
// a table that could not answer).
type Error struct {
	Status string
	Msg    string
	Err    error // the table's error, if any
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Msg + ": " + e.Err.Error()
	}
	return e.Msg
}

func (e *Error) Unwrap() error { return e.Err }

// Temporary reports true: every rewriting failure is worth a retry.
func (e *Error) Temporary() bool { return true }

// Rewriter applies one set of Options. It is safe for concurrent use.
type Rewriter struct {
	o          Options
	ao         maps.AddressOptions
	canon      int // classes of canonical_maps
	sendCanon  int
	rcptCanon  int
	masq       int
	masqDoms   []masqDomain
	masqExcept []exception
	propCanon  bool
	propVirt   bool
	recursion  int
	expansion  int
	tokenLimit int // header_address_token_limit
}

type masqDomain struct {
	name     string // folded
	truncate bool   // false for a "!name" element
}

type exception struct {
	name string // folded
	neg  bool
}

// Problem is a setting New would not honour, naming its parameter.
type Problem struct {
	Param string // the main.cf parameter
	Msg   string
}

func (p Problem) Error() string { return p.Param + ": " + p.Msg }

// Check reports settings that New would not honour: unknown class names,
// class names a parameter does not allow, masquerade_exceptions elements
// that are files or tables, and an always_bcc that holds no address.
func (o Options) Check() []Problem {
	var out []Problem
	add := func(param, format string, args ...any) {
		out = append(out, Problem{param, fmt.Sprintf(format, args...)})
	}
	check := func(param string, list []string, allowed int) {
		if _, bad := classMask(list, 0, allowed); bad != "" {
			add(param, "unknown or unsupported class %q (valid: %s)", bad, allowedNames(allowed))
		}
	}
	all := classEnvFrom | classEnvRcpt | classHdrFrom | classHdrRcpt
	check("canonical_classes", o.CanonicalClasses, all)
	check("sender_canonical_classes", o.SenderCanonicalClasses, classEnvFrom|classHdrFrom)
	check("recipient_canonical_classes", o.RecipientCanonicalClasses, classEnvRcpt|classHdrRcpt)
	check("masquerade_classes", o.MasqueradeClasses, all)
	for _, el := range o.MasqueradeExceptions {
		el = strings.TrimLeft(el, "!")
		if strings.HasPrefix(el, "/") || pflist.IsTable(el) {
			add("masquerade_exceptions", "%q: files and tables must be expanded before rewriting", el)
		}
	}
	if o.AlwaysBCC != "" {
		if _, err := (&Rewriter{}).crunch(o.AlwaysBCC); err != nil {
			add("always_bcc", "%v", err)
		}
	}
	for _, p := range o.PropagateUnmatchedExtensions {
		switch strings.ToLower(p) {
		case "canonical", "virtual", "alias", "forward", "include", "generic":
		default:
			add("propagate_unmatched_extensions", "unknown value %q (valid: canonical, virtual, alias, forward, include, generic)", p)
		}
	}
	return out
}

// classMask turns a class list into bits; nil gives def. bad is the first
// name that is unknown or not in allowed.
func classMask(list []string, def, allowed int) (mask int, bad string) {
	if list == nil {
		return def, ""
	}
	for _, n := range list {
		found := false
		for _, c := range classNames {
			if strings.EqualFold(n, c.name) && allowed&c.bit != 0 {
				mask |= c.bit
				found = true
			}
		}
		if !found && bad == "" {
			bad = n
		}
	}
	return mask, bad
}

// allowedNames lists the class names in allowed, for an error message.
func allowedNames(allowed int) string {
	var names []string
	for _, c := range classNames {
		if allowed&c.bit != 0 {
			names = append(names, c.name)
		}
	}
	return strings.Join(names, ", ")
}

// New returns a Rewriter for o. Settings that Check reports are ignored;
// call Check first to refuse them.
func New(o Options) *Rewriter {
	r := &Rewriter{o: o, recursion: o.VirtualRecursionLimit, expansion: o.VirtualExpansionLimit}
	if r.recursion <= 0 {
		r.recursion = defaultVirtualLimit
	}
	if r.expansion <= 0 {
		r.expansion = defaultVirtualLimit
	}
	if r.tokenLimit = o.HeaderTokenLimit; r.tokenLimit <= 0 {
		r.tokenLimit = defaultHeaderTokenLimit
	}
	origin := address.NormalizeDomain(o.Myorigin)
	r.ao = maps.AddressOptions{
		Delimiters: o.Delimiter,
		IsLocal: func(d string) bool {
			if origin != "" && address.NormalizeDomain(d) == origin {
				return true
			}
			return o.IsLocal != nil && o.IsLocal(d)
		},
	}
	if o.IsLocalErr != nil {
		r.ao.IsLocalErr = func(d string) (bool, error) {
			if origin != "" && address.NormalizeDomain(d) == origin {
				return true, nil
			}
			return o.IsLocalErr(d)
		}
	}
	all := classEnvFrom | classEnvRcpt | classHdrFrom | classHdrRcpt
	r.canon, _ = classMask(o.CanonicalClasses, all, all)
	r.sendCanon, _ = classMask(o.SenderCanonicalClasses, classEnvFrom|classHdrFrom, classEnvFrom|classHdrFrom)
	r.rcptCanon, _ = classMask(o.RecipientCanonicalClasses, classEnvRcpt|classHdrRcpt, classEnvRcpt|classHdrRcpt)
	r.masq, _ = classMask(o.MasqueradeClasses, classEnvFrom|classHdrFrom|classHdrRcpt, all)
	for _, el := range o.MasqueradeDomains {
		d := masqDomain{truncate: true}
		for strings.HasPrefix(el, "!") {
			d.truncate, el = !d.truncate, el[1:]
		}
		if d.name = strings.ToLower(el); d.name != "" {
			r.masqDoms = append(r.masqDoms, d)
		}
	}
	for _, el := range o.MasqueradeExceptions {
		e := exception{}
		for strings.HasPrefix(el, "!") {
			e.neg, el = !e.neg, el[1:]
		}
		if e.name = strings.ToLower(el); e.name != "" {
			r.masqExcept = append(r.masqExcept, e)
		}
	}
	if o.PropagateUnmatchedExtensions == nil {
		r.propCanon, r.propVirt = true, true
	}
	for _, p := range o.PropagateUnmatchedExtensions {
		switch strings.ToLower(p) {
		case "canonical":
			r.propCanon = true
		case "virtual":
			r.propVirt = true
		}
	}
	return r
}

func (r *Rewriter) warnf(format string, args ...any) {
	if r.o.Warnf != nil {
		r.o.Warnf(format, args...)
	}
}

// Envelope rewrites the sender and recipients of env and returns the
// result in a new Envelope; env is not changed.
//
// The sender goes through canonical mapping and masquerading per the
// classes. Each recipient goes through canonical mapping, masquerading
// (only with envelope_recipient in masquerade_classes) and virtual alias
// expansion, which is recursive; an address that expands to itself is
// kept, and a loop between addresses is an *Error once
// virtual_alias_recursion_limit is reached, as in Postfix. Whether a
// recipient exists is not checked here: that is the SMTP server's job.
//
// BCC recipients come from recipient_bcc_maps (looked up with each
// recipient after canonical mapping and masquerading, before virtual
// aliasing, as cleanup_addr_recipient does), sender_bcc_maps (with the
// rewritten sender) and always_bcc (when there is a recipient). Unlike
// Postfix, a result may name several addresses, separated by commas or
// whitespace, and each gets a copy. A BCC recipient has Copy set and Orig
// naming the address whose lookup produced it (always_bcc: itself); it is
// rewritten like a recipient, including virtual aliasing, whose results
// stay copies. No BCC is added for a recipient that is itself a copy, nor
// for a Notification: Postfix makes automatic BCC recipients "only for new
// mail".
//
// The result lists the recipients (with their virtual expansions) in
// order, then the copies from recipient_bcc_maps, sender_bcc_maps and
// always_bcc. Duplicates are removed case-insensitively, keeping the first
// one, except that a copy never displaces a real recipient with the same
// address. Orig is the address the client gave; it is filled in from Addr
// where empty.
func (r *Rewriter) Envelope(ctx context.Context, env *envelope.Envelope) (*envelope.Envelope, error) {
	out := *env
	out.Rcpts = make([]envelope.Rcpt, 0, len(env.Rcpts)+1)
	bccOK := !env.Notification

	from, sender, err := r.sender(ctx, env.From)
	if err != nil {
		return nil, err
	}
	out.From = from

	var copies []envelope.Rcpt
	for _, rc := range env.Rcpts {
		orig := rc.Orig
		if orig == "" {
			orig = rc.Addr
		}
		a := parseAddr(rc.Addr)
		clean, exp, err := r.recipient(ctx, a)
		if err != nil {
			return nil, err
		}
		var c []envelope.Rcpt
		phase := ""
		if bccOK && !rc.Copy && r.o.RecipientBCC != nil && !clean.IsNull() {
			if c, err = r.bccLookup(ctx, "recipient_bcc_maps", r.o.RecipientBCC, clean); err != nil {
				return nil, err
			}
			if len(c) > 0 && r.o.Phase != nil {
				if phase, err = r.o.Phase(ctx, clean.String()); err != nil {
					return nil, &Error{Status: "4.3.0", Msg: fmt.Sprintf("migration phase of %s", clean), Err: err}
				}
			}
		}
		switch {
		case phase == "off":
			c = nil
		case phase == "forward":
			// The copy takes the recipient's place: its failures are the
			// sender's to hear about, as the recipient's would have been.
			for i := range c {
				c[i].Migration, c[i].Copy = envelope.MigrationForward, false
				c[i].Orig, c[i].NotifyOwner, c[i].Notify, c[i].ORcpt = orig, rc.NotifyOwner, rc.Notify, rc.ORcpt
			}
			out.Rcpts = append(out.Rcpts, c...)
			continue
		}
		for _, x := range exp {
			out.Rcpts = append(out.Rcpts, envelope.Rcpt{
				Addr: render(rc.Addr, a, x), Orig: orig, Copy: rc.Copy, NotifyOwner: rc.NotifyOwner, Migration: rc.Migration,
			})
		}
		for i := range c {
			c[i].Migration = envelope.MigrationCopy
		}
		copies = append(copies, c...)
	}
	if bccOK && r.o.SenderBCC != nil && !sender.IsNull() {
		c, err := r.bccLookup(ctx, "sender_bcc_maps", r.o.SenderBCC, sender)
		if err != nil {
			return nil, err
		}
		copies = append(copies, c...)
	}
	if bccOK && r.o.AlwaysBCC != "" && len(env.Rcpts) > 0 {
		list, err := r.crunch(r.o.AlwaysBCC)
		if err != nil {
			return nil, &Error{Status: "4.3.0", Msg: fmt.Sprintf("always_bcc: %v", err)}
		}
		for _, a := range list {
			c, err := r.copiesOf(ctx, a, a.String())
			if err != nil {
				return nil, err
			}
			copies = append(copies, c...)
		}
	}
	out.Rcpts = dedupe(append(out.Rcpts, copies...), r.o.ApartDomain)
	return &out, nil
}

// sender rewrites the envelope sender (cleanup_addr_sender) and returns
// it as a string for the envelope and as the address for sender_bcc_maps.
func (r *Rewriter) sender(ctx context.Context, from string) (string, address.Address, error) {
	a := parseAddr(from)
	if a.IsNull() {
		return from, a, nil
	}
	b := r.qualify(a)
	// cleanup_addr_sender, 20000520: "Replace mailer-daemon@$myorigin by
	// the null address, to handle bounced mail traffic more robustly."
	if r.o.Myorigin != "" && strings.EqualFold(b.Local, "MAILER-DAEMON") &&
		address.NormalizeDomain(b.Domain) == address.NormalizeDomain(r.o.Myorigin) {
		return "", address.Address{}, nil
	}
	var err error
	if b, err = r.canonical(ctx, b, classEnvFrom, r.sendCanon, r.o.SenderCanonical, "sender_canonical_maps"); err != nil {
		return "", b, err
	}
	if r.masq&classEnvFrom != 0 {
		b = r.masquerade(b)
	}
	return render(from, a, b), b, nil
}

// envRecipient rewrites one envelope recipient up to, not including,
// virtual aliasing (cleanup_addr_recipient, cleanup_addr_bcc_dsn).
func (r *Rewriter) envRecipient(ctx context.Context, a address.Address) (address.Address, error) {
	if a.IsNull() {
		return a, nil
	}
	a = r.qualify(a)
	a, err := r.canonical(ctx, a, classEnvRcpt, r.rcptCanon, r.o.RecipientCanonical, "recipient_canonical_maps")
	if err != nil {
		return a, err
	}
	if r.masq&classEnvRcpt != 0 {
		a = r.masquerade(a)
	}
	return a, nil
}

// canonical applies the sender or recipient canonical table, then
// canonical_maps, each when its classes include class.
func (r *Rewriter) canonical(ctx context.Context, a address.Address, class, ownClasses int, own maps.Table, ownName string) (address.Address, error) {
	var err error
	if own != nil && ownClasses&class != 0 {
		if a, err = r.map11(ctx, own, ownName, a); err != nil {
			return a, err
		}
	}
	if r.o.Canonical != nil && r.canon&class != 0 {
		if a, err = r.map11(ctx, r.o.Canonical, "canonical_maps", a); err != nil {
			return a, err
		}
	}
	return a, nil
}

// bccLookup looks addr up in a BCC table and returns the copies the
// result names. Postfix (mail_addr_find_to_internal with IGNORE_EXTENSION)
// takes the result as one address, verbatim: no @domain expansion, no
// extension propagation.
func (r *Rewriter) bccLookup(ctx context.Context, name string, t maps.Table, addr address.Address) ([]envelope.Rcpt, error) {
	m, ok, err := r.lookup(ctx, t, addr)
	if err != nil {
		return nil, &Error{Status: "4.3.0", Msg: fmt.Sprintf("%s: lookup of %s failed", name, addr), Err: err}
	}
	if !ok {
		return nil, nil
	}
	list, err := r.crunch(m.Value)
	if err != nil {
		return nil, &Error{Status: "4.3.0", Msg: fmt.Sprintf("%s: lookup of %s: %v", name, addr, err)}
	}
	var out []envelope.Rcpt
	for _, a := range list {
		c, err := r.copiesOf(ctx, a, addr.String())
		if err != nil {
			return nil, err
		}
		out = append(out, c...)
	}
	return out, nil
}

// recipient rewrites one envelope recipient: canonical mapping and
// masquerading give clean (what recipient_bcc_maps is looked up with),
// virtual alias expansion then gives the addresses to deliver to.
func (r *Rewriter) recipient(ctx context.Context, a address.Address) (clean address.Address, exp []address.Address, err error) {
	if clean, err = r.envRecipient(ctx, a); err != nil {
		return clean, nil, err
	}
	exp, err = r.virtual(ctx, clean)
	return clean, exp, err
}

// copiesOf rewrites one BCC address as cleanup_addr_bcc_dsn does, and
// expands its virtual aliases.
func (r *Rewriter) copiesOf(ctx context.Context, a address.Address, from string) ([]envelope.Rcpt, error) {
	_, exp, err := r.recipient(ctx, a)
	if err != nil {
		return nil, err
	}
	out := make([]envelope.Rcpt, len(exp))
	for i, x := range exp {
		out[i] = envelope.Rcpt{Addr: x.String(), Orig: from, Copy: true}
	}
	return out, nil
}

// dedupe removes recipients whose address (case-folded) came before, and
// copies whose address a real recipient has. Postfix keys its duplicate
// filter on the (original, rewritten) pair by default
// (enable_original_recipient = yes); mailtee keys on the address only, so
// a mailbox never gets the same message twice.
func dedupe(in []envelope.Rcpt, apartDomain func(string) bool) []envelope.Rcpt {
	keys := make([]string, len(in))
	real := make(map[string]bool, len(in))
	for i, rc := range in {
		// The internal form, so that "a"@x and a@x are one address; a
		// mailbox's copy to an address delivered here (ApartDomain) is
		// told apart by its migration kind.
		a := parseAddr(rc.Addr)
		keys[i] = strings.ToLower(a.Internal())
		if rc.Migration != "" && apartDomain != nil && apartDomain(strings.ToLower(a.Domain)) {
			// A copy and a forward both leave by copy_transport: one
			// kind, apart from the recipient delivered here.
			keys[i] = "migration:" + keys[i]
		}
		if !rc.Copy {
			real[keys[i]] = true
		}
	}
	seen := make(map[string]bool, len(in))
	out := in[:0]
	for i, rc := range in {
		k := keys[i]
		if seen[k] || rc.Copy && real[k] {
			continue
		}
		seen[k] = true
		out = append(out, rc)
	}
	return out
}

// parseAddr parses an envelope address. An address that does not parse
// (the SMTP server should not have let it in) is split at its last '@'
// and rewritten all the same, as Postfix would.
func parseAddr(s string) address.Address {
	if a, err := address.Parse(s); err == nil {
		a.Routed = false
		return a
	}
	l, d := address.Split(s)
	return address.Address{Local: l, Domain: d}
}

// render returns the envelope form of b, which was rewritten from a (the
// parsed form of orig): orig itself when nothing changed, so that an
// address is never re-quoted needlessly.
func render(orig string, a, b address.Address) string {
	if a.Local == b.Local && a.Domain == b.Domain {
		return orig
	}
	return b.String()
}

// qualify appends @$myorigin to an address without a domain, as
// trivial-rewrite(8) does in the "local" context (append_at_myorigin).
func (r *Rewriter) qualify(a address.Address) address.Address {
	if a.Domain == "" && a.Local != "" && r.o.Myorigin != "" {
		a.Domain = r.o.Myorigin
	}
	return a
}
