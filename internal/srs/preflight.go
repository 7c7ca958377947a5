package srs

import (
	"context"

	"github.com/mailtee/mailtee/internal/config"
	"github.com/mailtee/mailtee/internal/preflight"
)

// PreflightCheck is mailtee preflight's check of srs_domain (rows
// srs-mx and srs-spf): CheckDNS for the source addresses the probes
// used. nil when SRS is off.
func PreflightCheck(cfg *config.Config) preflight.Check {
	domain := cfg.Get("srs_domain")
	if domain == "" {
		return nil
	}
	return func(ctx context.Context, env *preflight.Env) []preflight.Row {
		if len(env.Sources) == 0 {
			return []preflight.Row{{Check: "srs-mx", Target: domain, Status: preflight.Unknown,
				Seen: "no source address is known (no destination was probed)", Do: "run preflight with a copy map, or check srs_domain's MX and SPF by hand"}}
		}
		var rows []preflight.Row
		for _, f := range CheckDNS(ctx, env.Resolver, domain, env.Sources) {
			st := map[Level]preflight.Status{OK: preflight.OK, Warn: preflight.Warn, Fail: preflight.Fail}[f.Level]
			rows = append(rows, preflight.Row{Check: "srs-" + f.Check, Target: domain, Status: st, Seen: f.Text, Do: f.Fix})
		}
		return rows
	}
}
