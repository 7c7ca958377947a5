package master

import (
	"context"

	"github.com/mailtee/mailtee/internal/config"
	"github.com/mailtee/mailtee/internal/diag"
	"github.com/mailtee/mailtee/internal/maps"
	"github.com/mailtee/mailtee/internal/mastercf"
	"github.com/mailtee/mailtee/internal/route"
)

// deliversHere says which transports deliver on this host, which a copy
// must never take (route.Router.Here): local and virtual without
// master.cf, else master.cf's unix services running local(8) or
// virtual(8), under whatever name.
func deliversHere(mf *mastercf.File) func(string) bool {
	if mf == nil {
		return nil // the router's own: local, virtual
	}
	here := map[string]bool{}
	for _, s := range mf.Services {
		if s.Type == "unix" && (s.Program() == "local" || s.Program() == "virtual") {
			here[s.Name] = true
		}
	}
	return func(t string) bool { return here[t] }
}

// copyMapParams are the copy maps whose copies copy_transport routes.
var copyMapParams = []string{"recipient_bcc_maps", "mailbox_bcc_maps"}

// copyFindings is route.CheckCopies on main.cf: copy_transport against
// the transports of master.cf, or, without one, each listed copy whose
// address this host would deliver itself.
func copyFindings(cfg *config.Config, mf *mastercf.File, t *tables, opened map[string]maps.Table) diag.List {
	r := routerFor(cfg, t, mf)
	var cms []route.CopyMap
	for _, p := range copyMapParams {
		for _, spec := range cfg.List(p) {
			if tb, ok := opened[spec]; ok {
				cms = append(cms, route.CopyMap{Param: p, Spec: spec, Line: settingLine(cfg, p), Table: tb})
			}
		}
	}
	origin := cfg.Get("myorigin")
	return r.CheckCopies(context.Background(), cfg.File, settingLine(cfg, "copy_transport"), transportNames(mf), cms,
		func(local string) string { return local + "@" + origin })
}
