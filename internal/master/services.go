package master

import (
	"cmp"
	"crypto/tls"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/mailtee/mailtee/internal/config"
	"github.com/mailtee/mailtee/internal/deliver"
	"github.com/mailtee/mailtee/internal/diag"
	"github.com/mailtee/mailtee/internal/dnsresolve"
	"github.com/mailtee/mailtee/internal/maps"
	"github.com/mailtee/mailtee/internal/mastercf"
	"github.com/mailtee/mailtee/internal/qmgr"
	"github.com/mailtee/mailtee/internal/route"
	"github.com/mailtee/mailtee/internal/smtpd"
)

// smtpService is one SMTP listener group: a master.cf inet service whose
// command is smtpd, or, with no master.cf, smtpd_port on inet_interfaces.
type smtpService struct {
	name string // master.cf's service name: "smtp", "submission", "127.0.0.1:2525"
	line int    // its line in master.cf; 0 without master.cf
	// cfg is main.cf with the service's -o overrides, as Postfix's
	// smtpd for this service reads it.
	cfg        *config.Config
	overridden bool
	addrs      []string // host:port to listen on
	// wrapper is smtpd_tls_wrappermode: TLS from the first byte
	// (smtps, submissions), with tls.
	wrapper   bool
	tls       *tls.Config
	maxProc   int // master.cf's maxproc: smtpd's MaxClients
	srv       *smtpd.Server
	listeners []net.Listener
}

// loadMaster reads master.cf beside main.cf; nil without one.
func loadMaster(cfg *config.Config) (*mastercf.File, diag.List) {
	f, d, err := mastercf.Load(cfg.Dir)
	if err != nil {
		d.Errorf(filepath.Join(cfg.Dir, "master.cf"), 0, "%v", err)
	}
	return f, d
}

// setMasterNames tells cfg's check what master.cf defines: its services
// (for per-service names such as dovecot_destination_recipient_limit)
// and the main.cf names its -o values refer to ($mua_sender_restrictions,
// the classes of -o smtpd_restriction_classes), which main.cf may then
// define as user-defined parameters, as postconf counts them.
func setMasterNames(cfg *config.Config, mf *mastercf.File) {
	if mf == nil {
		return
	}
	var svcs []config.MasterService
	var refs []string
	for _, s := range mf.Services {
		svcs = append(svcs, config.MasterService{Name: s.Name, Type: s.Type, Command: s.Program()})
		for _, o := range s.Overrides {
			refs = append(refs, config.References(o.Value)...)
			if o.Name == "smtpd_restriction_classes" {
				refs = append(refs, config.SplitList(o.Value)...)
			}
		}
	}
	cfg.SetMasterNames(svcs, refs)
}

// settings are a service's -o overrides as main.cf settings (lines are
// master.cf's).
func settings(s *mastercf.Service) []config.Setting {
	out := make([]config.Setting, len(s.Overrides))
	for i, o := range s.Overrides {
		out[i] = config.Setting{Name: o.Name, Value: o.Value, Line: o.Line}
	}
	return out
}

// serviceConfig is main.cf as the daemon of service s reads it.
func serviceConfig(cfg *config.Config, s *mastercf.Service) *config.Config {
	return cfg.WithOverrides(s.Name, s.Program(), settings(s))
}

