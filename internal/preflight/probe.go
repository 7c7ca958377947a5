package preflight

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/mailtee/mailtee/internal/dnsresolve"
)

// prober runs the checks of one Run.
type prober struct {
	o           Options
	sources     []netip.Addr // every source address checked, in order
	sourcesSeen map[netip.Addr]bool
}

func progressLine(d *Destination, every time.Duration) string {
	s := fmt.Sprintf("preflight: %s: %d address(es)", d.Name(), len(d.Users))
	if every > 0 {
		s += fmt.Sprintf(", one RCPT every %v", every)
	}
	return s
}

// destination runs the checks of one destination.
func (p *prober) destination(ctx context.Context, d *Destination) []Row {
	var rows []Row
	add := func(r ...Row) {
		for _, x := range r {
			if x.Dest == "" {
				x.Dest = d.Name()
			}
			rows = append(rows, x)
		}
	}
	hosts, mx := p.mx(ctx, d)
	add(mx...)
	if len(hosts) == 0 {
		add(p.notProbed(d.Users, "no address for "+d.Nexthop)...)
		return rows
	}
	s, r, ok := p.open(ctx, d, hosts, true)
	add(r...)
	if !ok {
		add(p.notProbed(d.Users, "the session at "+d.Nexthop+" did not get as far as RCPT")...)
		return rows
	}
	add(p.accounts(ctx, d, hosts, s)...)
	return rows
}

// notProbed are the rows of users whose account was not asked about.
func (p *prober) notProbed(users []User, why string) []Row {
	var rows []Row
	for _, u := range users {
		rows = append(rows, Row{Check: "account", Target: u.Addr, Status: Unknown, Seen: "not probed: " + why,
			Do: "fix the failure above and run preflight again"})
	}
	return rows
}

// mx looks up the destination's hosts and says what it found.
func (p *prober) mx(ctx context.Context, d *Destination) ([]dnsresolve.Host, []Row) {
	row := Row{Check: "mx", Target: d.Host}
	var names []string
	if d.MX {
		var err error
		names, err = p.o.Resolver.MXHosts(ctx, d.Host)
		if err != nil {
			return nil, []Row{dnsFailure(row, err, "the domain "+d.Host)}
		}
	}
	hosts, err := p.o.Resolver.Hosts(ctx, d.Nexthop, d.MX)
	if err != nil {
		return nil, []Row{dnsFailure(row, err, "the host "+d.Host)}
	}
	var parts []string
	for _, h := range hosts {
		s := h.Name
		if d.MX && len(names) > 0 {
			s = fmt.Sprintf("MX %d %s", h.Pref, h.Name)
		}
		var as []string
		for _, a := range h.Addrs {
			as = append(as, a.String())
		}
		parts = append(parts, s+" ["+strings.Join(as, ", ")+"]")
	}
	switch {
	case !d.MX:
		row.Target = "[" + d.Host + "]"
		row.Status, row.Seen = OK, "no MX lookup ([host]): "+strings.Join(parts, "; ")
	case len(names) == 0:
		row.Status, row.Seen = Warn, "no MX record for "+d.Host+": mail goes to its own address: "+strings.Join(parts, "; ")
		row.Do = "publish the provider's MX records for " + d.Host + ", or write the next hop as [host] if this host is meant"
	default:
		row.Status, row.Seen = OK, strings.Join(parts, "; ")
	}
	return hosts, []Row{row}
}

// dnsFailure fills row for a failed lookup of what.
func dnsFailure(row Row, err error, what string) Row {
	row.Seen = err.Error()
	if dnsresolve.IsTemporary(err) {
		row.Status = Unknown
		row.Do = "the DNS lookup failed for now: check dns_servers and the network, and run preflight again"
		return row
	}
	row.Status = Fail
	switch {
	case strings.Contains(err.Error(), "nullMX"):
		row.Do = what + " accepts no mail (null MX): check the copy map's domain and transport_maps"
	case strings.Contains(err.Error(), ": Host not found"):
		row.Do = what + " does not exist in the DNS: check the copy map's domain, transport_maps and copy_transport"
	default:
		row.Do = what + " has no address record: add A/AAAA records for it, or fix the next hop"
	}
	return row
}

