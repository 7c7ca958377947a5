package pflog

import (
	"context"
	"fmt"
	"strings"

	"github.com/mailtee/mailtee/internal/config"
	"github.com/mailtee/mailtee/internal/envelope"
	"github.com/mailtee/mailtee/internal/maps"
	"github.com/mailtee/mailtee/internal/pflist"
	"github.com/mailtee/mailtee/internal/rewrite"
)

// copyRules says which addresses the Postfix primary added to a message
// as automatic BCC recipients: its main.cf's recipient_bcc_maps,
// sender_bcc_maps and always_bcc, with the rewriting cleanup(8) applies
// before and after those lookups (canonical maps, masquerading, virtual
// aliases), done by mailtee's own rewrite package, which follows
// cleanup(8).
type copyRules struct {
	rw       *rewrite.Rewriter
	hostname string
	cache    map[string][]envelope.Rcpt
}

// loadCopyRules reads DIR/main.cf and opens the tables it names.
func loadCopyRules(dir string) (*copyRules, error) {
	cfg, err := config.Load(dir)
	if err != nil {
		return nil, fmt.Errorf("--postfix-config %s: %w", dir, err)
	}
	open := func(param string) (maps.Table, error) {
		var l maps.List
		for _, spec := range cfg.List(param) {
			if !pflist.IsTable(spec) {
				return nil, fmt.Errorf("%s: %s: %q is not a type:table", cfg.File, param, spec)
			}
			t, _, err := maps.Open(spec)
			if err != nil {
				return nil, fmt.Errorf("%s: %s: %w", cfg.File, param, err)
			}
			l = append(l, t)
		}
		if len(l) == 0 {
			return nil, nil
		}
		return l, nil
	}
	var o rewrite.Options
	for _, x := range []struct {
		dst   *maps.Table
		param string
	}{
		{&o.RecipientBCC, "recipient_bcc_maps"},
		{&o.SenderBCC, "sender_bcc_maps"},
		{&o.Canonical, "canonical_maps"},
		{&o.SenderCanonical, "sender_canonical_maps"},
		{&o.RecipientCanonical, "recipient_canonical_maps"},
		{&o.VirtualAliases, "virtual_alias_maps"},
	} {
		if *x.dst, err = open(x.param); err != nil {
			return nil, err
		}
	}
	mydest, err := maps.NewDomainList(cfg.List("mydestination"), false)
	if err != nil {
		return nil, fmt.Errorf("%s: mydestination: %w", cfg.File, err)
	}
	origin := strings.ToLower(cfg.Get("myorigin"))
	// Bare "user" keys apply to $myorigin and $mydestination (Postfix
	// also counts $inet_interfaces, written as [addr], rare in mail).
	o.IsLocal = func(domain string) bool {
		d := strings.ToLower(strings.TrimSuffix(domain, "."))
		if d == origin {
			return true
		}
		ok, _ := mydest.Match(context.Background(), d)
		return ok
	}
	o.Delimiter = cfg.Get("recipient_delimiter")
	o.Myorigin = cfg.Get("myorigin")
	o.AlwaysBCC = cfg.Get("always_bcc")
	list := func(name string) []string {
		if l := cfg.List(name); l != nil {
			return l
		}
		return []string{}
	}
	o.CanonicalClasses = list("canonical_classes")
	o.SenderCanonicalClasses = list("sender_canonical_classes")
	o.RecipientCanonicalClasses = list("recipient_canonical_classes")
	o.MasqueradeDomains = list("masquerade_domains")
	o.MasqueradeClasses = list("masquerade_classes")
	o.MasqueradeExceptions = list("masquerade_exceptions")
	o.PropagateUnmatchedExtensions = list("propagate_unmatched_extensions")
	if ps := o.Check(); len(ps) > 0 {
		return nil, fmt.Errorf("%s: %v", cfg.File, ps[0])
	}
	return &copyRules{rw: rewrite.New(o), hostname: cfg.Get("myhostname"), cache: map[string][]envelope.Rcpt{}}, nil
}

// of returns the BCC recipients cleanup(8) adds for one original
// recipient (with always_bcc), or, when rcpt is "", for the sender.
func (c *copyRules) of(ctx context.Context, from, rcpt string) ([]envelope.Rcpt, error) {
	key := from + "\x00" + rcpt
	if r, ok := c.cache[key]; ok {
		return r, nil
	}
	env := &envelope.Envelope{}
	if rcpt == "" {
		env.From = from
	} else {
		env.Rcpts = []envelope.Rcpt{{Addr: rcpt}}
	}
	out, err := c.rw.Envelope(ctx, env)
	if err != nil {
		return nil, err
	}
	var copies []envelope.Rcpt
	for _, r := range out.Rcpts {
		if r.Copy {
			copies = append(copies, r)
		}
	}
	c.cache[key] = copies
	return copies, nil
}
