package master

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/mailtee/mailtee/internal/config"
	"github.com/mailtee/mailtee/internal/diag"
	"github.com/mailtee/mailtee/internal/dnsresolve"
	"github.com/mailtee/mailtee/internal/fleet"
	"github.com/mailtee/mailtee/internal/mastercf"
	"github.com/mailtee/mailtee/internal/pace"
	"github.com/mailtee/mailtee/internal/provider"
	"github.com/mailtee/mailtee/internal/ratelimit"
)

// pacedPrograms are the delivery programs whose transports are paced:
// the SMTP and LMTP clients. local(8)'s rate delay and recipient limit
// stay Postfix's business (README: local delivery is per domain here).
var pacedPrograms = map[string]bool{"smtp": true, "lmtp": true}

// pacingTransports are the pacing parameters of every SMTP and LMTP
// transport (smtp, relay, lmtp and master.cf's services of those
// programs, with their -o overrides), for internal/pace; a bad value is
// a finding under its parameter. Check and serve both call it. Unlike
// Postfix, whose queue manager reads TRANSPORT_destination_* from
// main.cf only and silently ignores them as a delivery service's -o
// (mailu's "polite" service sets them so), mailtee honours the -o: it
// is what such a master.cf means.
func pacingTransports(cfg *config.Config, mf *mastercf.File) (map[string]pace.Transport, diag.List) {
	out := map[string]pace.Transport{}
	var d diag.List
	said := map[string]bool{} // default_X is every transport's: one finding
	add := func(name, program string, sc *config.Config, s *mastercf.Service) {
		t, errs := transportPacing(sc, name, program)
		for _, e := range errs {
			if said[e.msg] {
				continue
			}
			said[e.msg] = true
			if s != nil {
				if o, ok := s.Override(e.param); ok {
					// (sc's lines of an -o are master.cf's.)
					d.Errorf(mf.Path, o.Line, "service %s (%s): -o %s", s.Name, program, e.msg)
					continue
				}
			}
			d.Errorf(cfg.File, settingLine(sc, e.param), "%s", e.msg)
		}
		out[name] = t
	}
	if mf == nil {
		for name, program := range map[string]string{"smtp": "smtp", "relay": "smtp", "lmtp": "lmtp"} {
			add(name, program, cfg, nil)
		}
		return out, d
	}
	for i := range mf.Services {
		s := &mf.Services[i]
		if runsAgent(s) && pacedPrograms[s.Program()] {
			add(s.Name, s.Program(), serviceConfig(cfg, s), s)
		}
	}
	return out, d
}

// pacingSuffixes name the parameters transportPacing reads, as
// TRANSPORT_X and default_X.
var pacingSuffixes = []string{
	"_destination_concurrency_limit", "_destination_recipient_limit", "_destination_rate_delay",
	"_recipient_rate_limit", "_destination_rate_limit", "_destination_bandwidth_limit", "_destination_profile",
	"_transport_rate_delay",
}

// pacingOverride says whether an -o of name on service s is honoured as
// one of its pacing parameters (s of a paced program).
func pacingOverride(s *mastercf.Service, name string) bool {
	if !pacedPrograms[s.Program()] {
		return false
	}
	for _, suffix := range pacingSuffixes {
		if name == s.Name+suffix || name == "default"+suffix {
			return true
		}
	}
	return false
}

type pacingError struct{ param, msg string }

// transportPacing reads one transport's parameters: TRANSPORT_X when
// main.cf (or an -o) sets it, else default_X, as Postfix's per-transport
// parameters default to the global one.
func transportPacing(cfg *config.Config, name, program string) (pace.Transport, []pacingError) {
	var errs []pacingError
	t := pace.Transport{SMTP: program == "smtp"}
	param := func(suffix string, f pace.Field) (string, string) {
		n := name + suffix
		if _, ok := cfg.Set(n); ok {
			t.Explicit |= f
			return n, cfg.Get(n)
		}
		g := "default" + suffix
		if _, ok := cfg.Set(g); ok {
			t.Explicit |= f
		}
		return g, cfg.Get(g)
	}
	count := func(suffix string, f pace.Field) int {
		n, v := param(suffix, f)
		i, err := strconv.Atoi(v)
		if err != nil || i < 0 {
			errs = append(errs, pacingError{n, fmt.Sprintf("%s = %s: expected a whole number of 0 or more", n, v)})
		}
		return i
	}
	windows := func(suffix string, f pace.Field) []ratelimit.Window {
		n, v := param(suffix, f)
		ws, err := ratelimit.ParseWindows(v)
		if err != nil {
			errs = append(errs, pacingError{n, fmt.Sprintf("%s = %s: %v", n, v, err)})
		}
		return ws
	}
	l := &t.Limits
	l.Concurrency = count("_destination_concurrency_limit", pace.Concurrency)
	l.RecipientLimit = count("_destination_recipient_limit", pace.RecipientLimit)
	delay := func(suffix string) time.Duration {
		n, v := param(suffix, 0)
		if v == "" {
			return 0
		}
		dl, err := config.ParseDuration(v, 's')
		if err != nil {
			errs = append(errs, pacingError{n, fmt.Sprintf("%s = %s: %v", n, v, err)})
		}
		return dl
	}
	l.RateDelay = delay("_destination_rate_delay")
	l.TransportDelay = delay("_transport_rate_delay")
	l.RecipientRate = windows("_recipient_rate_limit", pace.RecipientRate)
	l.DestinationRate = windows("_destination_rate_limit", pace.DestinationRate)
	l.Bandwidth = int64(count("_destination_bandwidth_limit", pace.Bandwidth))
	// The client enforces smtp_connection_reuse_count_limit itself
	// (deliver.Client.MaxReuse); set, it keeps the profile's messages
	// per connection away.
	if _, ok := cfg.Set(program + "_connection_reuse_count_limit"); ok {
		t.Explicit |= pace.ReuseCount
	}
	// A profile requires TLS unless the client's level says none: an
	// administrator who wrote none means it; Debian's stock "may" is
	// raised to encrypt for a provider that always offers TLS.
	if lvl := cfg.Get(program + "_tls_security_level"); lvl == "none" {
		t.Explicit |= pace.TLSLevel
	}
	n, v := param("_destination_profile", 0)
	if _, ok := provider.Lookup(v); !ok && v != "auto" && v != "none" {
		errs = append(errs, pacingError{n, fmt.Sprintf("%s = %s: expected auto, none, %s", n, v, strings.Join(provider.Names(), " or "))})
	}
	t.Profile = v
	return t, errs
}