// smtpServices are the SMTP listeners of cfg and mf. Without master.cf
// (mf nil) it is smtpd_port on every inet_interfaces address, as mailtee
// always did. With one, each inet service whose command is smtpd is a
// listener on its host:port, or on each inet_interfaces address when it
// names no host (master_ent.c); smtpd_port, when main.cf sets it,
// replaces the port of a service written "smtp" (mailtee's own
// parameter, so that tests and examples run beside a Postfix).
// Addresses are resolved only when resolve is set (serve, not check).
func smtpServices(cfg *config.Config, mf *mastercf.File, resolve bool) ([]*smtpService, diag.List) {
	var d diag.List
	if mf == nil {
		svc := &smtpService{name: "smtp", cfg: cfg, maxProc: processLimit(cfg, nil)}
		svc.wrapper, _ = cfg.Bool("smtpd_tls_wrappermode")
		if resolve {
			addrs, err := listenAddrs(cfg, smtpdPort(cfg.Get("smtpd_port")))
			if err != nil {
				d.Errorf(cfg.File, settingLine(cfg, "inet_interfaces"), "%v", err)
			}
			svc.addrs = addrs
		}
		return []*smtpService{svc}, d
	}
	var out []*smtpService
	for i := range mf.Services {
		s := &mf.Services[i]
		if s.Type != "inet" || s.Program() != "smtpd" {
			continue
		}
		host, port, _ := mastercf.SplitEndpoint(s.Name) // Parse checked it
		if _, set := cfg.Set("smtpd_port"); set && port == "smtp" {
			port = cfg.Get("smtpd_port")
		}
		num, ok := mastercf.ServicePort(port)
		if !ok {
			d.Errorf(mf.Path, s.Line, "service %s: unknown service name %q: it is neither a port number nor in %s; write the port number", s.Name, port, mastercf.ServicesFile)
			continue
		}
		svc := &smtpService{name: s.Name, line: s.Line, cfg: serviceConfig(cfg, s), overridden: len(s.Overrides) > 0, maxProc: processLimit(cfg, s)}
		svc.wrapper, _ = svc.cfg.Bool("smtpd_tls_wrappermode")
		if !resolve && host != "" && host != "localhost" && net.ParseIP(strings.Trim(host, "[]")) == nil {
			// As check says of inet_interfaces: what serve refuses
			// must not pass check silently.
			d.Warnf(mf.Path, s.Line, "service %s: %q is not an IP address; serve resolves it at start-up and refuses to start if it does not resolve", s.Name, host)
		}
		if resolve {
			var err error
			if host == "" {
				svc.addrs, err = listenAddrs(cfg, num)
			} else {
				svc.addrs, err = hostAddrs(host, num)
			}
			if err != nil {
				d.Errorf(mf.Path, s.Line, "service %s: %v", s.Name, err)
			}
		}
		out = append(out, svc)
	}
	return out, d
}

// smtpdPort is smtpd_port as a number ("smtp" is 25).
func smtpdPort(p string) string {
	if n, ok := mastercf.ServicePort(p); ok {
		return n
	}
	return p
}

// hostAddrs are the addresses of a service's host, each one listened on
// (inet_addr_host: every address of a name).
func hostAddrs(host, port string) ([]string, error) {
	if net.ParseIP(host) != nil {
		return []string{net.JoinHostPort(host, port)}, nil
	}
	ips, err := net.LookupIP(host)
	if err != nil || len(ips) == 0 {
		return nil, fmt.Errorf("bad hostname or network address %q: %v", host, err)
	}
	var out []string
	for _, ip := range ips {
		out = append(out, net.JoinHostPort(ip.String(), port))
	}
	return out, nil
}

// processLimit is a service's maxproc: "-" is default_process_limit, 0 no
// limit.
func processLimit(cfg *config.Config, s *mastercf.Service) int {
	if s == nil || s.MaxProc == "-" {
		return mustInt(cfg, "default_process_limit")
	}
	n, _ := strconv.Atoi(s.MaxProc)
	return n
}

// agentPrograms are the delivery agents of master.cf that mailtee runs
// itself, by command: a unix service running one of them is a transport
// mailtee delivers with, under the service's name.
var agentPrograms = map[string]bool{"smtp": true, "lmtp": true, "local": true, "error": true, "discard": true}

// runsAgent says whether mailtee delivers for unix service s. error(8)
// named "retry" defers instead of bouncing, which mailtee's error agent
// does not do.
func runsAgent(s *mastercf.Service) bool {
	return s.Type == "unix" && agentPrograms[s.Program()] && !(s.Program() == "error" && s.Name == "retry")
}

// postfixInternal are Postfix's own daemons: mailtee does their work
// itself (pickup, cleanup, qmgr, bounce, ...) or has no need of them
// (tlsmgr, proxymap, anvil, ...), so their services need no word.
var postfixInternal = map[string]bool{
	"pickup": true, "cleanup": true, "qmgr": true, "oqmgr": true, "tlsmgr": true, "trivial-rewrite": true,
	"bounce": true, "verify": true, "flush": true, "proxymap": true, "showq": true, "anvil": true,
	"scache": true, "postlogd": true, "dnsblog": true, "tlsproxy": true,
}

