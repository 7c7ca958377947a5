package master

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/mailtee/mailtee/internal/asuser"
	"github.com/mailtee/mailtee/internal/cleanup"
	"github.com/mailtee/mailtee/internal/config"
	"github.com/mailtee/mailtee/internal/deliver"
	"github.com/mailtee/mailtee/internal/diag"
	"github.com/mailtee/mailtee/internal/envelope"
	"github.com/mailtee/mailtee/internal/local"
	"github.com/mailtee/mailtee/internal/maps"
	"github.com/mailtee/mailtee/internal/mastercf"
	"github.com/mailtee/mailtee/internal/migration"
	"github.com/mailtee/mailtee/internal/pace"
	"github.com/mailtee/mailtee/internal/pflist"
	"github.com/mailtee/mailtee/internal/rewrite"
	"github.com/mailtee/mailtee/internal/route"
	"github.com/mailtee/mailtee/internal/smtpd"
	"github.com/mailtee/mailtee/internal/srs"
	"github.com/mailtee/mailtee/internal/users"
)

// runtime is the part of a running server that follows main.cf and its
// tables, replaced whole by a reload.
type runtime struct {
	cfg     *config.Config
	router  *route.Router
	local   *local.Local
	cleanup *cleanup.Cleanup
	policy  *smtpd.Policy
	pacing  map[string]pace.Transport // by transport (pacing.go)
	srs     *srs.Codec                // nil: SRS off (srs.go)
	// mig is the migration settings of mail accepted now.
	mig *migration.Tables
	// copyApart is queue.Options.CopyApart: the address is delivered
	// here, where a copy never is.
	copyApart func(addr string) bool
}

// newRuntime opens the tables of cfg and builds routing, local delivery,
// rewriting and relay control on them.
func (s *Server) newRuntime(cfg *config.Config, opened map[string]maps.Table) (*runtime, error) {
	socketmapLimits(cfg)
	t, err := openTables(cfg, opened)
	if err != nil {
		return nil, err
	}
	// isLocalErr is for address lookups, where a mydestination table
	// that cannot answer must defer the mail (bareKeyDomains); isLocal
	// for the callers that only choose a path and recover either way.
	isLocalErr := func(domain string) (bool, error) {
		ok, err := t.mydest.Match(context.Background(), domain)
		if err != nil {
			return false, fmt.Errorf("mydestination lookup of %q: %w", domain, err)
		}
		return ok, nil
	}
	isLocal := func(domain string) bool {
		ok, _ := isLocalErr(domain)
		return ok
	}
	mig, err := migration.FromConfig(cfg)
	if err != nil {
		return nil, err
	}
	co := cleanupOptions(cfg, t, func(line string) { s.log.Printf("cleanup", "%s", line) })
	co.Settings = mig.ID
	addrOpts := maps.AddressOptions{Delimiters: cfg.Get("recipient_delimiter"), IsLocal: isLocal, IsLocalErr: isLocalErr}
	co.Rewrite.Phase = func(ctx context.Context, addr string) (string, error) { return mig.Phase(ctx, addr, addrOpts) }
	apartDomain := func(domain string) bool {
		for _, d := range t.destinations() {
			if d.list == nil {
				continue
			}
			// A lookup that fails keeps them apart: a duplicate rather
			// than a lost copy.
			if ok, err := d.list.Match(context.Background(), domain); ok || err != nil {
				return true
			}
		}
		return false
	}
	co.Rewrite.ApartDomain = apartDomain
	cl, err := cleanup.New(co)
	if err != nil {
		return nil, err
	}
	lda, err := localFor(cfg, t, isLocalErr, s.lmtp, s.forwarder.Forward, cl.RewriteCopies, s.asUser,
		func(msg string) { s.log.Printf("local", "warning: %s", msg) }, s.mig.Get)
	if err != nil {
		return nil, err
	}
	// master.cf as it is now: a reload changes a service's -o pacing
	// (Check, which the reload ran, reported bad values).
	mf, _ := loadMaster(cfg)
	pacing, _ := pacingTransports(cfg, mf)
	router := routerFor(cfg, t, mf)
	codec, err := srs.Load(cfg)
	if err != nil {
		return nil, err
	}
	return &runtime{
		srs:     codec,
		cfg:     cfg,
		router:  router,
		local:   lda,
		cleanup: cl,
		policy:  policyFor(cfg, t),
		pacing:  pacing,
		mig:     mig,
		copyApart: func(addr string) bool {
			_, domain, _ := strings.Cut(addr, "@")
			return apartDomain(domain)
		},
	}, nil
}