// open connects to the first host that answers, from the transport's
// source address, and goes through the greeting, EHLO and STARTTLS.
// With report, it returns the rows of the source address, the connection
// and TLS; without (a reconnection), only failures.
func (p *prober) open(ctx context.Context, d *Destination, hosts []dnsresolve.Host, report bool) (*session, []Row, bool) {
	return p.openTLS(ctx, d, hosts, report, d.TLSLevel != "none")
}

func (p *prober) openTLS(ctx context.Context, d *Destination, hosts []dnsresolve.Host, report, useTLS bool) (*session, []Row, bool) {
	var rows []Row
	var s *session
	var errs []string
	tries := 0
	for _, h := range hosts {
		for _, a := range h.Addrs {
			if tries == 4 {
				break
			}
			tries++
			bind := d.Bind
			if a.Is6() {
				bind = d.Bind6
			}
			ap := netip.AddrPortFrom(a, uint16(d.Port))
			conn, err := dial(ctx, bind, ap, p.o.ConnectTimeout)
			if err != nil {
				errs = append(errs, fmt.Sprintf("connect to %s[%s]:%d: %v", h.Name, a, d.Port, err))
				continue
			}
			s = newSession(conn, h.Name, ap, p.o.CommandTimeout)
			break
		}
		if s != nil {
			break
		}
	}
	if report {
		rows = append(rows, p.sourceRows(ctx, d, hosts, s)...)
	}
	if s == nil {
		return nil, append(rows, Row{Check: "connect", Target: d.Host, Status: Fail, Seen: strings.Join(errs, "; "),
			Do: fmt.Sprintf("open outgoing TCP port %d to %s in the firewall, or fix the next hop", d.Port, d.Host)}), false
	}
	fail := func(stage string, r Reply, err error) (*session, []Row, bool) {
		s.conn.Close()
		if err != nil {
			return nil, append(rows, Row{Check: "connect", Target: s.where(), Status: Fail,
				Seen: fmt.Sprintf("%s: %v", stage, err), Do: "run preflight again; if it persists, ask " + d.Host + "'s administrators"}), false
		}
		return nil, append(rows, p.refusal(d, s, stage, r)), false
	}
	r, err := s.reply()
	if err != nil || r.Code != 220 {
		return fail("greeting", r, err)
	}
	if r, err = s.hello(d.Helo); err != nil || r.Code != 250 {
		return fail("EHLO", r, err)
	}
	if !useTLS {
		if report && d.TLSLevel == "none" {
			rows = append(rows, Row{Check: "tls", Target: s.where(), Status: Warn,
				Seen: "not tried: smtp_tls_security_level = none for transport " + d.Transport,
				Do:   "copies would travel in clear text: set smtp_tls_security_level = may (or encrypt)"})
		}
		return s, rows, true
	}
	must := strictTLS(d.TLSLevel)
	if _, ok := s.ext["STARTTLS"]; !ok {
		row := Row{Check: "tls", Target: s.where(), Status: Warn, Seen: "STARTTLS not offered",
			Do: "copies would travel in clear text: ask " + d.Host + "'s administrators to offer STARTTLS (Google and Microsoft 365 do)"}
		if must {
			row.Status = Fail
			row.Do = "smtp_tls_security_level = " + d.TLSLevel + " requires TLS, which this server does not offer: mail would wait in the queue"
		}
		if must {
			s.conn.Close() // nothing is sent in clear text at a strict level
			return nil, append(rows, row), false
		}
		if report {
			rows = append(rows, row)
		}
		return s, rows, true
	}
	cfg := &tls.Config{ServerName: s.host, InsecureSkipVerify: true, MinVersion: tls.VersionTLS10}
	tr, st, err := s.startTLS(cfg)
	if err != nil && st == nil && tr.Code == 220 {
		// The handshake failed: the connection is lost. Postfix at
		// level may sends in clear text after that; so does the probe.
		s.conn.Close()
		row := Row{Check: "tls", Target: s.where(), Status: Warn, Seen: "TLS handshake failed: " + err.Error(),
			Do: "copies would go in clear text: ask " + d.Host + "'s administrators to fix TLS"}
		if must {
			row.Status, row.Do = Fail, "smtp_tls_security_level = "+d.TLSLevel+" requires TLS: mail would wait in the queue until the server's TLS works"
			return nil, append(rows, row), false
		}
		s2, more, ok := p.openTLS(ctx, d, hosts, false, false)
		return s2, append(append(rows, row), more...), ok
	}
	if err != nil || tr.Code != 220 {
		return fail("STARTTLS", tr, err)
	}
	if report {
		rows = append(rows, tlsRow(s, st, d, p.o.RootCAs, time.Now()))
	}
	if r, err = s.hello(d.Helo); err != nil || r.Code != 250 {
		return fail("EHLO after STARTTLS", r, err)
	}
	return s, rows, true
}