// masterAgents are the delivery agents for master.cf's services, by
// transport name, built on base (the built-in transports). An smtp
// service whose -o overrides change the SMTP client (clientParams) gets
// a client of its own.
func (srv *Server) masterAgents(mf *mastercf.File, base map[string]qmgr.Agent) map[string]qmgr.Agent {
	out := map[string]qmgr.Agent{}
	for i := range mf.Services {
		s := &mf.Services[i]
		if !runsAgent(s) {
			continue
		}
		switch s.Program() {
		case "smtp":
			out[s.Name] = base["smtp"]
			if c := srv.serviceClient(s); c != nil {
				out[s.Name] = qmgr.SMTPAgent{Client: c}
			}
		case "lmtp":
			out[s.Name] = base["lmtp"]
			if c := srv.lmtpServiceClient(s); c != nil {
				out[s.Name] = qmgr.SMTPAgent{Client: c}
			}
		case "local":
			out[s.Name] = base["local"]
		case "error":
			out[s.Name] = qmgr.ErrorAgent{}
		case "discard":
			out[s.Name] = qmgr.DiscardAgent{}
		}
	}
	return out
}

// serviceClient is the SMTP client of smtp service svc when its -o
// overrides change one of clientParams, else nil.
func (s *Server) serviceClient(svc *mastercf.Service) *deliver.Client {
	sc := serviceConfig(s.cfg, svc)
	own := false
	for _, o := range svc.Overrides {
		own = own || clientParams[o.Name] && sc.Get(o.Name) != s.cfg.Get(o.Name)
	}
	// TRANSPORT_bind_address(6), in main.cf or as an -o.
	if v4, v6 := bindAddrs(sc, svc.Name, "smtp"); v4 != s.smtp.BindAddr || v6 != s.smtp.BindAddr6 {
		own = true
	}
	if !own {
		return nil
	}
	c := s.smtpClient(sc, s.smtp.Resolver, svc.Name)
	s.clients = append(s.clients, c)
	return c
}

// transportNames are the transport names valid for check: master.cf's
// unix services (those mailtee cannot run are reported by
// MasterFindings, with what to do), or the built-in ones without it.
func transportNames(mf *mastercf.File) []string {
	if mf == nil {
		return Transports()
	}
	var out []string
	for _, s := range mf.Services {
		if s.Type == "unix" && !slices.Contains(out, s.Name) {
			out = append(out, s.Name)
		}
	}
	sort.Strings(out)
	return out
}

// MasterFindings is what check and serve say about master.cf: its
// syntax, the services mailtee cannot run (an error where that changes
// what is accepted or how mail is delivered, one warning for the rest),
// each listener's -o overrides checked as main.cf's settings are, and
// the tables they name. opened are the tables Check opened already.
func MasterFindings(cfg *config.Config, opened map[string]maps.Table) diag.List {
	mf, d := loadMaster(cfg)
	return masterFindings(cfg, mf, d, opened)
}

