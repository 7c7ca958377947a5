package master

import (
	"context"

	"github.com/mailtee/mailtee/internal/config"
	"github.com/mailtee/mailtee/internal/envelope"
	"github.com/mailtee/mailtee/internal/maps"
	"github.com/mailtee/mailtee/internal/migration"
)

// PhasePlan is `mailtee phase`'s view of cfg: every user of the copy
// maps, its phase now and under phase ("" for now), and where its mail
// goes, routed as serve routes it. Nothing is changed.
func PhasePlan(ctx context.Context, cfg *config.Config, phase string) ([]migration.Change, []string, error) {
	d, opened := Check(cfg)
	if d.HasErrors() {
		return nil, nil, d.Err()
	}
	t, err := openTables(cfg, opened)
	if err != nil {
		return nil, nil, err
	}
	mig, err := migration.FromConfig(cfg)
	if err != nil {
		return nil, nil, err
	}
	mf, _ := loadMaster(cfg)
	router := routerFor(cfg, t, mf)
	isLocal := func(domain string) bool {
		ok, _ := t.mydest.Match(ctx, domain)
		return ok
	}
	return migration.Plan(ctx, migration.PlanOptions{
		Tables:       mig,
		RecipientBCC: t.rcptBCC,
		Phase:        phase,
		Myorigin:     cfg.Get("myorigin"),
		AddrOpts:     maps.AddressOptions{Delimiters: cfg.Get("recipient_delimiter"), IsLocal: isLocal},
		// As the queue routes: copy_transport for a copy, and a copy
		// that would be delivered here shows its reason.
		Route: func(ctx context.Context, r envelope.Rcpt) (envelope.Hop, error) {
			if hop, ok, err := router.CopyRoute(ctx, r); ok || err != nil {
				return hop, err
			}
			return router.Route(ctx, r.Addr)
		},
	})
}