// strictTLS reports whether a TLS security level refuses to send without
// TLS (Postfix's smtp_tls_security_level).
func strictTLS(level string) bool {
	switch level {
	case "encrypt", "verify", "secure", "fingerprint":
		return true
	}
	return false
}

// tlsRow describes the handshake and the server's certificate.
func tlsRow(s *session, st *tls.ConnectionState, d *Destination, roots *x509.CertPool, now time.Time) Row {
	row := Row{Check: "tls", Target: s.where(), Status: OK}
	seen := []string{tls.VersionName(st.Version) + ", " + tls.CipherSuiteName(st.CipherSuite)}
	if len(st.PeerCertificates) == 0 {
		row.Status, row.Seen = Warn, seen[0]+"; no certificate"
		return row
	}
	c := st.PeerCertificates[0]
	seen = append(seen, fmt.Sprintf("certificate subject %q, issuer %q, expires %s", c.Subject.String(), c.Issuer.String(), c.NotAfter.UTC().Format("2006-01-02")))
	verify := verifyChain(st, s.host, roots)
	switch {
	case verify != nil:
		row.Status = Warn
		seen = append(seen, "does not verify for "+s.host+": "+verify.Error())
		row.Do = "fine at smtp_tls_security_level = may or encrypt (mail is encrypted, the server is not authenticated); at verify or secure mail would wait: ask " + d.Host + "'s administrators for a certificate that verifies"
		if d.TLSLevel == "verify" || d.TLSLevel == "secure" {
			row.Status = Fail
			row.Do = "smtp_tls_security_level = " + d.TLSLevel + " requires a certificate that verifies: mail would wait in the queue; ask for a valid certificate or lower the level to encrypt"
		}
	case c.NotAfter.Sub(now) < 14*24*time.Hour:
		row.Status = Warn
		seen = append(seen, "verifies for "+s.host+", but expires within 14 days")
		row.Do = "ask " + d.Host + "'s administrators to renew the certificate"
	default:
		seen = append(seen, "verifies for "+s.host)
	}
	row.Seen = strings.Join(seen, "; ")
	return row
}

// verifyChain verifies the server's chain for the MX host's name, as
// smtp_tls_security_level = verify would.
func verifyChain(st *tls.ConnectionState, host string, roots *x509.CertPool) error {
	opts := x509.VerifyOptions{DNSName: host, Roots: roots, Intermediates: x509.NewCertPool()}
	for _, c := range st.PeerCertificates[1:] {
		opts.Intermediates.AddCert(c)
	}
	_, err := st.PeerCertificates[0].Verify(opts)
	return err
}

// refusal is the row of a reply that ended the session at stage: the
// source address refused (allow-list), or another refusal.
func (p *prober) refusal(d *Destination, s *session, stage string, r Reply) Row {
	if Classify(r) == SourceRefused {
		return Row{Check: "allow-list", Target: s.local.String(), Status: Fail,
			Seen: fmt.Sprintf("%s refuses this source address at %s: %s", s.where(), stage, r),
			Do:   allowDo(d, s, r)}
	}
	st := Fail
	if r.Code >= 400 && r.Code < 500 {
		st = Unknown
	}
	return Row{Check: "connect", Target: s.where(), Status: st,
		Seen: fmt.Sprintf("%s refused: %s", stage, r),
		Do:   "read the reply: " + d.Host + " does not take mail from this host now"}
}