// tables is everything serve builds from main.cf's lookup tables and
// lists, opened once.
type tables struct {
	aliases, transport, localRcpt, virtual, mailboxBCC maps.Table
	mailboxCmd                                         maps.Table // mailbox_command_maps
	relayRcpt                                          maps.Table
	virtMailbox                                        maps.Table // virtual_mailbox_maps
	canonical, senderCanonical, rcptCanonical          maps.Table
	rcptBCC, senderBCC                                 maps.Table
	mydest, relay, virtDomains                         *maps.DomainList
	virtMailboxDomains                                 *maps.DomainList // virtual_mailbox_domains
	mynetworks                                         *maps.NetList
	limitExceptions                                    *maps.NetList // smtpd_client_event_limit_exceptions
	bareLFExclusions                                   *maps.NetList // smtpd_forbid_bare_newline_exclusions
}

// destination is a class of the domains this host is the final
// destination or relay for, by the parameter that lists them.
type destination struct {
	param string
	list  *maps.DomainList
}

// destinations are those classes, in trivial-rewrite's order.
func (t *tables) destinations() []destination {
	return []destination{{"mydestination", t.mydest}, {"virtual_alias_domains", t.virtDomains},
		{"virtual_mailbox_domains", t.virtMailboxDomains}, {"relay_domains", t.relay}}
}

// openList opens the tables of a list parameter as one maps.List; alias
// files (those named in alias_maps) are read in aliases(5) syntax.
func openList(cfg *config.Config, param string, aliasSpecs map[string]bool, opened map[string]maps.Table) (maps.Table, error) {
	var l maps.List
	for _, spec := range cfg.List(param) {
		if !pflist.IsTable(spec) {
			return nil, fmt.Errorf("%s: %q is not a type:table", param, spec)
		}
		if t, ok := opened[spec]; ok {
			l = append(l, t)
			continue
		}
		open := maps.Open
		if aliasSpecs[spec] {
			open = maps.OpenAlias
		}
		t, _, err := open(spec)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", param, err)
		}
		l = append(l, t)
	}
	if len(l) == 0 {
		return nil, nil
	}
	return l, nil
}

// parentMode says whether parent_domain_matches_subdomains names param.
func parentMode(cfg *config.Config, param string) bool {
	for _, p := range cfg.List("parent_domain_matches_subdomains") {
		if p == param {
			return true
		}
	}
	return false
}

// openTables opens the tables main.cf names; those in opened (by check)
// are used as they are.
func openTables(cfg *config.Config, opened map[string]maps.Table) (*tables, error) {
	aliasSpecs := cfg.AliasTables()
	t := &tables{}
	var err error
	if t.aliases, err = openList(cfg, "alias_maps", aliasSpecs, opened); err != nil {
		return nil, err
	}
	if t.transport, err = openList(cfg, "transport_maps", aliasSpecs, opened); err != nil {
		return nil, err
	}
	if t.virtual, err = openList(cfg, "virtual_alias_maps", aliasSpecs, opened); err != nil {
		return nil, err
	}
	for _, x := range []struct {
		dst   *maps.Table
		param string
	}{
		{&t.mailboxBCC, "mailbox_bcc_maps"},
		{&t.mailboxCmd, "mailbox_command_maps"},
		{&t.canonical, "canonical_maps"},
		{&t.senderCanonical, "sender_canonical_maps"},
		{&t.rcptCanonical, "recipient_canonical_maps"},
		{&t.rcptBCC, "recipient_bcc_maps"},
		{&t.senderBCC, "sender_bcc_maps"},
	} {
		if *x.dst, err = openList(cfg, x.param, aliasSpecs, opened); err != nil {
			return nil, err
		}
	}
	if cfg.Get("local_recipient_maps") != "" {
		if t.localRcpt, err = openList(cfg, "local_recipient_maps", aliasSpecs, opened); err != nil {
			return nil, err
		}
	}
	if t.relayRcpt, err = openList(cfg, "relay_recipient_maps", aliasSpecs, opened); err != nil {
		return nil, err
	}
	// mydestination also covers the addresses we listen on, written as
	// [1.2.3.4] domain literals, which Postfix accepts as local too.
	if t.mydest, err = maps.NewDomainList(cfg.List("mydestination"), parentMode(cfg, "mydestination")); err != nil {
		return nil, fmt.Errorf("mydestination: %w", err)
	}
	if t.relay, err = maps.NewDomainList(cfg.List("relay_domains"), parentMode(cfg, "relay_domains")); err != nil {
		return nil, fmt.Errorf("relay_domains: %w", err)
	}
	if t.virtDomains, err = maps.NewDomainList(cfg.List("virtual_alias_domains"), parentMode(cfg, "virtual_alias_domains")); err != nil {
		return nil, fmt.Errorf("virtual_alias_domains: %w", err)
	}
	if t.virtMailbox, err = openList(cfg, "virtual_mailbox_maps", aliasSpecs, opened); err != nil {
		return nil, err
	}
	if t.virtMailboxDomains, err = maps.NewDomainList(cfg.List("virtual_mailbox_domains"), parentMode(cfg, "virtual_mailbox_domains")); err != nil {
		return nil, fmt.Errorf("virtual_mailbox_domains: %w", err)
	}
	if t.mynetworks, err = maps.NewNetList(cfg.List("mynetworks")); err != nil {
		return nil, fmt.Errorf("mynetworks: %w", err)
	}
	if t.limitExceptions, err = maps.NewNetList(cfg.List("smtpd_client_event_limit_exceptions")); err != nil {
		return nil, fmt.Errorf("smtpd_client_event_limit_exceptions: %w", err)
	}
	if t.bareLFExclusions, err = maps.NewNetList(cfg.List("smtpd_forbid_bare_newline_exclusions")); err != nil {
		return nil, fmt.Errorf("smtpd_forbid_bare_newline_exclusions: %w", err)
	}
	return t, nil
}