// masterFindings is MasterFindings on the master.cf Check read, with the
// findings of reading it.
func masterFindings(cfg *config.Config, mf *mastercf.File, loaded diag.List, opened map[string]maps.Table) diag.List {
	out := append(diag.List(nil), loaded...)
	out = append(out, restrictionFindings(cfg, cfg.File, 0, "")...)
	if mf == nil {
		return append(out, wrapperFindings(cfg, cfg.File, settingLine(cfg, "smtpd_tls_wrappermode"), "")...)
	}
	if set, ok := cfg.Set("smtpd_port"); ok && !slices.ContainsFunc(mf.Services, func(s mastercf.Service) bool {
		_, port, _ := mastercf.SplitEndpoint(s.Name)
		return s.Type == "inet" && s.Program() == "smtpd" && port == "smtp"
	}) {
		out.Warnf(cfg.File, set.Line, "smtpd_port has no effect: it replaces the port of master.cf's smtp service, and %s has no smtpd service on port smtp; mailtee listens where master.cf says", mf.Path)
	}
	_, d := smtpServices(cfg, mf, false) // port names not in the services database
	out = append(out, d...)
	refs := transportRefs(cfg, mf, opened)
	var unused []string
	for i := range mf.Services {
		s := &mf.Services[i]
		where := fmt.Sprintf("service %s (%s, %s)", s.Name, s.Type, s.Program())
		switch {
		case s.Type == "inet" && s.Program() == "smtpd":
			out = append(out, listenerFindings(cfg, mf, s, opened)...)
		case s.Type == "inet" && s.Program() == "postscreen":
			out.Errorf(mf.Path, s.Line, "%s: mailtee has no postscreen(8), so this port would accept mail without postscreen's checks; make its command smtpd (smtp inet n - y - - smtpd) and comment out the smtpd pass, dnsblog and tlsproxy services, or keep Postfix on this host", where)
		case s.Type == "inet":
			out.Errorf(mf.Path, s.Line, "%s: mailtee runs only smtpd on inet services, and would not answer on %s; comment the service out, or keep Postfix on this host", where, s.Name)
		case s.Type == "unix" && slices.ContainsFunc(refs[s.Name], isFilterRef):
			for _, r := range refs[s.Name] {
				if isFilterRef(r) {
					out.Errorf(mf.Path, s.Line, "%s: this is the content filter that %s sends mail through; mailtee cannot pass mail through an after-queue content filter (amavis, spamassassin), so mail would be delivered unfiltered or wait in the queue: remove content_filter and the filter's services (this one and its re-injection smtpd), and filter elsewhere, or keep Postfix on this host", where, r)
				}
			}
		case runsAgent(s):
			out = append(out, agentFindings(cfg, mf, s)...)
		case len(refs[s.Name]) > 0:
			for _, r := range refs[s.Name] {
				out.Errorf(mf.Path, s.Line, "%s: %s names this service, which runs %s; mailtee cannot deliver with it, so that mail would wait in the queue; %s",
					where, r, s.Program(), cannotRun(s.Program()))
			}
		case s.Type == "pass" || postfixInternal[s.Program()] || s.Name == "retry":
			// postscreen's smtpd pass service is covered by the
			// postscreen finding; Postfix's own daemons are mailtee's.
		default:
			unused = append(unused, fmt.Sprintf("%s (%s, line %d)", s.Name, s.Program(), s.Line))
		}
	}
	if len(unused) > 0 {
		out.Warnf(mf.Path, 0, "%d services run programs mailtee does not have, and nothing in main.cf or the transport tables refers to them: %s; mail routed to them later would wait in the queue", len(unused), strings.Join(unused, ", "))
	}
	return out
}

// isFilterRef says whether a transportRefs entry is a content_filter.
func isFilterRef(r string) bool { return strings.Contains(r, "content_filter") }

// cannotRun says what to do about a service that runs program.
func cannotRun(program string) string {
	if postfixInternal[program] || program == "error" {
		return "name a delivery transport instead (a service running smtp, lmtp, local, error or discard)"
	}
	return "route that mail with smtp or lmtp (a Dovecot LMTP socket, an MTA in front of the program), or keep Postfix on this host"
}

