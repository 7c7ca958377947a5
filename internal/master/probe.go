package master

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/mailtee/mailtee/internal/config"
	"github.com/mailtee/mailtee/internal/diag"
	"github.com/mailtee/mailtee/internal/maps"
	"github.com/mailtee/mailtee/internal/socketmap"
)

// socketmapLimits applies socketmap_max_reply_size and
// socketmap_max_query_size, process-wide as in Postfix (mail_params.c
// sets dict_sockmap_max_reply); check has refused values below 1.
func socketmapLimits(cfg *config.Config) {
	reply, _ := cfg.Int("socketmap_max_reply_size")
	query, _ := cfg.Int("socketmap_max_query_size")
	socketmap.SetLimits(int(reply), int(query))
}

// probeTimeout bounds each table's probe: check should answer in
// seconds even when a server is black-holed.
const probeTimeout = 3 * time.Second

// ProbeTables asks every opened table that another process answers (a
// database, a socketmap server: maps.Prober) whether it answers now, all
// at once, and warns under the parameter that names each one that does
// not. Never an error: a table that cannot be reached defers the mail
// that needs it (4xx at RCPT, deferred in the queue) until it answers,
// so it must not stop serve or a reload, and check says so instead.
func ProbeTables(cfg *config.Config, opened map[string]maps.Table) diag.List {
	socketmapLimits(cfg)
	type probe struct {
		ref config.TableRef
		p   maps.Prober
		err error
	}
	var probes []*probe
	seen := map[string]bool{}
	for _, ref := range cfg.TableRefs() {
		p, ok := opened[ref.Spec].(maps.Prober)
		if !ok || seen[ref.Spec] {
			continue
		}
		seen[ref.Spec] = true
		probes = append(probes, &probe{ref: ref, p: p})
	}
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, pr := range probes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pr.err = pr.p.Probe(ctx)
		}()
	}
	wg.Wait()
	var out diag.List
	for _, pr := range probes {
		if pr.err == nil {
			continue
		}
		what := "server"
		if typ, _, _ := strings.Cut(strings.TrimPrefix(pr.ref.Spec, "proxy:"), ":"); typ == "pgsql" || typ == "mysql" || typ == "sqlite" {
			what = "database"
		}
		out.Warnf(cfg.File, pr.ref.Line, "%s: %s: %s unreachable: %v; mail that needs this table is deferred until it answers",
			pr.ref.Param, pr.ref.Spec, what, pr.err)
	}
	return out
}