// allowDo says how to get the source address accepted, in the
// provider's terms when the reply or the MX host names it.
func allowDo(d *Destination, s *session, r Reply) string {
	src := s.local.String()
	text := strings.ToLower(r.Text + " " + s.host)
	switch {
	case strings.Contains(text, "gsmtp") || strings.Contains(text, "google"):
		return "add " + src + " to the Google Workspace SMTP relay allow-list (Admin console: Apps > Google Workspace > Gmail > Routing > SMTP relay service, \"Only accept mail from the specified IP addresses\"), or make this host an inbound gateway"
	case strings.Contains(text, "tenant") || strings.Contains(text, "outlook") || strings.Contains(text, "protection") || strings.Contains(text, "5.7.6"):
		return "add " + src + " to the Microsoft 365 inbound connector from your organization's mail server (Exchange admin center > Mail flow > Connectors), or have a banned address delisted (sender.office.com)"
	}
	return "ask " + d.Host + "'s administrators to accept mail from " + src + " (allow-list, relay permission or mynetworks), or send from an address they accept (" + bindHint(d) + ")"
}

func bindHint(d *Destination) string {
	if d.BindParam != "" {
		return d.BindParam
	}
	return d.Transport + "_bind_address"
}

// probe is one RCPT to ask: a user's address, or a made-up one (user
// nil) that tells whether the domain accepts every RCPT.
type probe struct {
	addr   string
	user   *User
	domain string
}

// accounts asks for each user's address with RCPT TO, after a made-up
// address in each domain.
func (p *prober) accounts(ctx context.Context, d *Destination, hosts []dnsresolve.Host, s *session) []Row {
	var rows []Row
	var probes []probe
	var domains []string
	byDomain := map[string][]*User{}
	for i := range d.Users {
		u := &d.Users[i]
		dom := strings.ToLower(domainOf(u.Addr))
		if _, ok := byDomain[dom]; !ok {
			domains = append(domains, dom)
		}
		byDomain[dom] = append(byDomain[dom], u)
	}
	for _, dom := range domains {
		probes = append(probes, probe{addr: madeUp() + "@" + dom, domain: dom})
		for _, u := range byDomain[dom] {
			probes = append(probes, probe{addr: u.Addr, user: u, domain: dom})
		}
	}
	acceptsAll := map[string]string{} // domain -> the made-up address accepted
	var next time.Time
	inTxn := 0
	reconnects := 0
	refused := false
	defer func() {
		if s != nil {
			s.quit()
		}
	}()
	// mail starts a transaction; false when the session is lost or
	// MAIL is refused (rows say why).
	mail := func() bool {
		r, err := s.cmd("MAIL FROM:<" + p.o.Sender + ">")
		if err == nil && r.Code == 250 {
			inTxn = 0
			return true
		}
		if err != nil {
			rows = append(rows, Row{Check: "connect", Target: s.where(), Status: Fail, Seen: "MAIL FROM: " + err.Error(),
				Do: "run preflight again; if it persists, ask " + d.Host + "'s administrators"})
		} else {
			rows = append(rows, p.refusal(d, s, "MAIL FROM:<"+p.o.Sender+">", r))
			refused = Classify(r) == SourceRefused
		}
		s.conn.Close()
		s = nil
		return false
	}
	reopen := func() bool {
		if s != nil {
			s.conn.Close()
		}
		s = nil
		var more []Row
		var ok bool
		s, more, ok = p.open(ctx, d, hosts, false)
		rows = append(rows, more...)
		return ok && mail()
	}
	if !mail() {
		return append(rows, p.notProbed(d.Users, "MAIL FROM was refused")...)
	}
	for i := 0; i < len(probes); i++ {
		pr := probes[i]
		if err := waitUntil(ctx, next); err != nil {
			return append(rows, p.rest(probes[i:], "preflight was interrupted")...)
		}
		next = time.Now().Add(p.o.Interval)
		if inTxn == p.o.PerTransaction {
			if r, err := s.cmd("RSET"); err != nil || r.Code != 250 || !mail() {
				if reconnects++; reconnects > 2 || !reopen() {
					return append(rows, p.rest(probes[i:], "the session was lost")...)
				}
			}
		}
		r, err := s.cmd("RCPT TO:<" + pr.addr + ">")
		if err == nil && Classify(r) == SourceRefused {
			// Google closes with "421 4.7.0 IP not in whitelist for
			// RCPT domain": a refusal, not a session to retry.
			rows = append(rows, p.refusal(d, s, "RCPT TO:<"+pr.addr+">", r))
			refused = true
			return append(rows, p.rest(probes[i:], "this source address is refused")...)
		}
		if err != nil || r.Code == 421 {
			// Lost or closed: once more on a new connection.
			if reconnects++; reconnects > 2 || !reopen() {
				why := "the session was lost"
				if err == nil {
					why = "the server closed the session: " + r.String()
				}
				return append(rows, p.rest(probes[i:], why)...)
			}
			i--
			continue
		}
		inTxn++
		if r.Code == 452 && (r.Enhanced() == "4.5.3" || strings.Contains(strings.ToLower(r.Text), "too many recipients")) && inTxn > 1 {
			inTxn = p.o.PerTransaction // RSET, then this address again
			i--
			continue
		}
		v := Classify(r)
		if pr.user == nil {
			if v == Accepted {
				acceptsAll[pr.domain] = pr.addr
			}
			continue
		}
		rows = append(rows, accountRow(pr.user, r, v, acceptsAll[pr.domain]))
	}
	if !refused {
		rows = append(rows, Row{Check: "allow-list", Target: s.local.String(), Status: OK,
			Seen: fmt.Sprintf("%s accepts connection, EHLO, MAIL and RCPT from %s", s.where(), s.local)})
	}
	return rows
}