// transportRefs finds what names each transport: main.cf's transport
// parameters and content_filter, each listener's content_filter, and
// the entries of transport_maps tables that can be listed.
func transportRefs(cfg *config.Config, mf *mastercf.File, opened map[string]maps.Table) map[string][]string {
	refs := map[string][]string{}
	add := func(value, who string) {
		if t, _, _ := strings.Cut(strings.TrimSpace(value), ":"); t != "" && !slices.Contains(refs[t], who) {
			refs[t] = append(refs[t], who)
		}
	}
	// The defaults of the transports mailtee routes with count; those
	// of virtual_transport and the like only matter when set.
	for _, n := range append(slices.Clone(route.TransportParams), "content_filter", "fallback_transport", "virtual_transport", "mailbox_transport") {
		if _, set := cfg.Set(n); set {
			add(cfg.Get(n), fmt.Sprintf("main.cf's %s (%s, line %d)", n, cfg.File, settingLine(cfg, n)))
		} else if slices.Contains(route.TransportParams, n) {
			add(cfg.Get(n), fmt.Sprintf("main.cf's %s (its default)", n))
		}
	}
	for i := range mf.Services {
		s := &mf.Services[i]
		if o, ok := s.Override("content_filter"); ok && s.Type == "inet" {
			add(serviceConfig(cfg, s).Get("content_filter"), fmt.Sprintf("service %s's -o content_filter (%s, line %d)", s.Name, mf.Path, o.Line))
		}
	}
	for _, spec := range cfg.List("transport_maps") {
		src, ok := opened[spec].(maps.Sourced)
		if !ok {
			continue
		}
		src.Source(func(e maps.SourceEntry) {
			add(e.Value, fmt.Sprintf("transport_maps (%s) for %s", spec, e.Key))
		})
	}
	return refs
}

// listenerFindings checks an smtpd service's -o overrides as main.cf's
// settings are, and says which of them mailtee cannot honour.
func listenerFindings(cfg *config.Config, mf *mastercf.File, s *mastercf.Service, opened map[string]maps.Table) diag.List {
	var out diag.List
	sc := serviceConfig(cfg, s)
	where := "service " + s.Name
	refd := referenced(cfg, mf)
	var rest []config.Setting // checked as main.cf's settings are
	for _, o := range s.Overrides {
		v := sc.Get(o.Name)
		switch {
		case o.Name == "content_filter":
			if v != "" {
				out.Errorf(mf.Path, o.Line, "%s: -o content_filter=%s: mailtee cannot pass mail through an after-queue content filter (amavis, spamassassin): mail on this port would be delivered unfiltered; remove the override and the filter's services, and filter elsewhere, or keep Postfix on this host", where, o.Value)
			}
			continue
		case o.Name == "smtpd_proxy_filter":
			if v != "" {
				out.Errorf(mf.Path, o.Line, "%s: -o smtpd_proxy_filter=%s: mailtee has no before-queue proxy filter: mail on this port would be accepted unfiltered; remove the override, or keep Postfix on this host", where, o.Value)
			}
			continue
		case strings.HasSuffix(o.Name, "milters"):
			if v != "" {
				out.Errorf(mf.Path, o.Line, "%s: -o %s=%s: mailtee has no milter support: mail on this port would be accepted without the milters (DKIM, spam, virus checks); remove the override, or keep Postfix on this host", where, o.Name, o.Value)
			}
			continue
		case o.Name == "syslog_name":
			continue // mailtee logs every listener under one name; cosmetic
		case !config.Known(o.Name):
			if !refd[o.Name] {
				// postconf: "unused parameter: name=value".
				out.Warnf(mf.Path, o.Line, "%s: unused parameter: %s=%s; neither Postfix nor mailtee has it, and nothing refers to it as $%s", where, o.Name, o.Value, o.Name)
			}
			continue
		}
		rest = append(rest, config.Setting{Name: o.Name, Value: o.Value, Line: o.Line})
	}
	for _, f := range sc.CheckSettings(rest) {
		f.File, f.Msg = mf.Path, where+": -o "+f.Msg
		out = append(out, f)
	}
	out = append(out, wrapperFindings(sc, mf.Path, s.Line, where+": ")...)
	out = append(out, listenerTLSFindings(sc, mf, s, where)...)
	if len(s.Overrides) > 0 {
		out = append(out, restrictionFindings(sc, mf.Path, s.Line, where+": ")...)
		if !out.HasErrors() {
			if _, err := openTables(sc, opened); err != nil {
				out.Errorf(mf.Path, s.Line, "%s: %v", where, err)
			}
		}
	}
	return out
}

