// Package preflight checks, before the first copy of a migration, that the
// destination will take the copies: for every user in the copy maps and
// for each destination they go to (`mailtee preflight`).
//
// For each destination (a transport and next hop, as routing or
// copy_transport gives it), in this order:
//
//   - mx: the next hop's MX records, or the [host] literal, and their
//     addresses, asked of dns_servers (package dnsresolve);
//   - source-dns: the address mailtee sends from (the transport's bind
//     address, else the one the kernel picks) has a PTR record whose name
//     resolves back to it, for IPv4 and IPv6;
//   - allow-list: connect, EHLO, MAIL FROM:<postmaster@$myorigin> and the
//     RCPTs are not refused for the source address (Google's "Mail relay
//     denied" and "IP not in whitelist for RCPT domain", Microsoft 365's
//     "5.7.64 TenantAttribution; Relay Access Denied" and "5.7.606 Access
//     denied, banned sending IP", classify.go);
//   - tls: STARTTLS offered, the handshake, its version and cipher, the
//     certificate and whether it verifies for the MX name;
//   - account: one RCPT TO per user, no DATA, several per transaction and
//     RSET between transactions, at a gentle rate. A made-up address
//     (a random local part) is asked first in each domain: a site that
//     accepts it accepts every RCPT (Microsoft 365 without
//     directory-based edge blocking), and there every user is "unknown",
//     not "exists";
//   - send-test (--send-test ADDR): one real message to ADDR by the same
//     route, and the reply after DATA, where SPF and DMARC refusals of
//     forwarded mail arrive.
//
// Each check gives a Row: its status (ok, warn, FAIL, unknown), what was
// seen, and what to do. Other packages add checks with Options.Extra (the
// SRS checks of srs_domain): a Check returns Rows from what Env gives.
package preflight

import (
	"context"
	"crypto/x509"
	"net/netip"
	"time"

	"github.com/mailtee/mailtee/internal/dnsresolve"
)

// Status is a row's verdict.
type Status string

// The statuses; only Fail makes the command exit 3.
const (
	OK      Status = "ok"
	Warn    Status = "warn"
	Fail    Status = "FAIL"
	Unknown Status = "unknown"
)

// Row is the result of one check.
type Row struct {
	// Check names the check: copy-map, route, mx, source-dns,
	// allow-list, connect, tls, account, send-test (and what Extra
	// checks add, such as srs-mx).
	Check string `json:"check"`
	// Dest is the destination the check is about ("smtp:[mx.example]"),
	// "" for one about this host or its configuration.
	Dest   string `json:"destination,omitempty"`
	Target string `json:"target"` // what was checked: an address, a host, a table
	Status Status `json:"status"`
	Seen   string `json:"seen"`         // what was seen
	Do     string `json:"do,omitempty"` // what to do about it
}

// User is one entry of a copy map: the mailbox and its copy's address.
type User struct {
	Key  string // the copy map's key ("user1", "user1@example.com")
	Addr string // the copy's address, which the probes ask for
	From string // where the entry is: "mailbox_bcc_maps hash:/etc/postfix/copies"
}

// Destination is where a group of copies goes, and how mailtee's SMTP
// client reaches it.
type Destination struct {
	Transport, Nexthop string
	Host               string // the next hop's host or domain
	MX                 bool   // MX lookup (not "[host]")
	Port               int
	// Bind and Bind6 are the source addresses configured for the
	// transport (TRANSPORT_bind_address, a master.cf -o
	// smtp_bind_address, smtp_bind_address); "" lets the kernel pick.
	Bind, Bind6 string
	BindParam   string // which parameter set Bind, for texts
	Helo        string
	TLSLevel    string // smtp_tls_security_level of the transport
	Users       []User
}

// Name is how rows name the destination: "transport:nexthop".
func (d *Destination) Name() string { return d.Transport + ":" + d.Nexthop }

// Env is what an Extra check may use.
type Env struct {
	Resolver *dnsresolve.Resolver
	Hostname string
	// Sources are the source addresses the probes connected from (or
	// would connect from), once each, after the destinations' checks.
	Sources []netip.Addr
}

// Check is a check another package adds (Options.Extra).
type Check func(ctx context.Context, env *Env) []Row

// Options are what Run checks, built from main.cf by FromConfig.
type Options struct {
	Resolver *dnsresolve.Resolver
	Hostname string // myhostname, for texts and the test message
	Sender   string // the probes' MAIL FROM: postmaster@$myorigin

	Destinations []*Destination
	// Rows are findings made while building the options (a copy map that
	// cannot be listed, a copy that would be delivered here); they come
	// first in the report.
	Rows []Row

	// Interval is the time between two RCPT probes at one destination
	// (--rate); 0 means none.
	Interval time.Duration
	// PerTransaction is how many RCPTs one MAIL transaction carries
	// before RSET; 0 means 20.
	PerTransaction int

	// SendTest, when set, is the address of a test mailbox that gets one
	// real message, by SendTestDest.
	SendTest     string
	SendTestDest *Destination

	Extra []Check

	ConnectTimeout time.Duration  // 0: 30s
	CommandTimeout time.Duration  // 0: 60s
	RootCAs        *x509.CertPool // nil: the system's

	// Progress, when set, is told what is being probed (the command
	// prints it on standard error: a probe at 1/s takes a while).
	Progress func(string)
}

// Report is what Run found.
type Report struct {
	Rows []Row `json:"rows"`
}

// Failed reports whether any check failed.
func (r *Report) Failed() bool {
	for _, row := range r.Rows {
		if row.Status == Fail {
			return true
		}
	}
	return false
}

// Counts returns how many rows have each status.
func (r *Report) Counts() map[Status]int {
	out := map[Status]int{OK: 0, Warn: 0, Fail: 0, Unknown: 0}
	for _, row := range r.Rows {
		out[row.Status]++
	}
	return out
}

// Run runs every check. It never fails as a whole: what cannot be
// checked is a row saying why.
func Run(ctx context.Context, o Options) *Report {
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = 30 * time.Second
	}
	if o.CommandTimeout <= 0 {
		o.CommandTimeout = 60 * time.Second
	}
	if o.PerTransaction <= 0 {
		o.PerTransaction = 20
	}
	p := &prober{o: o, sourcesSeen: map[netip.Addr]bool{}}
	rep := &Report{Rows: append([]Row(nil), o.Rows...)}
	for _, d := range o.Destinations {
		if ctx.Err() != nil {
			rep.Rows = append(rep.Rows, p.notProbed(d.Users, "preflight was interrupted")...)
			continue
		}
		if o.Progress != nil {
			o.Progress(progressLine(d, o.Interval))
		}
		rep.Rows = append(rep.Rows, p.destination(ctx, d)...)
	}
	if o.SendTest != "" && o.SendTestDest != nil {
		rep.Rows = append(rep.Rows, p.sendTest(ctx, o.SendTestDest, o.SendTest))
	}
	env := &Env{Resolver: o.Resolver, Hostname: o.Hostname, Sources: p.sources}
	for _, c := range o.Extra {
		rep.Rows = append(rep.Rows, c(ctx, env)...)
	}
	if ctx.Err() != nil {
		// What was not checked is not known to be right: a script
		// must not read an interrupted run as success.
		rep.Rows = append(rep.Rows, Row{Check: "preflight", Status: Fail, Seen: "interrupted: " + ctx.Err().Error() + "; the report is incomplete",
			Do: "run preflight again to the end"})
	}
	return rep
}