// rest are the rows of the users among probes that were not asked.
func (p *prober) rest(probes []probe, why string) []Row {
	var users []User
	for _, pr := range probes {
		if pr.user != nil {
			users = append(users, *pr.user)
		}
	}
	return p.notProbed(users, why)
}

// accountRow is the row of one user's RCPT reply. acceptAll is the
// made-up address of the same domain that was accepted, if one was.
func accountRow(u *User, r Reply, v Verdict, acceptAll string) Row {
	row := Row{Check: "account", Target: u.Addr, Seen: r.String()}
	if u.Key != "" && !strings.EqualFold(u.Key, u.Addr) {
		row.Seen = fmt.Sprintf("(copy of %s) %s", u.Key, r)
	}
	switch v {
	case Accepted:
		if acceptAll != "" {
			row.Status = Unknown
			row.Seen += "; but the made-up " + acceptAll + " was accepted too: this site accepts every RCPT"
			row.Do = "check in the provider's admin console that the account exists (Microsoft 365: directory-based edge blocking makes the site refuse unknown addresses, and preflight able to tell)"
		} else {
			row.Status = OK
			row.Seen = "exists: " + row.Seen
		}
	case MissingAccount:
		row.Status = Fail
		row.Seen = "missing: " + row.Seen
		row.Do = "create the account at the provider, or remove it from the copy map"
		if u.From != "" {
			row.Do += " (" + u.From + ")"
		}
	case Temporary:
		row.Status = Unknown
		row.Seen = "temporary refusal: " + row.Seen
		row.Do = "run preflight again later"
	default:
		row.Status = Fail
		row.Seen = "refused: " + row.Seen
		row.Do = "read the reply: copies to this address would bounce to postmaster"
	}
	return row
}

// madeUp is a local part that no mailbox has.
func madeUp() string {
	return "mailtee-preflight-" + strings.ToLower(rand.Text()[:16])
}