// pacer is the queue's pacer: the transports' pacing in force (a
// reload changes it), destinations grouped by receiving site through
// MX lookups, suspensions logged as the queue manager's warnings.
func (s *Server) pacer(cfg *config.Config, resolver *dnsresolve.Resolver) *pace.Pacer {
	rollup := &provider.Rollup{Lookup: resolver.MXHosts}
	o := pace.Options{
		Transport: func(name string) (pace.Transport, bool) {
			t, ok := s.rt.Load().pacing[name]
			return t, ok
		},
		Site: rollup.Site,
		// A throttling reply suspends for a minute at first (Google
		// asks to "try again later"), less when minimal_backoff_time
		// is shorter, doubling up to maximal_backoff_time.
		MinSuspend: min(time.Minute, mustDuration(cfg, "minimal_backoff_time")),
		MaxSuspend: mustDuration(cfg, "maximal_backoff_time"),
		// Read at start, as the queue's other settings.
		RecipientDelimiter: cfg.Get("recipient_delimiter"),
		Warn:               func(format string, args ...any) { s.log.Printf("qmgr", "warning: "+format, args...) },
	}
	// In a fleet the windows are counted across the nodes, in the
	// database (internal/fleet/limits.go), unless fleet_shared_limits
	// = no; read at start, as the fleet itself. (A value other than
	// yes or no keeps the default, yes: sharing never loosens a limit.)
	if s.fleet != nil {
		if shared, err := cfg.Bool("fleet_shared_limits"); shared || err != nil {
			s.limits = fleet.NewLimits(s.fleet, fleet.LimitOptions{
				Log: func(format string, args ...any) { s.log.Printf("qmgr", format, args...) },
			})
			o.Shared = s.limits.Limiter
		}
	}
	return pace.New(o)
}

// pacingState is where the pacer's windows and suspensions outlive a
// restart: in the queue directory, which serve owns and writes (the
// data directory may not exist where mailtee runs unprivileged).
func pacingState(cfg *config.Config) string { return filepath.Join(QueueDir(cfg), "pacing.state") }

// pacingSaveEvery bounds what a crash forgets of the windows: at most
// this much of the last deliveries (a clean stop saves everything).
const pacingSaveEvery = 10 * time.Second

// loadPacing restores the pacer's state at start-up; a file that
// cannot be read is a warning, and the windows start empty.
func (s *Server) loadPacing() {
	if err := s.pace.LoadFile(pacingState(s.cfg)); err != nil {
		s.log.Printf("qmgr", "warning: pacing state not restored, rate windows start empty: %v", err)
	}
}

// savePacing saves the pacer's state every pacingSaveEvery until stop
// is closed.
func (s *Server) savePacing(stop chan struct{}) {
	if s.limits != nil {
		go s.shareSuspensions(stop)
	}
	t := time.NewTicker(pacingSaveEvery)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			s.savePacingNow()
		}
	}
}

func (s *Server) savePacingNow() {
	if s.pace == nil {
		return
	}
	if err := s.pace.SaveFile(pacingState(s.cfg)); err != nil {
		s.log.Printf("qmgr", "warning: cannot save the pacing state: %v", err)
	}
}

// shareSuspensions exchanges the pacer's throttling suspensions with the
// fleet every heartbeat until stop is closed: a mailbox or site a
// provider throttles for one node waits on every node. A suspension
// from another node is logged once.
func (s *Server) shareSuspensions(stop chan struct{}) {
	every := mustDuration(s.cfg, "fleet_heartbeat_interval")
	if every <= 0 {
		every = 5 * time.Second // fleet.Open's default too
	}
	t := time.NewTicker(every)
	defer t.Stop()
	seen := map[string]time.Time{}
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		now := time.Now()
		st := s.pace.Save(now)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		theirs, err := s.limits.SyncSuspensions(ctx, fleet.Suspensions{Sites: st.Sites, Mailboxes: st.Mailboxes}, now)
		cancel()
		if err != nil {
			continue // the fleet's log says when the database is away
		}
		var load pace.State
		for kind, m := range theirs {
			out := map[string]ratelimit.Suspension{}
			for key, sp := range m {
				out[key] = sp.Suspension
				if id := kind + " " + key; seen[id] != sp.Until {
					seen[id] = sp.Until
					s.log.Printf("qmgr", "warning: %s: deliveries suspended until %s by node %s: %s", key, sp.Until.Format(time.TimeOnly), sp.Node, sp.Reason)
				}
			}
			if kind == "site" {
				load.Sites = out
			} else {
				load.Mailboxes = out
			}
		}
		for id, until := range seen {
			if until.Before(now) {
				delete(seen, id)
			}
		}
		s.pace.Load(load, now)
	}
}
