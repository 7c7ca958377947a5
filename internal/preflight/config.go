package preflight

import (
	"cmp"
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/mailtee/mailtee/internal/config"
	"github.com/mailtee/mailtee/internal/dnsresolve"
	"github.com/mailtee/mailtee/internal/envelope"
	"github.com/mailtee/mailtee/internal/maps"
	"github.com/mailtee/mailtee/internal/mastercf"
	"github.com/mailtee/mailtee/internal/ratelimit"
	"github.com/mailtee/mailtee/internal/route"
)

// Settings are what the command line adds to main.cf.
type Settings struct {
	SendTest string        // --send-test ADDR
	Interval time.Duration // from --rate
}

// ParseRate parses --rate: one window "N/INTERVAL" ("1/s", "30/1m") in
// the syntax of TRANSPORT_recipient_rate_limit, and returns the time
// between two probes.
func ParseRate(s string) (time.Duration, error) {
	ws, err := ratelimit.ParseWindows(s)
	if err != nil {
		return 0, err
	}
	if len(ws) != 1 {
		return 0, fmt.Errorf("bad rate %q: give one N/INTERVAL, such as 1/s", s)
	}
	return ws[0].Per / time.Duration(ws[0].N), nil
}

// FromConfig builds the options of a preflight from main.cf (cfg, which
// Check found without errors), the tables Check opened, and the router
// serve would use. The users are the copy addresses of the listable
// entries of mailbox_bcc_maps and recipient_bcc_maps; on a
// dual_delivery_relay host, also the addresses its virtual_alias_maps
// and alias_maps send on to another host. Each goes where copy_transport
// sends it, when set, else where routing does.
func FromConfig(ctx context.Context, cfg *config.Config, opened map[string]maps.Table, router *route.Router, set Settings) (Options, error) {
	o := Options{
		Resolver: &dnsresolve.Resolver{Servers: cfg.List("dns_servers"), Timeout: 5 * time.Second},
		Hostname: cfg.Get("myhostname"),
		Sender:   "postmaster@" + cmp.Or(cfg.Get("myorigin"), cfg.Get("myhostname")),
		Interval: set.Interval,
		SendTest: set.SendTest,
	}
	if d, err := cfg.Duration("smtp_connect_timeout"); err == nil && d > 0 {
		o.ConnectTimeout = d
	}
	mf, _, err := mastercf.Load(cfg.Dir)
	if err != nil {
		return o, err
	}
	b := &builder{cfg: cfg, mf: mf, router: router, opened: opened, dests: map[string]*Destination{}}

	var users []User
	for _, param := range []string{"mailbox_bcc_maps", "recipient_bcc_maps"} {
		users = append(users, b.listed(param, false)...)
	}
	if relay, _ := cfg.Bool("dual_delivery_relay"); relay {
		for _, param := range []string{"virtual_alias_maps", "alias_maps"} {
			users = append(users, b.listed(param, true)...)
		}
	}
	if len(users) == 0 {
		b.rows = append(b.rows, Row{Check: "copy-map", Target: "mailbox_bcc_maps, recipient_bcc_maps", Status: Fail,
			Seen: "no copy address found in a table that can be listed",
			Do:   "write the copy map (mailtee migrate --copy-to PATTERN > copies; mailbox_bcc_maps = hash:" + cfg.Dir + "/copies)"})
	}
	seen := map[string]bool{}
	for _, u := range users {
		k := strings.ToLower(u.Key + "\x00" + u.Addr)
		if seen[k] {
			continue
		}
		seen[k] = true
		d, err := b.destination(ctx, u.Addr)
		if err != nil {
			return o, err
		}
		if d != nil {
			d.Users = append(d.Users, u)
		}
	}
	if set.SendTest != "" {
		if !strings.Contains(set.SendTest, "@") {
			return o, fmt.Errorf("--send-test %q: give a full address, such as test@example.com", set.SendTest)
		}
		d, err := b.destination(ctx, set.SendTest)
		if err != nil {
			return o, err
		}
		o.SendTestDest = d
	}
	for _, k := range b.order {
		if len(b.dests[k].Users) > 0 {
			o.Destinations = append(o.Destinations, b.dests[k])
		}
	}
	o.Rows = b.rows
	return o, nil
}