func domainOf(addr string) string {
	if at := strings.LastIndexByte(addr, '@'); at >= 0 {
		return addr[at+1:]
	}
	return ""
}

// waitUntil sleeps until t, or until ctx ends.
func waitUntil(ctx context.Context, t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err()
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// sourceRows checks the forward and reverse DNS of the source addresses
// mail to d leaves from: the connection's, and the other family's when
// the destination has addresses of both. Each address is checked once
// per run.
func (p *prober) sourceRows(ctx context.Context, d *Destination, hosts []dnsresolve.Host, s *session) []Row {
	var srcs []netip.Addr
	have4, have6 := false, false
	var dst4, dst6 netip.Addr
	for _, h := range hosts {
		for _, a := range h.Addrs {
			if a.Is4() && !have4 {
				have4, dst4 = true, a
			}
			if a.Is6() && !have6 {
				have6, dst6 = true, a
			}
		}
	}
	pick := func(dst netip.Addr, bind string) {
		if s != nil && s.local.Is4() == dst.Is4() {
			srcs = append(srcs, s.local)
			return
		}
		if b, err := netip.ParseAddr(strings.Trim(bind, "[]")); err == nil {
			srcs = append(srcs, b.Unmap())
			return
		}
		if a, err := udpSource(dst); err == nil {
			srcs = append(srcs, a)
		}
	}
	if have4 {
		pick(dst4, d.Bind)
	}
	if have6 {
		pick(dst6, d.Bind6)
	}
	var rows []Row
	for _, a := range srcs {
		if p.sourcesSeen[a] {
			continue
		}
		p.sourcesSeen[a] = true
		p.sources = append(p.sources, a)
		rows = append(rows, p.reverse(ctx, a, d))
	}
	return rows
}

// reverse checks that a has a PTR record whose name resolves to a.
func (p *prober) reverse(ctx context.Context, a netip.Addr, d *Destination) Row {
	row := Row{Check: "source-dns", Target: a.String()}
	how := "the address the kernel picks to reach " + d.Host
	if d.BindParam != "" && (d.Bind == a.String() || d.Bind6 == a.String()) {
		how = d.BindParam
	}
	six := ""
	if a.Is6() {
		six = "; Gmail refuses mail from IPv6 senders without a PTR record"
	}
	names, err := p.o.Resolver.PTR(ctx, a)
	if err != nil {
		row.Status, row.Seen = Unknown, fmt.Sprintf("source address (%s): PTR lookup failed: %v", how, err)
		row.Do = "check dns_servers and run preflight again"
		return row
	}
	if len(names) == 0 {
		row.Status, row.Seen = Fail, fmt.Sprintf("source address (%s) has no PTR record", how)
		row.Do = fmt.Sprintf("add a PTR record for %s naming this host (%s), and an A/AAAA record for that name with %s%s; providers refuse or mark as spam mail from addresses without one", a, cmpOr(p.o.Hostname, "its host name"), a, six)
		return row
	}
	var seen []string
	for _, n := range names {
		addrs, err := p.o.Resolver.Addrs(ctx, n)
		if err == nil && slices.Contains(addrs, a) {
			row.Status, row.Seen = OK, fmt.Sprintf("source address (%s): %s -> %s -> %s", how, a, n, a)
			return row
		}
		if err != nil {
			var de *dnsresolve.Error
			if errors.As(err, &de) && de.Temporary {
				row.Status, row.Seen = Unknown, fmt.Sprintf("source address (%s): PTR %s, lookup of %s failed: %v", how, n, n, err)
				row.Do = "check dns_servers and run preflight again"
				return row
			}
			seen = append(seen, n+" has no address")
		} else {
			seen = append(seen, fmt.Sprintf("%s -> %v", n, addrs))
		}
	}
	row.Status = Fail
	row.Seen = fmt.Sprintf("source address (%s): %s -> %s: the name does not resolve back to %s", how, a, strings.Join(seen, ", "), a)
	row.Do = fmt.Sprintf("add an A/AAAA record with %s for %s, or point the PTR at a name that has one%s", a, names[0], six)
	return row
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
