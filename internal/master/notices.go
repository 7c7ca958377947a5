package master

import (
	"cmp"
	"context"
	"strings"

	"github.com/mailtee/mailtee/internal/config"
	"github.com/mailtee/mailtee/internal/diag"
)

// noticeRouteFindings warns when a dual_delivery_relay's notices about
// refused copies would leave the way the copies leave. On the relay,
// everything that transport_maps or relayhost sends off the host is a
// copy on its way to the provider; when bounce_notice_recipient (by
// default postmaster, completed with @$myorigin: postmaster@ the very
// domain being migrated) is routed there too, the notice that Google
// refused a copy (an account not created yet) goes to Google, which
// refuses or files it where nobody looks, and a provider outage takes
// the notices with the copies. A warning, not an error: mail is still
// accepted and delivered as configured, and the provider may well
// accept postmaster@; the administrator decides.
func noticeRouteFindings(cfg *config.Config, t *tables) diag.List {
	var out diag.List
	if on, _ := cfg.Bool("dual_delivery_relay"); !on {
		return nil
	}
	rcpt := cfg.Get("bounce_notice_recipient")
	if rcpt == "" {
		return nil
	}
	addr := rcpt
	if !strings.Contains(addr, "@") {
		// As bounce.Policy completes it (Myorigin).
		addr += "@" + cfg.Get("myorigin")
	}
	r := routerFor(cfg, t, nil) // Route only: no copy here
	ctx := context.Background()
	hop, err := r.Route(ctx, addr)
	if err != nil {
		return nil // the table's own findings say why
	}
	local := cmp.Or(cfg.Get("local_transport"), "local")
	if tr, _, _ := strings.Cut(local, ":"); hop.Transport == tr || hop.Transport == "local" {
		return nil
	}
	var by []string
	plain := *r
	plain.TransportMaps = nil
	if base, err := plain.Route(ctx, addr); err == nil && base != hop {
		by = append(by, "transport_maps")
	}
	if rh := cfg.Get("relayhost"); rh != "" && hop.Nexthop == rh {
		by = append(by, "relayhost")
	}
	if by == nil {
		return nil
	}
	line := settingLine(cfg, "bounce_notice_recipient")
	if line == 0 {
		line = settingLine(cfg, "dual_delivery_relay")
	}
	shown := rcpt
	if addr != rcpt {
		shown = rcpt + " (" + addr + ")"
	}
	out.Warnf(cfg.File, line, "bounce_notice_recipient: %s is routed by %s to %s, off this host; with dual_delivery_relay = yes that is how copies leave, so a notice that the provider refused a copy goes to that same provider, and is refused or lost with the copies when the account is missing or the provider is down; set bounce_notice_recipient to a mailbox this host delivers (a local user) or one at another provider",
		shown, strings.Join(by, " and "), hop)
	return out
}
