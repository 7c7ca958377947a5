package migrate

import (
	"context"
	"fmt"
	"strings"

	"github.com/mailtee/mailtee/internal/config"
	"github.com/mailtee/mailtee/internal/diag"
	"github.com/mailtee/mailtee/internal/maps"
)

// ConfigError is a fault in main.cf or a table it names: bad input, which
// the administrator fixes (exit 1), as opposed to a name service that
// fails (exit 2).
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

// FromConfig fills o's tables, domains and local recipient rules from
// main.cf, as Postfix reads them: local_recipient_maps (default
// "proxy:unix:passwd.byname $alias_maps"), alias_maps, virtual_alias_maps,
// virtual_mailbox_maps, mydestination, recipient_delimiter. When o.Domain
// is empty it becomes $myorigin, or $mydomain, or the first name in
// mydestination that is not localhost, whichever is local first.
// Warnings about the tables (a stripped colon, ...) are returned.
func FromConfig(cfg *config.Config, o *Options) (warnings []string, err error) {
	if err := cfg.Diags.Err(); err != nil {
		return nil, &ConfigError{err}
	}
	mydest, err := maps.NewDomainList(cfg.List("mydestination"), parentMode(cfg, "mydestination"))
	if err != nil {
		return nil, &ConfigError{fmt.Errorf("%s: mydestination: %w", cfg.File, err)}
	}
	o.IsLocal = func(domain string) bool {
		ok, _ := mydest.Match(context.Background(), strings.ToLower(domain))
		return ok
	}
	o.Delimiter = cfg.Get("recipient_delimiter")
	o.CopyTransport = cfg.Get("copy_transport")

	opened := map[string]maps.Table{}
	aliasSpecs := cfg.AliasTables()
	open := func(param, spec string) (Table, error) {
		if t, ok := opened[spec]; ok {
			return Table{Spec: spec, Table: t}, nil
		}
		openf := maps.Open
		if aliasSpecs[spec] {
			openf = maps.OpenAlias
		}
		t, diags, err := openf(spec)
		for _, d := range diags {
			if d.Severity == diag.Warning {
				warnings = append(warnings, d.String())
			}
		}
		if err != nil {
			return Table{}, &ConfigError{fmt.Errorf("%s: %s: %w", cfg.File, param, err)}
		}
		opened[spec] = t
		return Table{Spec: spec, Table: t}, nil
	}
	for _, x := range []struct {
		param string
		dst   *[]Table
		lost  string // what is missed when a table cannot be read
	}{
		{"alias_maps", &o.Aliases, "accounts it aliases away are not detected: check the output"},
		{"virtual_alias_maps", &o.VirtualAliases, "addresses it aliases away are not detected: check the output"},
		{"virtual_mailbox_maps", &o.VirtualMailboxes, "its mailboxes are not in the output (add them by hand)"},
	} {
		for _, spec := range cfg.List(x.param) {
			if !supported(spec) {
				warnings = append(warnings, fmt.Sprintf("%s: %s: mailtee cannot read this table type; %s", x.param, spec, x.lost))
				continue
			}
			t, err := open(x.param, spec)
			if err != nil {
				return warnings, err
			}
			*x.dst = append(*x.dst, t)
		}
	}
	lrm := cfg.List("local_recipient_maps")
	// Empty: Postfix accepts every local name and local(8) delivers to
	// the accounts; so the accounts are the mailboxes.
	o.Passwd = len(lrm) == 0
	for _, spec := range lrm {
		if strings.TrimPrefix(spec, "proxy:") == "unix:passwd.byname" {
			o.Passwd = true
			continue
		}
		if aliasSpecs[spec] {
			continue // alias names are not mailboxes
		}
		if !supported(spec) {
			warnings = append(warnings, fmt.Sprintf("local_recipient_maps: %s: mailtee cannot read this table type; its mailboxes are not in the output (add them by hand)", spec))
			continue
		}
		t, err := open("local_recipient_maps", spec)
		if err != nil {
			return warnings, err
		}
		o.Recipients = append(o.Recipients, t)
	}
	if o.Domain == "" {
		o.Domain = defaultDomain(cfg, o.IsLocal)
	}
	if o.Domain == "" && (o.Passwd || len(o.Recipients) > 0) {
		return warnings, &ConfigError{fmt.Errorf("%s: no local domain for the accounts' addresses: mydestination names none of $myorigin, $mydomain or another domain; give --domain", cfg.File)}
	}
	return warnings, nil
}

// supported says whether maps can open spec's type. Postfix sites may
// name types mailtee does not read (nis:mail.aliases is in Postfix's
// own default alias_maps, ldap:, mysql:): those are skipped with a
// warning, not an error, since the rest of the map is still right.
func supported(spec string) bool {
	typ, _, _ := strings.Cut(strings.TrimPrefix(spec, "proxy:"), ":")
	for _, t := range strings.Split(maps.Types, ",") {
		if strings.TrimSpace(t) == typ {
			return true
		}
	}
	return false
}

func defaultDomain(cfg *config.Config, isLocal func(string) bool) string {
	for _, d := range []string{cfg.Get("myorigin"), cfg.Get("mydomain")} {
		if d != "" && isLocal(d) {
			return strings.ToLower(d)
		}
	}
	for _, d := range cfg.List("mydestination") {
		d = strings.ToLower(d)
		if strings.ContainsAny(d, ":/[") || d == "localhost" || strings.HasPrefix(d, "localhost.") {
			continue
		}
		return d
	}
	return ""
}

func parentMode(cfg *config.Config, param string) bool {
	for _, p := range cfg.List("parent_domain_matches_subdomains") {
		if p == param {
			return true
		}
	}
	return false
}

// Sources names where o looks for mailboxes, for the output's header.
func (o *Options) Sources() []string {
	var s []string
	if o.Passwd {
		s = append(s, fmt.Sprintf("NSS accounts (getent passwd; uid >= %d, a login shell) @%s", o.MinUID, o.Domain))
	}
	for _, t := range o.Recipients {
		s = append(s, "local_recipient_maps "+t.Spec)
	}
	for _, t := range o.VirtualMailboxes {
		s = append(s, "virtual_mailbox_maps "+t.Spec)
	}
	var al []string
	for _, t := range o.Aliases {
		al = append(al, t.Spec)
	}
	for _, t := range o.VirtualAliases {
		al = append(al, t.Spec)
	}
	if len(al) > 0 {
		s = append(s, "minus what "+strings.Join(al, ", ")+" alias away")
	}
	if len(s) == 0 {
		s = append(s, "nothing (local_recipient_maps and virtual_mailbox_maps name no listable table)")
	}
	return s
}