// listenAddrs turns inet_interfaces and a port into listen addresses.
func listenAddrs(cfg *config.Config, port string) ([]string, error) {
	var out []string
	for _, ifc := range cfg.List("inet_interfaces") {
		switch ifc {
		case "all":
			return []string{net.JoinHostPort("", port)}, nil
		case "loopback-only":
			out = append(out, net.JoinHostPort("127.0.0.1", port), net.JoinHostPort("::1", port))
		case "localhost":
			out = append(out, net.JoinHostPort("127.0.0.1", port))
		default:
			host := strings.Trim(ifc, "[]")
			if net.ParseIP(host) == nil {
				ips, err := net.LookupIP(host)
				if err != nil || len(ips) == 0 {
					return nil, fmt.Errorf("inet_interfaces: cannot resolve %q: %v", ifc, err)
				}
				host = ips[0].String()
			}
			out = append(out, net.JoinHostPort(host, port))
		}
	}
	return out, nil
}

func mustDuration(cfg *config.Config, name string) time.Duration {
	d, _ := cfg.Duration(name) // validated by Check before serve starts
	return d
}

func mustInt(cfg *config.Config, name string) int {
	n, _ := cfg.Int(name)
	return int(n)
}

// routerFor builds the router from main.cf, and master.cf's services
// that deliver here (mf; nil: local and virtual), which a copy never
// takes.
func routerFor(cfg *config.Config, t *tables, mf *mastercf.File) *route.Router {
	return &route.Router{
		Here:             deliversHere(mf),
		TransportMaps:    t.transport,
		Local:            t.mydest,
		Relay:            t.relay,
		VirtualMailbox:   t.virtMailboxDomains,
		VirtualTransport: cfg.Get("virtual_transport"),
		LocalTransport:   cfg.Get("local_transport"),
		RelayTransport:   cfg.Get("relay_transport"),
		DefaultTransport: cfg.Get("default_transport"),
		Relayhost:        cfg.Get("relayhost"),
		Delimiter:        cfg.Get("recipient_delimiter"),
		CopyTransport:    cfg.Get("copy_transport"),
	}
}

// stressLimits are the session limits in stress mode, from cfg.Stressed().
func stressLimits(st *config.Config) smtpd.SessionLimits {
	return smtpd.SessionLimits{
		Timeout:          mustDuration(st, "smtpd_timeout"),
		HardErrorLimit:   mustInt(st, "smtpd_hard_error_limit"),
		SoftErrorLimit:   mustInt(st, "smtpd_soft_error_limit"),
		JunkCommandLimit: mustInt(st, "smtpd_junk_command_limit"),
		StartTLSTimeout:  mustDuration(st, "smtpd_starttls_timeout"),
	}
}