// agentFindings: a delivery service mailtee runs delivers with main.cf's
// settings for its program, except the SMTP client's clientParams and
// the pacing of SMTP and LMTP transports (pacing.go); an -o that
// changes another is not honoured.
func agentFindings(cfg *config.Config, mf *mastercf.File, s *mastercf.Service) diag.List {
	var out diag.List
	sc := serviceConfig(cfg, s)
	var ignored []mastercf.Override
	for _, o := range s.Overrides {
		if o.Name == "syslog_name" || sc.Get(o.Name) == cfg.Get(o.Name) {
			continue
		}
		if pacingOverride(s, o.Name) {
			continue // pacingTransports checks it
		}
		if s.Program() == "smtp" && clientParams[o.Name] || bindOverride(s, o.Name) {
			for _, f := range sc.CheckSettings([]config.Setting{{Name: o.Name, Value: o.Value, Line: o.Line}}) {
				f.File, f.Msg = mf.Path, "service "+s.Name+": -o "+f.Msg
				out = append(out, f)
			}
			continue
		}
		ignored = append(ignored, o)
	}
	out = append(out, ignoredOverrideFindings(sc, mf, s, ignored)...)
	return out
}

// wrapperFindings: smtpd_tls_wrappermode needs a certificate, or
// Postfix's smtpd ends every session ("TLS wrapper mode requires a
// certificate" is not accepted mail either).
func wrapperFindings(cfg *config.Config, file string, line int, prefix string) diag.List {
	var out diag.List
	wrapper, _ := cfg.Bool("smtpd_tls_wrappermode")
	if !wrapper {
		return nil
	}
	if cfg.Get("smtpd_tls_cert_file") == "" && len(cfg.List("smtpd_tls_chain_files")) == 0 || cfg.Get("smtpd_tls_security_level") == "none" {
		out.Errorf(file, line, "%ssmtpd_tls_wrappermode = yes needs a certificate: set smtpd_tls_cert_file and smtpd_tls_key_file (in main.cf or as -o), and a smtpd_tls_security_level other than none", prefix)
	} else if _, param, missing, err := cfg.ServerCertificate(); err == nil && missing != "" {
		// serve would run this port without TLS: plaintext where
		// clients expect TLS from the first byte (Postfix's smtpd ends
		// each session instead).
		out.Errorf(file, line, "%ssmtpd_tls_wrappermode = yes needs a certificate, and %s: open %s: no such file or directory; install it, or remove this service", prefix, param, missing)
	}
	return out
}

// restrictionFindings is smtpd_check_init's sanity check: the relay or
// the recipient restrictions must reject by default, or Postfix's smtpd
// refuses to run ("specify at least one working instance of").
func restrictionFindings(cfg *config.Config, file string, line int, prefix string) diag.List {
	var out diag.List
	r := restrictionsFor(cfg)
	for _, list := range [][]string{r.Relay, r.Recipient} {
		for _, w := range list {
			switch strings.ToLower(w) {
			case "reject_unauth_destination", "defer_unauth_destination", "reject", "defer":
				return nil
			}
		}
	}
	if line == 0 {
		line = max(settingLine(cfg, "smtpd_relay_restrictions"), settingLine(cfg, "smtpd_recipient_restrictions"))
	}
	out.Errorf(file, line, "%sin parameter smtpd_relay_restrictions or smtpd_recipient_restrictions, specify at least one working instance of: reject_unauth_destination, defer_unauth_destination, reject or defer (Postfix's smtpd refuses to run without one: it would be an open relay)", prefix)
	return out
}

// referenced are the parameter names that main.cf's values or
// master.cf's overrides refer to as $name: user-defined names that an
// override may set.
func referenced(cfg *config.Config, mf *mastercf.File) map[string]bool {
	out := map[string]bool{}
	for _, s := range mf.Services {
		for _, o := range s.Overrides {
			for _, n := range config.References(o.Value) {
				out[n] = true
			}
		}
	}
	for _, s := range cfg.Settings() {
		for _, n := range config.References(s.Value) {
			out[n] = true
		}
	}
	return out
}

// restrictionsFor are the smtpd restrictions of cfg. smtpd_relay_restrictions
// not set in main.cf (or an override) is Postfix's default from
// compatibility level 1 on, whatever compatibility_level says: below it,
// Postfix's default is empty, and smtpd would refuse to run with an empty
// smtpd_recipient_restrictions; mailtee has always applied the default.
func restrictionsFor(cfg *config.Config) *smtpd.Restrictions {
	r := &smtpd.Restrictions{Relay: defaultRelayRestrictions, Recipient: cfg.List("smtpd_recipient_restrictions")}
	if _, set := cfg.Set("smtpd_relay_restrictions"); set {
		r.Relay = cfg.List("smtpd_relay_restrictions")
	}
	return r
}

