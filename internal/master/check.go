package master

import (
	"fmt"
	"os/user"
	"strings"

	"github.com/mailtee/mailtee/internal/cleanup"
	"github.com/mailtee/mailtee/internal/config"
	"github.com/mailtee/mailtee/internal/diag"
	"github.com/mailtee/mailtee/internal/maps"
	"github.com/mailtee/mailtee/internal/mastercf"
	"github.com/mailtee/mailtee/internal/migration"
	"github.com/mailtee/mailtee/internal/route"
	"github.com/mailtee/mailtee/internal/web"
)

// Check is every finding about cfg that the server acts on: main.cf's
// own, default_privs, each table's (opened once even when several
// parameters name it), and what each stage built on them would refuse.
// serve and reload refuse a configuration with errors and check lists
// them: one validation, so nothing serve refuses passes check. The
// tables that opened are returned too, so that serve need not read a
// large table twice.
func Check(cfg *config.Config) (diag.List, map[string]maps.Table) {
	// master.cf is read once here: its names for config's check, its
	// findings, and its services as transports.
	mf, mfDiags := loadMaster(cfg)
	setMasterNames(cfg, mf)
	all := cfg.Check()
	all = append(all, privsFindings(cfg)...)
	all = append(all, LocalDeliveryFindings(cfg)...)
	all = append(all, web.Check(cfg)...) // the ledger's and the HTTP listener's
	opened := map[string]maps.Table{}
	seen := map[string]bool{}
	for _, ref := range cfg.TableRefs() {
		if seen[ref.Spec] {
			continue
		}
		seen[ref.Spec] = true
		open := maps.Open
		if ref.Alias {
			open = maps.OpenAlias
		}
		t, diags, err := open(ref.Spec)
		if err == nil {
			opened[ref.Spec] = t
		}
		all = append(all, diags...)
		if err != nil && !diags.HasErrors() {
			all = append(all, diag.Diag{File: cfg.File, Line: ref.Line, Severity: diag.Error,
				Msg: fmt.Sprintf("%s: %s", ref.Param, strings.TrimPrefix(err.Error(), ref.Spec+": "))})
		}
	}
	all = append(all, masterFindings(cfg, mf, mfDiags, opened)...)
	if all.HasErrors() {
		return all, opened
	}
	all = append(all, stageFindings(cfg, mf, opened)...)
	return all, opened
}

// stageFindings builds what serve builds on the tables and reports what
// it would refuse, each under the parameter that causes it.
func stageFindings(cfg *config.Config, mf *mastercf.File, opened map[string]maps.Table) diag.List {
	var out diag.List
	t, err := openTables(cfg, opened)
	if err != nil {
		out.Errorf(cfg.File, 0, "%v", err)
		return out
	}
	out = append(out, noticeRouteFindings(cfg, t)...)
	out = append(out, srsFindings(cfg, t)...)
	out = append(out, migrationFindings(cfg)...)
	for _, p := range cleanup.Check(cleanupOptions(cfg, t, nil)) {
		out.Errorf(cfg.File, settingLine(cfg, p.Param), "%v", p)
	}
	if set, ok := cfg.Set("setgid_group"); ok {
		if cfg.Get("setgid_group") == "" {
			// main.cf.dist leaves it for an installer to fill in.
			out.Warnf(cfg.File, set.Line, "setgid_group is empty: only root can submit with mailtee sendmail; set it to a group, such as postdrop")
		} else if _, err := user.LookupGroup(cfg.Get("setgid_group")); err != nil {
			out.Warnf(cfg.File, set.Line, "setgid_group: %v: only root can submit with mailtee sendmail until the group exists (groupadd --system %s)", err, cfg.Get("setgid_group"))
		}
	}
	_, pd := pacingTransports(cfg, mf)
	out = append(out, pd...)
	out = append(out, copyFindings(cfg, mf, t, opened)...)
	return append(out, transportFindings(cfg, mf, opened)...)
}

// transportFindings are route.CheckTransports over main.cf's transport
// parameters and the transport_maps tables that opened, against the
// transports qmgr has agents for.
func transportFindings(cfg *config.Config, mf *mastercf.File, opened map[string]maps.Table) diag.List {
	var params []route.Setting
	for _, n := range route.TransportParams {
		params = append(params, route.Setting{Name: n, Value: cfg.Get(n), Line: settingLine(cfg, n)})
	}
	if len(cfg.List("virtual_mailbox_domains")) > 0 && !cfg.RunsVirtual() {
		// (virtual(8) itself is config's finding: checkDerived.)
		params = append(params, route.Setting{Name: "virtual_transport", Value: cfg.Get("virtual_transport"), Line: settingLine(cfg, "virtual_transport")})
	}
	var tables []route.Map
	for _, spec := range cfg.List("transport_maps") {
		if t, ok := opened[spec]; ok {
			tables = append(tables, route.Map{Spec: spec, Line: settingLine(cfg, "transport_maps"), Table: t})
		}
	}
	return route.CheckTransports(cfg.File, transportNames(mf), params, tables)
}

// migrationFindings are what serve would refuse in the migration
// settings (an unreadable table), and the phase tables' values that are
// not phases: a lookup that finds one defers the mail, so it is an error
// here, where the administrator can still fix it.
func migrationFindings(cfg *config.Config) diag.List {
	var out diag.List
	mig, err := migration.FromConfig(cfg)
	if err != nil {
		out.Errorf(cfg.File, settingLine(cfg, "dual_delivery_phase"), "%v", err)
		return out
	}
	for _, bad := range migration.CheckPhaseMaps(mig.PhaseMaps) {
		out.Errorf(cfg.File, settingLine(cfg, "dual_delivery_phase_maps"), "dual_delivery_phase_maps: %s", bad)
	}
	return out
}