func policyFor(cfg *config.Config, t *tables) *smtpd.Policy {
	code := mustInt(cfg, "unknown_local_recipient_reject_code")
	p := &smtpd.Policy{
		Mynetworks:         t.mynetworks,
		LimitExceptions:    t.limitExceptions,
		Local:              t.mydest,
		Relay:              t.relay,
		Virtual:            t.virtDomains,
		LocalRecipients:    t.localRcpt,
		VirtualAliases:     t.virtual,
		Delimiter:          cfg.Get("recipient_delimiter"),
		UnknownLocalCode:   code,
		RelayRecipients:    t.relayRcpt,
		UnknownRelayCode:   mustInt(cfg, "unknown_relay_recipient_reject_code"),
		VirtualMailbox:     t.virtMailboxDomains,
		VirtualMailboxes:   t.virtMailbox,
		UnknownVirtualCode: mustInt(cfg, "unknown_virtual_mailbox_reject_code"),
		Restrictions:       restrictionsFor(cfg),
	}
	p.BareNewlineExclusions = t.bareLFExclusions
	p.SRS = srsAnswer(cfg, t)
	return p
}

// localFor builds the local delivery agent.
func localFor(cfg *config.Config, t *tables, isLocalErr func(string) (bool, error), lmtp *deliver.Client, forward func(context.Context, string, []envelope.Rcpt, *deliver.Message, string) error,
	rewrite func(context.Context, string, []envelope.Rcpt) ([]envelope.Rcpt, error), asUser *asuser.Pool, warn func(string),
	settings func(string) (*migration.Tables, error)) (*local.Local, error) {
	allowCmd, err := local.ParseExpansion(cfg.List("allow_mail_to_commands"))
	if err != nil {
		return nil, fmt.Errorf("allow_mail_to_commands: %w", err)
	}
	allowFile, err := local.ParseExpansion(cfg.List("allow_mail_to_files"))
	if err != nil {
		return nil, fmt.Errorf("allow_mail_to_files: %w", err)
	}
	strict, _ := cfg.Bool("strict_mailbox_ownership")
	origRcpt, _ := cfg.Bool("enable_original_recipient")
	o := local.Options{
		Aliases:            aliasTables(cfg, t.aliases),
		Myorigin:           cfg.Get("myorigin"),
		Delimiter:          cfg.Get("recipient_delimiter"),
		IsLocal:            func(d string) bool { ok, _ := isLocalErr(d); return ok },
		IsLocalErr:         isLocalErr,
		SpoolDir:           spoolDir(cfg),
		HomeMailbox:        cfg.Get("home_mailbox"),
		MailboxCommand:     cfg.Get("mailbox_command"),
		MailboxCommandMaps: t.mailboxCmd,
		Users:              users.Lookup,
		UserByID:           users.LookupID,
		AsUser:             asUser,
		Forward:            forward,
		MailboxBCC:         t.mailboxBCC,
		Migration:          settings,
		CopiesApart:        cfg.Get("copy_transport") != "",
		Rewrite:            rewrite,
		ForwardPath:        cfg.List("forward_path"),
		AllowCommands:      allowCmd,
		AllowFiles:         allowFile,
		CommandFilter:      cfg.Get("command_expansion_filter"),
		ForwardFilter:      cfg.Get("forward_expansion_filter"),
		ExecDir:            cfg.Get("command_execution_directory"),
		ExecDirFilter:      cfg.Get("execution_directory_expansion_filter"),
		Shell:              cfg.Get("local_command_shell"),
		TimeLimit:          mustDuration(cfg, "command_time_limit"),
		Export:             cfg.List("export_environment"),
		Locks:              cfg.List("mailbox_delivery_lock"),
		SizeLimit:          int64(mustInt(cfg, "mailbox_size_limit")),
		StrictOwner:        strict,
		StaleLockTime:      mustDuration(cfg, "stale_lock_time"),
		LockAttempts:       mustInt(cfg, "deliver_lock_attempts"),
		LockDelay:          mustDuration(cfg, "deliver_lock_delay"),
		OrigRcpt:           origRcpt,
		Warn:               warn,
	}
	if mt := cfg.Get("mailbox_transport"); strings.HasPrefix(mt, "lmtp:") {
		nexthop := strings.TrimPrefix(mt, "lmtp:")
		o.LMTP = func(ctx context.Context, msg *deliver.Message, rcpts []string) []error {
			res := lmtp.Deliver(ctx, nexthop, msg, rcpts)
			errs := make([]error, len(res))
			for i, r := range res {
				errs[i] = r.Err
			}
			return errs
		}
	}
	if asUser != nil {
		if o.DefaultPrivs, err = defaultPrivs(cfg.Get("default_privs")); err != nil {
			return nil, err
		}
	}
	return local.New(o), nil
}