// builder gathers users and destinations from main.cf.
type builder struct {
	cfg    *config.Config
	mf     *mastercf.File
	router *route.Router
	opened map[string]maps.Table
	dests  map[string]*Destination
	order  []string
	rows   []Row
	routed map[string]bool // addresses already reported as not going out
}

// listed returns the users in the listable tables of param. For a relay's
// alias tables (sendOn), an entry is a user only when its result is one
// address that leaves this host.
func (b *builder) listed(param string, sendOn bool) []User {
	var out []User
	for _, spec := range b.cfg.List(param) {
		t, ok := b.opened[spec]
		if !ok {
			var err error
			open := maps.Open
			if b.cfg.AliasTables()[spec] {
				open = maps.OpenAlias
			}
			if t, _, err = open(spec); err != nil {
				b.rows = append(b.rows, Row{Check: "copy-map", Target: spec, Status: Fail, Seen: err.Error(),
					Do: "fix the table (mailtee check -c " + b.cfg.Dir + ")"})
				continue
			}
		}
		l, ok := t.(maps.Lister)
		if !ok {
			if !sendOn {
				b.rows = append(b.rows, Row{Check: "copy-map", Target: param + " " + spec, Status: Warn,
					Seen: "a table of this type cannot be listed: its users are not checked",
					Do:   "keep the per-user copies in a hash: or texthash: table (mailtee migrate writes one) to have them checked"})
			}
			continue
		}
		from := param + " " + spec
		for _, e := range l.Entries() {
			addrs := splitAddrs(e.Value)
			if sendOn {
				if len(addrs) != 1 || !strings.Contains(addrs[0], "@") || !b.leaves(addrs[0]) {
					continue
				}
			}
			for _, a := range addrs {
				if strings.Contains(a, "@") {
					out = append(out, User{Key: e.Key, Addr: a, From: from})
				}
			}
		}
	}
	return out
}

// leaves reports whether addr routes to another host (not local, error
// or discard).
func (b *builder) leaves(addr string) bool {
	hop, err := b.router.Route(context.Background(), addr)
	if err != nil {
		return false
	}
	return b.program(hop.Transport) == "smtp"
}

func splitAddrs(v string) []string {
	return strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' })
}

// destination returns the destination of a copy to addr, adding it to
// b.dests; nil when the copy does not leave by SMTP (a row says so).
func (b *builder) destination(ctx context.Context, addr string) (*Destination, error) {
	// copy_transport as serve's queue takes it (check refused one that
	// is null or delivers here); without it, the route of any address,
	// whose local delivery is a row of its own below.
	var hop envelope.Hop
	var err error
	if b.router.CopyTransport != "" {
		hop, _, err = b.router.CopyRoute(ctx, envelope.Rcpt{Addr: addr, Migration: envelope.MigrationCopy, Copy: true})
	} else {
		hop, err = b.router.Route(ctx, addr)
	}
	if err != nil {
		return nil, fmt.Errorf("routing %s: %w", addr, err)
	}
	transport, nexthop := hop.Transport, hop.Nexthop
	prog := b.program(transport)
	if prog != "smtp" {
		if b.routed == nil {
			b.routed = map[string]bool{}
		}
		if !b.routed[transport+":"+nexthop] {
			b.routed[transport+":"+nexthop] = true
			b.rows = append(b.rows, notSMTPRow(transport, nexthop, prog, addr))
		}
		return nil, nil
	}
	key := transport + ":" + nexthop
	if d, ok := b.dests[key]; ok {
		return d, nil
	}
	tc := b.transportConfig(transport)
	host, port, bracketed := dnsresolve.SplitNexthop(nexthop)
	if port == "" {
		port = cmp.Or(tc.Get("smtp_tcp_port"), "25")
	}
	n, err := dnsresolve.ParsePort(port)
	if err != nil {
		return nil, fmt.Errorf("next hop %s of %s: %v", nexthop, addr, err)
	}
	d := &Destination{Transport: transport, Nexthop: nexthop, Host: host, MX: !bracketed, Port: n,
		Helo: cmp.Or(tc.Get("smtp_helo_name"), tc.Get("myhostname")), TLSLevel: cmp.Or(tc.Get("smtp_tls_security_level"), "may")}
	d.Bind, d.BindParam = b.bind(tc, transport, "_bind_address")
	d.Bind6, _ = b.bind(tc, transport, "_bind_address6")
	b.dests[key] = d
	b.order = append(b.order, key)
	return d, nil
}