var defaultRelayRestrictions = []string{"permit_mynetworks", "permit_sasl_authenticated", "defer_unauth_destination"}

// servicePolicies builds each listener's relay control and recipient
// checks: the runtime's for a listener without overrides, else its own,
// on the tables of its configuration.
func servicePolicies(rt *runtime, svcs []*smtpService, opened map[string]maps.Table) ([]*smtpd.Policy, error) {
	out := make([]*smtpd.Policy, len(svcs))
	for i, svc := range svcs {
		if !svc.overridden {
			out[i] = rt.policy
			continue
		}
		t, err := openTables(svc.cfg, opened)
		if err != nil {
			return nil, fmt.Errorf("master.cf service %s: %w", svc.name, err)
		}
		out[i] = policyFor(svc.cfg, t)
	}
	return out, nil
}

// reloadPolicies gives each running listener the relay control and
// recipient checks of the reloaded configuration: main.cf's, with the
// service's overrides from master.cf as it is now. Listeners themselves
// change at the next restart.
func (s *Server) reloadPolicies(cfg *config.Config, rt *runtime, opened map[string]maps.Table) {
	mf, _ := loadMaster(cfg)
	now, _ := smtpServices(cfg, mf, false)
	for _, svc := range s.svcs {
		if p := s.reloadedPolicy(svc, now, rt, opened); p != nil {
			svc.srv.SetPolicy(p)
		}
	}
}

// smtpClient is the SMTP client that cfg describes for transport:
// main.cf's (transport "smtp"), or a master.cf smtp service's with its
// -o overrides (clientParams) and its TRANSPORT_bind_address(6).
func (s *Server) smtpClient(cfg *config.Config, resolver *dnsresolve.Resolver, transport string) *deliver.Client {
	bind4, bind6 := bindAddrs(cfg, transport, "smtp")
	enforce, _ := cfg.Bool("smtp_bind_address_enforce")
	tlsLevel := cfg.Get("smtp_tls_security_level")
	if tlsLevel == "" {
		tlsLevel = "may"
	}
	return &deliver.Client{
		HeloName:       cmp.Or(cfg.Get("smtp_helo_name"), cfg.Get("myhostname")),
		TLSLevel:       tlsLevel,
		BindAddr:       bind4,
		BindAddr6:      bind6,
		BindEnforce:    enforce,
		Port:           portName(cfg.Get("smtp_tcp_port"), "25"),
		ConnectTimeout: mustDuration(cfg, "smtp_connect_timeout"),
		// One timeout for every command reply: the shortest of Postfix's
		// greeting/HELO, MAIL and RCPT timeouts (300s each by default).
		CommandTimeout: min(mustDuration(cfg, "smtp_helo_timeout"), mustDuration(cfg, "smtp_mail_timeout"), mustDuration(cfg, "smtp_rcpt_timeout")),
		Resolver:       resolver,
		MaxIdle:        5 * time.Second,
		MaxReuse:       mustInt(cfg, "smtp_connection_reuse_count_limit"),
		MaxLifetime:    mustDuration(cfg, "smtp_connection_reuse_time_limit"),
		Log:            s.log.Slog().With("component", "smtp"),
	}
}

// clientParams are the -o overrides of an smtp service that mailtee's
// SMTP client honours (smtpClient reads them).
var clientParams = map[string]bool{
	"smtp_helo_name": true, "myhostname": true, "smtp_tls_security_level": true,
	"smtp_bind_address": true, "smtp_bind_address6": true, "smtp_bind_address_enforce": true, "smtp_tcp_port": true,
	"smtp_connect_timeout": true, "smtp_helo_timeout": true, "smtp_mail_timeout": true, "smtp_rcpt_timeout": true,
	"smtp_connection_reuse_count_limit": true, "smtp_connection_reuse_time_limit": true,
}