// aliasTables pairs each table of alias_maps with the owner of its
// file: local(8) gives commands and files in an alias table its owner's
// rights, and default_privs' when root owns it (alias.c). Tables that
// are no file (inline:, static:) are root's, main.cf's.
func aliasTables(cfg *config.Config, aliases maps.Table) []local.AliasTable {
	list, _ := aliases.(maps.List)
	specs := cfg.List("alias_maps")
	out := make([]local.AliasTable, len(list))
	for i, tb := range list {
		out[i].Table = tb
		if i < len(specs) {
			out[i].Owner = tableOwner(specs[i])
		}
	}
	return out
}

// tableOwner is the owner of the file behind a type:name table spec, 0
// when it is no file or cannot be examined (then root's rules hold).
func tableOwner(spec string) uint32 {
	for {
		typ, name, ok := strings.Cut(spec, ":")
		if !ok {
			return 0
		}
		if typ == "proxy" {
			spec = name
			continue
		}
		if !strings.HasPrefix(name, "/") {
			return 0
		}
		st, err := os.Stat(name)
		if err != nil {
			st, err = os.Stat(strings.TrimSuffix(name, ".db"))
		}
		if err != nil {
			return 0
		}
		return st.Sys().(*syscall.Stat_t).Uid
	}
}

// defaultPrivs resolves default_privs as Postfix does: a known user,
// not root.
func defaultPrivs(name string) (local.User, error) {
	u, found, err := users.Lookup(name)
	switch {
	case err != nil:
		return local.User{}, fmt.Errorf("default_privs: cannot look up %q: %v", name, err)
	case !found:
		return local.User{}, fmt.Errorf("default_privs: unknown user %q; set it to an unprivileged user, such as nobody", name)
	case u.UID == 0:
		return local.User{}, fmt.Errorf("default_privs: %q has root privileges; set it to an unprivileged user, such as nobody", name)
	}
	return u, nil
}

// spoolDir is mail_spool_directory, made absolute.
func spoolDir(cfg *config.Config) string {
	d := cfg.Get("mail_spool_directory")
	if d != "" && !filepath.IsAbs(d) {
		abs, _ := filepath.Abs(d)
		if strings.HasSuffix(d, "/") {
			abs += "/"
		}
		return abs
	}
	return d
}

// privsFindings checks default_privs as Postfix does: a known user, not
// root. serve and reload check it too.
func privsFindings(cfg *config.Config) diag.List {
	var out diag.List
	if _, err := defaultPrivs(cfg.Get("default_privs")); err != nil {
		out.Errorf(cfg.File, settingLine(cfg, "default_privs"), "%v", err)
	}
	return out
}

// MailboxFindings reports mailboxes that mailtee, run as root, could not
// write with their recipient's privileges. Only `mailtee check` looks:
// with home_mailbox it examines every user's home directory, which on a
// site with automounted homes is no work for each start and reload.
func MailboxFindings(cfg *config.Config) diag.List {
	pw, err := local.ReadPasswd(passwdFile)
	if err != nil {
		return nil
	}
	dp, _ := defaultPrivs(cfg.Get("default_privs"))
	o := local.Options{SpoolDir: spoolDir(cfg), HomeMailbox: cfg.Get("home_mailbox"), DefaultPrivs: dp}
	var out diag.List
	for _, f := range local.CheckMailboxes(o, pw) {
		out.Warnf(cfg.File, settingLine(cfg, f.Param), "%s: %s", f.Param, f.Msg)
	}
	return out
}

// settingLine is the line of main.cf that sets param, 0 when none does.
func settingLine(cfg *config.Config, param string) int {
	s, _ := cfg.Set(param)
	return s.Line
}

// passwdFile is where local delivery finds mailbox owners.
const passwdFile = "/etc/passwd"