// bind is the source address of transport's SMTP client and the
// parameter that sets it, as helper B's config.BindAddress decides:
// TRANSPORT_bind_address(6) when main.cf or the service's -o sets it,
// else smtp_bind_address(6), which a master.cf -o may set too.
func (b *builder) bind(tc *config.Config, transport, suffix string) (addr, param string) {
	name := "smtp" + suffix
	if _, ok := tc.Set(transport + suffix); ok {
		name = transport + suffix
	}
	addr = tc.Get(name)
	if addr == "" {
		return "", ""
	}
	if s := b.service(transport); s != nil {
		if _, ok := s.Override(name); ok {
			return addr, "master.cf " + transport + " -o " + name
		}
	}
	return addr, name
}

// notSMTPRow says that copies to addr do not leave by SMTP.
func notSMTPRow(transport, nexthop, prog, addr string) Row {
	row := Row{Check: "route", Dest: transport + ":" + nexthop, Target: addr, Status: Fail}
	switch prog {
	case "local":
		row.Seen = "copies to " + addr + " (and others routed the same way) are delivered on this host by " + transport + ", not sent to the provider"
		row.Do = "set copy_transport (such as smtp:[aspmx.l.google.com]), or route the copies' domain with transport_maps"
	case "lmtp":
		row.Status = Warn
		row.Seen = "copies to " + addr + " go by LMTP to " + nexthop + ": not probed"
		row.Do = "check that mailbox server yourself"
	case "error", "discard":
		row.Seen = "copies to " + addr + " go to the " + prog + " transport (" + nexthop + "): they would never arrive"
		row.Do = "fix transport_maps or copy_transport"
	default:
		row.Seen = "copies to " + addr + " go by transport " + transport + ", which mailtee does not deliver with (" + prog + ")"
		row.Do = "fix transport_maps or copy_transport, or master.cf"
	}
	return row
}

// program is the delivery agent behind a transport name: a master.cf
// unix service's command, or Postfix's stock services without one.
func (b *builder) program(transport string) string {
	if s := b.service(transport); s != nil {
		return s.Program()
	}
	switch transport {
	case "smtp", "relay":
		return "smtp"
	case "lmtp", "local", "error", "discard":
		return transport
	case "virtual":
		return "local"
	}
	return transport
}

func (b *builder) service(transport string) *mastercf.Service {
	if b.mf == nil {
		return nil
	}
	for i := range b.mf.Services {
		if s := &b.mf.Services[i]; s.Name == transport && s.Type == "unix" {
			return s
		}
	}
	return nil
}

// transportConfig is main.cf as the transport's smtp client reads it:
// with its master.cf -o overrides.
func (b *builder) transportConfig(transport string) *config.Config {
	s := b.service(transport)
	if s == nil {
		return b.cfg
	}
	ov := make([]config.Setting, len(s.Overrides))
	for i, o := range s.Overrides {
		ov[i] = config.Setting{Name: o.Name, Value: o.Value, Line: o.Line}
	}
	return b.cfg.WithOverrides(s.Name, s.Program(), ov)
}