// cleanupOptions is cleanup's configuration from main.cf; log takes
// its log lines.
func cleanupOptions(cfg *config.Config, t *tables, log func(string)) cleanup.Options {
	relayCopies, _ := cfg.Bool("dual_delivery_relay")
	return cleanup.Options{
		Rewrite: rewrite.Options{
			IsLocalErr:                   bareKeyDomains(cfg, t),
			Delimiter:                    cfg.Get("recipient_delimiter"),
			Myorigin:                     cfg.Get("myorigin"),
			Canonical:                    t.canonical,
			SenderCanonical:              t.senderCanonical,
			RecipientCanonical:           t.rcptCanonical,
			CanonicalClasses:             setList(cfg, "canonical_classes"),
			SenderCanonicalClasses:       setList(cfg, "sender_canonical_classes"),
			RecipientCanonicalClasses:    setList(cfg, "recipient_canonical_classes"),
			MasqueradeDomains:            setList(cfg, "masquerade_domains"),
			MasqueradeClasses:            setList(cfg, "masquerade_classes"),
			MasqueradeExceptions:         setList(cfg, "masquerade_exceptions"),
			VirtualAliases:               t.virtual,
			VirtualRecursionLimit:        mustInt(cfg, "virtual_alias_recursion_limit"),
			VirtualExpansionLimit:        mustInt(cfg, "virtual_alias_expansion_limit"),
			PropagateUnmatchedExtensions: setList(cfg, "propagate_unmatched_extensions"),
			HeaderTokenLimit:             mustInt(cfg, "header_address_token_limit"),
			RecipientBCC:                 t.rcptBCC,
			SenderBCC:                    t.senderBCC,
			AlwaysBCC:                    cfg.Get("always_bcc"),
		},
		RelayCopies:     relayCopies,
		HopcountLimit:   mustInt(cfg, "hopcount_limit"),
		HeaderSizeLimit: mustInt(cfg, "header_size_limit"),
		HeaderClients:   headerRewriteClients(cfg, t),
		Hostname:        cfg.Get("myhostname"),
		Myorigin:        cfg.Get("myorigin"),
		MailName:        cfg.Get("mail_name"),
		AutoUTF8:        autoUTF8(cfg),
		Log:             log,
	}
}

// headerRewriteClients implements local_header_rewrite_clients for its
// two common values: permit_inet_interfaces (Postfix's default: this
// host's own addresses, loopback included) and permit_mynetworks.
func headerRewriteClients(cfg *config.Config, t *tables) func(string) bool {
	ours := map[string]bool{}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok {
				ours[ipn.IP.String()] = true
			}
		}
	}
	rules := cfg.List("local_header_rewrite_clients")
	return func(addr string) bool {
		ip, err := netip.ParseAddr(addr)
		if err != nil {
			return false
		}
		ip = ip.Unmap()
		for _, r := range rules {
			switch r {
			case "permit_inet_interfaces":
				if ip.IsLoopback() || ours[ip.String()] {
					return true
				}
			case "permit_mynetworks":
				if ok, _ := t.mynetworks.Match(context.Background(), ip); ok {
					return true
				}
			}
		}
		return false
	}
}

// bareKeyDomains says for which domains a table's bare "user" keys apply
// (Postfix: $myorigin, $mydestination, $inet_interfaces, $proxy_interfaces).
// A table in mydestination that cannot answer is an error, never "not
// local": rewriting waits for it (resolve_local's -1 in Postfix).
func bareKeyDomains(cfg *config.Config, t *tables) func(string) (bool, error) {
	origin := strings.ToLower(cfg.Get("myorigin"))
	ifaces := map[string]bool{}
	for _, p := range []string{"inet_interfaces", "proxy_interfaces"} {
		for _, a := range cfg.List(p) {
			ifaces["["+strings.Trim(a, "[]")+"]"] = true
		}
	}
	return func(domain string) (bool, error) {
		d := strings.ToLower(strings.TrimSuffix(domain, "."))
		if d == origin || ifaces[d] {
			return true, nil
		}
		ok, err := t.mydest.Match(context.Background(), d)
		if err != nil {
			return false, fmt.Errorf("mydestination lookup of %q: %w", d, err)
		}
		return ok, nil
	}
}

// setList is cfg.List, but an empty value is an empty, non-nil list:
// rewrite takes nil as "Postfix's default" and an empty list as "none".
func setList(cfg *config.Config, name string) []string {
	if l := cfg.List(name); l != nil {
		return l
	}
	return []string{}
}
